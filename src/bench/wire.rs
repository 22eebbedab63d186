//! The two protocols the bench speaks: charla's and IRC's, reduced to what
//! the scenarios need (log in, send a timestamped message, recognise an
//! acknowledgement and a delivery), over plain TCP or, for charla, TLS
//! (`--tls`, to measure what it costs).

use std::io::{IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::BenchError;
use crate::core::transport::Transport;
use crate::net::tls::TlsTransport;
use crate::proto::frame::{Frame, LineReader};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The channel IRC clients of the bench join.
pub const IRC_CHANNEL: &str = "#bench";
/// Largest line the bench reads; longer ones are a protocol error.
const MAX_LINE: usize = 64 * 1024;

/// Which server the bench talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// charla's line protocol: LOGIN/REGISTER, SAY acknowledged by OK SAY.
    Charla,
    /// IRC: NICK/USER/JOIN, PRIVMSG followed by a PING whose PONG is the
    /// acknowledgement (the server answers in order).
    Irc,
}

/// What a received line means to a scenario.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The server finished one of our sends (OK SAY / PONG).
    Ack,
    /// The server refused one of our sends (ERR SAY); it still frees its
    /// place in the window.
    Refused,
    /// Someone's message reached us; the body as sent.
    Delivery(&'a [u8]),
    /// The server keeps the connection alive (IRC PING): answer it with
    /// this token.
    KeepAlive(&'a [u8]),
    /// The server is closing the connection.
    Closing,
    /// Anything else (JOIN, LEAVE, numerics...).
    Other,
}

/// How the bench talks TLS (`--tls`): the settings that say which
/// certificates it trusts, and the name the server's must be valid for.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The client settings (the `--ca` file's certificates, or the
    /// system's roots).
    pub config: Arc<rustls::ClientConfig>,
    /// The host part of `--addr`.
    pub name: rustls::pki_types::ServerName<'static>,
}

/// A bench connection's byte stream, plain or TLS. Like a `TcpStream`, a
/// shared reference reads and writes, so a reader thread and a sender share
/// one connection (and one descriptor).
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: it is large, and a plain stream need not be).
    Tls(Box<TlsTransport>),
}

impl Stream {
    /// Shuts the connection down (after close_notify, in TLS).
    ///
    /// # Errors
    /// The socket's error, in plain TCP.
    pub fn shutdown(&self, how: Shutdown) -> std::io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.shutdown(how),
            Stream::Tls(transport) => {
                transport.shutdown(how);
                Ok(())
            }
        }
    }

    /// Sets how long a read may block.
    ///
    /// # Errors
    /// When the socket refuses it.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.set_read_timeout(timeout),
            Stream::Tls(transport) => transport.set_read_timeout(timeout),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => (&*stream).read(buf),
            Stream::Tls(transport) => loop {
                match Transport::read(&**transport, buf) {
                    // The transport's bounded wait to write bytes a sender
                    // left held, not a read timeout: try again. Without a
                    // read timeout it can be nothing else, even when the
                    // sender has written those bytes meanwhile and nothing
                    // is pending any more (a reader that gave up then ended
                    // fanout 50x50 over TLS at once).
                    Err(e)
                        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                            && (transport.pending() || matches!(transport.read_timeout(), Ok(None))) => {}
                    other => return other,
                }
            },
        }
    }
}

impl Write for &Stream {
    /// In TLS, blocks like a socket write until what it took is on the
    /// wire (or the connection fails).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let transport = match self {
            Stream::Plain(stream) => return (&*stream).write(buf),
            Stream::Tls(transport) => transport,
        };
        let waiting = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
            )
        };
        let taken = loop {
            match transport.send(&[IoSlice::new(buf)]) {
                Ok(0) if !buf.is_empty() => {}
                Ok(n) => break n,
                Err(e) if waiting(&e) => {}
                Err(e) => return Err(e),
            }
        };
        while transport.pending() {
            match transport.flush() {
                Ok(()) => {}
                Err(e) if waiting(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads from a shared stream, so one connection needs one descriptor even
/// with a reader thread and a writer.
pub struct SharedStream(pub Arc<Stream>);

impl Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// A TCP connection to `addr`, from `source` when given (bound to it, any
/// port) rather than from the address the system picks.
fn dial(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr);
    };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// One bench connection, logged in.
pub struct Conn {
    /// The connection, shared with the reader thread.
    pub stream: Arc<Stream>,
    /// Splits what arrives into lines without copying them.
    reader: LineReader<SharedStream>,
}

impl Conn {
    /// Connects to `addr`; with `tls`, also completes the TLS handshake
    /// (the server's certificate verified as the client does).
    ///
    /// # Errors
    /// When the connection or the handshake fails.
    pub fn connect(addr: SocketAddr, source: Option<IpAddr>, tls: Option<&Tls>) -> Result<Conn, BenchError> {
        let stream = dial(addr, source).map_err(BenchError::io(format!("connect to {addr}")))?;
        let _ = stream.set_nodelay(true);
        let stream = match tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                let context = format!("TLS handshake with {addr}");
                let transport = TlsTransport::client(stream, Arc::clone(&tls.config), tls.name.clone())
                    .map_err(BenchError::io(context.clone()))?;
                transport
                    .complete_handshake(Instant::now() + HANDSHAKE_TIMEOUT)
                    .map_err(BenchError::io(context.clone()))?;
                transport.set_read_timeout(None).map_err(BenchError::io(context))?;
                Stream::Tls(Box::new(transport))
            }
        };
        let stream = Arc::new(stream);
        let reader = LineReader::new(SharedStream(Arc::clone(&stream)), MAX_LINE);
        Ok(Conn { stream, reader })
    }

    /// Sends bytes.
    ///
    /// # Errors
    /// When the write fails.
    pub fn send(&self, bytes: &[u8]) -> Result<(), BenchError> {
        (&*self.stream).write_all(bytes).map_err(BenchError::io("send"))
    }

    /// Reads one line without its line ending (a `\r` is dropped too);
    /// `None` at EOF.
    ///
    /// # Errors
    /// On a read error or a line longer than 64 KiB.
    pub fn read_raw(&mut self) -> Result<Option<&[u8]>, BenchError> {
        match self.reader.read_frame().map_err(BenchError::io("read"))? {
            Frame::Line(line) => Ok(Some(line)),
            Frame::TooLong => Err(BenchError::Protocol("the server sent a line over 64 KiB".into())),
            Frame::Eof => Ok(None),
        }
    }

    /// Whether lines are already buffered (the next read will not block).
    pub fn has_buffered(&self) -> bool {
        self.reader.has_buffered()
    }

    /// Reads one line as text; `None` at EOF.
    ///
    /// # Errors
    /// As [`Conn::read_raw`], and for a line that is not UTF-8.
    pub fn read_line(&mut self) -> Result<Option<&str>, BenchError> {
        match self.read_raw()? {
            Some(line) => std::str::from_utf8(line)
                .map(Some)
                .map_err(|_| BenchError::Protocol("server sent non-UTF-8".into())),
            None => Ok(None),
        }
    }

    /// Reads a line, failing on EOF.
    fn expect_line(&mut self, what: &str) -> Result<String, BenchError> {
        match self.read_line()? {
            Some(line) => Ok(line.to_string()),
            None => Err(BenchError::Protocol(format!(
                "connection closed while waiting for {what}"
            ))),
        }
    }

    /// Logs in as `user`, registering the account first if it does not
    /// exist (charla); registers the nick and joins the bench channel (IRC).
    ///
    /// # Errors
    /// When the server refuses or closes.
    pub fn log_in(
        &mut self,
        protocol: Protocol,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let result = match protocol {
            Protocol::Charla => self.log_in_charla(user, password),
            Protocol::Irc => self.log_in_irc(user, Some(password)),
        };
        let _ = self.stream.set_read_timeout(None);
        result
    }

    /// Registers the nick on an IRC server without a server password and
    /// joins the bench channel: ngIRCd without `Password` set refuses any
    /// `PASS` ("Bad server password"), so none is sent.
    ///
    /// # Errors
    /// When the server refuses or closes.
    pub fn log_in_irc_without_pass(&mut self, user: &str, timeout: Duration) -> Result<(), BenchError> {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let result = self.log_in_irc(user, None);
        let _ = self.stream.set_read_timeout(None);
        result
    }

    /// Registers first: a new account then costs one bcrypt hash, and an
    /// existing one is refused with `user-exists` before any hashing, then
    /// logs in (one bcrypt verification).
    fn log_in_charla(&mut self, user: &str, password: &str) -> Result<(), BenchError> {
        let hello = self.expect_line("HELLO")?;
        if !hello.starts_with("HELLO ") {
            return Err(BenchError::Protocol(format!("expected HELLO, got {hello:?}")));
        }
        self.send(format!("REGISTER {user} {password} Bench {user}\n").as_bytes())?;
        let reply = self.expect_line("the REGISTER reply")?;
        if reply.starts_with("OK REGISTER ") {
            return Ok(());
        }
        if !reply.starts_with("ERR REGISTER user-exists") {
            return Err(BenchError::Protocol(format!("REGISTER {user}: {reply}")));
        }
        self.send(format!("LOGIN {user} {password}\n").as_bytes())?;
        let reply = self.expect_line("the LOGIN reply")?;
        if reply.starts_with("OK LOGIN ") {
            Ok(())
        } else {
            Err(BenchError::Protocol(format!("LOGIN {user}: {reply}")))
        }
    }

    /// Registers with `PASS` when `password` is given (charla's IRC front
    /// end checks it against the account), `NICK` and `USER`, then joins
    /// the bench channel.
    fn log_in_irc(&mut self, user: &str, password: Option<&str>) -> Result<(), BenchError> {
        let pass = password.map_or_else(String::new, |p| format!("PASS {p}\r\n"));
        self.send(format!("{pass}NICK {user}\r\nUSER {user} 0 * :bench\r\n").as_bytes())?;
        self.irc_until("001")?;
        self.send(format!("JOIN {IRC_CHANNEL}\r\n").as_bytes())?;
        self.irc_until("366")
    }

    /// Reads IRC lines until one whose command (numeric) is `numeric`,
    /// answering PINGs; an `ERROR` or a "nickname in use" (433) ends it.
    fn irc_until(&mut self, numeric: &str) -> Result<(), BenchError> {
        for _ in 0..100_000 {
            let line = self.expect_line(numeric)?;
            if let Some(token) = line.strip_prefix("PING ") {
                self.send(format!("PONG {token}\r\n").as_bytes())?;
                continue;
            }
            let command = line.split(' ').nth(1).unwrap_or("");
            if line.starts_with("ERROR") || command == "433" {
                return Err(BenchError::Protocol(format!("IRC server refused: {line}")));
            }
            if command == numeric {
                return Ok(());
            }
        }
        Err(BenchError::Protocol(format!("no {numeric} from the IRC server")))
    }

    /// Ends the session politely and closes the socket.
    pub fn close(&self, protocol: Protocol) {
        let bye: &[u8] = match protocol {
            Protocol::Charla => b"QUIT\n",
            Protocol::Irc => b"QUIT :bench\r\n",
        };
        let _ = self.send(bye);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The bytes that send `body` as one chat message, plus what makes the
/// server acknowledge it.
pub fn encode_message(protocol: Protocol, body: &str) -> Vec<u8> {
    match protocol {
        Protocol::Charla => format!("SAY {body}\n").into_bytes(),
        Protocol::Irc => format!("PRIVMSG {IRC_CHANNEL} :{body}\r\nPING :ack\r\n").into_bytes(),
    }
}

/// What a line received means.
pub fn classify(protocol: Protocol, line: &[u8]) -> Incoming<'_> {
    match protocol {
        Protocol::Charla => {
            if let Some(rest) = line.strip_prefix(b"MSG ") {
                // MSG ID TS USER TEXT
                rest.splitn(4, |&b| b == b' ')
                    .nth(3)
                    .map_or(Incoming::Other, Incoming::Delivery)
            } else if line.starts_with(b"OK SAY ") {
                Incoming::Ack
            } else if line.starts_with(b"ERR SAY ") {
                Incoming::Refused
            } else if line.starts_with(b"BYE ") {
                Incoming::Closing
            } else {
                Incoming::Other
            }
        }
        Protocol::Irc => {
            if let Some(token) = line.strip_prefix(b"PING ") {
                Incoming::KeepAlive(token)
            } else if line.starts_with(b"ERROR") {
                Incoming::Closing
            } else if let Some(at) = find(line, b" PRIVMSG #bench :") {
                Incoming::Delivery(&line[at + b" PRIVMSG #bench :".len()..])
            } else if find(line, b" PONG ").is_some() {
                Incoming::Ack
            } else {
                Incoming::Other
            }
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A message body: sender, sequence number and send time, padded with `x`
/// to `size` bytes.
pub fn body(sender: usize, seq: usize, sent_ns: u64, size: usize) -> String {
    let mut body = format!("{sender} {seq} {sent_ns} ");
    while body.len() < size {
        body.push('x');
    }
    body
}

/// The send time inside a body made by [`body`].
pub fn sent_ns(body: &[u8]) -> Option<u64> {
    let field = body.split(|&b| b == b' ').nth(2)?;
    if field.is_empty() || field.len() > 19 {
        return None;
    }
    field
        .iter()
        .try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_send_time() {
        let b = body(3, 7, 123_456, 40);
        assert_eq!(b.len(), 40);
        assert_eq!(sent_ns(b.as_bytes()), Some(123_456));
        assert_eq!(sent_ns(b"1 2 x3 y"), None);
    }

    #[test]
    fn classifies_both_protocols() {
        assert_eq!(
            classify(Protocol::Charla, b"MSG 1 2 ana 0 1 99 x"),
            Incoming::Delivery(b"0 1 99 x")
        );
        assert_eq!(classify(Protocol::Charla, b"OK SAY 1 2"), Incoming::Ack);
        assert_eq!(classify(Protocol::Charla, b"ERR SAY db-error x"), Incoming::Refused);
        assert_eq!(classify(Protocol::Charla, b"JOIN ana"), Incoming::Other);
        assert_eq!(
            classify(Protocol::Irc, b":a!b@c PRIVMSG #bench :0 1 99 x"),
            Incoming::Delivery(b"0 1 99 x")
        );
        assert_eq!(classify(Protocol::Irc, b":srv PONG srv :ack"), Incoming::Ack);
        assert_eq!(classify(Protocol::Irc, b"PING :srv"), Incoming::KeepAlive(b":srv"));
    }

    #[test]
    fn connections_can_come_from_another_loopback_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let from: IpAddr = "127.0.0.2".parse().unwrap();
        let _stream = dial(addr, Some(from)).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), from);
        let _default = dial(addr, None).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 1]));
    }
}
