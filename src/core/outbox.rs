//! A session's outgoing side: its codec, a bounded queue, and sends over
//! its transport, direct when they can be and by a writer thread of the
//! session's own when they cannot.
//!
//! Every reply and event a session receives (its replies, other people's
//! messages, presence, BYE) is pushed here by whichever thread produced it,
//! as a type; the outbox's [`Codec`] turns replies into bytes, and the
//! fan-out hands in batches of events already encoded once per flavor.
//! Pushing never blocks, so no thread ever waits on another session's
//! connection (PROTOCOL.md 5.4):
//!
//! - when nothing is queued, the pushing thread sends the bytes at once
//!   with a non-blocking send (no thread wake-up, no context switch: the
//!   cheapest path, and the common one for a client that reads);
//! - whatever the transport does not take is queued, and the session's
//!   writer thread is started to write it with blocking sends, coalescing
//!   everything queued into one vectored write; it ends after a quiet
//!   second, so an idle session costs no writer thread at all;
//! - events that would take the queued bytes past the limit cut the session
//!   off as a slow consumer (`BYE slow-consumer`, best effort) instead;
//! - replies are always queued, and the session's own thread stops reading
//!   commands while the queue is over the limit ([`Outbox::wait_for_room`]);
//! - replies keep the order of their commands: a message handed to the
//!   journal takes its reply's place at once, and the session's later
//!   replies wait behind that place until the journal fills it (behind an
//!   echo-message echo, until the journal has published it), without the
//!   session's thread waiting;
//! - events are held back until the session's login reply is queued
//!   ([`Outbox::open_events`]): a session is added to the registry (so it
//!   misses no message committed after its login) before that reply exists,
//!   and whatever reaches it meanwhile waits here, behind the reply.
//!
//! Order is kept because a direct send happens only under the outbox's lock
//! while nothing is queued and no writer is running; otherwise the bytes go
//! behind what is queued. The lock is the outbox's own: it is never held
//! while blocking, and the registry lock may be held while taking it (never
//! the other way round).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::code::ErrorCode;
use super::codec::Codec;
use super::event::Event;
use super::feed::ConnectionId;
use super::reply::{Reply, ReplyTo};
use super::transport::Transport;

/// How long a closing session's remaining output may take to drain to a
/// peer that does not read, before the connection is dropped anyway.
const LINGER: Duration = Duration::from_secs(5);
/// How long a writer thread waits for more work before it ends.
const WRITER_IDLE: Duration = Duration::from_secs(1);
/// How long the session's reader waits before it rechecks for room.
const ROOM_POLL: Duration = Duration::from_millis(250);
/// Stack of a writer thread: it only moves bytes and logs.
const WRITER_STACK: usize = 64 * 1024;

/// Still delivering everything.
const OPEN: u8 = 0;
/// A BYE was queued (shutdown, login timeout): further events are dropped,
/// replies still go out, then the connection closes.
const CLOSING: u8 = 1;
/// Cut off as a slow consumer: pending output is thrown away.
const CUT: u8 = 2;

/// Who a batch is being delivered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The receiving connection: it does not get the lines it caused.
    pub connection: u64,
    /// The registry's change number at its login: presence lines of
    /// changes made before it logged in are not for it.
    pub since: u64,
}

/// Which entries of a batch each session receives beyond those for
/// everyone: by connection, the indexes of its entries, in order. Shared by
/// every flavor's encoding of one batch.
pub type Targeted = HashMap<ConnectionId, Vec<u32>>;

/// One encoded entry of a batch.
#[derive(Clone, Copy, Debug)]
struct Line {
    /// Where it ends in the batch's bytes.
    end: usize,
    /// For everyone (lobby messages, presence) or only for the sessions
    /// [`Targeted`] names (rooms, private messages, membership).
    everyone: bool,
    /// The connection that caused it: it does not receive it.
    origin: u64,
    /// The registry change from which sessions see it (presence), or 0.
    change: u64,
}

/// The events of one committed batch, encoded once for one flavor and
/// shared by every recipient of that flavor: a room of N sessions costs one
/// push per session per batch, not one per line.
#[derive(Default)]
pub struct EncodedBatch {
    /// The encoded entries, back to back.
    bytes: Vec<u8>,
    /// Each entry's end, audience and origin.
    lines: Vec<Line>,
    /// The distinct connections that caused entries for everyone, usually
    /// few.
    authors: Vec<u64>,
    /// The lowest change number of any presence entry, if there is one.
    oldest_change: Option<u64>,
    /// Who receives the entries that are not for everyone.
    targeted: Arc<Targeted>,
    /// Whether any entry is not for everyone.
    any_targeted: bool,
}

impl EncodedBatch {
    /// A batch whose entries that are not for everyone go to the sessions
    /// `targeted` names.
    pub fn new(targeted: Arc<Targeted>) -> EncodedBatch {
        EncodedBatch {
            targeted,
            ..EncodedBatch::default()
        }
    }

    /// Appends one entry for everyone but connection `origin`, written by
    /// `encode`; only sessions logged in before registry change `change`
    /// receive it (0: every session but `origin`).
    pub fn append(&mut self, origin: u64, change: u64, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.bytes);
        self.lines.push(Line {
            end: self.bytes.len(),
            everyone: true,
            origin,
            change,
        });
        if change != 0 {
            self.oldest_change = Some(self.oldest_change.map_or(change, |oldest| oldest.min(change)));
        }
        if !self.authors.contains(&origin) {
            self.authors.push(origin);
        }
    }

    /// Appends one entry for the sessions that the batch's [`Targeted`]
    /// lists with this entry's index.
    pub fn append_targeted(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.bytes);
        self.lines.push(Line {
            end: self.bytes.len(),
            everyone: false,
            origin: 0,
            change: 0,
        });
        self.any_targeted = true;
    }

    /// Whether the batch holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether `to` receives every line (the common case, one slice).
    fn takes_all(&self, to: Recipient) -> bool {
        !self.any_targeted
            && !self.authors.contains(&to.connection)
            && self.oldest_change.is_none_or(|oldest| to.since < oldest)
    }

    /// Whether `to`, whose targeted entries are `mine`, receives line `i`.
    fn is_for(line: &Line, i: usize, to: Recipient, mine: &[u32]) -> bool {
        if line.everyone {
            line.origin != to.connection && (line.change == 0 || to.since < line.change)
        } else {
            u32::try_from(i).is_ok_and(|i| mine.binary_search(&i).is_ok())
        }
    }

    /// The targeted entries of `to`.
    fn mine(&self, to: Recipient) -> &[u32] {
        self.targeted.get(&to.connection).map_or(&[], Vec::as_slice)
    }

    /// Bytes `to` receives of this batch.
    pub fn bytes_for(&self, to: Recipient) -> usize {
        if self.takes_all(to) {
            return self.bytes.len();
        }
        let mine = self.mine(to);
        if self.authors.is_empty() {
            // Every entry is targeted (a batch of room or private
            // messages): only this session's own entries need counting.
            return mine
                .iter()
                .filter_map(|&i| usize::try_from(i).ok())
                .filter(|&i| i < self.lines.len())
                .map(|i| self.lines[i].end - if i == 0 { 0 } else { self.lines[i - 1].end })
                .sum();
        }
        let mut start = 0;
        let mut total = 0;
        for (i, line) in self.lines.iter().enumerate() {
            if EncodedBatch::is_for(line, i, to, mine) {
                total += line.end - start;
            }
            start = line.end;
        }
        total
    }

    /// Appends to `out` the slices `to` receives, merging runs of
    /// consecutive lines into one slice.
    fn slices_for<'a>(&'a self, to: Recipient, out: &mut Vec<IoSlice<'a>>) {
        if self.takes_all(to) {
            out.push(IoSlice::new(&self.bytes));
            return;
        }
        let mine = self.mine(to);
        let (mut run_start, mut start) = (0, 0);
        for (i, line) in self.lines.iter().enumerate() {
            if !EncodedBatch::is_for(line, i, to, mine) {
                if run_start < start {
                    out.push(IoSlice::new(&self.bytes[run_start..start]));
                }
                run_start = line.end;
            }
            start = line.end;
        }
        if run_start < start {
            out.push(IoSlice::new(&self.bytes[run_start..start]));
        }
    }
}

/// One item of a session's queue.
enum Outgoing {
    /// Bytes for this session alone (its replies, its BYE).
    Bytes(Vec<u8>),
    /// A batch, without the lines that are not for this session, and the
    /// bytes that leaves (counted once: in a room's batch, counting means
    /// walking its lines).
    Batch(Arc<EncodedBatch>, Recipient, usize),
}

impl Outgoing {
    /// Bytes this item puts on the wire.
    fn len(&self) -> usize {
        match self {
            Outgoing::Bytes(bytes) => bytes.len(),
            Outgoing::Batch(_, _, len) => *len,
        }
    }

    /// Appends the item's slices to `out`.
    fn slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        match self {
            Outgoing::Bytes(bytes) => out.push(IoSlice::new(bytes)),
            Outgoing::Batch(batch, to, _) => batch.slices_for(*to, out),
        }
    }
}

/// A place in a session's order of replies.
enum Slot {
    /// The reply to the message the journal was handed as this session's
    /// `number`th.
    Journal {
        /// Its place among the session's messages, from 1.
        number: u64,
        /// Its encoded reply, once the journal queued it (empty for an
        /// echo, which comes as an event instead).
        reply: Option<Vec<u8>>,
    },
    /// A reply of the session's own, due once everything ahead has gone.
    Ready(Vec<u8>),
}

/// The queue behind the outbox's lock.
#[derive(Default)]
struct Queue {
    /// Items not yet fully written, oldest first.
    items: VecDeque<Outgoing>,
    /// Events that arrived before [`Outbox::open_events`], in order.
    held: Vec<Outgoing>,
    /// This session's replies in the order of its commands, from the
    /// oldest that the journal still holds up (PROTOCOL.md 1). Empty while
    /// the journal owes this session nothing: replies then go at once.
    ordered: VecDeque<Slot>,
    /// Messages this session has handed to the journal.
    journal_asked: u64,
    /// Of those, the ones the journal is done with: their replies, and
    /// their events (an echo-message echo, which takes the reply's place),
    /// are queued.
    journal_done: u64,
    /// Events may go out: the login reply is queued.
    events_open: bool,
    /// Bytes of the first item already written.
    written: usize,
    /// Bytes queued or held and not yet written (the slow-consumer
    /// measure; replies waiting for their turn are in `waiting`).
    pending: usize,
    /// Bytes of replies waiting in `ordered`. They hold up the session's
    /// reader like `pending` does, but are not output the peer failed to
    /// read: they do not count towards cutting it off.
    waiting: usize,
    /// A writer thread is running; while it is, nobody else writes.
    writer: bool,
    /// The session ended: write what is queued, then close.
    finishing: bool,
    /// The connection is closed for writing: nothing more goes out.
    closed: bool,
    /// The bytes sent so far end inside a line (a send was cut short). A
    /// slow consumer's best-effort BYE is then left out: glued to the
    /// partial line it would corrupt that line instead of being read.
    mid_line: bool,
}

/// The outgoing side of one connection.
pub struct Outbox {
    /// The queue and the writer's state.
    queue: Mutex<Queue>,
    /// Wakes the writer (work, finish, cut) and whoever waits for room or
    /// for the end.
    changed: Condvar,
    /// `OPEN`, `CLOSING` or `CUT`, readable without the lock.
    state: AtomicU8,
    /// The slow-consumer bound on queued bytes.
    limit: usize,
    /// The wire protocol this connection speaks.
    codec: Arc<dyn Codec>,
    /// The connection's byte stream.
    transport: Arc<dyn Transport>,
    /// The connection id, for logs and the writer's thread name.
    id: ConnectionId,
}

impl Outbox {
    /// The outbox of connection `id`, encoding with `codec` and writing to
    /// `transport`, cutting the session off past `limit` queued bytes.
    pub fn new(transport: Arc<dyn Transport>, codec: Arc<dyn Codec>, limit: usize, id: ConnectionId) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            state: AtomicU8::new(OPEN),
            limit,
            codec,
            transport,
            id,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The codec this connection speaks, for the fan-out's encoding.
    pub fn codec(&self) -> &Arc<dyn Codec> {
        &self.codec
    }

    /// Queues the session's reply to command `to`, behind the replies the
    /// journal still owes it ([`Outbox::raw_reply`]). Never refused for
    /// size: the reader stops reading instead (see
    /// [`Outbox::wait_for_room`]).
    pub fn reply(self: &Arc<Self>, to: &ReplyTo, reply: &Reply) {
        let mut bytes = Vec::with_capacity(64);
        self.codec.reply(to, reply, &mut bytes);
        self.raw_reply(bytes);
    }

    /// Queues the journal's replies to messages of this session, one per
    /// message in the order it was handed them (`None` for a message whose
    /// echo takes the reply's place). Replies given together go as one
    /// write, with whatever of the session's own replies they let out.
    pub fn journal_replies<'a>(self: &Arc<Self>, replies: impl IntoIterator<Item = (&'a ReplyTo, Option<&'a Reply>)>) {
        let mut queue = self.lock();
        if queue.closed || self.state.load(Ordering::Acquire) == CUT {
            // Cut off or closed: the order was dropped with the rest.
            return;
        }
        let mut slots = queue.ordered.iter_mut().filter_map(|slot| match slot {
            Slot::Journal { reply, .. } if reply.is_none() => Some(reply),
            _ => None,
        });
        let mut added = 0;
        for (to, reply) in replies {
            let mut bytes = Vec::new();
            if let Some(reply) = reply {
                self.codec.reply(to, reply, &mut bytes);
            }
            match slots.next() {
                Some(slot) => {
                    added += bytes.len();
                    *slot = Some(bytes);
                }
                None => {
                    // Not handed through `handed_to_journal`: nothing
                    // waits for it.
                    log::error!("connection {}: a reply the journal did not owe", self.id);
                }
            }
        }
        queue.waiting += added;
        self.release(&mut queue);
    }

    /// Queues bytes the session (or a front end) encoded itself as a
    /// reply. Replies leave in the order of their commands (PROTOCOL.md 1):
    /// while a message this session sent earlier is still with the
    /// journal, the reply waits here, and the journal lets it out. The
    /// session's thread never waits for that, so pipelined commands (a
    /// `PING` between messages from an IRC client, a refused message) keep flowing.
    pub fn raw_reply(self: &Arc<Self>, bytes: Vec<u8>) {
        if bytes.is_empty() || self.state.load(Ordering::Acquire) == CUT {
            return;
        }
        let mut queue = self.lock();
        if queue.ordered.is_empty() {
            self.push(&mut queue, Outgoing::Bytes(bytes));
        } else if !queue.closed {
            queue.waiting += bytes.len();
            queue.ordered.push_back(Slot::Ready(bytes));
        }
    }

    /// Makes the place of the reply to a message about to be handed to the
    /// journal: replies queued from now on wait until the journal has
    /// queued it and is done with the message.
    pub fn handed_to_journal(&self) {
        let mut queue = self.lock();
        queue.journal_asked += 1;
        let number = queue.journal_asked;
        queue.ordered.push_back(Slot::Journal { number, reply: None });
    }

    /// Takes back the place [`Outbox::handed_to_journal`] made last: the
    /// journal would not take the message.
    pub fn not_handed_to_journal(self: &Arc<Self>) {
        let mut queue = self.lock();
        if let Some(Slot::Journal { reply: None, .. }) = queue.ordered.back() {
            queue.ordered.pop_back();
            queue.journal_asked -= 1;
        }
        self.release(&mut queue);
    }

    /// The journal is done with this session's oldest message in its
    /// hands: its reply (or echo) and its events are queued, so the replies
    /// that waited only for it go out.
    pub fn journal_done(self: &Arc<Self>) {
        let mut queue = self.lock();
        queue.journal_done += 1;
        self.release(&mut queue);
    }

    /// Sends, as one write, the replies at the front of the order that are
    /// due: the session's own, and the journal's once it queued them. An
    /// echo-message echo takes its reply's place: it is an event the
    /// journal publishes, so what follows it waits until the journal is
    /// done with its message.
    fn release(self: &Arc<Self>, queue: &mut Queue) {
        let waited = queue.pending + queue.waiting > self.limit;
        let mut due: Vec<u8> = Vec::new();
        // The first reply's buffer becomes the write's; later ones are
        // appended to it (usually there is only one).
        let mut take = |bytes: &mut Vec<u8>| {
            if due.is_empty() {
                due = std::mem::take(bytes);
            } else {
                due.append(bytes);
            }
        };
        while let Some(front) = queue.ordered.front_mut() {
            match front {
                Slot::Ready(bytes) => take(bytes),
                Slot::Journal { reply: None, .. } => break,
                Slot::Journal {
                    number,
                    reply: Some(bytes),
                } => {
                    if bytes.is_empty() && *number > queue.journal_done {
                        break;
                    }
                    take(bytes);
                }
            }
            queue.ordered.pop_front();
        }
        queue.waiting -= due.len();
        if !due.is_empty() && self.state.load(Ordering::Acquire) != CUT {
            self.push(queue, Outgoing::Bytes(due));
        }
        // A reader waiting for room may have it now.
        if waited && queue.pending + queue.waiting <= self.limit {
            self.changed.notify_all();
        }
    }

    /// Queues the lines of `batch` that are for `to`. If they would take the
    /// queue past its limit the session is cut off as a slow consumer
    /// instead. Returns whether the batch was queued.
    pub fn batch(self: &Arc<Self>, batch: &Arc<EncodedBatch>, to: Recipient) -> bool {
        let len = batch.bytes_for(to);
        if len == 0 {
            return true;
        }
        if self.state.load(Ordering::Acquire) != OPEN {
            return false;
        }
        let item = Outgoing::Batch(Arc::clone(batch), to, len);
        let mut queue = self.lock();
        if queue.pending + item.len() > self.limit {
            self.cut_off(&mut queue);
            return false;
        }
        if !queue.events_open {
            queue.pending += item.len();
            queue.held.push(item);
            return true;
        }
        self.push(&mut queue, item)
    }

    /// Queues one event for this session alone (an invitation to the relay,
    /// say), under the same rules as a batch.
    pub fn event(self: &Arc<Self>, event: &Event) -> bool {
        let mut one = EncodedBatch::default();
        one.append(0, 0, |out| self.codec.event(event, out));
        self.batch(
            &Arc::new(one),
            Recipient {
                connection: self.id,
                since: 0,
            },
        )
    }

    /// Holds events back again until [`Outbox::open_events`]: for a command
    /// whose reply must come before the events it makes possible (a JOIN's
    /// reply before the room's messages).
    pub fn hold_events(self: &Arc<Self>) {
        self.lock().events_open = false;
    }

    /// Lets events out, after everything already queued (the login reply).
    /// Events held until now follow in the order they came.
    pub fn open_events(self: &Arc<Self>) {
        let mut queue = self.lock();
        if queue.events_open {
            return;
        }
        queue.events_open = true;
        let held = std::mem::take(&mut queue.held);
        for item in held {
            queue.pending -= item.len();
            if !self.push(&mut queue, item) {
                break;
            }
        }
    }

    /// Sends `item` at once if nothing is ahead of it, else queues it and
    /// makes sure a writer runs. Returns false if the connection is closed.
    fn push(self: &Arc<Self>, queue: &mut Queue, item: Outgoing) -> bool {
        if queue.closed {
            return false;
        }
        let mut written = 0;
        if queue.items.is_empty() && !queue.writer {
            let mut slices = Vec::with_capacity(4);
            item.slices(&mut slices);
            let total = item.len();
            match self.transport.send_now(&slices) {
                Ok(n) if n >= total => {
                    // Taken whole; a transport that holds some of it gets a
                    // writer to push it out.
                    if self.transport.pending() {
                        self.start_writer(queue);
                    }
                    return true;
                }
                Ok(n) => {
                    if n > 0 {
                        queue.mid_line = !ends_line(&slices, n);
                    }
                    written = n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("connection {}: send failed: {e}", self.id);
                    self.close_now(queue);
                    return false;
                }
            }
        }
        if queue.items.is_empty() {
            queue.written = written;
        }
        queue.pending += item.len() - written;
        queue.items.push_back(item);
        if queue.writer {
            self.changed.notify_all();
        } else {
            self.start_writer(queue);
        }
        true
    }

    /// Starts the writer thread; on failure (no threads left) the session
    /// cannot be served and is closed.
    fn start_writer(self: &Arc<Self>, queue: &mut Queue) {
        let outbox = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name(format!("writer-{}", self.id))
            .stack_size(WRITER_STACK)
            .spawn(move || outbox.drain());
        match spawned {
            Ok(_) => queue.writer = true,
            Err(e) => {
                log::error!("connection {}: cannot start a writer thread: {e}", self.id);
                self.close_now(queue);
            }
        }
    }

    /// Queues `BYE code` and stops queuing events; replies already due may
    /// still follow. The transport's read side is shut so the session's
    /// reader reads no further commands.
    pub fn bye(self: &Arc<Self>, code: ErrorCode) {
        let mut bytes = Vec::new();
        self.codec.event(&Event::Bye(code), &mut bytes);
        // The state changes under the queue's lock, with the BYE queued in
        // the same hold: a reader that sees the session closing and
        // finishes the outbox at once still finds the BYE ahead of the end.
        let mut queue = self.lock();
        if self
            .state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        // Events held for a login reply that never came are dropped with
        // the rest of the events.
        let held: usize = queue.held.drain(..).map(|item| item.len()).sum();
        queue.pending -= held;
        if !self.push(&mut queue, Outgoing::Bytes(bytes)) {
            log::debug!("connection {}: BYE {code} not sent: already closed", self.id);
        }
        drop(queue);
        self.transport.shutdown(Shutdown::Read);
    }

    /// Writes what is queued and closes the connection: waits until the
    /// writer is done, or [`LINGER`] passes for a peer that does not read.
    pub fn finish(self: &Arc<Self>) {
        let deadline = Instant::now() + LINGER;
        let mut queue = self.lock();
        queue.finishing = true;
        if !queue.writer && !queue.closed && self.transport.pending() {
            // The writer pushes out what the transport holds, then closes.
            self.start_writer(&mut queue);
        }
        if !queue.writer && !queue.closed {
            queue.closed = true;
            self.transport.shutdown(Shutdown::Write);
        }
        self.changed.notify_all();
        while !queue.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.close_now(&mut queue);
                break;
            }
            queue = self
                .changed
                .wait_timeout(queue, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Whether the session is closing or was cut off: its reader must stop.
    pub fn is_closing(&self) -> bool {
        self.state.load(Ordering::Acquire) != OPEN
    }

    /// Whether the session was cut off as a slow consumer.
    pub fn is_cut(&self) -> bool {
        self.state.load(Ordering::Acquire) == CUT
    }

    /// Blocks the session's reader while more than the limit is queued, so
    /// a client that pipelines and never reads stalls only itself.
    pub fn wait_for_room(&self) {
        let mut queue = self.lock();
        while queue.pending + queue.waiting > self.limit && !queue.closed && !self.is_closing() {
            queue = self
                .changed
                .wait_timeout(queue, ROOM_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Marks the session a slow consumer: drops what is queued, stops its
    /// reader, and has the writer (or this thread) send the BYE.
    fn cut_off(&self, queue: &mut Queue) {
        if self.state.swap(CUT, Ordering::AcqRel) == CUT {
            return;
        }
        log::warn!("connection {}: cut off as a slow consumer", self.id);
        queue.items.clear();
        queue.held.clear();
        queue.ordered.clear();
        queue.waiting = 0;
        queue.written = 0;
        queue.pending = 0;
        self.transport.shutdown(Shutdown::Read);
        if queue.writer {
            // The writer notices within its send timeout and says BYE.
            self.changed.notify_all();
        } else {
            self.say_bye_and_close(queue);
        }
    }

    /// Best effort `BYE slow-consumer` (left out if a line was sent only in
    /// part), then the connection is closed.
    fn say_bye_and_close(&self, queue: &mut Queue) {
        if !queue.mid_line {
            let mut bye = Vec::new();
            self.codec.event(&Event::Bye(ErrorCode::SlowConsumer), &mut bye);
            let _ = self.transport.send_now(&[IoSlice::new(&bye)]);
        }
        self.close_now(queue);
    }

    /// Closes the connection at once, discarding what is queued.
    fn close_now(&self, queue: &mut Queue) {
        queue.closed = true;
        queue.items.clear();
        queue.held.clear();
        queue.ordered.clear();
        queue.waiting = 0;
        queue.pending = 0;
        self.transport.shutdown(Shutdown::Both);
        self.changed.notify_all();
    }

    /// The writer thread: writes what is queued until the queue stays empty
    /// for [`WRITER_IDLE`], or the session finishes or is cut off.
    fn drain(&self) {
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut queue = self.lock();
        loop {
            if self.is_cut() {
                self.say_bye_and_close(&mut queue);
                break;
            }
            if queue.items.is_empty() && self.transport.pending() {
                let finishing = queue.finishing;
                drop(queue);
                let flushed = self.flush_pending(finishing);
                queue = self.lock();
                if let Err(e) = flushed {
                    log::debug!("connection {}: write failed: {e}", self.id);
                    if self.is_cut() {
                        self.say_bye_and_close(&mut queue);
                    } else {
                        let _ = self
                            .state
                            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire);
                        self.close_now(&mut queue);
                    }
                    break;
                }
                continue;
            }
            if queue.items.is_empty() {
                if queue.finishing {
                    queue.closed = true;
                    self.transport.shutdown(Shutdown::Write);
                    break;
                }
                let (next, idle) = self
                    .changed
                    .wait_timeout(queue, WRITER_IDLE)
                    .unwrap_or_else(|p| p.into_inner());
                queue = next;
                if idle.timed_out() && queue.items.is_empty() && !queue.finishing && !self.is_cut() {
                    break;
                }
                continue;
            }
            let skip = std::mem::take(&mut queue.written);
            batch.extend(queue.items.drain(..));
            let finishing = queue.finishing;
            let mut mid_line = queue.mid_line;
            drop(queue);
            let bytes: usize = batch.iter().map(Outgoing::len).sum::<usize>() - skip;
            let written = self.write_all(&batch, skip, finishing, &mut mid_line);
            batch.clear();
            queue = self.lock();
            queue.mid_line = mid_line;
            queue.pending = queue.pending.saturating_sub(bytes);
            self.changed.notify_all();
            if let Err(e) = written {
                log::debug!("connection {}: write failed: {e}", self.id);
                if self.is_cut() {
                    self.say_bye_and_close(&mut queue);
                } else {
                    // The peer is gone: stop queuing for it.
                    let _ = self
                        .state
                        .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire);
                    self.close_now(&mut queue);
                }
                break;
            }
        }
        queue.writer = false;
        self.changed.notify_all();
    }

    /// Writes every item (the first one from byte `skip` on), retrying
    /// through send timeouts until the session is cut off or has been
    /// closing (or `finishing`) for longer than [`LINGER`]. Keeps
    /// `mid_line` telling whether what was written so far ends inside a
    /// line.
    fn write_all(&self, batch: &[Outgoing], skip: usize, finishing: bool, mid_line: &mut bool) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() + 4);
        for item in batch {
            item.slices(&mut slices);
        }
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, skip);
        let mut closing_since: Option<Instant> = None;
        while !rest.is_empty() {
            match self.transport.send(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *mid_line = !ends_line(rest, n);
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if self.is_cut() {
                        return Err(io::Error::other("cut off as a slow consumer"));
                    }
                    if finishing || self.is_closing() {
                        let since = *closing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > LINGER {
                            return Err(io::Error::other("peer did not read before closing"));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Outbox {
    /// Pushes out what the transport holds, retrying through send
    /// timeouts like [`Outbox::write_all`].
    fn flush_pending(&self, finishing: bool) -> io::Result<()> {
        let mut closing_since: Option<Instant> = None;
        while self.transport.pending() {
            match self.transport.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    if self.is_cut() {
                        return Err(io::Error::other("cut off as a slow consumer"));
                    }
                    if finishing || self.is_closing() {
                        let since = *closing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > LINGER {
                            return Err(io::Error::other("peer did not read before closing"));
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether the first `n` bytes of `slices` (`n` at least 1) end with a
/// newline, that is, whether a send of `n` bytes stopped between lines.
fn ends_line(slices: &[IoSlice<'_>], n: usize) -> bool {
    let mut last = n.saturating_sub(1);
    for slice in slices {
        if last < slice.len() {
            return slice[last] == b'\n';
        }
        last -= slice.len();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::reply::Answer;
    use crate::core::testkit::{TestCodec, TestConn};

    fn batch_of(lines: &[(&str, u64, u64)]) -> EncodedBatch {
        let mut batch = EncodedBatch::default();
        for (line, origin, change) in lines {
            batch.append(*origin, *change, |out| {
                out.extend_from_slice(format!("{line}\n").as_bytes())
            });
        }
        batch
    }

    fn received(batch: &EncodedBatch, connection: u64, since: u64) -> String {
        let to = Recipient { connection, since };
        let mut slices = Vec::new();
        batch.slices_for(to, &mut slices);
        let bytes: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(bytes.len(), batch.bytes_for(to));
        String::from_utf8(bytes).unwrap()
    }

    fn ok(verb: &'static str) -> (ReplyTo, Reply) {
        (ReplyTo::new(None, Some(verb)), Reply::Ok(Answer::Done))
    }

    #[test]
    fn ends_line_tells_whether_a_send_stopped_between_lines() {
        let slices = [IoSlice::new(b"MSG 1\nMS"), IoSlice::new(b"G 2\n")];
        assert!(ends_line(&slices, 6));
        assert!(!ends_line(&slices, 7));
        assert!(!ends_line(&slices, 9));
        assert!(ends_line(&slices, 12));
    }

    #[test]
    fn a_batch_leaves_out_only_the_recipients_own_lines() {
        let batch = batch_of(&[("m1", 7, 0), ("m2", 8, 0), ("m3", 7, 0), ("m4", 9, 0)]);
        assert_eq!(received(&batch, 1, 5), "m1\nm2\nm3\nm4\n");
        assert_eq!(received(&batch, 7, 5), "m2\nm4\n");
        assert_eq!(received(&batch, 8, 5), "m1\nm3\nm4\n");
        assert_eq!(received(&batch, 9, 5), "m1\nm2\nm3\n");
    }

    #[test]
    fn presence_lines_reach_only_sessions_logged_in_before_the_change() {
        let batch = batch_of(&[("JOIN x", 3, 10), ("m1", 7, 0), ("LEAVE x", 3, 12)]);
        assert_eq!(received(&batch, 1, 9), "JOIN x\nm1\nLEAVE x\n");
        assert_eq!(received(&batch, 2, 11), "m1\nLEAVE x\n");
        assert_eq!(received(&batch, 4, 12), "m1\n");
        assert_eq!(received(&batch, 3, 9), "m1\n");
    }

    #[test]
    fn a_batch_of_targeted_entries_counts_each_sessions_own() {
        let mut targeted = Targeted::new();
        targeted.insert(1, vec![0, 2]);
        targeted.insert(2, vec![1]);
        let mut batch = EncodedBatch::new(Arc::new(targeted));
        for line in ["POST a\n", "POST bb\n", "POST ccc\n"] {
            batch.append_targeted(|out| out.extend_from_slice(line.as_bytes()));
        }
        let to = |connection| Recipient { connection, since: 0 };
        assert_eq!(batch.bytes_for(to(1)), "POST a\nPOST ccc\n".len());
        assert_eq!(batch.bytes_for(to(2)), "POST bb\n".len());
        assert_eq!(batch.bytes_for(to(3)), 0);
        for connection in [1, 2, 3] {
            let mut slices = Vec::new();
            batch.slices_for(to(connection), &mut slices);
            let sent: usize = slices.iter().map(|s| s.len()).sum();
            assert_eq!(sent, batch.bytes_for(to(connection)), "connection {connection}");
        }
    }

    #[test]
    fn replies_go_out_directly_in_order() {
        let conn = TestConn::new(1, TestCodec::new(1), 1 << 16, 1 << 20);
        let (to, reply) = ok("PING");
        conn.outbox.reply(&to, &reply);
        let (to2, reply2) = ok("SAY");
        conn.outbox.handed_to_journal();
        conn.outbox.handed_to_journal();
        conn.outbox
            .journal_replies([(&to2, Some(&reply2)), (&to2, Some(&reply2))]);
        conn.outbox.journal_done();
        conn.outbox.journal_done();
        assert_eq!(conn.lines(3), ["OK PING", "OK SAY", "OK SAY"]);
    }

    #[test]
    fn replies_keep_command_order_around_the_journals_and_events_do_not_wait() {
        let conn = TestConn::new(1, TestCodec::new(1), 1 << 16, 1 << 20);
        conn.outbox.open_events();
        let to = Recipient {
            connection: 1,
            since: 0,
        };
        // SAY 1, a PING, SAY 2, a refused SAY, SAY 3: the journal gets
        // SAY 1 to 3 and answers them in one batch.
        let (say, stored) = ok("SAY");
        let (ping, pong) = ok("PING");
        let refused = Reply::Err(ErrorCode::RateLimited);
        conn.outbox.handed_to_journal();
        conn.outbox.reply(&ping, &pong);
        conn.outbox.handed_to_journal();
        conn.outbox.reply(&say, &refused);
        conn.outbox.handed_to_journal();
        assert_eq!(conn.transport.take_output(), "", "both wait for the journal");
        // Someone else's message is not a reply: it goes at once.
        assert!(conn.outbox.batch(&Arc::new(batch_of(&[("MSG other", 2, 0)])), to));
        assert_eq!(conn.transport.take_output(), "MSG other\n");
        // The batch's replies go at once, as one write, with the replies
        // that waited for them in between.
        conn.outbox
            .journal_replies([(&say, Some(&stored)), (&say, Some(&stored)), (&say, Some(&stored))]);
        assert_eq!(
            conn.transport.take_output(),
            "OK SAY\nOK PING\nOK SAY\nERR SAY rate-limited\nOK SAY\n"
        );
        for _ in 0..3 {
            conn.outbox.journal_done();
        }
        // Nothing owed: a reply goes at once.
        conn.outbox.reply(&ping, &pong);
        assert_eq!(conn.transport.take_output(), "OK PING\n");
    }

    #[test]
    fn an_echo_in_place_of_a_reply_still_comes_before_later_replies() {
        let conn = TestConn::new(1, TestCodec::new(1), 1 << 16, 1 << 20);
        conn.outbox.open_events();
        let (say, _) = ok("SAY");
        let (ping, pong) = ok("PING");
        conn.outbox.handed_to_journal();
        conn.outbox.reply(&ping, &pong);
        conn.outbox.journal_replies([(&say, None)]);
        assert_eq!(conn.transport.take_output(), "");
        // The echo is delivered as an event when the batch is published.
        let to = Recipient {
            connection: 1,
            since: 0,
        };
        assert!(conn.outbox.batch(&Arc::new(batch_of(&[("ECHO mine", 2, 0)])), to));
        conn.outbox.journal_done();
        assert_eq!(conn.transport.take_output(), "ECHO mine\nOK PING\n");
    }

    #[test]
    fn a_message_the_journal_did_not_take_holds_nothing_up() {
        let conn = TestConn::new(1, TestCodec::new(1), 1 << 16, 1 << 20);
        conn.outbox.handed_to_journal();
        conn.outbox.not_handed_to_journal();
        let (ping, pong) = ok("PING");
        conn.outbox.reply(&ping, &pong);
        assert_eq!(conn.transport.take_output(), "OK PING\n");
    }

    #[test]
    fn waiting_replies_count_against_the_bound_on_reading() {
        let conn = TestConn::new(1, TestCodec::new(1), 1 << 16, 64);
        conn.outbox.handed_to_journal();
        let (ping, pong) = ok("PING");
        for _ in 0..20 {
            conn.outbox.reply(&ping, &pong);
        }
        // Replies waiting for their turn are not output the peer failed to
        // read: an event still goes out.
        conn.outbox.open_events();
        let to = Recipient {
            connection: 1,
            since: 0,
        };
        assert!(conn.outbox.batch(&Arc::new(batch_of(&[("MSG other", 2, 0)])), to));
        assert!(!conn.outbox.is_cut());
        let reader = {
            let outbox = Arc::clone(&conn.outbox);
            std::thread::spawn(move || outbox.wait_for_room())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "the reader waits while the replies wait");
        let (say, stored) = ok("SAY");
        conn.outbox.journal_replies([(&say, Some(&stored))]);
        conn.outbox.journal_done();
        reader.join().expect("the reader goes on");
        assert_eq!(conn.lines(22).len(), 22);
    }

    #[test]
    fn events_wait_behind_the_login_reply() {
        let conn = TestConn::new(1, TestCodec::new(1), 1 << 16, 1 << 20);
        let batch = Arc::new(batch_of(&[("MSG early", 2, 0)]));
        let to = Recipient {
            connection: 1,
            since: 0,
        };
        assert!(conn.outbox.batch(&batch, to));
        assert_eq!(conn.transport.take_output(), "", "held until the login reply");
        let (to_login, reply) = ok("LOGIN");
        conn.outbox.reply(&to_login, &reply);
        conn.outbox.open_events();
        assert!(conn.outbox.batch(&Arc::new(batch_of(&[("MSG late", 2, 0)])), to));
        assert_eq!(conn.lines(3), ["OK LOGIN", "MSG early", "MSG late"]);
    }

    #[test]
    fn a_peer_that_reads_slowly_gets_everything_through_the_writer() {
        // The peer takes 10 bytes, then nothing until the test reads.
        let conn = TestConn::new(1, TestCodec::new(1), 10, 1 << 20);
        conn.outbox.open_events();
        let to = Recipient {
            connection: 1,
            since: 0,
        };
        let lines: Vec<String> = (0..50).map(|i| format!("MSG {i:02}")).collect();
        for line in &lines {
            let batch = batch_of(&[(line, 2, 0)]);
            assert!(conn.outbox.batch(&Arc::new(batch), to));
        }
        let mut got = String::new();
        for _ in 0..200 {
            got.push_str(&conn.transport.take_output());
            if got.lines().count() == lines.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got.lines().collect::<Vec<_>>(), lines);
        assert!(!conn.outbox.is_cut());
    }

    #[test]
    fn a_peer_that_never_reads_is_cut_off_without_stalling_the_sender() {
        let conn = TestConn::new(1, TestCodec::new(1), 64, 256);
        conn.outbox.open_events();
        let to = Recipient {
            connection: 1,
            since: 0,
        };
        let big = "x".repeat(100);
        let started = Instant::now();
        let mut queued = 0;
        for _ in 0..10 {
            if conn.outbox.batch(&Arc::new(batch_of(&[(&big, 2, 0)])), to) {
                queued += 1;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1), "pushing never blocks");
        assert!(queued < 10);
        assert!(conn.outbox.is_cut() && conn.outbox.is_closing());
        // Replies are never refused for size, but a cut session takes none.
        let (to_ping, reply) = ok("PING");
        conn.outbox.reply(&to_ping, &reply);
        conn.outbox.finish();
        assert!(conn.transport.write_closed());
    }

    #[test]
    fn bye_stops_events_but_not_replies() {
        let conn = TestConn::new(1, TestCodec::new(1), 1 << 16, 1 << 20);
        conn.outbox.open_events();
        conn.outbox.bye(ErrorCode::ShuttingDown);
        let to = Recipient {
            connection: 1,
            since: 0,
        };
        assert!(!conn.outbox.batch(&Arc::new(batch_of(&[("MSG after", 2, 0)])), to));
        let (to_say, reply) = ok("SAY");
        conn.outbox.reply(&to_say, &reply);
        conn.outbox.finish();
        assert_eq!(conn.transport.take_output(), "BYE shutting-down\nOK SAY\n");
    }
}
