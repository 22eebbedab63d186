//! The server: its configuration, the accept loop, and the orderly stop.
//!
//! [`Server::open`] prepares everything that can fail before a client is
//! served (storage, hashing pool, journal); [`Server::run`] then serves an
//! already-bound listener until a [`Shutdown`] is triggered, so the binary
//! and the tests start it the same way (tests bind port 0).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::auth::{self, AuthError, Hasher};
use crate::code::ErrorCode;
use crate::journal::Journal;
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
}

/// A server ready to serve.
pub struct Server {
    /// Shared with every session thread.
    shared: Arc<Shared>,
    /// The journal thread, joined at the end of `run`.
    journal_thread: JoinHandle<()>,
}

/// Counts live session threads, for the connection limit and for waiting
/// on them when stopping.
#[derive(Default)]
struct Live {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Live {
    fn add(&self) -> usize {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *count += 1;
        *count
    }

    fn remove(&self) {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.changed.notify_all();
    }

    fn get(&self) -> usize {
        *self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no session is left or `deadline` passes; returns how
    /// many are left.
    fn wait_empty(&self, deadline: Instant) -> usize {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
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
        *count
    }
}

/// Decrements the live count when a session thread ends, even by panic.
struct LiveGuard(Arc<Live>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.remove();
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
        let shared = Arc::new(Shared {
            config,
            registry,
            store: Arc::new(store),
            hasher,
            journal,
            shutdown,
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
            if live.get() >= shared.config.max_clients {
                refuse_full(stream);
                continue;
            }
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            live.add();
            let guard = LiveGuard(Arc::clone(&live));
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
    log::warn!("connection refused: server full");
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
