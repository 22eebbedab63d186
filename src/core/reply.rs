//! What a command answers, as types: the protocol-neutral reply that every
//! wire protocol's codec turns into its own bytes.
//!
//! A handler never writes bytes. It returns a [`Reply`]; the session hands
//! it, with the [`ReplyTo`] naming the command it answers, to its outbox,
//! whose codec encodes it (charla's line protocol today, IRC later).

use std::sync::Arc;

use super::code::ErrorCode;
use super::event::Message;
use super::files::Offer;
use super::rooms::RoomListing;

/// What a front end other than charla's own needs to encode the reply to
/// one of its commands (IRC: the label, the command as the client named
/// it, the target as written). The core carries it from the command to the
/// reply, which may be queued later by the journal, and never looks inside;
/// the front end's codec downcasts it.
pub type FrontContext = Arc<dyn std::any::Any + Send + Sync>;

/// The command a reply answers: its tag, echoed by protocols that have
/// tags, and its canonical name (`None` for a line with no known command).
#[derive(Clone, Default)]
pub struct ReplyTo {
    /// The client's `@TAG` without its `@`. For `SAY` and `SEND` it is also
    /// the message's idempotency key (PROTOCOL.md 5.4).
    pub tag: Option<Box<str>>,
    /// The canonical upper-case name from the command table (`SALIR` is
    /// answered as `QUIT`), or `None` for an unknown or unreadable line.
    pub verb: Option<&'static str>,
    /// The front end's own context, when it is not charla's protocol.
    pub front: Option<FrontContext>,
    /// For `SAY` and `SEND`: the sender is shown its own message as an
    /// event, at its place among the others ([`super::event::Event::Echo`],
    /// IRC's `echo-message`), instead of a reply.
    pub echo: bool,
}

impl ReplyTo {
    /// The reply context of command `verb` sent with `tag`.
    pub fn new(tag: Option<&str>, verb: Option<&'static str>) -> ReplyTo {
        ReplyTo {
            tag: tag.map(Box::from),
            verb,
            front: None,
            echo: false,
        }
    }

    /// The reply context of command `verb` from another front end, which
    /// will encode the reply with `front`.
    pub fn from_front(verb: &'static str, front: FrontContext) -> ReplyTo {
        ReplyTo {
            tag: None,
            verb: Some(verb),
            front: Some(front),
            echo: false,
        }
    }

    /// The front end's context as its own type, if it is one.
    pub fn front<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.front.as_ref().and_then(|front| front.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo")
            .field("tag", &self.tag)
            .field("verb", &self.verb)
            .field("front", &self.front.is_some())
            .field("echo", &self.echo)
            .finish()
    }
}

impl PartialEq for ReplyTo {
    /// Equal tags and verbs, and the very same front-end context (or none).
    fn eq(&self, other: &ReplyTo) -> bool {
        self.tag == other.tag
            && self.verb == other.verb
            && self.echo == other.echo
            && match (&self.front, &other.front) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for ReplyTo {}

/// The final answer to one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// It succeeded, with what it produced.
    Ok(Answer),
    /// It failed; nothing was changed.
    Err(ErrorCode),
}

/// What a successful command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `REGISTER` or `LOGIN`: the account the session is now logged in as.
    Account {
        /// Username as registered.
        username: Arc<str>,
        /// Full name.
        full_name: String,
    },
    /// `SAY` and `SEND`: the message is stored under this id and time.
    Stored {
        /// Its id.
        id: i64,
        /// Milliseconds since the Unix epoch when it was stored.
        ts: i64,
        /// The message as stored, when this command stored it (not for a
        /// tag already used): for front ends that echo it to its sender
        /// (IRC's `echo-message`).
        message: Option<Arc<Message>>,
    },
    /// `HISTORY` and `SYNC`: stored messages, oldest first.
    Messages(Vec<Message>),
    /// `JOIN` and `PART`: the room, named with its own case.
    Room(Arc<str>),
    /// `ROOMS`: every room, sorted by name in ASCII lower case.
    Rooms(Vec<RoomListing>),
    /// `WHO`: the accounts online.
    People(Vec<Person>),
    /// `PING`: the token to echo, if one was sent.
    Pong(Option<String>),
    /// A command that answers with one word: `SHARE`'s and `UNSHARE`'s
    /// file id, `ENDPOINT NONE`'s `NONE`.
    Word(String),
    /// `ENDPOINT HOST:PORT`: the endpoint, and the key this session's
    /// tickets are sealed with, for its client to check the tickets its
    /// peers bring.
    Endpoint {
        /// The announced `HOST:PORT`.
        addr: String,
        /// The session's ticket key, hex.
        key: String,
    },
    /// `FILES`: the offers found, sorted.
    Files(Vec<Offer>),
    /// `FETCH`: where and with what to fetch a file once.
    Fetch {
        /// The offer's id.
        id: String,
        /// The single-use ticket.
        ticket: String,
        /// `HOST:PORT`: the offering client, or the relay.
        addr: String,
    },
    /// A command with nothing to report (`QUIT`).
    Done,
}

/// An account as `WHO` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Username as registered.
    pub username: String,
    /// Full name.
    pub full_name: String,
}
