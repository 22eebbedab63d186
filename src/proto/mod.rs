//! The wire: bytes to lines and lines to commands, replies and events to
//! bytes, one module per wire protocol. Pure: no I/O, and fuzzed.
//!
//! - [`frame`]: bytes to lines, with the line limit enforced while reading.
//! - [`charla`]: charla's line protocol, for the server ([`charla::CharlaCodec`])
//!   and for clients ([`charla::ServerLine`]).
//! - [`irc`]: IRC's message format and the small encodings of the IRC front
//!   end (PROTOCOL.md 13), without any command logic.

pub mod charla;
pub mod frame;
pub mod irc;
