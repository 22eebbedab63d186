//! The client's end of the TCP connection: connecting, writing command
//! lines, and the reader thread that turns the server's bytes into parsed
//! [`ServerLine`]s on a channel.
//!
//! The socket is split in two: the reader thread owns a clone and only
//! reads (with the line length bounded while reading, never after buffering
//! a whole line); the main thread owns the other and only writes. This
//! module matches no reply to any command and prints nothing: that is the
//! session's job.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::ClientError;
use crate::proto::charla::{PROTOCOL_VERSION, ServerLine};
use crate::proto::frame::{Frame, LineReader};

/// The longest server line the client accepts, newline included. The
/// server's lines are far shorter (4 KiB by default); anything longer is
/// dropped while it is read, so a broken server cannot make the client
/// buffer without bound.
pub const MAX_SERVER_LINE: usize = 64 * 1024;

/// How long connecting to one address, and then waiting for `HELLO`, may
/// take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one write may block: a server that stops reading for this long
/// is treated as a lost connection rather than freezing the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines the reader thread may queue ahead of the main thread. When it is
/// full the reader stops reading, and TCP pushes back on the server (which
/// then applies its slow-consumer rule) instead of the client's memory
/// growing.
const QUEUE: usize = 1024;

/// What the reader thread reports, in the order it read it.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed server line.
    Line(ServerLine),
    /// A line that is not UTF-8 or not a protocol-1 server line.
    Unparsable,
    /// A line longer than [`MAX_SERVER_LINE`]; its bytes were skipped.
    TooLong,
    /// The server closed the connection. Nothing follows.
    Closed,
    /// Reading failed (reset, say). Nothing follows.
    Failed(io::Error),
}

/// An open connection that has received the server's `HELLO`. Dropping it
/// shuts the socket down, which also ends its reader thread.
pub struct Connection {
    /// The address as the user gave it, for the messages that name it.
    addr: String,
    /// The write half; the reader thread holds a clone for reading.
    writer: TcpStream,
    /// Server lines from the reader thread.
    incoming: Receiver<Incoming>,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), starts the reader thread and waits
    /// for `HELLO charla 1 NODE`.
    ///
    /// # Errors
    /// [`ClientError::Refused`], [`ClientError::Unresolved`] or
    /// [`ClientError::Connect`] when no connection could be made;
    /// [`ClientError::Closed`] when the server answers `BYE` (it is full);
    /// [`ClientError::Version`] or [`ClientError::Protocol`] when it does not
    /// speak protocol 1; [`ClientError::Lost`] when it hangs up first.
    pub fn open(addr: &str) -> Result<Connection, ClientError> {
        Connection::open_within(addr, CONNECT_TIMEOUT)
    }

    /// [`Connection::open`] with connecting, and then waiting for `HELLO`,
    /// each bounded by `limit` as well (a client that reconnects has a
    /// deadline of its own).
    ///
    /// # Errors
    /// As [`Connection::open`].
    pub fn open_within(addr: &str, limit: Duration) -> Result<Connection, ClientError> {
        let limit = limit.min(CONNECT_TIMEOUT).max(Duration::from_millis(1));
        let stream = connect(addr, limit)?;
        let failed = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        // Chat lines are small and should leave at once.
        stream.set_nodelay(true).map_err(failed)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(failed)?;
        let reading = stream.try_clone().map_err(failed)?;
        let (sender, incoming) = crossbeam_channel::bounded(QUEUE);
        thread::Builder::new()
            .name("server-reader".into())
            .spawn(move || read_lines(reading, &sender))
            .map_err(failed)?;
        let connection = Connection {
            addr: addr.to_string(),
            writer: stream,
            incoming,
        };
        connection.expect_hello(limit)?;
        Ok(connection)
    }

    /// The address as the user gave it.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// This end's address: the address the client reaches the server from,
    /// which its file endpoint listens on by default.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.writer.local_addr().ok()
    }

    /// Server lines, in order, as the reader thread parsed them.
    pub fn incoming(&self) -> &Receiver<Incoming> {
        &self.incoming
    }

    /// Sends one command line; `line` has no newline.
    ///
    /// # Errors
    /// The socket's error when the line cannot be written: the connection
    /// is gone, or the server stopped reading for too long.
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.writer.write_all(&bytes)
    }

    /// Waits for the greeting; a `BYE` instead of it means the server will
    /// not take this connection (PROTOCOL.md 5.5, `server-full`).
    fn expect_hello(&self, limit: Duration) -> Result<(), ClientError> {
        let addr = || self.addr.clone();
        match self.incoming.recv_timeout(limit) {
            Ok(Incoming::Line(ServerLine::Hello { version, .. })) if version == PROTOCOL_VERSION.to_string() => Ok(()),
            Ok(Incoming::Line(ServerLine::Hello { version, .. })) => {
                Err(ClientError::Version { addr: addr(), version })
            }
            Ok(Incoming::Line(ServerLine::Bye { code, text })) => Err(ClientError::Closed {
                addr: addr(),
                code,
                text,
                unconfirmed: 0,
            }),
            Ok(Incoming::Closed | Incoming::Failed(_)) | Err(RecvTimeoutError::Disconnected) => {
                Err(ClientError::Lost {
                    addr: addr(),
                    unconfirmed: 0,
                })
            }
            Ok(_) => Err(ClientError::Protocol {
                addr: addr(),
                detail: "the first line is not HELLO",
            }),
            Err(RecvTimeoutError::Timeout) => Err(ClientError::NoReply {
                addr: addr(),
                secs: limit.as_secs(),
                unconfirmed: 0,
            }),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The reader thread holds a clone of the socket: without this a
        // connection to a server that stopped answering would stay open.
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// Resolves `addr` and tries each address in turn, as `nc` would, each
/// for at most `limit`.
fn connect(addr: &str, limit: Duration) -> Result<TcpStream, ClientError> {
    let unresolved = || ClientError::Unresolved { addr: addr.to_string() };
    let candidates: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|_| unresolved())?.collect();
    let mut last = None;
    for candidate in candidates {
        match TcpStream::connect_timeout(&candidate, limit) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error),
        }
    }
    match last {
        None => Err(unresolved()),
        Some(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            Err(ClientError::Refused { addr: addr.to_string() })
        }
        Some(source) => Err(ClientError::Connect {
            addr: addr.to_string(),
            source,
        }),
    }
}

/// The reader thread: bounded lines in, parsed lines out, until the
/// connection ends or the main thread stops listening.
fn read_lines(stream: TcpStream, out: &Sender<Incoming>) {
    let mut reader = LineReader::new(stream, MAX_SERVER_LINE);
    loop {
        let incoming = match reader.read_frame() {
            Ok(Frame::Line(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|line| ServerLine::parse(line).ok())
                .map_or(Incoming::Unparsable, Incoming::Line),
            Ok(Frame::TooLong) => Incoming::TooLong,
            Ok(Frame::Eof) => Incoming::Closed,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => Incoming::Failed(error),
        };
        let last = matches!(incoming, Incoming::Closed | Incoming::Failed(_));
        if out.send(incoming).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    use super::*;

    /// A one-connection fake server that writes `script` and then keeps
    /// reading until the client is gone.
    fn fake_server(script: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(script).unwrap();
            let mut lines = BufReader::new(stream).lines();
            while let Some(Ok(_)) = lines.next() {}
        });
        addr
    }

    #[test]
    fn reads_hello_then_lines_in_order() {
        let addr = fake_server(b"HELLO charla 1 n\nJOIN ana\r\nnonsense\nMSG 1 2 ana hola\n");
        let connection = Connection::open(&addr).unwrap();
        let next = || connection.incoming().recv_timeout(CONNECT_TIMEOUT).unwrap();
        assert!(matches!(next(), Incoming::Line(ServerLine::Join(user)) if user == "ana"));
        assert!(matches!(next(), Incoming::Unparsable));
        assert!(matches!(next(), Incoming::Line(ServerLine::Msg(m)) if m.text == "hola"));
    }

    #[test]
    fn a_full_server_says_bye_instead_of_hello() {
        let addr = fake_server(b"BYE server-full too many connections\n");
        match Connection::open(&addr) {
            Err(ClientError::Closed { code, .. }) => assert_eq!(code, Some(crate::core::code::ErrorCode::ServerFull)),
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let addr = fake_server(b"HELLO charla 2 n\n");
        assert!(matches!(Connection::open(&addr), Err(ClientError::Version { version, .. }) if version == "2"));
    }

    #[test]
    fn refused_and_unresolvable_addresses_are_told_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(matches!(Connection::open(&addr), Err(ClientError::Refused { .. })));
        assert!(matches!(
            Connection::open("no port here"),
            Err(ClientError::Unresolved { .. })
        ));
    }

    #[test]
    fn over_long_lines_are_skipped_without_losing_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"HELLO charla 1 n\nMSG 1 2 ana ").unwrap();
            stream.write_all(&vec![b'x'; MAX_SERVER_LINE * 2]).unwrap();
            stream.write_all(b"\nJOIN juan\n").unwrap();
        });
        let connection = Connection::open(&addr).unwrap();
        let next = || connection.incoming().recv_timeout(CONNECT_TIMEOUT).unwrap();
        assert!(matches!(next(), Incoming::TooLong));
        assert!(matches!(next(), Incoming::Line(ServerLine::Join(user)) if user == "juan"));
        assert!(matches!(next(), Incoming::Closed));
    }
}
