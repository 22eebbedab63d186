//! What happens to a session without its asking, as types: stored messages,
//! presence, room membership and the server's goodbye. Codecs turn them
//! into bytes once per wire protocol in use (see [`super::fanout`]).

use std::sync::Arc;

use super::code::ErrorCode;
use super::reply::ReplyTo;

/// Where a message was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The lobby, `#general`: delivered as a version 1 `MSG`.
    Lobby,
    /// A room.
    Room {
        /// The room's id (a room re-created after it ended has a new one).
        id: i64,
        /// Its name, `#` included, with the case of the JOIN that made it.
        name: Arc<str>,
    },
    /// One account: a private message.
    Account {
        /// The addressee's account id.
        id: i64,
        /// The addressee's username as registered.
        name: Arc<str>,
    },
}

/// A stored message, as events and `HISTORY` carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its id: strictly increasing in storage order, one sequence for the
    /// lobby, every room and every private conversation.
    pub id: i64,
    /// Milliseconds since the Unix epoch when it was stored.
    pub ts: i64,
    /// Author's account id (a private message reaches author and addressee).
    pub author_id: i64,
    /// Author's username as registered.
    pub author: Arc<str>,
    /// The trimmed text (may contain TAB).
    pub text: Arc<str>,
    /// Where it was sent.
    pub target: Target,
}

/// Something a session learns without asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message was stored.
    Message(Arc<Message>),
    /// A message this session sent was stored: shown to it at its place
    /// among the others, for front ends that echo (IRC's `echo-message`).
    Echo {
        /// The message.
        message: Arc<Message>,
        /// The command that sent it.
        to: ReplyTo,
    },
    /// An account came online (its first session logged in).
    Online(Arc<str>),
    /// An account went offline (its last session ended).
    Offline(Arc<str>),
    /// An account that is a member of a room came online: told to the
    /// room's members, for protocols whose presence is per room (IRC shows
    /// a JOIN in each room it shares with the account; charla's protocol
    /// shows nothing, its `JOIN USER` being [`Event::Online`]).
    Arrived {
        /// The room's name.
        room: Arc<str>,
        /// The account's username.
        user: Arc<str>,
    },
    /// An account joined a room.
    Enter {
        /// The room's name.
        room: Arc<str>,
        /// The account's username.
        user: Arc<str>,
    },
    /// An account left a room.
    Exit {
        /// The room's name.
        room: Arc<str>,
        /// The account's username.
        user: Arc<str>,
    },
    /// Somebody fetched one of this session's offers through the relay: the
    /// offering client is to bring the file there, with the ticket.
    Relay {
        /// The offer's id.
        file: String,
        /// The fetcher's ticket.
        ticket: String,
        /// The relay, `HOST:PORT`.
        addr: String,
    },
    /// The server is about to close this connection, for this reason.
    Bye(ErrorCode),
}
