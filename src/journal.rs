//! The single thread that writes: registrations and messages reach it over a
//! channel, and it owns the store's only write connection.
//!
//! For messages it does group commit: it takes everything queued, stores it
//! in one transaction, and only after the commit acknowledges each SAY and
//! fans its `MSG` out, in id order. That one ordering gives the protocol's
//! guarantees at once: a message is durable before anyone hears of it, ids
//! increase in the order every session receives them, and the write rate
//! grows with the batch instead of being one fsync per message.

use std::fmt::Write as _;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::code::ErrorCode;
use crate::command::Verb;
use crate::outbox::{MsgBatch, Outbox};
use crate::registry::{ConnectionId, Registry};
use crate::reply::{self, WireLine};
use crate::store::{Account, Appended, CreateAccountError, Millis, NewAccount, NewMessage, StoreWriter};

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
/// A fan-out slower than this is logged at debug level.
const SLOW_FAN_OUT: Duration = Duration::from_millis(20);
/// See [`PRESENCE_ROOM`].
const PRESENCE_DELAY: Duration = Duration::from_millis(50);

/// A SAY on its way to storage.
pub struct SayOp {
    /// What to store (text already validated, tag included).
    pub message: NewMessage,
    /// The author's username, for the `MSG` line.
    pub author: Arc<str>,
    /// The sending connection: it gets `OK SAY`, not the `MSG`.
    pub connection: ConnectionId,
    /// Where the reply goes.
    pub outbox: Arc<Outbox>,
    /// Signalled once the reply is queued, so the session can keep later
    /// replies in order behind it.
    pub done: Sender<()>,
}

/// A registration on its way to storage.
pub struct RegisterOp {
    /// The account to create (password already hashed).
    pub account: NewAccount,
    /// Where the outcome goes.
    pub reply: Sender<Result<Account, CreateAccountError>>,
}

/// Work for the journal thread.
enum Op {
    Say(SayOp),
    Register(RegisterOp),
    /// A JOIN or LEAVE line, for every session but `origin` logged in
    /// before registry change `change`.
    Presence {
        line: WireLine,
        origin: ConnectionId,
        change: u64,
    },
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

/// The receiving end of the journal's queue, between [`Journal::channel`]
/// and [`Journal::start`] (the registry needs a [`Journal`] before the
/// journal thread, which needs the registry, can start).
pub struct JournalQueue(Receiver<Op>);

impl Journal {
    /// Creates the journal's queue: the handle for submitting work now, the
    /// queue for [`Journal::start`] later.
    pub fn channel() -> (Journal, JournalQueue) {
        let (ops, queue) = unbounded();
        (Journal { ops }, JournalQueue(queue))
    }

    /// Starts the journal thread over `writer`, serving `queue`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(
        queue: JournalQueue,
        writer: Box<dyn StoreWriter>,
        registry: Arc<Registry>,
    ) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name("journal".into())
            .spawn(move || run(writer, &registry, &queue.0))
    }

    /// Queues a JOIN or LEAVE for every session but `origin` that logged
    /// in before registry change `change`. Sent in the same batches as
    /// messages, so a login storm costs one write per session per batch;
    /// callers queue them under the registry lock, which keeps each
    /// account's JOIN and LEAVE in order.
    pub fn presence(&self, line: WireLine, origin: ConnectionId, change: u64) {
        let _ = self.ops.send(Op::Presence { line, origin, change });
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
        let stopped = || CreateAccountError::Store(crate::store::StoreError::Stopped);
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

/// Milliseconds since the Unix epoch, or 0 for a clock before it.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
}

/// What a batch delivers, in the order the journal received it.
enum Entry {
    /// The SAY at this index of the batch's SAYs.
    Say(usize),
    /// A JOIN or LEAVE, its origin and registry change.
    Presence(WireLine, ConnectionId, u64),
}

/// The journal thread's loop.
fn run(mut writer: Box<dyn StoreWriter>, registry: &Registry, queue: &Receiver<Op>) {
    let mut says: Vec<SayOp> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut messages: Vec<NewMessage> = Vec::new();
    // Timestamps never go backwards, even if the wall clock does.
    let mut last_ts: Millis = 0;
    let mut stopping = false;
    while !stopping {
        let Ok(first) = queue.recv() else { break };
        let mut next = Some(first);
        let mut presence_until: Option<Instant> = None;
        let mut batch_bytes = 0;
        while let Some(op) = next.take() {
            match op {
                Op::Say(say) => {
                    batch_bytes += say.message.body.len() + say.author.len() + 48;
                    entries.push(Entry::Say(says.len()));
                    says.push(say);
                }
                Op::Presence { line, origin, change } => {
                    batch_bytes += line.len();
                    entries.push(Entry::Presence(line, origin, change));
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
            if stopping || entries.len() >= MAX_BATCH || batch_bytes >= MAX_BATCH_BYTES {
                break;
            }
            next = queue.try_recv().ok();
            if next.is_none() && says.is_empty() && !entries.is_empty() {
                let until = *presence_until.get_or_insert_with(|| {
                    let crowded = registry.session_count() > PRESENCE_ROOM;
                    Instant::now() + if crowded { PRESENCE_DELAY } else { Duration::ZERO }
                });
                next = queue.recv_deadline(until).ok();
            }
        }
        if entries.is_empty() {
            continue;
        }
        last_ts = last_ts.max(now_ms());
        messages.extend(says.iter_mut().map(|op| NewMessage {
            user_id: op.message.user_id,
            body: std::mem::take(&mut op.message.body),
            tag: op.message.tag.take(),
        }));
        let outcomes = if messages.is_empty() {
            Vec::new()
        } else {
            match writer.append(&messages, last_ts) {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    log::error!("{} message(s) could not be stored: {e}", says.len());
                    for (op, message) in says.drain(..).zip(&messages) {
                        op.outbox
                            .reply(reply::err(message.tag.as_deref(), Some(Verb::Say), ErrorCode::DbError));
                        let _ = op.done.send(());
                    }
                    entries.retain(|entry| matches!(entry, Entry::Presence(..)));
                    Vec::new()
                }
            }
        };
        deliver(registry, &mut says, &mut entries, &messages, &outcomes);
        messages.clear();
    }
}

/// Acknowledges each stored SAY and fans the batch out, in the order it was
/// received (so messages in id order). Each author gets its `OK SAY` lines
/// as one reply, and every session one shared [`MsgBatch`] (without its
/// own lines).
fn deliver(
    registry: &Registry,
    says: &mut Vec<SayOp>,
    entries: &mut Vec<Entry>,
    messages: &[NewMessage],
    outcomes: &[Appended],
) {
    let mut batch = MsgBatch::default();
    // (connection, its outbox, its OK SAY lines), in first-seen order.
    let mut replies: Vec<(ConnectionId, &Arc<Outbox>, String)> = Vec::new();
    // `ID TS` of the current reply, in one buffer reused for the batch.
    let mut fields = String::new();
    for entry in entries.drain(..) {
        let i = match entry {
            Entry::Presence(line, origin, change) => {
                batch.push_line(&line, origin, change);
                continue;
            }
            Entry::Say(i) => i,
        };
        let (op, message) = (&says[i], &messages[i]);
        let (id, ts, fresh) = match outcomes[i] {
            Appended::Stored { id, ts } => (id, ts, true),
            Appended::Duplicate { id, ts } => (id, ts, false),
        };
        let position = match replies.iter().position(|(c, _, _)| *c == op.connection) {
            Some(p) => p,
            None => {
                replies.push((op.connection, &op.outbox, String::new()));
                replies.len() - 1
            }
        };
        fields.clear();
        // Writing to a String cannot fail.
        let _ = write!(fields, "{id} {ts}");
        reply::push_ok(&mut replies[position].2, message.tag.as_deref(), Verb::Say, &fields);
        if fresh {
            batch.push(id, ts, &op.author, &message.body, op.connection);
        }
    }
    for (_, outbox, lines) in replies {
        outbox.reply(WireLine::from(lines.into_bytes()));
    }
    if !batch.is_empty() {
        let started = Instant::now();
        let batch = Arc::new(batch);
        let members = registry.members();
        for member in members.iter() {
            member.outbox.batch(&batch, member.recipient);
        }
        let took = started.elapsed();
        if took > SLOW_FAN_OUT {
            log::debug!("fan-out to {} sessions took {} ms", members.len(), took.as_millis());
        }
    }
    for op in says.drain(..) {
        let _ = op.done.send(());
    }
}
