//! `charla-bench`: load scenarios against a running chat server, charla's
//! own protocol or IRC, in the spirit of redis-benchmark.
//!
//! The binary only parses arguments; each scenario lives in its own module
//! and returns a [`report::Report`] printed for people or as one JSON line.
//! Every client of a scenario is a real TCP connection (TLS with `--tls`, in
//! the charla protocol, to measure what encryption costs) with its own reader
//! thread; timestamps inside message bodies are nanoseconds since one
//! [`Instant`] shared by the whole bench process, so receivers measure
//! end-to-end latency without clock skew. Every loop here is bounded by a
//! count and a deadline, and only the address given is contacted.

pub mod connect;
pub mod fanout;
pub mod login;
pub mod procstat;
pub mod report;
pub mod rooms;
pub mod wire;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use thiserror::Error;

pub use wire::Protocol;

/// Settings every scenario shares.
#[derive(Clone, Debug)]
pub struct Common {
    /// The server under test (a loopback address in every documented run).
    pub addr: SocketAddr,
    /// Which protocol the server speaks.
    pub protocol: Protocol,
    /// The server's pid, to report its CPU time, RSS and context switches.
    pub server_pid: Option<u32>,
    /// Prefix of the bench accounts (created on first use, then reused).
    pub prefix: String,
    /// Password of the bench accounts.
    pub password: String,
    /// Longest time any one phase may take before the run gives up.
    pub timeout: Duration,
    /// Print a progress line on stderr (only when it is a terminal).
    pub progress: bool,
    /// With `--tls`, every connection is TLS (charla only).
    pub tls: Option<wire::Tls>,
    /// For `--protocol irc` against charla's IRC front end: where to make
    /// the bench accounts first, in charla's protocol (IRC has no
    /// registration).
    pub accounts_at: Option<SocketAddr>,
    /// The local address every bench connection is made from, when not
    /// the system's choice.
    pub source: Option<std::net::IpAddr>,
}

impl Common {
    /// The name of bench account `i`.
    pub fn user(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    /// Opens a connection as bench account `i`, logged in: first making
    /// the account at [`Common::accounts_at`] when that is set (and only
    /// then, in IRC, sending the password with `PASS`).
    ///
    /// # Errors
    /// When a connection, the account or the login fails.
    pub fn open(&self, i: usize) -> Result<wire::Conn, BenchError> {
        self.open_at(i, self.addr)
    }

    /// As [`Common::open`], at `addr` instead of [`Common::addr`] (another
    /// node of the same cluster).
    ///
    /// # Errors
    /// When a connection, the account or the login fails.
    pub fn open_at(&self, i: usize, addr: SocketAddr) -> Result<wire::Conn, BenchError> {
        let user = self.user(i);
        if let (Protocol::Irc, Some(at)) = (self.protocol, self.accounts_at) {
            let mut maker = wire::Conn::connect(at, self.source, None)?;
            maker.log_in(Protocol::Charla, &user, &self.password, self.timeout)?;
            maker.close(Protocol::Charla);
        }
        let mut conn = wire::Conn::connect(addr, self.source, self.tls.as_ref())?;
        match (self.protocol, self.accounts_at) {
            // An IRC server with no accounts of ours (ngIRCd) has no server
            // password either, and refuses a PASS.
            (Protocol::Irc, None) => conn.log_in_irc_without_pass(&user, self.timeout)?,
            _ => conn.log_in(self.protocol, &user, &self.password, self.timeout)?,
        }
        Ok(conn)
    }

    /// What carries the connections, for reports: `plain` or `tls`.
    pub fn transport(&self) -> &'static str {
        if self.tls.is_some() { "tls" } else { "plain" }
    }

    /// Whether progress lines should be drawn.
    pub fn show_progress(&self) -> bool {
        self.progress && std::io::stderr().is_terminal()
    }
}

/// Why a scenario could not complete.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the bench was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The server answered something the scenario cannot go on from.
    #[error("{0}")]
    Protocol(String),
    /// A phase did not finish within the timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The arguments make no sense together.
    #[error("{0}")]
    Usage(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }
}

/// The instant all body timestamps count from.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// How long deliveries may stall before a run stops waiting for the rest.
const DELIVERY_STALL: Duration = Duration::from_secs(5);

/// Waits for every sender thread of a run.
///
/// # Errors
/// The last error a sender returned (or its panic).
pub fn join_senders(senders: Vec<std::thread::JoinHandle<Result<(), BenchError>>>) -> Result<(), BenchError> {
    let mut send_error = None;
    for sender in senders {
        match sender.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => send_error = Some(e),
            Err(_) => send_error = Some(BenchError::Protocol("a sender thread panicked".into())),
        }
    }
    send_error.map_or(Ok(()), Err)
}

/// Waits until `delivered()` reaches `expected`, the `deadline` passes, or
/// deliveries stall for five seconds; returns the final count.
pub fn wait_for_deliveries(delivered: impl Fn() -> u64, expected: u64, deadline: Instant) -> u64 {
    let mut progress = (delivered(), Instant::now());
    while progress.0 < expected && Instant::now() < deadline && progress.1.elapsed() < DELIVERY_STALL {
        std::thread::sleep(Duration::from_millis(2));
        let now = delivered();
        if now != progress.0 {
            progress = (now, Instant::now());
        }
    }
    delivered()
}

/// Runs `f` on `threads` threads over the indices `0..count`, each index
/// once, and collects every result in index order. Used to open many
/// connections in parallel without one thread per connection.
///
/// # Errors
/// The first error any call returned.
pub fn parallel<T: Send>(
    count: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<T, BenchError> + Sync,
) -> Result<Vec<T>, BenchError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T, BenchError>>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, count.max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    let result = f(i);
                    let failed = result.is_err();
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                    if failed {
                        // Stop handing out work; the others finish theirs.
                        next.store(count, Ordering::Relaxed);
                        return;
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(count);
    for result in results {
        match result {
            Some(Ok(value)) => out.push(value),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(BenchError::Protocol(
                    "a parallel task was not run after an earlier failure".into(),
                ));
            }
        }
    }
    Ok(out)
}
