//! One connection of charla's line protocol, from `HELLO` to close: reads
//! lines, turns them into commands for the core, and closes.
//!
//! The connection runs on its own thread and owns the reading side of its
//! transport. It never writes (its outbox does), never encodes a reply
//! (the outbox's codec does) and never decides anything about a command
//! (the command table does): it frames bytes into lines, reads the tag and
//! the command name, and enforces the login deadline.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::core::Core;
use crate::core::code::ErrorCode;
use crate::core::commands::{self, Flow};
use crate::core::feed::ConnectionId;
use crate::core::outbox::Outbox;
use crate::core::session::Session;
use crate::core::transport::Transport;
use crate::proto::charla::{self, CharlaCodec};
use crate::proto::frame::{self, Frame, LineReader};

use super::tcp::TcpTransport;
use super::tls::TlsTransport;

/// The transport as a connection reads it. While the login deadline is
/// set, every read waits at most until the deadline and fails with
/// `TimedOut` once it has passed: a timeout per read alone would let a
/// client that trickles bytes without ever ending a line stay unlogged
/// forever (the line reader keeps reading until a line is complete). Both
/// front ends read through it.
pub(super) struct Input<'a> {
    /// The connection.
    pub(super) transport: &'a dyn Transport,
    /// When the connection must be logged in by; `None` once it is.
    pub(super) login_deadline: Option<Instant>,
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.login_deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // A zero timeout would mean "none": `left` is not zero here.
            self.transport.set_read_timeout(Some(left))?;
        }
        self.transport.read(buf)
    }
}

/// The transport of an accepted TCP connection: the socket itself, or TLS
/// over it with `tls` (the handshake happens as the connection reads its
/// first line, within the login deadline).
///
/// # Errors
/// When the socket's output or TLS cannot be set up.
pub(super) fn open(stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Arc<dyn Transport>> {
    Ok(match tls {
        None => Arc::new(TcpTransport::new(stream)?),
        Some(config) => Arc::new(TlsTransport::server(stream, config)?),
    })
}

/// Serves one connection of charla's line protocol over `transport`, from
/// client `peer` to this server's `local` address.
pub fn serve(
    transport: Arc<dyn Transport>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    id: ConnectionId,
    accepted: Instant,
    core: &Core,
) {
    let outbox = Outbox::new(
        Arc::clone(&transport),
        Arc::new(CharlaCodec),
        core.config.outbox_limit,
        id,
    );
    log::info!("connection {id} from {peer}");
    outbox.raw_reply(charla::hello(&core.config.node));
    let mut session = Session::new(core, id, peer, local, Arc::clone(&outbox));
    if core.shutdown.is_triggered() {
        outbox.bye(ErrorCode::ShuttingDown);
    }
    let login_deadline = accepted + core.config.login_timeout;
    let max_line = core.config.max_line;
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_frames(&mut session, &outbox, &*transport, max_line, login_deadline);
    }));
    if served.is_err() {
        log::error!("connection {id}: its thread panicked; closing it");
    }
    session.close();
    log::info!("connection {id} from {peer} closed");
}

/// What the shared read loop asks of a front end (charla's protocol or
/// IRC): whether it is logged in yet, and what each frame leads to.
pub(super) trait FrontEnd {
    /// The connection's id, for logs.
    fn id(&self) -> ConnectionId;
    /// Whether the login (or IRC registration) is done.
    fn logged_in(&self) -> bool;
    /// Handles one complete line; false to stop reading.
    fn line(&mut self, line: &[u8]) -> bool;
    /// Handles a line over the limit; false to stop reading.
    fn too_long(&mut self) -> bool;
}

/// The read loop both front ends share: frames until the client leaves,
/// the connection fails or the session is told to close, with the outbox's
/// bound on reading and the login deadline enforced between frames.
pub(super) fn read_frames(
    front: &mut dyn FrontEnd,
    outbox: &Arc<Outbox>,
    transport: &dyn Transport,
    max_line: usize,
    login_deadline: Instant,
) {
    let input = Input {
        transport,
        login_deadline: Some(login_deadline),
    };
    let mut reader = LineReader::new(input, max_line);
    loop {
        outbox.wait_for_room();
        if outbox.is_closing() {
            return;
        }
        if !front.logged_in() {
            if Instant::now() >= login_deadline {
                log::info!("connection {}: login timeout", front.id());
                outbox.bye(ErrorCode::LoginTimeout);
                return;
            }
        } else if reader.get_mut().login_deadline.take().is_some() {
            // The login timeout no longer applies.
            let _ = transport.set_read_timeout(None);
        }
        let go_on = match reader.read_frame() {
            Ok(Frame::Line(line)) => front.line(line),
            Ok(Frame::TooLong) => front.too_long(),
            Ok(Frame::Eof) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                true
            }
            Err(e) => {
                log::debug!("connection {}: read failed: {e}", front.id());
                return;
            }
        };
        if !go_on {
            return;
        }
    }
}

impl FrontEnd for Session<'_> {
    fn id(&self) -> ConnectionId {
        Session::id(self)
    }

    fn logged_in(&self) -> bool {
        self.is_logged_in()
    }

    fn line(&mut self, line: &[u8]) -> bool {
        line_command(self, line) != Flow::Quit
    }

    fn too_long(&mut self) -> bool {
        commands::refuse_line(self, None, ErrorCode::LineTooLong);
        true
    }
}

/// Reads the tag and name of one line and runs it (PROTOCOL.md 2: the line
/// itself is checked first).
fn line_command(session: &mut Session<'_>, line: &[u8]) -> Flow {
    if frame::is_blank(line) {
        return Flow::Continue;
    }
    let Ok(line) = std::str::from_utf8(line) else {
        commands::refuse_line(session, None, ErrorCode::BadEncoding);
        return Flow::Continue;
    };
    match charla::parse_head(line) {
        Ok(head) => commands::execute(session, head.tag, head.name, head.rest),
        Err(bad) => {
            commands::refuse_line(session, bad.tag, ErrorCode::BadRequest);
            Flow::Continue
        }
    }
}
