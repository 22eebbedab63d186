//! charla: a small chat server and its terminal client, speaking the line
//! protocol of `docs/PROTOCOL.md` over TCP and keeping accounts and messages
//! in SQLite.
//!
//! # Layout
//!
//! Protocol, pure and without I/O:
//! - [`frame`]: bytes to lines, with the line limit enforced while reading.
//! - [`command`]: the verb table and the parsing of a client line.
//! - [`reply`]: server lines, encoded (server) and parsed (client).
//! - [`validate`]: the value rules for usernames, passwords, names, texts.
//! - [`code`]: the error codes and their levels.
//!
//! Server:
//! - [`server`]: configuration, accept loop, orderly stop.
//! - [`session`]: one connection's read loop and command handlers.
//! - [`outbox`]: a session's bounded outgoing queue and its writer thread.
//! - [`registry`]: connections, logged-in sessions, presence.
//! - [`journal`]: the single writer: group commit, acknowledgement, fan-out.
//! - [`store`]: storage behind a trait; [`store::sqlite`] is the backend.
//! - [`auth`]: bcrypt on a bounded pool.
//! - [`limits`]: token buckets against floods and brute force.
//! - [`shutdown`]: the stop signal.
//! - [`logging`]: log setup, with errors optionally copied to a file.
//!
//! Client:
//! - [`client`]: the terminal client behind the `charla` binary.
//!
//! Measuring:
//! - [`bench`]: the load scenarios behind `charla-bench`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod bench;
pub mod client;
pub mod code;
pub mod command;
pub mod frame;
pub mod journal;
pub mod limits;
pub mod logging;
pub mod outbox;
pub mod registry;
pub mod reply;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod validate;
