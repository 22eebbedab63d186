//! Committed batches on their way to delivery, and where they come from.
//!
//! Committing and delivering are separate stages. The journal stores a
//! batch and acknowledges it, then *publishes* it to a [`Feed`]; the feed
//! hands batches, in commit order, to its [`Subscriber`] (the fan-out),
//! which delivers them to this process's sessions. Today's feed is
//! [`LocalFeed`]: what this process just committed, handed on at once on
//! the journal's thread. A feed that reads what any node committed (the
//! cluster) plugs in here without the journal or the fan-out changing.
//!
//! Presence (JOIN/LEAVE) takes the same road: the registry reports each
//! change to a [`PresenceSink`] (the journal), which puts it in the same
//! ordered batches as the messages.

use std::sync::{Arc, OnceLock};

use super::event::{Event, Message};
use super::reply::ReplyTo;
use super::rooms::MembershipChange;

/// Identifies one connection for the life of the server process.
pub type ConnectionId = u64;

/// One committed batch, in commit order.
#[derive(Debug, Default)]
pub struct Committed {
    /// What the batch delivers, in the order it was committed.
    pub entries: Vec<Entry>,
}

/// One thing a committed batch delivers.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A newly stored message.
    Message {
        /// The message.
        message: Arc<Message>,
        /// The connection that sent it: it got the `OK`, not the event.
        origin: ConnectionId,
        /// When the sender is to be shown its own message as an event
        /// (`echo-message`): the command it answers.
        echo: Option<ReplyTo>,
    },
    /// A presence change.
    Presence(PresenceChange),
    /// Something for one connection of this process alone (a relay
    /// invitation from another node).
    Notice {
        /// The connection.
        to: ConnectionId,
        /// What it is told.
        event: Event,
    },
    /// An account joined or left a room.
    Membership {
        /// What changed.
        change: MembershipChange,
        /// The connection that asked for it: it got the `OK`, not the event.
        origin: ConnectionId,
    },
}

/// An account came online or went offline.
#[derive(Clone, Debug)]
pub struct PresenceChange {
    /// [`Event::Online`] or [`Event::Offline`].
    pub event: Event,
    /// The account that came online or went offline.
    pub account: i64,
    /// The connection whose login or logout caused it; it is not told.
    pub origin: ConnectionId,
    /// The registry's change number: only sessions logged in before this
    /// change are told of it.
    pub change: u64,
    /// Sessions logged in when it happened, so the journal can batch
    /// presence more patiently when many would receive it.
    pub sessions: usize,
}

/// Where the registry reports presence changes. Implemented by the journal,
/// which keeps them in order with the messages; the registry calls it under
/// its lock, so each account's JOIN and LEAVE stay in order.
pub trait PresenceSink: Send + Sync {
    /// Queues `change` for delivery.
    fn presence(&self, change: PresenceChange);
}

/// What receives committed batches (the fan-out).
pub trait Subscriber: Send + Sync {
    /// Delivers one batch. Called in commit order, one batch at a time.
    fn deliver(&self, batch: &Committed);
}

/// Something to do once the feed has delivered up to a position.
pub type Then = Box<dyn FnOnce() + Send>;

/// Where the journal publishes what it has committed.
pub trait Feed: Send + Sync {
    /// Hands on a batch that is committed and acknowledged.
    fn publish(&self, batch: Committed);

    /// The journal is about to commit a batch whose entries carry what the
    /// stored log does not (echoes), and will [`Feed::publish`] it: a feed
    /// that reads batches back from the log must wait for that before it
    /// reads past them. `false` when it is done (published or failed).
    fn hold(&self, _held: bool) {}

    /// Runs `then` once everything up to log `position` (0: nothing in
    /// particular) has been delivered to this process's sessions: a JOIN is
    /// answered only once its change is in force for delivery.
    fn when_delivered(&self, position: u64, then: Then);
}

/// The feed of a single process: each batch the journal commits is
/// delivered at once, on the journal's thread (no extra wake-up between
/// commit and delivery).
#[derive(Default)]
pub struct LocalFeed {
    /// Set once, when the fan-out exists (it needs the registry, which
    /// needs the journal, which needs this feed).
    subscriber: OnceLock<Arc<dyn Subscriber>>,
}

impl LocalFeed {
    /// A feed with no subscriber yet: batches published before
    /// [`LocalFeed::subscribe`] reach nobody.
    pub fn new() -> Arc<LocalFeed> {
        Arc::new(LocalFeed::default())
    }

    /// Sets the subscriber; a second call is ignored (there is one fan-out).
    pub fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        let _ = self.subscriber.set(subscriber);
    }
}

impl Feed for LocalFeed {
    fn publish(&self, batch: Committed) {
        if let Some(subscriber) = self.subscriber.get() {
            subscriber.deliver(&batch);
        }
    }

    /// Everything published is delivered when `publish` returns.
    fn when_delivered(&self, _: u64, then: Then) {
        then();
    }
}
