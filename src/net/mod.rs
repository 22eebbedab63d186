//! The network side: listening, accepting, and one thread per connection
//! that turns bytes into commands for the core.
//!
//! - [`server`]: the accept loop, the connection limits, the orderly stop.
//! - [`conn`]: one connection of charla's line protocol, from `HELLO` to
//!   close; [`irc`]: one connection of the IRC front end.
//! - [`tcp`]: plain TCP as the core's transport; [`tls`]: TLS (rustls).
//! - [`proxy`]: the PROXY protocol header of a trusted load balancer.
//! - [`health`]: `/health` for balancers and operators.
//! - [`relay`]: pipes a shared file between two clients that cannot reach
//!   each other.

pub mod conn;
pub mod health;
pub mod irc;
pub mod proxy;
pub mod relay;
pub mod server;
pub mod tcp;
pub mod tls;
