//! One connection of the IRC front end (PROTOCOL.md 13), from accept to
//! close: frames IRC lines with the line limit enforced while reading,
//! hands each to the connection's [`IrcClient`], and enforces the
//! registration deadline.
//!
//! Like charla's own connections ([`super::conn`]) it runs on its own
//! thread, owns the reading side of its transport, and never writes: the
//! session's outbox does, with the IRC codec.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::core::Core;
use crate::core::code::ErrorCode;
use crate::core::feed::ConnectionId;
use crate::core::outbox::Outbox;
use crate::core::session::Session;
use crate::core::transport::Transport;
use crate::irc::client::{Flow, IrcClient};
use crate::irc::codec::IrcCodec;
use crate::proto::frame::{Frame, LineReader};
use crate::proto::irc::MAX_WIRE_LINE;

use super::conn::Input;

/// Serves one IRC connection over `transport`.
pub fn serve(
    transport: Arc<dyn Transport>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    id: ConnectionId,
    accepted: Instant,
    core: &Core,
) {
    let codec = IrcCodec::new(&core.config.node);
    let outbox = Outbox::new(
        Arc::clone(&transport),
        Arc::clone(&codec) as Arc<dyn crate::core::codec::Codec>,
        core.config.outbox_limit,
        id,
    );
    log::info!("IRC connection {id} from {peer}");
    let session = Session::new(core, id, peer, local, Arc::clone(&outbox));
    if core.shutdown.is_triggered() {
        outbox.bye(ErrorCode::ShuttingDown);
    }
    let mut client = IrcClient::new(session, codec);
    let deadline = accepted + core.config.login_timeout;
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_lines(&mut client, &outbox, &*transport, deadline);
    }));
    if served.is_err() {
        log::error!("IRC connection {id}: its thread panicked; closing it");
    }
    client.close();
    log::info!("IRC connection {id} from {peer} closed");
}

/// The read loop: one line at a time until the client leaves, the
/// connection fails or the session is told to close.
fn read_lines(client: &mut IrcClient<'_>, outbox: &Arc<Outbox>, transport: &dyn Transport, deadline: Instant) {
    let input = Input {
        transport,
        login_deadline: Some(deadline),
    };
    // Lines of up to MAX_WIRE_LINE bytes with their CRLF are read whole;
    // the client checks the tag and body limits apart.
    let mut reader = LineReader::new(input, MAX_WIRE_LINE);
    loop {
        outbox.wait_for_room();
        if outbox.is_closing() {
            return;
        }
        if !client.is_registered() {
            if Instant::now() >= deadline {
                log::info!("IRC connection {}: registration timeout", client.session().id());
                outbox.bye(ErrorCode::LoginTimeout);
                return;
            }
        } else if reader.get_mut().login_deadline.take().is_some() {
            let _ = transport.set_read_timeout(None);
        }
        let flow = match reader.read_frame() {
            Ok(Frame::Line(line)) => client.line(line),
            Ok(Frame::TooLong) => client.too_long(),
            Ok(Frame::Eof) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) =>
            {
                Flow::Continue
            }
            Err(e) => {
                log::debug!("IRC connection {}: read failed: {e}", client.session().id());
                return;
            }
        };
        if flow == Flow::Close {
            return;
        }
    }
}
