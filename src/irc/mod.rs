//! The IRC front end (PROTOCOL.md 13): standard IRC clients (irssi,
//! WeeChat, bots) in the same chat as charla's own clients, with the same
//! accounts, rooms (channels), private conversations, total order and
//! durability.
//!
//! It is a second front end on the one core: an IRC connection has a
//! session like any other, and every command it sends runs through the
//! core's command table; only how lines are read and written differs.
//!
//! - [`client`]: one client's registration (CAP, SASL PLAIN, PASS, NICK,
//!   USER) and its IRC commands, mapped onto the core's.
//! - [`codec`]: events and deferred replies as IRC lines, encoded once per
//!   flavor (the message-tag capabilities in use).
//! - [`lines`]: stored messages as `PRIVMSG`s (tags, `ACTION`, long texts
//!   split), numerics, and labeled responses.
//! - [`history`]: the `CHATHISTORY` command.
//! - [`caps`]: the IRCv3 capabilities offered.
//!
//! The wire syntax itself (parsing, tag escaping, formatting codes, CTCP,
//! SASL PLAIN's payload) is [`crate::proto::irc`]'s; the socket loop is
//! [`crate::net::irc`]'s.

pub mod caps;
pub mod client;
pub mod codec;
pub mod history;
pub mod lines;
