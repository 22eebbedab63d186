//! The server: the accept loops, the connection limits, and the orderly
//! stop.
//!
//! [`Server::open`] prepares everything that can fail before a client is
//! served (the core: storage, hashing pool, journal, and for a cluster the
//! node's registration); [`Server::run`] then serves already-bound
//! listeners until a [`Shutdown`] is triggered, so the binary and the tests
//! start it the same way (tests bind port 0).
//!
//! Each chat listener has an accept thread. The total connection limit is
//! checked there; everything that may take time (a PROXY header from a
//! trusted balancer, then the per-address limit on the address it carries)
//! happens on the connection's own thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::core::code::ErrorCode;
use crate::core::codec::Codec as _;
use crate::core::event::Event;
use crate::core::{Core, CoreThreads, StartError};
use crate::proto::charla::CharlaCodec;
use crate::shutdown::Shutdown;

use super::{conn, health, irc, proxy, relay};

/// Stack of a connection thread: it parses, queries the database and
/// formats replies, all shallow; bcrypt runs elsewhere.
const SESSION_STACK: usize = 256 * 1024;
/// How long stopping waits for sessions to finish; with the journal's own
/// drain this keeps the whole stop within PROTOCOL.md 5.6's 10 seconds.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// The sockets a server serves, bound by the caller.
#[derive(Default)]
pub struct Listeners {
    /// charla's line protocol in plain text (`--addr`).
    pub plain: Option<TcpListener>,
    /// charla's line protocol inside TLS (`--tls-addr`), with the server's
    /// certificate.
    pub tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// The IRC front end in plain text (`--irc-addr`).
    pub irc: Option<TcpListener>,
    /// The IRC front end inside TLS (`--irc-tls-addr`).
    pub irc_tls: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    /// `/health` (`--health-addr`).
    pub health: Option<TcpListener>,
    /// The file relay (`--relay-addr`); its address is in the
    /// configuration's `files.relay`.
    pub relay: Option<TcpListener>,
}

/// What a listener's connections speak.
#[derive(Clone)]
enum Front {
    /// charla's line protocol in plain text.
    Plain,
    /// charla's line protocol inside TLS.
    Tls(Arc<rustls::ServerConfig>),
    /// IRC in plain text.
    Irc,
    /// IRC inside TLS.
    IrcTls(Arc<rustls::ServerConfig>),
}

/// A server ready to serve.
pub struct Server {
    /// Shared with every connection thread.
    core: Arc<Core>,
    /// The core's threads, stopped at the end of `run`.
    threads: CoreThreads,
}

/// Live connection threads in all and per client address, for the
/// connection limits and for waiting on them when stopping.
#[derive(Default)]
struct Live {
    count: Mutex<LiveCount>,
    changed: Condvar,
}

#[derive(Default)]
struct LiveCount {
    /// Connection threads running.
    total: usize,
    /// Of those, by client address (only addresses that are limited).
    by_address: HashMap<IpAddr, usize>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveCount> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection unless `max_total` are open.
    fn try_add(&self, max_total: usize) -> bool {
        let mut count = self.lock();
        if count.total >= max_total {
            return false;
        }
        count.total += 1;
        true
    }

    /// Counts a connection against its client address unless the address
    /// holds `max_per_address` (0: no limit).
    fn try_add_address(&self, addr: IpAddr, max_per_address: usize) -> bool {
        let mut count = self.lock();
        let from = count.by_address.entry(addr).or_insert(0);
        if max_per_address > 0 && *from >= max_per_address {
            if *from == 0 {
                count.by_address.remove(&addr);
            }
            return false;
        }
        *from += 1;
        true
    }

    fn remove_address(&self, addr: IpAddr) {
        let mut count = self.lock();
        if let Some(from) = count.by_address.get_mut(&addr) {
            *from -= 1;
            if *from == 0 {
                count.by_address.remove(&addr);
            }
        }
    }

    fn remove(&self) {
        self.lock().total -= 1;
        self.changed.notify_all();
    }

    fn get(&self) -> usize {
        self.lock().total
    }

    /// Waits until no connection is left or `deadline` passes; returns how
    /// many are left.
    fn wait_empty(&self, deadline: Instant) -> usize {
        let mut count = self.lock();
        while count.total > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            count = self
                .changed
                .wait_timeout(count, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        count.total
    }
}

/// Uncounts a connection when its thread ends, even by panic.
struct LiveGuard(Arc<Live>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.remove();
    }
}

/// Uncounts a connection's client address when its thread ends.
struct AddressGuard(Arc<Live>, IpAddr);

impl Drop for AddressGuard {
    fn drop(&mut self) {
        self.0.remove_address(self.1);
    }
}

impl Server {
    /// Starts the core: storage, hashing pool, journal, fan-out, and for a
    /// cluster the node's registration and threads.
    ///
    /// # Errors
    /// [`StartError`] when the database cannot be opened or is not a
    /// charla database, the node's name is taken, the bcrypt cost is
    /// refused, or a thread cannot start.
    pub fn open(config: Config, shutdown: Shutdown) -> Result<Server, StartError> {
        let (core, threads) = Core::start(config, shutdown)?;
        Ok(Server { core, threads })
    }

    /// Serves `listeners` until the shutdown is triggered, then stops in
    /// order: no new connections, `BYE shutting-down` to every connection,
    /// every message already read stored and acknowledged, then returns.
    /// `/health` answers `draining` from the moment the shutdown is
    /// triggered.
    ///
    /// # Errors
    /// When a listener's address cannot be read or a thread cannot start.
    pub fn run(self, listeners: Listeners) -> std::io::Result<()> {
        let core = self.core;
        if let Some(health) = listeners.health {
            // It runs until the process ends: a balancer keeps seeing
            // `draining` while the node stops.
            health::spawn(health, Arc::clone(&core))?;
        }
        if let Some(relay) = listeners.relay {
            // Transfers under way finish or fail by themselves; the process
            // ending closes them.
            relay::spawn(relay, Arc::clone(&core))?;
        }
        let live = Arc::new(Live::default());
        let next_id = Arc::new(AtomicU64::new(1));
        let mut accepting = Vec::new();
        if let Some(plain) = listeners.plain {
            accepting.push(spawn_accept(plain, Front::Plain, &core, &live, &next_id)?);
        }
        if let Some((tls, config)) = listeners.tls {
            accepting.push(spawn_accept(tls, Front::Tls(config), &core, &live, &next_id)?);
        }
        if let Some(irc) = listeners.irc {
            accepting.push(spawn_accept(irc, Front::Irc, &core, &live, &next_id)?);
        }
        if let Some((irc_tls, config)) = listeners.irc_tls {
            accepting.push(spawn_accept(irc_tls, Front::IrcTls(config), &core, &live, &next_id)?);
        }
        core.shutdown.wait();
        self.threads.leaving();
        for (accept, waker) in accepting {
            let _ = accept.join();
            let _ = waker.join();
        }
        log::info!("stopping: {} connection(s) open", live.get());
        core.registry.bye_all(ErrorCode::ShuttingDown);
        let left = live.wait_empty(Instant::now() + STOP_GRACE);
        if left > 0 {
            log::warn!("stopping with {left} connection(s) still closing");
        }
        self.threads.stop(&core);
        log::info!("stopped");
        Ok(())
    }
}

/// Starts the accept loop of `listener` and the thread that wakes it at
/// shutdown.
fn spawn_accept(
    listener: TcpListener,
    front: Front,
    core: &Arc<Core>,
    live: &Arc<Live>,
    next_id: &Arc<AtomicU64>,
) -> std::io::Result<(JoinHandle<()>, JoinHandle<()>)> {
    let waker = spawn_waker(core.shutdown.clone(), listener.local_addr()?)?;
    let (core, live, next_id) = (Arc::clone(core), Arc::clone(live), Arc::clone(next_id));
    let accept = thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(&listener, &front, &core, &live, &next_id))?;
    Ok((accept, waker))
}

/// Accepts connections until the shutdown is triggered.
fn accept_loop(listener: &TcpListener, front: &Front, core: &Arc<Core>, live: &Arc<Live>, next_id: &AtomicU64) {
    for stream in listener.incoming() {
        if core.shutdown.is_triggered() {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning, and keep serving.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let accepted = Instant::now();
        if !live.try_add(core.config.max_clients) {
            log::warn!("connection refused: server full");
            // Inside TLS a BYE needs a handshake, which is not worth a
            // thread when the server is full: the connection just closes.
            if let Front::Plain | Front::Irc = front {
                refuse_full(&stream, front);
            }
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let guard = LiveGuard(Arc::clone(live));
        let (core, live, front) = (Arc::clone(core), Arc::clone(live), front.clone());
        let spawned = thread::Builder::new()
            .name(format!("session-{id}"))
            .stack_size(SESSION_STACK)
            .spawn(move || {
                let _guard = guard;
                connection(stream, front, id, accepted, &core, &live);
            });
        if let Err(e) = spawned {
            // The closure (and with it the stream and the guard) was
            // dropped: the peer sees the connection close.
            log::error!("cannot start a session thread: {e}");
        }
    }
}

/// One accepted connection, on its own thread: the client's address (from
/// a trusted balancer's PROXY header), the per-address limit, then the
/// protocol.
fn connection(stream: TcpStream, front: Front, id: u64, accepted: Instant, core: &Core, live: &Arc<Live>) {
    let peer = match stream.peer_addr() {
        Ok(peer) => peer,
        Err(e) => {
            log::debug!("connection {id} gone before it was served: {e}");
            return;
        }
    };
    let client: SocketAddr = if core.config.trusted_proxies.contains(&peer.ip()) {
        match proxy::read_header(&stream) {
            Ok(Some(client)) => client,
            Ok(None) => peer,
            Err(e) => {
                log::info!("connection {id} from {peer} (a trusted proxy) closed: {e}");
                return;
            }
        }
    } else {
        peer
    };
    let _address_guard = if core.limits.applies_to(client.ip()) {
        if !live.try_add_address(client.ip(), core.limits.config.connections_per_address) {
            log::warn!("connection refused: too many connections from {}", client.ip());
            match front {
                Front::Plain | Front::Irc => refuse_full(&stream, &front),
                Front::Tls(ref config) | Front::IrcTls(ref config) => {
                    refuse_full_tls(stream, Arc::clone(config), &front, accepted);
                }
            }
            return;
        }
        Some(AddressGuard(Arc::clone(live), client.ip()))
    } else {
        None
    };
    let local = stream.local_addr().ok();
    let tls = match &front {
        Front::Tls(config) | Front::IrcTls(config) => Some(Arc::clone(config)),
        Front::Plain | Front::Irc => None,
    };
    let transport = match conn::open(stream, tls) {
        Ok(transport) => transport,
        Err(e) => {
            log::error!("connection {id} from {client}: cannot set up its transport: {e}");
            return;
        }
    };
    match front {
        Front::Plain | Front::Tls(_) => conn::serve(transport, client, local, id, accepted, core),
        Front::Irc | Front::IrcTls(_) => irc::serve(transport, client, local, id, accepted, core),
    }
}

/// The goodbye of a connection over a limit, in the front end's protocol:
/// `BYE server-full`, or IRC's `ERROR`.
fn server_full(front: &Front) -> Vec<u8> {
    let mut bye = Vec::new();
    let event = Event::Bye(ErrorCode::ServerFull);
    match front {
        Front::Plain | Front::Tls(_) => CharlaCodec.event(&event, &mut bye),
        Front::Irc | Front::IrcTls(_) => crate::irc::codec::IrcCodec::new("charla").event(&event, &mut bye),
    }
    bye
}

/// Answers a connection over a limit with its goodbye and closes it.
fn refuse_full(stream: &TcpStream, front: &Front) {
    use std::io::Write as _;
    let bye = server_full(front);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = (&*stream).write_all(&bye);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The goodbye inside TLS: the handshake first (bounded), then the line,
/// then the close.
fn refuse_full_tls(stream: TcpStream, config: Arc<rustls::ServerConfig>, front: &Front, accepted: Instant) {
    use crate::core::transport::Transport as _;
    let Ok(transport) = super::tls::TlsTransport::server(stream, config) else {
        return;
    };
    if transport.complete_handshake(accepted + Duration::from_secs(5)).is_err() {
        return;
    }
    let bye = server_full(front);
    let _ = transport.send(&[std::io::IoSlice::new(&bye)]);
    let _ = transport.flush();
    transport.shutdown(std::net::Shutdown::Write);
}

/// Starts the thread that wakes an accept loop once shutdown is triggered,
/// by connecting to its listener (a blocking accept has no other portable
/// wake-up in `std::net`).
fn spawn_waker(shutdown: Shutdown, mut addr: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    thread::Builder::new().name("accept-waker".into()).spawn(move || {
        shutdown.wait();
        if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            log::error!("cannot wake the accept loop at {addr}: {e}");
        }
    })
}
