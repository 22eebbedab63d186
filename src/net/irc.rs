//! One connection of the IRC front end (PROTOCOL.md 13), from accept to
//! close: the read loop charla's own connections use
//! (`conn::read_frames`: the line limit enforced while reading,
//! the registration deadline) hands each IRC line to the connection's
//! [`IrcClient`].
//!
//! It runs on its own thread, owns the reading side of its transport, and
//! never writes: the session's outbox does, with the IRC codec.

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
use crate::proto::irc::MAX_WIRE_LINE;

use super::conn::{FrontEnd, read_frames};

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
        // Lines of up to MAX_WIRE_LINE bytes with their CRLF are read
        // whole; the client checks the tag and body limits apart.
        read_frames(&mut client, &outbox, &*transport, MAX_WIRE_LINE, deadline);
    }));
    if served.is_err() {
        log::error!("IRC connection {id}: its thread panicked; closing it");
    }
    client.close();
    log::info!("IRC connection {id} from {peer} closed");
}

impl FrontEnd for IrcClient<'_> {
    fn id(&self) -> ConnectionId {
        self.session_id()
    }

    fn logged_in(&self) -> bool {
        self.is_registered()
    }

    fn line(&mut self, line: &[u8]) -> bool {
        IrcClient::line(self, line) != Flow::Close
    }

    fn too_long(&mut self) -> bool {
        IrcClient::too_long(self) != Flow::Close
    }
}
