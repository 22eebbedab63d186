//! The server: its configuration, the accept loop, and the orderly stop.
//!
//! [`Server::open`] prepares everything that can fail before a client is
//! served (storage, hashing pool, journal); [`Server::run`] then serves an
//! already-bound listener until a [`Shutdown`] is triggered, so the binary
//! and the tests start it the same way (tests bind port 0).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::auth::{self, AuthError, Hasher};
use crate::code::ErrorCode;
use crate::journal::Journal;
use crate::limits::{self, Clock, KeyedLimiter, Rate, SystemClock};
use crate::outbox;
use crate::registry::Registry;
use crate::reply;
use crate::shutdown::Shutdown;
use crate::store::sqlite::{SqliteStore, SyncMode};
use crate::store::{Store, StoreError};

/// Stack of a session thread: it parses, queries SQLite and formats replies,
/// all shallow; bcrypt runs elsewhere.
const SESSION_STACK: usize = 256 * 1024;
/// How long stopping waits for sessions to finish; with the journal's own
/// drain this keeps the whole stop within PROTOCOL.md 5.6's 10 seconds.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// Everything an operator can set, with the protocol's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// The SQLite file.
    pub db: PathBuf,
    /// Most connections at once; more get `BYE server-full`.
    pub max_clients: usize,
    /// Longest line in bytes, counting the `\n`.
    pub max_line: usize,
    /// Time a connection has to log in.
    pub login_timeout: Duration,
    /// bcrypt cost of new password hashes.
    pub bcrypt_cost: u32,
    /// Threads hashing passwords; 0 means one per core.
    pub hash_threads: usize,
    /// Pending output per session before it is cut off as a slow consumer.
    pub outbox_limit: usize,
    /// SQLite `synchronous` level of the writer.
    pub sync: SyncMode,
    /// This server's name in `HELLO`.
    pub node: String,
    /// The abuse limits.
    pub limits: LimitsConfig,
}

/// The abuse limits of PROTOCOL.md 5.5, each with a default that a normal
/// user never meets. A zero count disables that limit.
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// Messages per second per session, sustained (0: no limit).
    pub msg_rate: f64,
    /// Messages a session may send at once; its bucket starts full.
    pub msg_burst: u32,
    /// Failed logins per account name per minute.
    pub login_failures_per_account: u32,
    /// Failed logins per source address per 15 minutes.
    pub login_failures_per_address: u32,
    /// Registrations per source address per hour.
    pub registrations_per_address: u32,
    /// Connections open at once per source address.
    pub connections_per_address: usize,
    /// Apply the per-address limits to loopback addresses too (by default
    /// they are exempt, so local benchmarks and tests are not throttled).
    pub limit_loopback: bool,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            msg_rate: 20.0,
            msg_burst: 200,
            login_failures_per_account: 10,
            login_failures_per_address: 30,
            registrations_per_address: 20,
            connections_per_address: 64,
            limit_loopback: false,
        }
    }
}

/// The shared limiters, built from [`LimitsConfig`].
pub struct Limits {
    /// The settings.
    pub config: LimitsConfig,
    /// Per-session message rate (each session keeps its own bucket).
    pub msg_rate: Rate,
    /// Failed logins by lower-cased account name.
    pub account_failures: KeyedLimiter<String>,
    /// Failed logins by source address.
    pub address_failures: KeyedLimiter<IpAddr>,
    /// Registrations by source address.
    pub registrations: KeyedLimiter<IpAddr>,
    /// The clock every limiter reads.
    pub clock: Arc<dyn Clock>,
}

impl Limits {
    /// Builds the limiters over `clock`.
    pub fn new(config: LimitsConfig, clock: Arc<dyn Clock>) -> Limits {
        let msg_rate = Rate {
            burst: f64::from(config.msg_burst),
            per_second: config.msg_rate.max(0.0),
        };
        Limits {
            msg_rate,
            account_failures: KeyedLimiter::new(
                Rate::per(config.login_failures_per_account, Duration::from_secs(60)),
                Arc::clone(&clock),
            ),
            address_failures: KeyedLimiter::new(
                Rate::per(config.login_failures_per_address, Duration::from_secs(15 * 60)),
                Arc::clone(&clock),
            ),
            registrations: KeyedLimiter::new(
                Rate::per(config.registrations_per_address, Duration::from_secs(3600)),
                Arc::clone(&clock),
            ),
            clock,
            config,
        }
    }

    /// Whether per-address limits apply to `addr`.
    pub fn applies_to(&self, addr: IpAddr) -> bool {
        self.config.limit_loopback || !limits::is_loopback(addr)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            db: PathBuf::from("chat.db"),
            max_clients: 10_000,
            max_line: 4096,
            login_timeout: Duration::from_secs(60),
            bcrypt_cost: auth::DEFAULT_COST,
            hash_threads: 0,
            outbox_limit: outbox::DEFAULT_LIMIT,
            sync: SyncMode::Normal,
            node: "node-1".to_string(),
            limits: LimitsConfig::default(),
        }
    }
}

/// Why the server could not start or run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The database could not be opened or is not charla's.
    #[error("cannot open the database {path}: {source}")]
    Store {
        /// The file given with --db.
        path: String,
        /// What went wrong.
        source: StoreError,
    },
    /// The password hashing pool could not start.
    #[error("cannot start password hashing: {0}")]
    Auth(#[from] AuthError),
    /// A thread or the listener failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// State every session shares.
pub struct Shared {
    /// The operator's settings.
    pub config: Config,
    /// Connections and logged-in sessions.
    pub registry: Arc<Registry>,
    /// Reads: accounts and history.
    pub store: Arc<dyn Store>,
    /// bcrypt, off the session threads' hot path.
    pub hasher: Hasher,
    /// Writes: registrations and messages.
    pub journal: Journal,
    /// Set when the server is stopping.
    pub shutdown: Shutdown,
    /// Rate limits against floods and brute force.
    pub limits: Limits,
}

/// A server ready to serve.
pub struct Server {
    /// Shared with every session thread.
    shared: Arc<Shared>,
    /// The journal thread, joined at the end of `run`.
    journal_thread: JoinHandle<()>,
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
    /// Opens storage and starts the hashing pool and the journal.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the database cannot be opened or is not a
    /// charla database; [`ServerError::Auth`] for a bad bcrypt cost.
    pub fn open(config: Config, shutdown: Shutdown) -> Result<Server, ServerError> {
        let store_error = |source| ServerError::Store {
            path: config.db.display().to_string(),
            source,
        };
        let store = SqliteStore::open(&config.db, config.sync).map_err(store_error)?;
        let writer = store.open_writer().map_err(store_error)?;
        let threads = match config.hash_threads {
            0 => thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let hasher = Hasher::start(config.bcrypt_cost, threads)?;
        let (journal, queue) = Journal::channel();
        let registry = Arc::new(Registry::new(journal.clone()));
        let journal_thread = Journal::start(queue, writer, Arc::clone(&registry))?;
        let limits = Limits::new(config.limits.clone(), Arc::new(SystemClock));
        let shared = Arc::new(Shared {
            config,
            registry,
            store: Arc::new(store),
            hasher,
            journal,
            shutdown,
            limits,
        });
        Ok(Server { shared, journal_thread })
    }

    /// Serves `listener` until the shutdown is triggered, then stops in
    /// order: no new connections, `BYE shutting-down` to every connection,
    /// every SAY already read stored and acknowledged, then returns.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the listener's address cannot be read.
    pub fn run(self, listener: TcpListener) -> Result<(), ServerError> {
        let shared = self.shared;
        let live = Arc::new(Live::default());
        let waker = spawn_waker(shared.shutdown.clone(), listener.local_addr()?)?;
        let next_id = AtomicU64::new(1);
        for stream in listener.incoming() {
            if shared.shutdown.is_triggered() {
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
                .filter(|ip| shared.limits.applies_to(*ip));
            let per_address = shared.limits.config.connections_per_address;
            match live.try_add(limited, shared.config.max_clients, per_address) {
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
            let session_shared = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("session-{id}"))
                .stack_size(SESSION_STACK)
                .spawn(move || {
                    let _guard = guard;
                    crate::session::run(stream, id, &session_shared);
                });
            if let Err(e) = spawned {
                // The closure (and with it the stream and the guard) was
                // dropped: the peer sees the connection close.
                log::error!("cannot start a session thread: {e}");
            }
        }
        drop(listener);
        log::info!("stopping: {} connection(s) open", live.get());
        shared.registry.bye_all(ErrorCode::ShuttingDown);
        let left = live.wait_empty(Instant::now() + STOP_GRACE);
        if left > 0 {
            log::warn!("stopping with {left} connection(s) still closing");
        }
        shared.journal.stop();
        if self.journal_thread.join().is_err() {
            log::error!("the journal thread panicked");
        }
        let _ = waker.join();
        log::info!("stopped");
        Ok(())
    }
}

/// Answers a connection over the limit with `BYE server-full` and closes it.
fn refuse_full(stream: TcpStream) {
    use std::io::Write as _;
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = (&stream).write_all(&reply::bye(ErrorCode::ServerFull));
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
