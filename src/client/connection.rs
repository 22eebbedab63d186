//! The client's end of the connection, plain TCP or TLS (`--tls`):
//! connecting, writing command lines, and the reader thread that turns the
//! server's bytes into parsed [`ServerLine`]s on a channel.
//!
//! The connection is split in two: the reader thread only reads (with the
//! line length bounded while reading, never after buffering a whole line);
//! the main thread only writes. In plain text each owns a handle of the
//! socket; over TLS both share one [`TlsTransport`], which locks its TLS
//! state only to decrypt or encrypt, never across a socket read, so the
//! reader blocked on the socket does not hold up a write. The TLS handshake,
//! with the verification of the server's certificate and name, happens in
//! [`Connection::open`], before the reader starts, so its failure is told
//! as such ([`ClientError::Tls`]); every reconnection does its own.
//!
//! This module matches no reply to any command and prints nothing: that is
//! the session's job.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::ClientError;
use super::tls::{TlsFailure, server_name};
use crate::core::transport::Transport;
use crate::net::tls::TlsTransport;
use crate::proto::charla::{PROTOCOL_VERSION, ServerLine};
use crate::proto::frame::{Frame, LineReader};

/// The client's TLS settings (`--tls`): which certificates it trusts.
pub type TlsConfig = Arc<rustls::ClientConfig>;

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
    /// The writing side; the reader thread reads through its own handle.
    writer: Writer,
    /// This end's address, for the file endpoint's default address.
    local: Option<SocketAddr>,
    /// Server lines from the reader thread.
    incoming: Receiver<Incoming>,
}

/// What the main thread writes to.
enum Writer {
    /// Plain text: the socket (the reader thread holds a clone).
    Plain(TcpStream),
    /// TLS: the transport the reader thread shares.
    Tls(Arc<TlsTransport>),
}

/// The reader thread's side of a TLS connection.
struct TlsReader(Arc<TlsTransport>);

impl Read for TlsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match Transport::read(&*self.0, buf) {
                // No read timeout is set: this is the transport's bounded
                // wait to write what the writer left held while the server
                // was slow to read; the connection is fine, try again.
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                other => return other,
            }
        }
    }
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`), in TLS with `tls` (verifying the
    /// server's certificate and that it is valid for the host part of
    /// `addr`), starts the reader thread and waits for `HELLO charla 1
    /// NODE`.
    ///
    /// # Errors
    /// [`ClientError::Refused`], [`ClientError::Unresolved`] or
    /// [`ClientError::Connect`] when no connection could be made;
    /// [`ClientError::Tls`] when the certificate does not verify or the
    /// handshake fails; [`ClientError::Closed`] when the server answers
    /// `BYE` (it is full); [`ClientError::Version`] or
    /// [`ClientError::Protocol`] when it does not speak protocol 1;
    /// [`ClientError::Lost`] when it hangs up first.
    pub fn open(addr: &str, tls: Option<&TlsConfig>) -> Result<Connection, ClientError> {
        Connection::open_within(addr, CONNECT_TIMEOUT, tls)
    }

    /// [`Connection::open`] with connecting, the TLS handshake and then
    /// waiting for `HELLO` each bounded by `limit` as well (a client that
    /// reconnects has a deadline of its own).
    ///
    /// # Errors
    /// As [`Connection::open`].
    pub fn open_within(addr: &str, limit: Duration, tls: Option<&TlsConfig>) -> Result<Connection, ClientError> {
        let limit = limit.min(CONNECT_TIMEOUT).max(Duration::from_millis(1));
        let stream = connect(addr, limit)?;
        let failed = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        // Chat lines are small and should leave at once.
        stream.set_nodelay(true).map_err(failed)?;
        let local = stream.local_addr().ok();
        let (writer, incoming) = match tls {
            None => {
                stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(failed)?;
                let reading = stream.try_clone().map_err(failed)?;
                (Writer::Plain(stream), spawn_reader(reading).map_err(failed)?)
            }
            Some(config) => {
                let transport = Arc::new(handshake(stream, addr, config, limit)?);
                transport.set_read_timeout(None).map_err(failed)?;
                let reading = TlsReader(Arc::clone(&transport));
                (Writer::Tls(transport), spawn_reader(reading).map_err(failed)?)
            }
        };
        let connection = Connection {
            addr: addr.to_string(),
            writer,
            local,
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
        self.local
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
        match &self.writer {
            Writer::Plain(stream) => {
                let mut out: &TcpStream = stream;
                out.write_all(&bytes)
            }
            Writer::Tls(transport) => send_tls(transport, &bytes),
        }
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
        // The reader thread holds a handle of the socket: without this a
        // connection to a server that stopped answering would stay open.
        match &self.writer {
            Writer::Plain(stream) => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            // Says close_notify first, without blocking.
            Writer::Tls(transport) => transport.shutdown(Shutdown::Both),
        }
    }
}

/// The TLS handshake on a connected socket, within `limit`: the server's
/// certificate must verify with `config` and be valid for the host part of
/// `addr`.
fn handshake(stream: TcpStream, addr: &str, config: &TlsConfig, limit: Duration) -> Result<TlsTransport, ClientError> {
    let failure = |failure| ClientError::Tls {
        addr: addr.to_string(),
        failure,
    };
    let name = server_name(addr).ok_or_else(|| {
        failure(TlsFailure::Handshake(
            "the address has no host name or IP address to verify the certificate against".into(),
        ))
    })?;
    let transport = TlsTransport::client(stream, Arc::clone(config), name).map_err(|source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    })?;
    match transport.complete_handshake(Instant::now() + limit) {
        Ok(()) => Ok(transport),
        Err(error) => {
            // Sends the alert that tells the server why, if there is one.
            transport.shutdown(Shutdown::Both);
            Err(match TlsFailure::in_io(&error) {
                Some(why) => failure(why),
                None if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    ClientError::NoReply {
                        addr: addr.to_string(),
                        secs: limit.as_secs(),
                        unconfirmed: 0,
                    }
                }
                None => ClientError::Lost {
                    addr: addr.to_string(),
                    unconfirmed: 0,
                },
            })
        }
    }
}

/// Writes all of `bytes` over TLS, as a blocking write with
/// [`WRITE_TIMEOUT`] would: the transport blocks only briefly per call.
fn send_tls(transport: &TlsTransport, bytes: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    let mut sent = 0;
    while sent < bytes.len() || transport.pending() {
        let step = if sent < bytes.len() {
            transport.send(&[IoSlice::new(&bytes[sent..])])
        } else {
            transport.flush().map(|()| 0)
        };
        match step {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline && (sent < bytes.len() || transport.pending()) {
            return Err(io::ErrorKind::TimedOut.into());
        }
    }
    Ok(())
}

/// Starts the reader thread on `reading`; its lines come on the channel
/// returned.
fn spawn_reader(reading: impl Read + Send + 'static) -> io::Result<Receiver<Incoming>> {
    let (sender, incoming) = crossbeam_channel::bounded(QUEUE);
    thread::Builder::new()
        .name("server-reader".into())
        .spawn(move || read_lines(reading, &sender))?;
    Ok(incoming)
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
fn read_lines(stream: impl Read, out: &Sender<Incoming>) {
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
        let connection = Connection::open(&addr, None).unwrap();
        let next = || connection.incoming().recv_timeout(CONNECT_TIMEOUT).unwrap();
        assert!(matches!(next(), Incoming::Line(ServerLine::Join(user)) if user == "ana"));
        assert!(matches!(next(), Incoming::Unparsable));
        assert!(matches!(next(), Incoming::Line(ServerLine::Msg(m)) if m.text == "hola"));
    }

    #[test]
    fn a_full_server_says_bye_instead_of_hello() {
        let addr = fake_server(b"BYE server-full too many connections\n");
        match Connection::open(&addr, None) {
            Err(ClientError::Closed { code, .. }) => assert_eq!(code, Some(crate::core::code::ErrorCode::ServerFull)),
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let addr = fake_server(b"HELLO charla 2 n\n");
        assert!(matches!(Connection::open(&addr, None), Err(ClientError::Version { version, .. }) if version == "2"));
    }

    #[test]
    fn refused_and_unresolvable_addresses_are_told_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(matches!(
            Connection::open(&addr, None),
            Err(ClientError::Refused { .. })
        ));
        assert!(matches!(
            Connection::open("no port here", None),
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
        let connection = Connection::open(&addr, None).unwrap();
        let next = || connection.incoming().recv_timeout(CONNECT_TIMEOUT).unwrap();
        assert!(matches!(next(), Incoming::TooLong));
        assert!(matches!(next(), Incoming::Line(ServerLine::Join(user)) if user == "juan"));
        assert!(matches!(next(), Incoming::Closed));
    }
}
