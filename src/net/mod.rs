//! The network side: listening, accepting, and one thread per connection
//! that turns bytes into commands for the core.
//!
//! - [`server`]: the accept loop, the connection limits, the orderly stop.
//! - [`conn`]: one connection of charla's line protocol, from `HELLO` to
//!   close.
//! - [`tcp`]: plain TCP as the core's transport; [`tls`]: TLS (rustls).
//! - [`proxy`]: the PROXY protocol header of a trusted load balancer.
//! - [`health`]: `/health` for balancers and operators.

pub mod conn;
pub mod health;
pub mod proxy;
pub mod server;
pub mod tcp;
pub mod tls;
