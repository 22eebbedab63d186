//! The single thread that writes: registrations and messages reach it over a
//! channel, and it owns the store's only write connection.
//!
//! For messages it does group commit: it takes everything queued, stores it
//! in one transaction, and only after the commit acknowledges each `SAY`
//! (the reply fills its place in the sender's outbox) and publishes the batch
//! to the [`Feed`], in id order. That one ordering gives the protocol's
//! guarantees at once: a message is durable before anyone hears of it, ids
//! increase in the order every session receives them, and the write rate
//! grows with the batch instead of being one fsync per message.
//!
//! The journal stores and acknowledges; it does not deliver. What happens
//! to a committed batch is the feed's business (this process's fan-out, or
//! in a cluster every node's).

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::code::ErrorCode;
use super::event::{Message, Target};
use super::feed::{Committed, ConnectionId, Entry, Feed, PresenceChange, PresenceSink};
use super::outbox::Outbox;
use super::reply::{Answer, Reply, ReplyTo};
use super::rooms::{MembershipChange, RoomRef};
use super::status::NodeStatus;
use crate::store::{
    Account, AccountId, Appended, CreateAccountError, Joined, Millis, NewAccount, NewMessage, Parted, StoreError,
    StoreWriter,
};

/// Most messages stored in one transaction.
const MAX_BATCH: usize = 4096;
/// Most bytes of text in one batch. Every session receives a batch as one
/// unit against its 1 MiB outgoing bound, so a batch must stay well below
/// it, or a reader that keeps up could be cut off as a slow consumer.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Above this many sessions, a batch of nothing but JOIN/LEAVE waits up to
/// [`PRESENCE_DELAY`] for more before it is sent: in a login storm every
/// batch costs one write per session, so fewer, fuller batches matter more
/// than a few milliseconds of presence latency. A SAY ends the wait.
const PRESENCE_ROOM: usize = 256;
/// See [`PRESENCE_ROOM`].
const PRESENCE_DELAY: Duration = Duration::from_millis(50);

/// A SAY on its way to storage.
pub struct SayOp {
    /// What to store (text already validated, tag included).
    pub message: NewMessage,
    /// The author's username, for the delivered message.
    pub author: Arc<str>,
    /// Where it goes, with the names a reader sees.
    pub target: Target,
    /// The sending connection: it gets the reply, not the event.
    pub connection: ConnectionId,
    /// The command the reply answers.
    pub reply_to: ReplyTo,
    /// Where the reply goes.
    pub outbox: Arc<Outbox>,
    /// Signalled once the journal is done with the message (its reply
    /// queued, its batch delivered), so that a command that reads what the
    /// session stored waits for it ([`crate::core::session::Session::settle`]).
    pub done: Sender<()>,
}

/// A SAY in the journal's hands. However the journal lets go of it (done,
/// stopped with it still queued, its thread gone), the session hears of it:
/// one that was never answered is answered `db-error` (nothing was stored),
/// so neither the session's later replies, which wait behind its reply in
/// the outbox, nor a session waiting for it wait forever.
struct Owed {
    /// The message.
    op: SayOp,
    /// Its reply (or its echo's place) is queued.
    replied: bool,
    /// The session was told the journal is done with it.
    finished: bool,
}

impl Owed {
    /// Tells the session the journal is done with the message.
    fn finish(mut self) {
        self.op.outbox.journal_done();
        let _ = self.op.done.send(());
        self.finished = true;
    }
}

impl std::ops::Deref for Owed {
    type Target = SayOp;
    fn deref(&self) -> &SayOp {
        &self.op
    }
}

impl std::ops::DerefMut for Owed {
    fn deref_mut(&mut self) -> &mut SayOp {
        &mut self.op
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if !self.replied {
            let failed = Reply::Err(ErrorCode::DbError);
            self.op.outbox.journal_replies([(&self.op.reply_to, Some(&failed))]);
        }
        self.op.outbox.journal_done();
        let _ = self.op.done.send(());
    }
}

/// A registration on its way to storage.
struct RegisterOp {
    /// The account to create (password already hashed).
    account: NewAccount,
    /// Where the outcome goes.
    reply: Sender<Result<Account, CreateAccountError>>,
}

/// Who changes their membership of a room, and who asked.
pub struct Member {
    /// The account.
    pub account: AccountId,
    /// Its username, for `ENTER`/`EXIT`.
    pub username: Arc<str>,
    /// The connection that asked: it gets the reply, not the event.
    pub origin: ConnectionId,
}

/// A JOIN or PART on its way to storage.
enum MembershipOp {
    /// Join (or create) the room with this name.
    Join {
        /// Who.
        member: Member,
        /// The room's name as the JOIN spelled it.
        name: String,
        /// Where the outcome goes, once delivered.
        reply: Sender<Result<Joined, StoreError>>,
    },
    /// Leave this room.
    Part {
        /// Who.
        member: Member,
        /// The room.
        room: RoomRef,
        /// Where the outcome goes, once delivered.
        reply: Sender<Result<Parted, StoreError>>,
    },
}

/// Work for the journal thread.
enum Op {
    Say(Owed),
    Register(RegisterOp),
    Membership(MembershipOp),
    Presence(PresenceChange),
    /// Finish what is queued before this, then exit.
    Stop,
}

/// A handle for submitting work to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    /// The journal thread's queue (unbounded: sessions are bounded by
    /// their own pipelining, and the journal drains in batches).
    ops: Sender<Op>,
}

impl Journal {
    /// Starts the journal thread over `writer`, publishing what it commits
    /// to `feed` and telling `status` whether storage works.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(
        writer: Box<dyn StoreWriter>,
        feed: Arc<dyn Feed>,
        status: Arc<NodeStatus>,
    ) -> std::io::Result<(Journal, JoinHandle<()>)> {
        let (ops, queue) = unbounded();
        let thread = thread::Builder::new()
            .name("journal".into())
            .spawn(move || run(writer, feed.as_ref(), &status, &queue))?;
        Ok((Journal { ops }, thread))
    }

    /// Queues a SAY. Its reply is pushed to `op.outbox` after the commit;
    /// its place among the session's replies is taken now, so replies to
    /// later commands wait behind it. Returns false if the journal has
    /// stopped.
    pub fn say(&self, op: SayOp) -> bool {
        op.outbox.handed_to_journal();
        let owed = Owed {
            op,
            replied: false,
            finished: false,
        };
        match self.ops.send(Op::Say(owed)) {
            Ok(()) => true,
            Err(crossbeam_channel::SendError(Op::Say(mut owed))) => {
                // Taken back, not failed: the caller answers db-error.
                owed.finished = true;
                owed.op.outbox.not_handed_to_journal();
                false
            }
            Err(_) => false,
        }
    }

    /// Creates an account and waits for the outcome.
    ///
    /// # Errors
    /// [`CreateAccountError`] from storage; a stopped journal is reported as
    /// a storage error.
    pub fn register(&self, account: NewAccount) -> Result<Account, CreateAccountError> {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        let stopped = || CreateAccountError::Store(StoreError::Stopped);
        self.ops
            .send(Op::Register(RegisterOp { account, reply }))
            .map_err(|_| stopped())?;
        outcome.recv().map_err(|_| stopped())?
    }

    /// Makes `member` a member of the room `name` (creating it if it has no
    /// members), stored durably, and waits until the change is delivered:
    /// from then on the member's sessions receive the room's messages.
    ///
    /// # Errors
    /// [`StoreError`] from storage (nothing changed); a stopped journal is
    /// [`StoreError::Stopped`].
    pub fn join(&self, member: Member, name: &str) -> Result<Joined, StoreError> {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        let op = MembershipOp::Join {
            member,
            name: name.to_string(),
            reply,
        };
        self.ops.send(Op::Membership(op)).map_err(|_| StoreError::Stopped)?;
        outcome.recv().map_err(|_| StoreError::Stopped)?
    }

    /// Ends `member`'s membership of `room`, stored durably, and waits until
    /// the change is delivered: the member's sessions receive nothing more
    /// of the room.
    ///
    /// # Errors
    /// As [`Journal::join`].
    pub fn part(&self, member: Member, room: RoomRef) -> Result<Parted, StoreError> {
        let (reply, outcome) = crossbeam_channel::bounded(1);
        let op = MembershipOp::Part { member, room, reply };
        self.ops.send(Op::Membership(op)).map_err(|_| StoreError::Stopped)?;
        outcome.recv().map_err(|_| StoreError::Stopped)?
    }

    /// Asks the journal to finish everything queued so far and exit.
    pub fn stop(&self) {
        let _ = self.ops.send(Op::Stop);
    }
}

impl PresenceSink for Journal {
    /// Queues a JOIN or LEAVE. Sent in the same batches as messages, so a
    /// login storm costs one write per session per batch.
    fn presence(&self, change: PresenceChange) {
        let _ = self.ops.send(Op::Presence(change));
    }
}

/// Milliseconds since the Unix epoch, or 0 for a clock before it.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

/// What a batch holds, in the order the journal received it.
enum Slot {
    /// The SAY at this index of the batch's SAYs.
    Say(usize),
    /// A presence change.
    Presence(PresenceChange),
    /// A stored membership change and the connection that asked for it.
    Membership(MembershipChange, ConnectionId),
}

/// The outcome of a membership change, sent once its batch is delivered.
enum Settled {
    /// Of a JOIN.
    Joined(Sender<Result<Joined, StoreError>>, Result<Joined, StoreError>),
    /// Of a PART.
    Parted(Sender<Result<Parted, StoreError>>, Result<Parted, StoreError>),
}

impl Settled {
    /// Where the change is in the log (0: nothing to wait for).
    fn position(&self) -> u64 {
        match self {
            Settled::Joined(_, Ok(joined)) => joined.position,
            Settled::Parted(_, Ok(Parted::Left { position, .. })) => *position,
            _ => 0,
        }
    }

    fn send(self) {
        match self {
            Settled::Joined(to, outcome) => {
                let _ = to.send(outcome);
            }
            Settled::Parted(to, outcome) => {
                let _ = to.send(outcome);
            }
        }
    }
}

/// Stores a membership change at once (its own transaction), so it takes
/// its place in the batch in the order received; its outcome waits in
/// `settled` until the batch is delivered.
fn change_membership(
    writer: &mut dyn StoreWriter,
    op: MembershipOp,
    slots: &mut Vec<Slot>,
    settled: &mut Vec<Settled>,
) {
    match op {
        MembershipOp::Join { member, name, reply } => {
            let outcome = writer.join(member.account, &name, now_ms(), member.origin);
            match &outcome {
                Ok(joined) if !joined.already => {
                    let change = MembershipChange {
                        room: RoomRef {
                            id: joined.room,
                            name: Arc::from(joined.name.as_str()),
                        },
                        account: member.account,
                        username: member.username,
                        joined: true,
                    };
                    slots.push(Slot::Membership(change, member.origin));
                }
                Ok(_) => {}
                Err(e) => log::error!("a JOIN could not be stored: {e}"),
            }
            settled.push(Settled::Joined(reply, outcome));
        }
        MembershipOp::Part { member, room, reply } => {
            let outcome = writer.part(member.account, room.id, now_ms(), member.origin);
            match &outcome {
                Ok(Parted::Left { .. }) => {
                    let change = MembershipChange {
                        room,
                        account: member.account,
                        username: member.username,
                        joined: false,
                    };
                    slots.push(Slot::Membership(change, member.origin));
                }
                Ok(Parted::NotMember) => {}
                Err(e) => log::error!("a PART could not be stored: {e}"),
            }
            settled.push(Settled::Parted(reply, outcome));
        }
    }
}

/// The journal thread's loop.
fn run(mut writer: Box<dyn StoreWriter>, feed: &dyn Feed, status: &NodeStatus, queue: &Receiver<Op>) {
    let mut says: Vec<Owed> = Vec::new();
    // The log position of the last batch stored: the journal is done with
    // a batch once the feed has delivered up to it (a failed batch waits
    // for the one before, so sessions hear in order).
    let mut position: u64 = 0;
    let mut slots: Vec<Slot> = Vec::new();
    let mut messages: Vec<NewMessage> = Vec::new();
    let mut settled: Vec<Settled> = Vec::new();
    // Timestamps never go backwards, even if the wall clock does.
    let mut last_ts: Millis = 0;
    let mut stopping = false;
    while !stopping {
        let Ok(first) = queue.recv() else { break };
        let mut next = Some(first);
        let mut presence_until: Option<Instant> = None;
        let mut batch_bytes = 0;
        let mut crowded = false;
        while let Some(op) = next.take() {
            match op {
                Op::Say(say) => {
                    batch_bytes += say.message.body.len() + say.author.len() + 48;
                    slots.push(Slot::Say(says.len()));
                    says.push(say);
                }
                Op::Presence(change) => {
                    batch_bytes += 64;
                    crowded |= change.sessions > PRESENCE_ROOM;
                    slots.push(Slot::Presence(change));
                }
                Op::Membership(op) => change_membership(writer.as_mut(), op, &mut slots, &mut settled),
                Op::Register(op) => {
                    let outcome = writer.create_account(&op.account, now_ms());
                    if let Err(CreateAccountError::Store(e)) = &outcome {
                        log::error!("registration could not be stored: {e}");
                    }
                    let _ = op.reply.send(outcome);
                }
                Op::Stop => stopping = true,
            }
            if stopping || slots.len() >= MAX_BATCH || batch_bytes >= MAX_BATCH_BYTES {
                break;
            }
            next = queue.try_recv().ok();
            if next.is_none() && says.is_empty() && !slots.is_empty() {
                let until = *presence_until
                    .get_or_insert_with(|| Instant::now() + if crowded { PRESENCE_DELAY } else { Duration::ZERO });
                next = queue.recv_deadline(until).ok();
            }
        }
        if slots.is_empty() {
            for outcome in settled.drain(..) {
                feed.when_delivered(outcome.position(), Box::new(move || outcome.send()));
            }
            continue;
        }
        last_ts = last_ts.max(now_ms());
        messages.extend(says.iter_mut().map(|op| NewMessage {
            user_id: op.message.user_id,
            origin: op.message.origin,
            body: std::mem::take(&mut op.message.body),
            tag: op.message.tag.take(),
            to: op.message.to,
        }));
        // Echoes live only in this batch, not in the stored log: a feed
        // that reads the log back waits for the batch's publication.
        let echoes = says.iter().any(|op| op.reply_to.echo);
        if echoes {
            feed.hold(true);
        }
        let outcomes = if messages.is_empty() {
            Ok(Vec::new())
        } else {
            writer.append(&messages, last_ts)
        };
        if !messages.is_empty() {
            status.db_answered(outcomes.is_ok());
        }
        let batch = match outcomes {
            Ok(outcomes) => {
                if let Some(Appended::Stored { id, .. } | Appended::Duplicate { id, .. }) =
                    outcomes.iter().max_by_key(|o| match o {
                        Appended::Stored { id, .. } | Appended::Duplicate { id, .. } => *id,
                    })
                {
                    status.saw_message(*id);
                    position = position.max(u64::try_from(*id).unwrap_or(0));
                }
                acknowledge(&mut says, &mut slots, &mut messages, &outcomes)
            }
            Err(e) => {
                log::error!("{} message(s) could not be stored: {e}", says.len());
                refuse(&mut says, &mut slots)
            }
        };
        messages.clear();
        if !batch.entries.is_empty() {
            feed.publish(batch);
        }
        if echoes {
            feed.hold(false);
        }
        // The journal is done with the batch once its events (echoes
        // included) are delivered here and its membership changes are in
        // force: at once with a local feed, when the log's tail has read
        // it back in a cluster. Replies that wait behind an echo go out
        // then, and a session that must read what it sent may go on.
        let finished = std::mem::take(&mut says);
        feed.when_delivered(
            position,
            Box::new(move || {
                for owed in finished {
                    owed.finish();
                }
            }),
        );
        for outcome in settled.drain(..) {
            feed.when_delivered(outcome.position(), Box::new(move || outcome.send()));
        }
    }
}

/// The replies of one sending connection in one batch, queued as one
/// write.
struct SenderReplies<'a> {
    /// The sending connection.
    connection: ConnectionId,
    /// Its outbox.
    outbox: &'a Arc<Outbox>,
    /// Its replies, in the order of its commands: one per message, `None`
    /// where an echo takes the reply's place.
    replies: Vec<(&'a ReplyTo, Option<Reply>)>,
}

/// Acknowledges each stored SAY (each author's replies of the batch as one
/// write) and builds the committed batch, in the order received (so
/// messages in id order).
fn acknowledge(
    says: &mut [Owed],
    slots: &mut Vec<Slot>,
    messages: &mut [NewMessage],
    outcomes: &[Appended],
) -> Committed {
    let mut batch = Committed::default();
    // Each sender's replies, senders in first-seen order.
    let mut replies: Vec<SenderReplies<'_>> = Vec::new();
    for slot in slots.drain(..) {
        let i = match slot {
            Slot::Presence(change) => {
                batch.entries.push(Entry::Presence(change));
                continue;
            }
            Slot::Membership(change, origin) => {
                batch.entries.push(Entry::Membership { change, origin });
                continue;
            }
            Slot::Say(i) => i,
        };
        let op = &says[i];
        let (id, ts, fresh) = match outcomes[i] {
            Appended::Stored { id, ts } => (id, ts, true),
            Appended::Duplicate { id, ts } => (id, ts, false),
        };
        let position = match replies.iter().position(|r| r.connection == op.connection) {
            Some(p) => p,
            None => {
                replies.push(SenderReplies {
                    connection: op.connection,
                    outbox: &op.outbox,
                    replies: Vec::new(),
                });
                replies.len() - 1
            }
        };
        let message = fresh.then(|| {
            Arc::new(Message {
                id,
                ts,
                author_id: op.message.user_id,
                author: Arc::clone(&op.author),
                text: Arc::from(std::mem::take(&mut messages[i].body)),
                target: op.target.clone(),
            })
        });
        // An echo takes the reply's place, at the message's place among
        // the batch's events.
        let echo = (message.is_some() && op.reply_to.echo).then(|| op.reply_to.clone());
        replies[position].replies.push((
            &op.reply_to,
            echo.is_none().then(|| {
                Reply::Ok(Answer::Stored {
                    id,
                    ts,
                    message: message.clone(),
                })
            }),
        ));
        if let Some(message) = message {
            batch.entries.push(Entry::Message {
                message,
                origin: op.connection,
                echo,
            });
        }
    }
    for sender in replies {
        sender
            .outbox
            .journal_replies(sender.replies.iter().map(|(to, reply)| (*to, reply.as_ref())));
    }
    for owed in says.iter_mut() {
        owed.replied = true;
    }
    batch
}

/// Answers every SAY of a batch that could not be stored with `db-error`;
/// the presence changes of the batch still go out.
fn refuse(says: &mut [Owed], slots: &mut Vec<Slot>) -> Committed {
    let failed = Reply::Err(ErrorCode::DbError);
    for owed in says.iter_mut() {
        owed.outbox.journal_replies([(&owed.reply_to, Some(&failed))]);
        owed.replied = true;
    }
    let entries = slots
        .drain(..)
        .filter_map(|slot| match slot {
            Slot::Presence(change) => Some(Entry::Presence(change)),
            Slot::Membership(change, origin) => Some(Entry::Membership { change, origin }),
            Slot::Say(_) => None,
        })
        .collect();
    Committed { entries }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::core::event::Event;
    use crate::core::testkit::{TestCodec, TestConn};
    use crate::store::Store;
    use crate::store::sqlite::{SqliteStore, SyncMode};

    /// Keeps what is published.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Feed for Recorder {
        fn when_delivered(&self, _: u64, then: crate::core::feed::Then) {
            then();
        }

        fn publish(&self, batch: Committed) {
            let mut seen = self.0.lock().unwrap();
            for entry in batch.entries {
                seen.push(match entry {
                    Entry::Message { message, origin, .. } => format!("{} {} from {origin}", message.id, message.text),
                    Entry::Presence(change) => format!("{:?} from {}", change.event, change.origin),
                    Entry::Membership { change, origin } => {
                        format!(
                            "{} {} {} from {origin}",
                            change.username, change.joined, change.room.name
                        )
                    }
                    Entry::Notice { to, event } => format!("{event:?} to {to}"),
                });
            }
        }
    }

    struct Fixture {
        journal: Journal,
        thread: JoinHandle<()>,
        feed: Arc<Recorder>,
        store: SqliteStore,
        _dir: tempfile::TempDir,
    }

    fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("chat.db"), SyncMode::Normal).unwrap();
        let feed = Arc::new(Recorder::default());
        let status = Arc::new(NodeStatus::default());
        let (journal, thread) = Journal::start(store.open_writer().unwrap(), feed.clone(), status).unwrap();
        Fixture {
            journal,
            thread,
            feed,
            store,
            _dir: dir,
        }
    }

    fn account(journal: &Journal, name: &str) -> Account {
        journal
            .register(NewAccount {
                username: name.into(),
                full_name: name.into(),
                password_hash: "$2b$x".into(),
            })
            .unwrap()
    }

    fn say(conn: &TestConn, done: &Sender<()>, who: &Account, text: &str, tag: Option<&str>) -> SayOp {
        SayOp {
            message: NewMessage {
                user_id: who.id,
                origin: 7,
                body: text.into(),
                tag: tag.map(Into::into),
                to: crate::store::Destination::Lobby,
            },
            author: Arc::from(who.username.as_str()),
            target: Target::Lobby,
            connection: 7,
            reply_to: ReplyTo::new(tag, Some("SAY")),
            outbox: conn.outbox.clone(),
            done: done.clone(),
        }
    }

    #[test]
    fn a_message_the_journal_lets_go_of_unanswered_is_answered_db_error() {
        let f = start();
        let ana = account(&f.journal, "ana");
        let conn = TestConn::new(7, TestCodec::new(1), 1 << 16, 1 << 20);
        let (done, acked) = crossbeam_channel::unbounded();
        // Taken by the journal (its place made), then dropped unanswered,
        // as when the journal stops with it still queued.
        let op = say(&conn, &done, &ana, "perdido", Some("t1"));
        op.outbox.handed_to_journal();
        drop(Owed {
            op,
            replied: false,
            finished: false,
        });
        assert_eq!(conn.lines(1), ["@t1 ERR SAY db-error"]);
        assert!(acked.try_recv().is_ok(), "the session is told it is done");
        // A reply behind it is not held up.
        let (ping, pong) = (ReplyTo::new(None, Some("PING")), Reply::Ok(Answer::Done));
        conn.outbox.reply(&ping, &pong);
        assert_eq!(conn.lines(1), ["OK PING"]);
    }

    #[test]
    fn messages_are_stored_then_acknowledged_then_published_in_order() {
        let f = start();
        let ana = account(&f.journal, "ana");
        assert!(matches!(
            f.journal.register(NewAccount {
                username: "ANA".into(),
                full_name: "x".into(),
                password_hash: "$2b$x".into(),
            }),
            Err(CreateAccountError::UserExists)
        ));
        let conn = TestConn::new(7, TestCodec::new(1), 1 << 16, 1 << 20);
        let (done, acked) = crossbeam_channel::unbounded();
        f.journal.presence(PresenceChange {
            event: Event::Online(Arc::from("ana")),
            account: 1,
            origin: 7,
            change: 1,
            sessions: 1,
        });
        for (text, tag) in [("uno", Some("t1")), ("dos", None), ("otra vez", Some("t1"))] {
            assert!(f.journal.say(say(&conn, &done, &ana, text, tag)));
        }
        for _ in 0..3 {
            acked
                .recv_timeout(Duration::from_secs(5))
                .expect("every SAY is signalled");
        }
        // The resend of t1 is answered with the original id, and not
        // published again.
        assert_eq!(conn.lines(3), ["@t1 OK SAY 1", "OK SAY 2", "@t1 OK SAY 1"]);
        assert_eq!(
            *f.feed.0.lock().unwrap(),
            ["Online(\"ana\") from 7", "1 uno from 7", "2 dos from 7"]
        );
        let stored: Vec<String> = f
            .store
            .history(crate::store::Conversation::Lobby, 10, None)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(stored, ["uno", "dos"]);
        f.journal.stop();
        f.thread.join().unwrap();
    }

    #[test]
    fn joins_and_parts_are_stored_then_published_then_answered() {
        let f = start();
        let ana = account(&f.journal, "ana");
        let member = |origin| Member {
            account: ana.id,
            username: Arc::from("ana"),
            origin,
        };
        let joined = f.journal.join(member(3), "#Clase").unwrap();
        assert!(joined.created && !joined.already);
        assert_eq!(*f.feed.0.lock().unwrap(), ["ana true #Clase from 3"]);
        // Already a member: stored nothing new, published nothing.
        assert!(f.journal.join(member(4), "#clase").unwrap().already);
        let room = RoomRef {
            id: joined.room,
            name: Arc::from("#Clase"),
        };
        assert_eq!(
            f.journal.part(member(4), room.clone()).unwrap(),
            Parted::Left {
                ended: true,
                position: 0
            }
        );
        assert_eq!(f.journal.part(member(4), room).unwrap(), Parted::NotMember);
        assert_eq!(
            *f.feed.0.lock().unwrap(),
            ["ana true #Clase from 3", "ana false #Clase from 4"]
        );
        assert!(f.store.live_rooms().unwrap().is_empty());
        f.journal.stop();
        f.thread.join().unwrap();
    }

    #[test]
    fn stopping_finishes_what_was_queued_first() {
        let f = start();
        let ana = account(&f.journal, "ana");
        let conn = TestConn::new(7, TestCodec::new(1), 1 << 16, 1 << 20);
        let (done, acked) = crossbeam_channel::unbounded();
        for i in 0..100 {
            f.journal.say(say(&conn, &done, &ana, &format!("m{i}"), None));
        }
        f.journal.stop();
        f.thread.join().unwrap();
        assert_eq!(acked.try_iter().count(), 100);
        assert_eq!(
            f.store
                .history(crate::store::Conversation::Lobby, 1000, None)
                .unwrap()
                .len(),
            100
        );
        assert!(
            !f.journal.say(say(&conn, &done, &ana, "late", None)),
            "a stopped journal refuses"
        );
    }
}
