//! charla: a small chat server and its terminal client, speaking the line
//! protocol of `docs/PROTOCOL.md` (and IRC) over TCP or TLS, keeping
//! accounts and messages in SQLite, or in PostgreSQL shared by several
//! nodes.
//!
//! # Layout
//!
//! Each module may use the ones listed before it, never one listed after
//! (docs/ARCHITECTURE.md follows a line from the socket to every
//! recipient):
//!
//! - [`shutdown`]: the stop signal. [`logging`]: log setup.
//! - [`store`]: storage behind traits; [`store::sqlite`] and
//!   [`store::postgres`] are the backends.
//! - [`config`]: the operator's settings, plain data.
//! - [`core`]: the chat without sockets or wire bytes: the command table and
//!   its functions, sessions, registry, journal (group commit), feed,
//!   fan-out, outboxes, and the codec and transport seams.
//! - [`proto`]: the wire, pure: framing, charla's line protocol as a
//!   codec (server) and a parser (clients), and IRC's message format.
//! - [`irc`]: the IRC front end: registration and IRC's commands on the
//!   core's command table, and its codec.
//! - [`net`]: the accept loops, one thread per connection, TCP and TLS,
//!   PROXY headers, `/health`, the file relay.
//! - [`client`]: the terminal client behind the `charla` binary.
//! - [`bench`]: the load scenarios behind `charla-bench`.

#![forbid(unsafe_code)]

pub mod bench;
pub mod client;
pub mod config;
pub mod core;
pub mod irc;
pub mod logging;
pub mod net;
pub mod proto;
pub mod shutdown;
pub mod store;
