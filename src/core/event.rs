//! What happens to a session without its asking, as types: stored messages,
//! presence and the server's goodbye. Codecs turn them into bytes once per
//! wire protocol in use (see [`super::fanout`]).

use std::sync::Arc;

use super::code::ErrorCode;

/// A stored message, as events and `HISTORY` carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its id: strictly increasing in storage order.
    pub id: i64,
    /// Milliseconds since the Unix epoch when it was stored.
    pub ts: i64,
    /// Author's username as registered.
    pub author: Arc<str>,
    /// The trimmed text (may contain TAB).
    pub text: Arc<str>,
}

/// Something a session learns without asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message was stored.
    Message(Arc<Message>),
    /// An account came online (its first session logged in).
    Online(Arc<str>),
    /// An account went offline (its last session ended).
    Offline(Arc<str>),
    /// The server is about to close this connection, for this reason.
    Bye(ErrorCode),
}
