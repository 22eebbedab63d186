//! The network side: listening, accepting, and one thread per connection
//! that turns bytes into commands for the core.
//!
//! - [`server`]: the accept loop, the connection limits, the orderly stop.
//! - [`conn`]: one connection of charla's line protocol, from `HELLO` to
//!   close.
//! - [`tcp`]: plain TCP as the core's transport.

pub mod conn;
pub mod server;
pub mod tcp;
