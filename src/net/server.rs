//! The server: the accept loop, the connection limits, and the orderly
//! stop.
//!
//! [`Server::open`] prepares everything that can fail before a client is
//! served (the core: storage, hashing pool, journal); [`Server::run`] then
//! serves an already-bound listener until a [`Shutdown`] is triggered, so
//! the binary and the tests start it the same way (tests bind port 0).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::core::code::ErrorCode;
use crate::core::{Core, CoreThreads, StartError};
use crate::proto::charla;
use crate::shutdown::Shutdown;

/// Stack of a connection thread: it parses, queries SQLite and formats
/// replies, all shallow; bcrypt runs elsewhere.
const SESSION_STACK: usize = 256 * 1024;
/// How long stopping waits for sessions to finish; with the journal's own
/// drain this keeps the whole stop within PROTOCOL.md 5.6's 10 seconds.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// A server ready to serve.
pub struct Server {
    /// Shared with every connection thread.
    core: Arc<Core>,
    /// The core's threads, stopped at the end of `run`.
    threads: CoreThreads,
}

/// Live session threads in all and per source address, for the connection
/// limits and for waiting on them when stopping.
#[derive(Default)]
struct Live {
    count: Mutex<LiveCount>,
    changed: Condvar,
}

#[derive(Default)]
struct LiveCount {
    /// Session threads running.
    total: usize,
    /// Of those, by source address (only addresses that are limited).
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection is refused before it is served.
enum Refusal {
    /// The server holds `--max-clients` connections.
    Full,
    /// The address holds `--max-connections-per-address` connections.
    AddressFull,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, LiveCount> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new session from `addr` (`None`: not limited per address)
    /// unless a limit is reached.
    fn try_add(&self, addr: Option<IpAddr>, max_total: usize, max_per_address: usize) -> Result<(), Refusal> {
        let mut count = self.lock();
        if count.total >= max_total {
            return Err(Refusal::Full);
        }
        if let Some(addr) = addr {
            let from = count.by_address.entry(addr).or_insert(0);
            if max_per_address > 0 && *from >= max_per_address {
                return Err(Refusal::AddressFull);
            }
            *from += 1;
        }
        count.total += 1;
        Ok(())
    }

    fn remove(&self, addr: Option<IpAddr>) {
        let mut count = self.lock();
        count.total -= 1;
        if let Some(addr) = addr
            && let Some(from) = count.by_address.get_mut(&addr)
        {
            *from -= 1;
            if *from == 0 {
                count.by_address.remove(&addr);
            }
        }
        self.changed.notify_all();
    }

    fn get(&self) -> usize {
        self.lock().total
    }

    /// Waits until no session is left or `deadline` passes; returns how
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

/// Uncounts a session when its thread ends, even by panic.
struct LiveGuard(Arc<Live>, Option<IpAddr>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

impl Server {
    /// Starts the core: storage, hashing pool, journal, fan-out.
    ///
    /// # Errors
    /// [`StartError`] when the database cannot be opened or is not a
    /// charla database, the bcrypt cost is refused, or a thread cannot
    /// start.
    pub fn open(config: Config, shutdown: Shutdown) -> Result<Server, StartError> {
        let (core, threads) = Core::start(config, shutdown)?;
        Ok(Server { core, threads })
    }

    /// Serves `listener` until the shutdown is triggered, then stops in
    /// order: no new connections, `BYE shutting-down` to every connection,
    /// every message already read stored and acknowledged, then returns.
    ///
    /// # Errors
    /// When the listener's address cannot be read or the accept-loop waker
    /// cannot start.
    pub fn run(self, listener: TcpListener) -> std::io::Result<()> {
        let core = self.core;
        let live = Arc::new(Live::default());
        let waker = spawn_waker(core.shutdown.clone(), listener.local_addr()?)?;
        let next_id = AtomicU64::new(1);
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
            let limited = stream
                .peer_addr()
                .ok()
                .map(|peer| peer.ip())
                .filter(|ip| core.limits.applies_to(*ip));
            let per_address = core.limits.config.connections_per_address;
            match live.try_add(limited, core.config.max_clients, per_address) {
                Ok(()) => {}
                Err(Refusal::Full) => {
                    log::warn!("connection refused: server full");
                    refuse_full(stream);
                    continue;
                }
                Err(Refusal::AddressFull) => {
                    log::warn!(
                        "connection refused: too many connections from {}",
                        limited.map_or_else(String::new, |a| a.to_string())
                    );
                    refuse_full(stream);
                    continue;
                }
            }
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let guard = LiveGuard(Arc::clone(&live), limited);
            let conn_core = Arc::clone(&core);
            let spawned = thread::Builder::new()
                .name(format!("session-{id}"))
                .stack_size(SESSION_STACK)
                .spawn(move || {
                    let _guard = guard;
                    super::conn::run(stream, id, &conn_core);
                });
            if let Err(e) = spawned {
                // The closure (and with it the stream and the guard) was
                // dropped: the peer sees the connection close.
                log::error!("cannot start a session thread: {e}");
            }
        }
        drop(listener);
        log::info!("stopping: {} connection(s) open", live.get());
        core.registry.bye_all(ErrorCode::ShuttingDown);
        let left = live.wait_empty(Instant::now() + STOP_GRACE);
        if left > 0 {
            log::warn!("stopping with {left} connection(s) still closing");
        }
        self.threads.stop(&core);
        let _ = waker.join();
        log::info!("stopped");
        Ok(())
    }
}

/// Answers a connection over the limit with `BYE server-full` and closes it.
fn refuse_full(stream: TcpStream) {
    use std::io::Write as _;

    use crate::core::codec::Codec as _;
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let mut bye = Vec::new();
    charla::CharlaCodec.event(&crate::core::event::Event::Bye(ErrorCode::ServerFull), &mut bye);
    let _ = (&stream).write_all(&bye);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Starts the thread that wakes the accept loop once shutdown is triggered,
/// by connecting to the listener (a blocking accept has no other portable
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
