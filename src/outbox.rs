//! A session's outgoing queue and the writer thread that drains it.
//!
//! Every line a session receives (its replies, other people's messages,
//! JOIN/LEAVE, BYE) is pushed here by whichever thread produced it; only the
//! writer thread touches the socket's write side. Pushing never blocks, so no
//! thread ever waits on another session's socket (PROTOCOL.md 5.4):
//!
//! - events that would take the pending bytes past the limit cut the session
//!   off as a slow consumer (`BYE slow-consumer`, best effort) instead;
//! - replies are always queued, and the session's own thread stops reading
//!   commands while the queue is over the limit ([`Outbox::wait_for_room`]).
//!
//! The writer coalesces: it blocks for one line, then takes everything else
//! queued and writes it with one vectored write.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

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
/// Most lines written by one vectored write.
const MAX_BATCH: usize = 512;
/// Stack of a writer thread: it only moves bytes and logs.
const WRITER_STACK: usize = 64 * 1024;

/// Still delivering everything.
const OPEN: u8 = 0;
/// A BYE was queued (shutdown, login timeout): further events are dropped,
/// replies still go out, then the connection closes.
const CLOSING: u8 = 1;
/// Cut off as a slow consumer: pending output is thrown away.
const CUT: u8 = 2;

/// The `MSG` lines of one committed batch, encoded once and shared by every
/// recipient: a room of N sessions costs one queue push per session per
/// batch, not one per message.
#[derive(Default)]
pub struct MsgBatch {
    /// The lines, back to back.
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`, and the connection that sent it
    /// (which does not receive its own message).
    lines: Vec<(usize, u64)>,
    /// The distinct sending connections, usually few.
    authors: Vec<u64>,
}

impl MsgBatch {
    /// Appends `MSG ID TS USER TEXT` sent by connection `author`.
    pub fn push(&mut self, id: i64, ts: i64, user: &str, text: &str, author: u64) {
        let mut line = String::with_capacity(32 + user.len() + text.len());
        reply::push_msg(&mut line, id, ts, user, text);
        self.bytes.extend_from_slice(line.as_bytes());
        self.lines.push((self.bytes.len(), author));
        if !self.authors.contains(&author) {
            self.authors.push(author);
        }
    }

    /// Whether the batch holds no line.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Bytes connection `me` receives of this batch (all but its own lines).
    pub fn bytes_for(&self, me: u64) -> usize {
        if !self.authors.contains(&me) {
            return self.bytes.len();
        }
        let mut start = 0;
        let mut total = 0;
        for &(end, author) in &self.lines {
            if author != me {
                total += end - start;
            }
            start = end;
        }
        total
    }

    /// Appends to `out` the slices connection `me` receives, merging runs
    /// of consecutive lines into one slice.
    fn slices_for<'a>(&'a self, me: u64, out: &mut Vec<IoSlice<'a>>) {
        if !self.authors.contains(&me) {
            out.push(IoSlice::new(&self.bytes));
            return;
        }
        let (mut run_start, mut start) = (0, 0);
        for &(end, author) in &self.lines {
            if author == me {
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
    /// A batch of messages, without the lines the connection sent itself.
    Batch(Arc<MsgBatch>, u64),
    /// Write what came before, then close.
    Finish,
}

/// The outgoing side of one connection.
pub struct Outbox {
    /// Items for the writer.
    queue: Sender<Outgoing>,
    /// Bytes pushed and not yet written.
    pending: AtomicUsize,
    /// The slow-consumer bound on `pending`.
    limit: usize,
    /// `OPEN`, `CLOSING` or `CUT`.
    state: AtomicU8,
    /// The connection, shut down here when the session is cut off.
    socket: Arc<TcpStream>,
    /// The session's reader thread, woken when room frees up.
    reader: Thread,
    /// Set by the reader while it waits for room.
    reader_waiting: AtomicBool,
}

impl Outbox {
    /// Creates the outbox of `socket` and starts its writer. Must be called
    /// on the session's reader thread (it is the thread woken for room).
    ///
    /// # Errors
    /// When the socket option cannot be set or the thread cannot start.
    pub fn open(socket: Arc<TcpStream>, limit: usize, name: String) -> io::Result<(Arc<Outbox>, JoinHandle<()>)> {
        socket.set_write_timeout(Some(WRITE_POLL))?;
        let (queue, lines) = unbounded();
        let outbox = Arc::new(Outbox {
            queue,
            pending: AtomicUsize::new(0),
            limit,
            state: AtomicU8::new(OPEN),
            socket,
            reader: thread::current(),
            reader_waiting: AtomicBool::new(false),
        });
        let writer = Arc::clone(&outbox);
        let handle = thread::Builder::new()
            .name(name)
            .stack_size(WRITER_STACK)
            .spawn(move || writer.drain(&lines))?;
        Ok((outbox, handle))
    }

    /// Queues a reply to this session's own command. Never refused for size:
    /// the reader stops reading instead (see [`Outbox::wait_for_room`]).
    pub fn reply(&self, line: WireLine) {
        if self.state.load(Ordering::Acquire) == CUT {
            return;
        }
        self.pending.fetch_add(line.len(), Ordering::AcqRel);
        let _ = self.queue.send(Outgoing::Line(line));
    }

    /// Queues a batch of messages for connection `me` (its own lines are
    /// left out); like [`Outbox::event`], it cuts a slow consumer off.
    /// Returns whether the batch was queued.
    pub fn batch(&self, batch: &Arc<MsgBatch>, me: u64) -> bool {
        let size = batch.bytes_for(me);
        if size == 0 {
            return true;
        }
        self.admit(size) && self.queue.send(Outgoing::Batch(Arc::clone(batch), me)).is_ok()
    }

    /// Counts `size` more pending event bytes, or cuts the session off if
    /// they do not fit.
    fn admit(&self, size: usize) -> bool {
        if self.state.load(Ordering::Acquire) != OPEN {
            return false;
        }
        let before = self.pending.fetch_add(size, Ordering::AcqRel);
        if before + size > self.limit {
            self.pending.fetch_sub(size, Ordering::AcqRel);
            self.cut_off();
            return false;
        }
        true
    }

    /// Queues an event (MSG, JOIN, LEAVE). If it would take the queue past
    /// its limit the session is cut off instead. Returns whether the event
    /// was queued.
    pub fn event(&self, line: &WireLine) -> bool {
        self.admit(line.len()) && self.queue.send(Outgoing::Line(Arc::clone(line))).is_ok()
    }

    /// Queues `BYE code` and stops queuing events; replies already due may
    /// still follow. The socket's read side is shut so the session's reader
    /// reads no further commands.
    pub fn bye(&self, code: ErrorCode) {
        if self
            .state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let line = reply::bye(code);
            self.pending.fetch_add(line.len(), Ordering::AcqRel);
            let _ = self.queue.send(Outgoing::Line(line));
            let _ = self.socket.shutdown(Shutdown::Read);
        }
    }

    /// Asks the writer to write what is queued and close the connection.
    pub fn finish(&self) {
        let _ = self.queue.send(Outgoing::Finish);
    }

    /// Whether the session is closing or was cut off: its reader must stop.
    pub fn is_closing(&self) -> bool {
        self.state.load(Ordering::Acquire) != OPEN
    }

    /// Whether the session was cut off as a slow consumer.
    pub fn is_cut(&self) -> bool {
        self.state.load(Ordering::Acquire) == CUT
    }

    /// Blocks the session's reader while more than the limit is pending, so
    /// a client that pipelines and never reads stalls only itself.
    pub fn wait_for_room(&self) {
        while self.pending.load(Ordering::Acquire) > self.limit && !self.is_closing() {
            self.reader_waiting.store(true, Ordering::Release);
            if self.pending.load(Ordering::Acquire) <= self.limit {
                break;
            }
            thread::park_timeout(WRITE_POLL);
        }
        self.reader_waiting.store(false, Ordering::Release);
    }

    /// Marks the session a slow consumer and wakes everything that serves it.
    fn cut_off(&self) {
        let previous = self.state.swap(CUT, Ordering::AcqRel);
        if previous != CUT {
            log::warn!("{}: cut off as a slow consumer", thread_label(&self.reader));
            // Wakes a writer idle in recv; it sees CUT and sends the BYE.
            let _ = self.queue.send(Outgoing::Line(reply::bye(ErrorCode::SlowConsumer)));
            let _ = self.socket.shutdown(Shutdown::Read);
        }
    }

    /// The writer thread's loop.
    fn drain(&self, lines: &Receiver<Outgoing>) {
        let mut batch: Vec<Outgoing> = Vec::with_capacity(16);
        let mut finished = false;
        while !finished {
            let Ok(first) = lines.recv() else { break };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match lines.try_recv() {
                    Ok(line) => batch.push(line),
                    Err(_) => break,
                }
            }
            if let Some(end) = batch.iter().position(|item| matches!(item, Outgoing::Finish)) {
                batch.truncate(end);
                finished = true;
            }
            if self.is_cut() {
                break;
            }
            let bytes: usize = batch
                .iter()
                .map(|item| match item {
                    Outgoing::Line(line) => line.len(),
                    Outgoing::Batch(batch, me) => batch.bytes_for(*me),
                    Outgoing::Finish => 0,
                })
                .sum();
            let written = self.write_all(&batch, finished);
            batch.clear();
            let left = self.pending.fetch_sub(bytes, Ordering::AcqRel) - bytes;
            if left <= self.limit && self.reader_waiting.load(Ordering::Acquire) {
                self.reader.unpark();
            }
            if let Err(e) = written {
                log::debug!("{}: write failed: {e}", thread_label(&self.reader));
                // The peer is gone: stop queuing for it and make the reader
                // (possibly waiting for room) see it too.
                let _ = self
                    .state
                    .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire);
                self.reader.unpark();
                let _ = self.socket.shutdown(Shutdown::Both);
                return;
            }
        }
        if self.is_cut() {
            let bye = reply::bye(ErrorCode::SlowConsumer);
            let _ = (&*self.socket).write(&bye);
            let _ = self.socket.shutdown(Shutdown::Both);
        } else {
            let _ = self.socket.shutdown(Shutdown::Write);
        }
        self.reader.unpark();
    }

    /// Writes every line, retrying through write timeouts until the session
    /// is cut off or has been closing (or `finishing`, the session's last
    /// batch) for longer than [`LINGER`].
    fn write_all(&self, batch: &[Outgoing], finishing: bool) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Outgoing::Line(line) => slices.push(IoSlice::new(line)),
                Outgoing::Batch(batch, me) => batch.slices_for(*me, &mut slices),
                Outgoing::Finish => {}
            }
        }
        let mut rest = &mut slices[..];
        let mut closing_since: Option<Instant> = None;
        while !rest.is_empty() {
            match (&*self.socket).write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
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

/// A short name for logs: the reader thread's name (`session-ID`).
fn thread_label(thread: &Thread) -> &str {
    thread.name().unwrap_or("session")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(batch: &MsgBatch, me: u64) -> String {
        let mut slices = Vec::new();
        batch.slices_for(me, &mut slices);
        let bytes: Vec<u8> = slices.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(bytes.len(), batch.bytes_for(me));
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_batch_leaves_out_only_the_recipients_own_lines() {
        let mut batch = MsgBatch::default();
        batch.push(1, 10, "ana", "a", 7);
        batch.push(2, 10, "juan", "b", 8);
        batch.push(3, 10, "ana", "c", 7);
        batch.push(4, 10, "ana", "d", 9);
        assert_eq!(
            received(&batch, 1),
            "MSG 1 10 ana a\nMSG 2 10 juan b\nMSG 3 10 ana c\nMSG 4 10 ana d\n"
        );
        assert_eq!(received(&batch, 7), "MSG 2 10 juan b\nMSG 4 10 ana d\n");
        assert_eq!(received(&batch, 8), "MSG 1 10 ana a\nMSG 3 10 ana c\nMSG 4 10 ana d\n");
        assert_eq!(received(&batch, 9), "MSG 1 10 ana a\nMSG 2 10 juan b\nMSG 3 10 ana c\n");
    }
}
