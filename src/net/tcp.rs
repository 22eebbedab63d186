//! Plain TCP as a [`Transport`].
//!
//! Sends that must not block use `send` with `MSG_DONTWAIT` (and
//! `MSG_NOSIGNAL`, so a closed peer is an error, not a signal); blocking
//! sends use the socket's write timeout, so a writer thread wakes up
//! regularly to notice a session being cut off or closed.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use socket2::SockRef;

use crate::core::transport::Transport;

/// How long a blocked send waits before the writer rechecks whether the
/// session was cut off or is closing.
const WRITE_POLL: Duration = Duration::from_millis(250);
/// Send without blocking, and without SIGPIPE on a closed peer.
const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// A TCP connection.
pub struct TcpTransport {
    /// The socket, read by the session's thread and written by its outbox.
    stream: TcpStream,
}

impl TcpTransport {
    /// Wraps an accepted connection: no Nagle delay (chat lines are small
    /// and should leave at once) and the write poll interval.
    ///
    /// # Errors
    /// When the socket's write timeout cannot be set.
    pub fn new(stream: TcpStream) -> io::Result<TcpTransport> {
        let _ = stream.set_nodelay(true);
        stream.set_write_timeout(Some(WRITE_POLL))?;
        Ok(TcpTransport { stream })
    }
}

impl Transport for TcpTransport {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream).read(buf)
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    fn send_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        SockRef::from(&self.stream).send_vectored_with_flags(bufs, SEND_FLAGS)
    }

    fn send(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.stream).write_vectored(bufs)
    }

    fn shutdown(&self, how: Shutdown) {
        let _ = self.stream.shutdown(how);
    }
}
