//! The single thread that writes: registrations and messages reach it over a
//! channel, and it owns the store's only write connection.
//!
//! For messages it does group commit: it takes everything queued, stores it
//! in one transaction, and only after the commit acknowledges each `SAY`
//! (the reply goes straight to the sender's outbox) and publishes the batch
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
use super::event::Message;
use super::feed::{Committed, ConnectionId, Entry, Feed, PresenceChange, PresenceSink};
use super::outbox::Outbox;
use super::reply::{Answer, Reply, ReplyTo};
use crate::store::{Account, Appended, CreateAccountError, Millis, NewAccount, NewMessage, StoreError, StoreWriter};

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
    /// The sending connection: it gets the reply, not the event.
    pub connection: ConnectionId,
    /// The command the reply answers.
    pub reply_to: ReplyTo,
    /// Where the reply goes.
    pub outbox: Arc<Outbox>,
    /// Signalled once the reply is queued, so the session can keep later
    /// replies in order behind it.
    pub done: Sender<()>,
}

/// A registration on its way to storage.
struct RegisterOp {
    /// The account to create (password already hashed).
    account: NewAccount,
    /// Where the outcome goes.
    reply: Sender<Result<Account, CreateAccountError>>,
}

/// Work for the journal thread.
enum Op {
    Say(SayOp),
    Register(RegisterOp),
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
    /// to `feed`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(writer: Box<dyn StoreWriter>, feed: Arc<dyn Feed>) -> std::io::Result<(Journal, JoinHandle<()>)> {
        let (ops, queue) = unbounded();
        let thread = thread::Builder::new()
            .name("journal".into())
            .spawn(move || run(writer, feed.as_ref(), &queue))?;
        Ok((Journal { ops }, thread))
    }

    /// Queues a SAY. Its reply is pushed to `op.outbox` after the commit.
    /// Returns false if the journal has stopped.
    pub fn say(&self, op: SayOp) -> bool {
        self.ops.send(Op::Say(op)).is_ok()
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
}

/// The journal thread's loop.
fn run(mut writer: Box<dyn StoreWriter>, feed: &dyn Feed, queue: &Receiver<Op>) {
    let mut says: Vec<SayOp> = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    let mut messages: Vec<NewMessage> = Vec::new();
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
            continue;
        }
        last_ts = last_ts.max(now_ms());
        messages.extend(says.iter_mut().map(|op| NewMessage {
            user_id: op.message.user_id,
            body: std::mem::take(&mut op.message.body),
            tag: op.message.tag.take(),
        }));
        let outcomes = if messages.is_empty() {
            Ok(Vec::new())
        } else {
            writer.append(&messages, last_ts)
        };
        let batch = match outcomes {
            Ok(outcomes) => acknowledge(&mut says, &mut slots, &mut messages, &outcomes),
            Err(e) => {
                log::error!("{} message(s) could not be stored: {e}", says.len());
                refuse(&says, &mut slots)
            }
        };
        messages.clear();
        if !batch.entries.is_empty() {
            feed.publish(batch);
        }
        // Only now may the senders' later replies go out: with a local feed
        // the batch's events are already queued ahead of them.
        for op in says.drain(..) {
            let _ = op.done.send(());
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
    /// Its replies, in the order of its commands.
    replies: Vec<(&'a ReplyTo, Reply)>,
}

/// Acknowledges each stored SAY (each author's replies of the batch as one
/// write) and builds the committed batch, in the order received (so
/// messages in id order).
fn acknowledge(
    says: &mut [SayOp],
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
        replies[position]
            .replies
            .push((&op.reply_to, Reply::Ok(Answer::Stored { id, ts })));
        if fresh {
            let message = Message {
                id,
                ts,
                author: Arc::clone(&op.author),
                text: Arc::from(std::mem::take(&mut messages[i].body)),
            };
            batch.entries.push(Entry::Message {
                message: Arc::new(message),
                origin: op.connection,
            });
        }
    }
    for sender in replies {
        sender
            .outbox
            .replies(sender.replies.iter().map(|(to, reply)| (*to, reply)));
    }
    batch
}

/// Answers every SAY of a batch that could not be stored with `db-error`;
/// the presence changes of the batch still go out.
fn refuse(says: &[SayOp], slots: &mut Vec<Slot>) -> Committed {
    let failed = Reply::Err(ErrorCode::DbError);
    for op in says.iter() {
        op.outbox.reply(&op.reply_to, &failed);
    }
    let entries = slots
        .drain(..)
        .filter_map(|slot| match slot {
            Slot::Presence(change) => Some(Entry::Presence(change)),
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
        fn publish(&self, batch: Committed) {
            let mut seen = self.0.lock().unwrap();
            for entry in batch.entries {
                seen.push(match entry {
                    Entry::Message { message, origin } => format!("{} {} from {origin}", message.id, message.text),
                    Entry::Presence(change) => format!("{:?} from {}", change.event, change.origin),
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
        let (journal, thread) = Journal::start(store.open_writer().unwrap(), feed.clone()).unwrap();
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
                body: text.into(),
                tag: tag.map(Into::into),
            },
            author: Arc::from(who.username.as_str()),
            connection: 7,
            reply_to: ReplyTo::new(tag, Some("SAY")),
            outbox: conn.outbox.clone(),
            done: done.clone(),
        }
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
        let stored: Vec<String> = f.store.history(10, None).unwrap().into_iter().map(|m| m.body).collect();
        assert_eq!(stored, ["uno", "dos"]);
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
        assert_eq!(f.store.history(1000, None).unwrap().len(), 100);
        assert!(
            !f.journal.say(say(&conn, &done, &ana, "late", None)),
            "a stopped journal refuses"
        );
    }
}
