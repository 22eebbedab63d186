//! The operator's settings, as plain data with the protocol's defaults.
//!
//! The binary fills a [`Config`] from its command line; tests and the bench
//! build one directly. Nothing here starts or opens anything.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::store::sqlite::SyncMode;

/// Default bound of pending output per session (PROTOCOL.md 5.4).
pub const DEFAULT_OUTBOX_LIMIT: usize = 1 << 20;
/// bcrypt's own default cost.
pub const DEFAULT_BCRYPT_COST: u32 = 10;

/// Everything an operator can set, with the protocol's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// The database: an SQLite file, or a `postgres://` (or
    /// `postgresql://`) URL for a node of a cluster.
    pub db: String,
    /// Where `/health` is served, if anywhere (PROTOCOL.md 10.1).
    pub health_addr: Option<SocketAddr>,
    /// Addresses whose connections begin with a PROXY protocol header
    /// (PROTOCOL.md 10.2): a load balancer in front of the node.
    pub trusted_proxies: Vec<IpAddr>,
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
    /// File sharing.
    pub files: FilesConfig,
}

/// File sharing's settings (PROTOCOL.md 11).
#[derive(Clone, Debug)]
pub struct FilesConfig {
    /// The largest size `SHARE` accepts, in bytes.
    pub max_file_size: u64,
    /// Where the relay listens, once bound (`None`: no relay; offers of
    /// clients without an endpoint cannot be fetched).
    pub relay: Option<SocketAddr>,
    /// The relay's address as clients must be told it, when it is not the
    /// address it is bound to (behind NAT or a balancer).
    pub relay_announce: Option<String>,
    /// Relayed transfers an account may have at once, as the fetcher.
    pub relay_per_account: usize,
    /// Bytes per second an account's relayed transfers may take together
    /// (0: no limit).
    pub relay_rate: u64,
}

impl Default for FilesConfig {
    fn default() -> FilesConfig {
        FilesConfig {
            max_file_size: crate::core::files::DEFAULT_MAX_FILE_SIZE,
            relay: None,
            relay_announce: None,
            relay_per_account: 4,
            relay_rate: 20 * 1024 * 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            db: "chat.db".to_string(),
            health_addr: None,
            trusted_proxies: Vec::new(),
            max_clients: 10_000,
            max_line: 4096,
            login_timeout: Duration::from_secs(60),
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            hash_threads: 0,
            outbox_limit: DEFAULT_OUTBOX_LIMIT,
            sync: SyncMode::Normal,
            node: "node-1".to_string(),
            limits: LimitsConfig::default(),
            files: FilesConfig::default(),
        }
    }
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
    /// Rooms an account may be in besides `#general` (PROTOCOL.md 9.4).
    pub max_rooms_per_account: usize,
    /// Rooms an account may create per hour (0: no limit).
    pub rooms_created_per_hour: u32,
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
            max_rooms_per_account: 100,
            rooms_created_per_hour: 20,
        }
    }
}
