//! The wire: bytes to lines and lines to commands, replies and events to
//! bytes, one module per wire protocol. Pure: no I/O, and fuzzed.
//!
//! - [`frame`]: bytes to lines, with the line limit enforced while reading.
//! - [`charla`]: charla's line protocol, for the server ([`charla::CharlaCodec`])
//!   and for clients ([`charla::ServerLine`]).

pub mod charla;
pub mod frame;
