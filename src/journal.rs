//! The single thread that writes: registrations and messages reach it over a
//! channel, and it owns the store's only write connection.
//!
//! For messages it does group commit: it takes everything queued, stores it
//! in one transaction, and only after the commit acknowledges each SAY and
//! fans its `MSG` out, in id order. That one ordering gives the protocol's
//! guarantees at once: a message is durable before anyone hears of it, ids
//! increase in the order every session receives them, and the write rate
//! grows with the batch instead of being one fsync per message.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::code::ErrorCode;
use crate::command::Verb;
use crate::outbox::{MsgBatch, Outbox};
use crate::registry::{ConnectionId, Registry};
use crate::reply::{self, WireLine};
use crate::store::{Account, Appended, CreateAccountError, Millis, NewAccount, NewMessage, StoreWriter};

/// Most messages stored in one transaction.
const MAX_BATCH: usize = 4096;

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
    /// Starts the journal thread over `writer`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(writer: Box<dyn StoreWriter>, registry: Arc<Registry>) -> std::io::Result<(Journal, JoinHandle<()>)> {
        let (ops, queue) = unbounded();
        let handle = thread::Builder::new()
            .name("journal".into())
            .spawn(move || run(writer, &registry, &queue))?;
        Ok((Journal { ops }, handle))
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

/// The journal thread's loop.
fn run(mut writer: Box<dyn StoreWriter>, registry: &Registry, queue: &Receiver<Op>) {
    let mut says: Vec<SayOp> = Vec::new();
    let mut messages: Vec<NewMessage> = Vec::new();
    // Timestamps never go backwards, even if the wall clock does.
    let mut last_ts: Millis = 0;
    let mut stopping = false;
    while !stopping {
        let Ok(first) = queue.recv() else { break };
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                Op::Say(say) => says.push(say),
                Op::Register(op) => {
                    let outcome = writer.create_account(&op.account, now_ms());
                    if let Err(CreateAccountError::Store(e)) = &outcome {
                        log::error!("registration could not be stored: {e}");
                    }
                    let _ = op.reply.send(outcome);
                }
                Op::Stop => stopping = true,
            }
            if !stopping && says.len() < MAX_BATCH {
                next = queue.try_recv().ok();
            }
        }
        if says.is_empty() {
            continue;
        }
        last_ts = last_ts.max(now_ms());
        messages.extend(says.iter_mut().map(|op| NewMessage {
            user_id: op.message.user_id,
            body: std::mem::take(&mut op.message.body),
            tag: op.message.tag.take(),
        }));
        match writer.append(&messages, last_ts) {
            Ok(outcomes) => deliver(registry, &mut says, &messages, &outcomes),
            Err(e) => {
                log::error!("{} message(s) could not be stored: {e}", says.len());
                for (op, message) in says.drain(..).zip(&messages) {
                    op.outbox
                        .reply(reply::err(message.tag.as_deref(), Some(Verb::Say), ErrorCode::DbError));
                    let _ = op.done.send(());
                }
            }
        }
        messages.clear();
    }
}

/// Acknowledges each stored SAY and fans the new messages out, in id order.
/// Each author gets its `OK SAY` lines as one reply, and every session one
/// shared [`MsgBatch`] (without its own lines).
fn deliver(registry: &Registry, says: &mut Vec<SayOp>, messages: &[NewMessage], outcomes: &[Appended]) {
    let mut batch = MsgBatch::default();
    // (connection, its outbox, its OK SAY lines), in first-seen order.
    let mut replies: Vec<(ConnectionId, &Arc<Outbox>, String)> = Vec::new();
    for ((op, message), outcome) in says.iter().zip(messages).zip(outcomes) {
        let (id, ts, fresh) = match *outcome {
            Appended::Stored { id, ts } => (id, ts, true),
            Appended::Duplicate { id, ts } => (id, ts, false),
        };
        let position = match replies.iter().position(|(c, _, _)| *c == op.connection) {
            Some(i) => i,
            None => {
                replies.push((op.connection, &op.outbox, String::new()));
                replies.len() - 1
            }
        };
        reply::push_ok(
            &mut replies[position].2,
            message.tag.as_deref(),
            Verb::Say,
            &format!("{id} {ts}"),
        );
        if fresh {
            batch.push(id, ts, &op.author, &message.body, op.connection);
        }
    }
    for (_, outbox, lines) in replies {
        outbox.reply(WireLine::from(lines.into_bytes()));
    }
    if !batch.is_empty() {
        let batch = Arc::new(batch);
        for member in registry.members().iter() {
            member.outbox.batch(&batch, member.connection);
        }
    }
    for op in says.drain(..) {
        let _ = op.done.send(());
    }
}
