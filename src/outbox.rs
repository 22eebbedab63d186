//! A session's outgoing side: a bounded queue, written directly when it can
//! be and by a writer thread of the session's own when it cannot.
//!
//! Every line a session receives (its replies, other people's messages,
//! JOIN/LEAVE, BYE) is pushed here by whichever thread produced it. Pushing
//! never blocks, so no thread ever waits on another session's socket
//! (PROTOCOL.md 5.4):
//!
//! - when nothing is queued, the pushing thread sends the bytes at once
//!   with a non-blocking send (no thread wake-up, no context switch: the
//!   cheapest path, and the common one for a client that reads);
//! - whatever the socket does not take is queued, and the session's writer
//!   thread is started to write it with blocking writes, coalescing
//!   everything queued into one vectored write; it ends after a quiet
//!   second, so an idle session costs no writer thread at all;
//! - events that would take the queued bytes past the limit cut the session
//!   off as a slow consumer (`BYE slow-consumer`, best effort) instead;
//! - replies are always queued, and the session's own thread stops reading
//!   commands while the queue is over the limit ([`Outbox::wait_for_room`]).
//!
//! Order is kept because a direct send happens only under the outbox's lock
//! while nothing is queued and no writer is running; otherwise the bytes go
//! behind what is queued. The lock is the outbox's own: it is never held
//! while blocking, and the registry lock may be held while taking it (never
//! the other way round).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::code::ErrorCode;
use crate::reply::{self, WireLine};

/// Default bound of pending output per session (PROTOCOL.md 5.4).
pub const DEFAULT_LIMIT: usize = 1 << 20;
/// How long a blocked write waits before the writer rechecks whether the
/// session was cut off or is closing.
const WRITE_POLL: Duration = Duration::from_millis(250);
/// How long a closing session's remaining output may take to drain to a
/// peer that does not read, before the connection is dropped anyway.
const LINGER: Duration = Duration::from_secs(5);
/// How long a writer thread waits for more work before it ends.
const WRITER_IDLE: Duration = Duration::from_secs(1);
/// Stack of a writer thread: it only moves bytes and logs.
const WRITER_STACK: usize = 64 * 1024;
/// Send without blocking, and without SIGPIPE on a closed peer.
const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

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

/// The lines of one journal batch (`MSG`, `JOIN`, `LEAVE`), encoded once
/// and shared by every recipient: a room of N sessions costs one push per
/// session per batch, not one per line.
#[derive(Default)]
pub struct MsgBatch {
    /// The lines, back to back.
    bytes: Vec<u8>,
    /// For each line: where it ends in `bytes`, the connection that caused
    /// it, and the change number from which recipients see it (0 for
    /// messages, which every session receives).
    lines: Vec<(usize, u64, u64)>,
    /// The distinct connections that caused lines, usually few.
    authors: Vec<u64>,
    /// The lowest change number of any presence line, if there is one.
    oldest_change: Option<u64>,
}

impl MsgBatch {
    /// Appends `MSG ID TS USER TEXT` sent by connection `author`.
    pub fn push(&mut self, id: i64, ts: i64, user: &str, text: &str, author: u64) {
        let mut line = String::with_capacity(32 + user.len() + text.len());
        reply::push_msg(&mut line, id, ts, user, text);
        self.push_line(line.as_bytes(), author, 0);
    }

    /// Appends an encoded event line caused by connection `origin`; only
    /// sessions logged in before registry change `change` receive it (0:
    /// every session).
    pub fn push_line(&mut self, line: &[u8], origin: u64, change: u64) {
        self.bytes.extend_from_slice(line);
        self.lines.push((self.bytes.len(), origin, change));
        if change != 0 {
            self.oldest_change = Some(self.oldest_change.map_or(change, |oldest| oldest.min(change)));
        }
        if !self.authors.contains(&origin) {
            self.authors.push(origin);
        }
    }

    /// Whether the batch holds no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Whether `to` receives every line (the common case, one slice).
    fn takes_all(&self, to: Recipient) -> bool {
        !self.authors.contains(&to.connection) && self.oldest_change.is_none_or(|oldest| to.since < oldest)
    }

    /// Whether `to` receives the line caused by `origin` at `change`.
    fn is_for(to: Recipient, origin: u64, change: u64) -> bool {
        origin != to.connection && (change == 0 || to.since < change)
    }

    /// Bytes `to` receives of this batch.
    pub fn bytes_for(&self, to: Recipient) -> usize {
        if self.takes_all(to) {
            return self.bytes.len();
        }
        let mut start = 0;
        let mut total = 0;
        for &(end, origin, change) in &self.lines {
            if MsgBatch::is_for(to, origin, change) {
                total += end - start;
            }
            start = end;
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
        let (mut run_start, mut start) = (0, 0);
        for &(end, origin, change) in &self.lines {
            if !MsgBatch::is_for(to, origin, change) {
                if run_start < start {
                    out.push(IoSlice::new(&self.bytes[run_start..start]));
                }
                run_start = end;
            }
            start = end;
        }
        if run_start < start {
            out.push(IoSlice::new(&self.bytes[run_start..start]));
        }
    }
}

/// One item of a session's queue.
enum Outgoing {
    /// A line for this session alone, or shared (JOIN, LEAVE, BYE).
    Line(WireLine),
    /// A batch, without the lines that are not for this session.
    Batch(Arc<MsgBatch>, Recipient),
}

impl Outgoing {
    /// Bytes this item puts on the wire.
    fn len(&self) -> usize {
        match self {
            Outgoing::Line(line) => line.len(),
            Outgoing::Batch(batch, to) => batch.bytes_for(*to),
        }
    }

    /// Appends the item's slices to `out`.
    fn slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        match self {
            Outgoing::Line(line) => out.push(IoSlice::new(line)),
            Outgoing::Batch(batch, to) => batch.slices_for(*to, out),
        }
    }
}

/// The queue behind the outbox's lock.
#[derive(Default)]
struct Queue {
    /// Items not yet fully written, oldest first.
    items: VecDeque<Outgoing>,
    /// Bytes of the first item already written.
    written: usize,
    /// Bytes queued and not yet written (the slow-consumer measure).
    pending: usize,
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
    /// The connection.
    socket: Arc<TcpStream>,
    /// The connection id, for logs and the writer's thread name.
    id: u64,
}

impl Outbox {
    /// Creates the outbox of connection `id` over `socket`.
    ///
    /// # Errors
    /// When the socket's write timeout cannot be set.
    pub fn new(socket: Arc<TcpStream>, limit: usize, id: u64) -> io::Result<Arc<Outbox>> {
        socket.set_write_timeout(Some(WRITE_POLL))?;
        Ok(Arc::new(Outbox {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            state: AtomicU8::new(OPEN),
            limit,
            socket,
            id,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a reply to this session's own command. Never refused for size:
    /// the reader stops reading instead (see [`Outbox::wait_for_room`]).
    pub fn reply(self: &Arc<Self>, line: WireLine) {
        if self.state.load(Ordering::Acquire) != CUT {
            let mut queue = self.lock();
            self.push(&mut queue, Outgoing::Line(line));
        }
    }

    /// Queues the lines of `batch` (messages, JOIN, LEAVE) that are for
    /// `to`. If they would take the queue past its limit the session is cut
    /// off as a slow consumer instead. Returns whether the batch was queued.
    pub fn batch(self: &Arc<Self>, batch: &Arc<MsgBatch>, to: Recipient) -> bool {
        if batch.bytes_for(to) == 0 {
            return true;
        }
        self.push_event(Outgoing::Batch(Arc::clone(batch), to))
    }

    fn push_event(self: &Arc<Self>, item: Outgoing) -> bool {
        if self.state.load(Ordering::Acquire) != OPEN {
            return false;
        }
        let mut queue = self.lock();
        if queue.pending + item.len() > self.limit {
            self.cut_off(&mut queue);
            return false;
        }
        self.push(&mut queue, item)
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
            match SockRef::from(&*self.socket).send_vectored_with_flags(&slices, SEND_FLAGS) {
                Ok(n) if n >= total => return true,
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
    /// still follow. The socket's read side is shut so the session's reader
    /// reads no further commands.
    pub fn bye(self: &Arc<Self>, code: ErrorCode) {
        if self
            .state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let mut queue = self.lock();
            self.push(&mut queue, Outgoing::Line(reply::bye(code)));
            drop(queue);
            let _ = self.socket.shutdown(Shutdown::Read);
        }
    }

    /// Writes what is queued and closes the connection: waits until the
    /// writer is done, or [`LINGER`] passes for a peer that does not read.
    pub fn finish(&self) {
        let deadline = Instant::now() + LINGER;
        let mut queue = self.lock();
        queue.finishing = true;
        if !queue.writer && !queue.closed {
            queue.closed = true;
            let _ = self.socket.shutdown(Shutdown::Write);
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
        while queue.pending > self.limit && !queue.closed && !self.is_closing() {
            queue = self
                .changed
                .wait_timeout(queue, WRITE_POLL)
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
        queue.written = 0;
        queue.pending = 0;
        let _ = self.socket.shutdown(Shutdown::Read);
        if queue.writer {
            // The writer notices within WRITE_POLL and says BYE.
            self.changed.notify_all();
        } else {
            self.say_bye_and_close(queue);
        }
    }

    /// Best effort `BYE slow-consumer` (left out if a line was sent only in
    /// part), then the connection is closed.
    fn say_bye_and_close(&self, queue: &mut Queue) {
        if !queue.mid_line {
            let bye = reply::bye(ErrorCode::SlowConsumer);
            let _ = SockRef::from(&*self.socket).send_with_flags(&bye, SEND_FLAGS);
        }
        self.close_now(queue);
    }

    /// Closes the connection at once, discarding what is queued.
    fn close_now(&self, queue: &mut Queue) {
        queue.closed = true;
        queue.items.clear();
        queue.pending = 0;
        let _ = self.socket.shutdown(Shutdown::Both);
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
            if queue.items.is_empty() {
                if queue.finishing {
                    queue.closed = true;
                    let _ = self.socket.shutdown(Shutdown::Write);
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
    /// through write timeouts until the session is cut off or has been
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
            match (&*self.socket).write_vectored(rest) {
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

    fn received(batch: &MsgBatch, connection: u64, since: u64) -> String {
        let to = Recipient { connection, since };
        let mut slices = Vec::new();
        batch.slices_for(to, &mut slices);
        let bytes: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(bytes.len(), batch.bytes_for(to));
        String::from_utf8(bytes).unwrap()
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
        let mut batch = MsgBatch::default();
        batch.push(1, 10, "ana", "a", 7);
        batch.push(2, 10, "juan", "b", 8);
        batch.push(3, 10, "ana", "c", 7);
        batch.push(4, 10, "ana", "d", 9);
        assert_eq!(
            received(&batch, 1, 5),
            "MSG 1 10 ana a\nMSG 2 10 juan b\nMSG 3 10 ana c\nMSG 4 10 ana d\n"
        );
        assert_eq!(received(&batch, 7, 5), "MSG 2 10 juan b\nMSG 4 10 ana d\n");
        assert_eq!(
            received(&batch, 8, 5),
            "MSG 1 10 ana a\nMSG 3 10 ana c\nMSG 4 10 ana d\n"
        );
        assert_eq!(
            received(&batch, 9, 5),
            "MSG 1 10 ana a\nMSG 2 10 juan b\nMSG 3 10 ana c\n"
        );
    }

    #[test]
    fn presence_lines_reach_only_sessions_logged_in_before_the_change() {
        let mut batch = MsgBatch::default();
        batch.push_line(b"JOIN x\n", 3, 10);
        batch.push(1, 10, "ana", "a", 7);
        batch.push_line(b"LEAVE x\n", 3, 12);
        // Logged in before both changes: everything.
        assert_eq!(received(&batch, 1, 9), "JOIN x\nMSG 1 10 ana a\nLEAVE x\n");
        // Logged in between them: only the LEAVE.
        assert_eq!(received(&batch, 2, 11), "MSG 1 10 ana a\nLEAVE x\n");
        // Logged in after both: neither, but every message.
        assert_eq!(received(&batch, 4, 12), "MSG 1 10 ana a\n");
        // The session that caused them: neither.
        assert_eq!(received(&batch, 3, 9), "MSG 1 10 ana a\n");
    }
}
