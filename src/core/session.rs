//! One connection's state in the core: who it is logged in as, its message
//! allowance, and the order of its replies.
//!
//! A session belongs to its connection's thread; only that thread calls it.
//! Its replies leave in the order of its commands, whatever the outcome:
//! they all enter the outbox through [`Session::emit`], and the outbox
//! holds each behind the replies the journal still owes this session (the
//! acknowledgements of messages being stored) until the journal has queued
//! them. The session's thread does not wait for that, so pipelined messages
//! go to the journal back to back, and a command that reads nothing the
//! journal writes (a refused message, an IRC `PING`) does not stall them.
//! Every other command (`PING`, `HISTORY`, `SYNC`, `WHO`, `JOIN`, a resent
//! tag...) first waits for them ([`Session::settle`]), so it sees what they
//! stored and delivered.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::Core;
use super::code::ErrorCode;
use super::feed::ConnectionId;
use super::limits::TokenBucket;
use super::outbox::Outbox;
use super::registry::Login;
use super::reply::{Reply, ReplyTo};

/// The account a session is logged in as.
pub struct Me {
    /// Account id, for tags and presence.
    pub account_id: i64,
    /// Username as registered, shared by every message this session sends.
    pub username: Arc<str>,
}

/// A connection's state while its thread runs.
pub struct Session<'a> {
    /// Server-wide services.
    pub(super) core: &'a Core,
    /// This connection's id.
    pub(super) id: ConnectionId,
    /// The peer, for logs.
    pub(super) peer: SocketAddr,
    /// This end of the connection: the server's address as the client
    /// reached it (to tell it where the relay is).
    pub(super) local: Option<SocketAddr>,
    /// The peer's address when per-address limits apply to it.
    pub(super) limited_address: Option<IpAddr>,
    /// Where replies go.
    pub(super) outbox: Arc<Outbox>,
    /// `None` until REGISTER or LOGIN succeeds.
    pub(super) me: Option<Me>,
    /// This session's message allowance (PROTOCOL.md 5.5).
    pub(super) messages: TokenBucket,
    /// Replies the journal owes this session (messages being stored).
    owed: usize,
    /// The journal signals here as it queues each owed reply.
    acked: Receiver<()>,
    /// Given to each message for the journal to signal on.
    pub(super) ack_sender: Sender<()>,
    /// A login or a JOIN is running: events open after its reply is queued.
    entering: bool,
    /// The key this session's file tickets are sealed with, hex; made
    /// when first needed (PROTOCOL.md 11).
    ticket_key: Option<String>,
}

impl<'a> Session<'a> {
    /// The session of connection `id` from `peer`, answering through
    /// `outbox`. It is recorded in the registry (for shutdown's BYE) at
    /// once.
    pub fn new(
        core: &'a Core,
        id: ConnectionId,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        outbox: Arc<Outbox>,
    ) -> Session<'a> {
        core.registry.connect(id, Arc::clone(&outbox));
        let (ack_sender, acked) = crossbeam_channel::unbounded();
        let limits = &core.limits;
        Session {
            core,
            id,
            peer,
            local,
            limited_address: Some(peer.ip()).filter(|ip| limits.applies_to(*ip)),
            outbox,
            me: None,
            messages: TokenBucket::full(limits.msg_rate, limits.clock.now()),
            owed: 0,
            acked,
            ack_sender,
            entering: false,
            ticket_key: None,
        }
    }

    /// The key that seals the tickets for this session's offers: one per
    /// session, so that its client, told it once by `ENDPOINT`, can check
    /// the tickets of every offer it makes.
    pub(super) fn ticket_key(&mut self) -> Result<String, ErrorCode> {
        if let Some(key) = &self.ticket_key {
            return Ok(key.clone());
        }
        let key = crate::core::files::random_hex(32)?;
        self.ticket_key = Some(key.clone());
        Ok(key)
    }

    /// Whether REGISTER or LOGIN succeeded.
    pub fn is_logged_in(&self) -> bool {
        self.me.is_some()
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The connection's outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Queues the reply to command `to`, after every reply still owed by
    /// the journal (the outbox holds it until then): the one door through
    /// which a session's own replies enter its outbox, so none can overtake
    /// an earlier command's (PROTOCOL.md 1). A login or JOIN reply also
    /// opens the session to events, right behind it; it waits for the
    /// journal here, so that the events do not pass it.
    pub fn emit(&mut self, to: &ReplyTo, reply: &Reply) {
        if self.entering {
            self.settle();
        }
        self.outbox.reply(to, reply);
        if std::mem::take(&mut self.entering) {
            self.outbox.open_events();
        }
    }

    /// Holds this session's events until the reply to the command running
    /// now is queued: a JOIN's answer comes before the room's messages,
    /// which may be delivered while it is still being made.
    pub(super) fn hold_events_until_reply(&mut self) {
        if self.me.is_some() && !self.entering {
            self.outbox.hold_events();
            self.entering = true;
        }
    }

    /// Queues bytes a front end encoded itself as the answer to a command
    /// run with [`crate::core::commands::call`], under [`Session::emit`]'s
    /// rules: after every reply still owed, and opening events behind a
    /// login's answer.
    pub fn emit_raw(&mut self, bytes: Vec<u8>) {
        if self.entering {
            self.settle();
        }
        self.outbox.raw_reply(bytes);
        if std::mem::take(&mut self.entering) {
            self.outbox.open_events();
        }
    }

    /// The account this session is logged in as: its id and username.
    pub fn account(&self) -> Option<(i64, &Arc<str>)> {
        self.me.as_ref().map(|me| (me.account_id, &me.username))
    }

    /// Waits until every reply the journal owes this session is queued.
    pub fn settle(&mut self) {
        while self.owed > 0 {
            if self.acked.recv().is_err() {
                // The journal is gone: its replies will never come.
                self.owed = 0;
                return;
            }
            self.owed -= 1;
        }
    }

    /// Counts one more reply the journal owes, and collects those already
    /// queued so the count stays small.
    pub(super) fn owe(&mut self) {
        self.owed += 1;
        while self.owed > 0 && self.acked.try_recv().is_ok() {
            self.owed -= 1;
        }
    }

    /// Marks the session logged in as `login`: it joins the registry (and
    /// from now on misses no message), and its outbox holds events until
    /// the reply that says so is emitted.
    ///
    /// # Errors
    /// `db-error` when the session cannot be recorded (a cluster whose
    /// database is unreachable): the session stays logged out.
    pub(super) fn enter(&mut self, login: &Login) -> Result<(), ErrorCode> {
        self.core
            .presence
            .log_in(self.id, login, &self.outbox)
            .map_err(|e| self.failed("login", &e))?;
        self.me = Some(Me {
            account_id: login.account_id,
            username: Arc::clone(&login.username),
        });
        self.entering = true;
        Ok(())
    }

    /// Logs a storage failure of `what` and returns its code.
    pub(super) fn failed(&self, what: &str, error: &crate::store::StoreError) -> ErrorCode {
        log::error!("connection {}: {what} failed in storage: {error}", self.id);
        ErrorCode::from(error)
    }

    /// Ends the session: its messages are acknowledged first, then it
    /// leaves the registry (LEAVE if it was the account's last session) and
    /// the outbox flushes and closes the connection.
    pub fn close(&mut self) {
        self.settle();
        if let Some(me) = self.me.take() {
            log::info!("connection {}: {} left", self.id, me.username);
            self.core.presence.log_out(self.id);
        }
        self.core.offers.session_ended(self.id);
        self.core.registry.disconnect(self.id);
        self.outbox.finish();
    }

    /// The peer's address, for logs.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The services this session uses.
    pub fn core(&self) -> &'a Core {
        self.core
    }
}
