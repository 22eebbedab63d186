//! The byte pipe under a connection: what a session reads from and its
//! outbox writes to, whatever carries the bytes (plain TCP today, TLS next).
//!
//! The outbox's fast path needs a send that never blocks, and its writer
//! thread a send that blocks only for a bounded time, so it can notice a
//! session being cut off or closed; both are part of the trait, with
//! `pending`/`flush` for transports that hold bytes they took (TLS). The
//! session needs reads with a timeout, for the login deadline.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::time::Duration;

/// A connection's byte stream, shared by its reader and its outbox.
pub trait Transport: Send + Sync {
    /// Reads what has arrived: blocks until something does (`Ok(n)`), the
    /// peer closes (`Ok(0)`), or the read timeout passes (`WouldBlock` or
    /// `TimedOut`).
    ///
    /// # Errors
    /// The transport's read error, or a timeout as above.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Sets how long [`Transport::read`] may block; `None` for no limit.
    ///
    /// # Errors
    /// When the transport cannot set it.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Sends what the connection takes right now, without blocking; returns
    /// how many bytes of `bufs` it took (`WouldBlock` for none).
    ///
    /// # Errors
    /// `WouldBlock` when nothing could be sent, or the transport's error.
    fn send_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Sends, blocking at most for the transport's write poll interval;
    /// returns how many bytes of `bufs` it took.
    ///
    /// # Errors
    /// `WouldBlock` or `TimedOut` when the interval passed with nothing
    /// sent, or the transport's error.
    fn send(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Shuts down reading, writing or both. Never fails: a connection that
    /// is already gone is shut.
    fn shutdown(&self, how: Shutdown);

    /// Whether bytes the transport took earlier are not on the wire yet (a
    /// TLS transport encrypts what it takes and may hold the result while
    /// the peer's window is full). The outbox keeps its writer running
    /// until this is false.
    fn pending(&self) -> bool {
        false
    }

    /// Writes pending bytes, blocking at most for the write poll interval.
    ///
    /// # Errors
    /// `WouldBlock` or `TimedOut` when the interval passed with bytes
    /// still pending, or the transport's error.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// An in-memory transport for tests of the core without sockets: the test
/// feeds what the "peer" sends and reads what the server wrote, and can
/// bound how much the "peer" accepts to play a slow reader.
#[cfg(test)]
pub mod memory {
    use std::collections::VecDeque;
    use std::io::{self, IoSlice};
    use std::net::Shutdown;
    use std::sync::{Condvar, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    use super::Transport;

    /// How long a blocking send waits for room, like a socket's write
    /// timeout.
    const POLL: Duration = Duration::from_millis(50);

    #[derive(Default)]
    struct State {
        inbound: VecDeque<u8>,
        outbound: Vec<u8>,
        /// Most bytes `outbound` may hold before sends stall.
        room: usize,
        read_closed: bool,
        write_closed: bool,
        peer_closed: bool,
        read_timeout: Option<Duration>,
    }

    /// Both ends of an in-memory connection.
    pub struct MemoryTransport {
        state: Mutex<State>,
        changed: Condvar,
    }

    impl MemoryTransport {
        /// A connection whose peer holds at most `room` unread bytes.
        pub fn new(room: usize) -> MemoryTransport {
            MemoryTransport {
                state: Mutex::new(State {
                    room,
                    ..State::default()
                }),
                changed: Condvar::new(),
            }
        }

        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// The peer sends `bytes`.
        pub fn feed(&self, bytes: &[u8]) {
            self.lock().inbound.extend(bytes);
            self.changed.notify_all();
        }

        /// The peer closes its sending side.
        pub fn close_input(&self) {
            self.lock().peer_closed = true;
            self.changed.notify_all();
        }

        /// Takes everything written so far (the peer reads it).
        pub fn take_output(&self) -> String {
            let out = std::mem::take(&mut self.lock().outbound);
            self.changed.notify_all();
            String::from_utf8(out).expect("the server writes UTF-8")
        }

        /// Waits up to `limit` until the output holds `lines` complete
        /// lines, then takes it.
        pub fn wait_lines(&self, lines: usize, limit: Duration) -> String {
            let deadline = Instant::now() + limit;
            let mut state = self.lock();
            while state.outbound.iter().filter(|&&b| b == b'\n').count() < lines && Instant::now() < deadline {
                state = self
                    .changed
                    .wait_timeout(state, POLL)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let out = std::mem::take(&mut state.outbound);
            drop(state);
            self.changed.notify_all();
            String::from_utf8(out).expect("the server writes UTF-8")
        }

        /// Whether the server shut its writing side.
        pub fn write_closed(&self) -> bool {
            self.lock().write_closed
        }

        fn push(state: &mut State, bufs: &[IoSlice<'_>]) -> usize {
            let mut taken = 0;
            for buf in bufs {
                let room = state.room.saturating_sub(state.outbound.len());
                let n = room.min(buf.len());
                state.outbound.extend_from_slice(&buf[..n]);
                taken += n;
                if n < buf.len() {
                    break;
                }
            }
            taken
        }
    }

    impl Transport for MemoryTransport {
        fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
            let deadline = self.lock().read_timeout.map(|t| Instant::now() + t);
            let mut state = self.lock();
            loop {
                if state.read_closed {
                    return Ok(0);
                }
                if !state.inbound.is_empty() {
                    let n = buf.len().min(state.inbound.len());
                    for (slot, byte) in buf.iter_mut().zip(state.inbound.drain(..n)) {
                        *slot = byte;
                    }
                    return Ok(n);
                }
                if state.peer_closed {
                    return Ok(0);
                }
                let wait = match deadline {
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(io::ErrorKind::WouldBlock.into());
                        }
                        left.min(POLL)
                    }
                    None => POLL,
                };
                state = self
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }

        fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
            self.lock().read_timeout = timeout;
            Ok(())
        }

        fn send_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut state = self.lock();
            if state.write_closed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            match MemoryTransport::push(&mut state, bufs) {
                0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
                n => {
                    self.changed.notify_all();
                    Ok(n)
                }
            }
        }

        fn send(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let deadline = Instant::now() + POLL;
            let mut state = self.lock();
            loop {
                if state.write_closed {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                let n = MemoryTransport::push(&mut state, bufs);
                if n > 0 || bufs.iter().all(|b| b.is_empty()) {
                    self.changed.notify_all();
                    return Ok(n);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                state = self
                    .changed
                    .wait_timeout(state, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }

        fn shutdown(&self, how: Shutdown) {
            let mut state = self.lock();
            match how {
                Shutdown::Read => state.read_closed = true,
                Shutdown::Write => state.write_closed = true,
                Shutdown::Both => {
                    state.read_closed = true;
                    state.write_closed = true;
                }
            }
            drop(state);
            self.changed.notify_all();
        }
    }
}
