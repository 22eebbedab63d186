//! `charla-server`: parses the command line, binds, opens storage, and runs
//! the server until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use charla::config::{Config, FilesConfig, LimitsConfig};
use charla::net::server::{Listeners, Server};
use charla::shutdown::Shutdown;
use charla::store::sqlite::SyncMode;

/// The charla chat server: accounts and messages in SQLite, one line
/// protocol (docs/PROTOCOL.md) for the `charla` client, scripts and nc.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A tool instead of the server.
    #[command(subcommand)]
    tool: Option<Tool>,
    /// Address to listen on in plain text; port 0 picks a free port (shown
    /// at start); `none` for no plain listener (with --tls-addr).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// Also listen here for the same protocol inside TLS 1.2 or 1.3 (needs
    /// --tls-cert and --tls-key).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_addr: Option<String>,
    /// The server's certificate chain, PEM (for --tls-addr and
    /// --irc-tls-addr).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key, PEM (for --tls-addr and
    /// --irc-tls-addr).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also let IRC clients (irssi, WeeChat, bots) in on this address, with
    /// the same accounts and rooms (PROTOCOL.md 13).
    #[arg(long)]
    irc_addr: Option<String>,
    /// The IRC front end inside TLS (needs --tls-cert and --tls-key).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    irc_tls_addr: Option<String>,
    /// The database: an SQLite file, created with its tables on first start,
    /// or `postgres://USER@HOST:PORT/DBNAME` (or `postgresql://`) to be one
    /// node of a cluster sharing that PostgreSQL database (docs/CLUSTER.md).
    #[arg(long, default_value = "chat.db")]
    db: String,
    /// Serve plain HTTP health checks on this address: `/health`,
    /// `/health/nodes`, `/health/ping` (docs/CLUSTER.md).
    #[arg(long)]
    health_addr: Option<String>,
    /// An address whose connections begin with a PROXY protocol header (v1
    /// or v2), e.g. the load balancer in front of this node; the address
    /// the header carries counts as the client's. Repeatable.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<IpAddr>,
    /// Most connections at once; further ones get `BYE server-full`.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_clients: u64,
    /// Longest line in bytes, counting the newline.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(charla::proto::frame::MIN_MAX_LINE as u64..=1 << 20))]
    max_line: u64,
    /// Seconds a connection has to log in or register.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    login_timeout: u64,
    /// bcrypt cost for new password hashes (4 to 31; each step doubles the work).
    #[arg(long, default_value_t = charla::config::DEFAULT_BCRYPT_COST, value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: u32,
    /// SQLite synchronous level. `normal` (WAL, fsync at checkpoints): every
    /// acknowledged message survives a crash or kill -9 of the server, as the
    /// protocol promises. `full` (fsync at every commit) also survives a power
    /// cut of the machine, at ~200 µs more per commit (docs/PERFORMANCE.md).
    #[arg(long, value_enum, default_value_t = SyncMode::Normal)]
    sync: SyncMode,
    /// Also append every error to this file.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// This server's name, announced in HELLO and, in a cluster, unique
    /// among the live nodes.
    #[arg(long, default_value = "node-1")]
    node: String,
    /// Messages per second a session may send, sustained (0: no limit).
    /// Over it: `ERR SAY rate-limited`, nothing stored.
    #[arg(long, default_value_t = 20.0, value_parser = non_negative)]
    msg_rate: f64,
    /// Messages a session may send at once; its allowance starts full.
    #[arg(long, default_value_t = 200)]
    msg_burst: u32,
    /// Failed logins per account name per minute before `ERR LOGIN
    /// rate-limited` (0: no limit). While throttled, even the right password
    /// is refused, without spending bcrypt on it.
    #[arg(long, default_value_t = 10)]
    login_failures_per_account: u32,
    /// Failed logins per source address per 15 minutes (0: no limit).
    #[arg(long, default_value_t = 30)]
    login_failures_per_address: u32,
    /// Registrations per source address per hour (0: no limit). Raise it for
    /// a classroom behind one NAT address.
    #[arg(long, default_value_t = 20)]
    registrations_per_address: u32,
    /// Connections open at once per source address; more get `BYE
    /// server-full` (0: no limit).
    #[arg(long, default_value_t = 64)]
    max_connections_per_address: usize,
    /// Apply the per-address limits to loopback addresses too (exempt by
    /// default, so local scripts and benchmarks are not throttled).
    #[arg(long)]
    limit_loopback: bool,
    /// Where the file relay listens (for clients that cannot reach each
    /// other); `auto`: the --addr (or --tls-addr) host, a free port.
    #[arg(long, default_value = "auto")]
    relay_addr: String,
    /// The relay's address as clients are told it, when it is not the
    /// address it listens on (behind NAT or a balancer).
    #[arg(long)]
    relay_announce: Option<String>,
    /// The largest file that may be shared, in bytes (default 4 GiB).
    #[arg(long, default_value_t = charla::core::files::DEFAULT_MAX_FILE_SIZE, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    max_file_size: u64,
    /// Relayed transfers an account may fetch at once (0: no limit).
    #[arg(long, default_value_t = 4)]
    relay_per_account: usize,
    /// Bytes per second an account's relayed transfers may take together
    /// (0: no limit).
    #[arg(long, default_value_t = 20 * 1024 * 1024)]
    relay_rate: u64,
    /// Rooms an account may be in besides #general; a JOIN past it is
    /// `limit-reached` (0: no limit).
    #[arg(long, default_value_t = 100)]
    max_rooms_per_account: usize,
    /// Rooms an account may create per hour; a JOIN that would create one
    /// more is `limit-reached` (0: no limit).
    #[arg(long, default_value_t = 20)]
    rooms_created_per_hour: u32,
}

/// Tools that run instead of the server.
#[derive(Subcommand, Debug)]
enum Tool {
    /// Writes a self-signed certificate and key for --tls-cert/--tls-key,
    /// valid for the host names and IP addresses given, and prints its
    /// SHA-256 fingerprint to hand out. Clients then trust it with
    /// `charla --tls --ca CERT`.
    Certificate {
        /// A host name or IP address clients will use (repeatable).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Where to write the certificate.
        #[arg(long, default_value = "charla-cert.pem")]
        cert: PathBuf,
        /// Where to write the private key (readable by its owner only).
        #[arg(long, default_value = "charla-key.pem")]
        key: PathBuf,
        /// Days it is valid.
        #[arg(long, default_value_t = 825, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

/// Writes the certificate and key of `charla-server certificate`.
fn certificate(names: &[String], cert: &std::path::Path, key: &std::path::Path, days: u32, force: bool) -> ExitCode {
    use std::os::unix::fs::OpenOptionsExt as _;
    for path in [cert, key] {
        if path.exists() && !force {
            eprintln!("charla-server: {} exists; use --force to replace it", path.display());
            return ExitCode::FAILURE;
        }
    }
    let made = match charla::net::tls::self_signed(names, days) {
        Ok(made) => made,
        Err(e) => {
            eprintln!("charla-server: cannot make the certificate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let write = |path: &std::path::Path, text: &str, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
    };
    if let Err(e) = write(key, &made.key, 0o600).and_then(|()| write(cert, &made.certificate, 0o644)) {
        eprintln!("charla-server: cannot write the certificate or key: {e}");
        return ExitCode::FAILURE;
    }
    println!("certificate: {} (for {})", cert.display(), names.join(", "));
    println!("private key: {} (keep it secret)", key.display());
    println!("SHA-256 fingerprint: {}", made.fingerprint);
    println!(
        "start the server with --tls-addr HOST:PORT --tls-cert {} --tls-key {}; clients: charla --tls --ca {} --server {}:PORT",
        cert.display(),
        key.display(),
        cert.display(),
        names.first().map_or("HOST", String::as_str)
    );
    ExitCode::SUCCESS
}

/// A rate that is a finite number of at least 0.
fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err("expected a number of at least 0".to_string()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Tool::Certificate {
        names,
        cert,
        key,
        days,
        force,
    }) = &args.tool
    {
        return certificate(names, cert, key, *days, *force);
    }
    if let Err(e) = charla::logging::init("info", args.log_file.as_deref()) {
        eprintln!(
            "charla-server: cannot open the log file {}: {e}",
            display(&args.log_file)
        );
        return ExitCode::FAILURE;
    }
    if !charla::core::validate::is_token(&args.node) {
        eprintln!("charla-server: --node must be 1 to 64 characters of A-Z a-z 0-9 _ -");
        return ExitCode::FAILURE;
    }
    if args.tls_cert.is_some() && args.tls_addr.is_none() && args.irc_tls_addr.is_none() {
        eprintln!("charla-server: --tls-cert and --tls-key need --tls-addr or --irc-tls-addr");
        return ExitCode::FAILURE;
    }
    let plain = if args.addr == "none" {
        if args.tls_addr.is_none() && args.irc_addr.is_none() && args.irc_tls_addr.is_none() {
            eprintln!(
                "charla-server: --addr none needs --tls-addr, --irc-addr or --irc-tls-addr: there would be nothing to listen on"
            );
            return ExitCode::FAILURE;
        }
        None
    } else {
        match TcpListener::bind(&args.addr) {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("charla-server: cannot listen on {}: {e}", args.addr);
                return ExitCode::FAILURE;
            }
        }
    };
    let tls_config = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match charla::net::tls::server_config(cert, key) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("charla-server: TLS: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let bind = |addr: &Option<String>| -> Result<Option<TcpListener>, ExitCode> {
        match addr {
            None => Ok(None),
            Some(addr) => TcpListener::bind(addr).map(Some).map_err(|e| {
                eprintln!("charla-server: cannot listen on {addr}: {e}");
                ExitCode::FAILURE
            }),
        }
    };
    let with_config = |listener: Option<TcpListener>| listener.zip(tls_config.clone());
    let tls = match bind(&args.tls_addr) {
        Ok(listener) => with_config(listener),
        Err(code) => return code,
    };
    let irc = match bind(&args.irc_addr) {
        Ok(listener) => listener,
        Err(code) => return code,
    };
    let irc_tls = match bind(&args.irc_tls_addr) {
        Ok(listener) => with_config(listener),
        Err(code) => return code,
    };
    let relay_addr = match args.relay_addr.as_str() {
        "auto" => {
            let host = plain
                .as_ref()
                .or(tls.as_ref().map(|(l, _)| l))
                .or(irc.as_ref())
                .and_then(|l| l.local_addr().ok())
                .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
            std::net::SocketAddr::new(host, 0).to_string()
        }
        addr => addr.to_string(),
    };
    let relay = match TcpListener::bind(&relay_addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("charla-server: cannot listen for the file relay on {relay_addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let relay_bound = match relay.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("charla-server: cannot read the relay's address: {e}");
            return ExitCode::FAILURE;
        }
    };
    let health = match &args.health_addr {
        None => None,
        Some(addr) => match TcpListener::bind(addr) {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("charla-server: cannot serve health checks on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let config = Config {
        db: args.db,
        trusted_proxies: args.trusted_proxies,
        max_clients: usize::try_from(args.max_clients).unwrap_or(usize::MAX),
        max_line: usize::try_from(args.max_line).unwrap_or(usize::MAX),
        login_timeout: Duration::from_secs(args.login_timeout),
        bcrypt_cost: args.bcrypt_cost,
        sync: args.sync,
        node: args.node,
        limits: LimitsConfig {
            msg_rate: args.msg_rate,
            msg_burst: args.msg_burst,
            login_failures_per_account: args.login_failures_per_account,
            login_failures_per_address: args.login_failures_per_address,
            registrations_per_address: args.registrations_per_address,
            connections_per_address: args.max_connections_per_address,
            limit_loopback: args.limit_loopback,
            max_rooms_per_account: args.max_rooms_per_account,
            rooms_created_per_hour: args.rooms_created_per_hour,
        },
        files: FilesConfig {
            max_file_size: args.max_file_size,
            relay: Some(relay_bound),
            relay_announce: args.relay_announce,
            relay_per_account: args.relay_per_account,
            relay_rate: args.relay_rate,
        },
        ..Config::default()
    };
    let shutdown = Shutdown::new();
    let server = match Server::open(config, shutdown.clone()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("charla-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = watch_signals(shutdown) {
        eprintln!("charla-server: cannot watch for signals: {e}");
        return ExitCode::FAILURE;
    }
    // The health line first: scripts that wait for "Servidor escuchando"
    // then know every address. Stdout may be closed by whoever started us:
    // that is no reason to stop.
    let mut stdout = std::io::stdout();
    if let Some(Ok(addr)) = health.as_ref().map(TcpListener::local_addr) {
        let _ = writeln!(stdout, "Salud en http://{addr}/health");
    }
    // The plain listener's line comes last, when there is one: scripts that
    // wait for it then know every address.
    let announced = [
        irc_tls.as_ref().map(|(l, _)| (l, " (IRC, TLS)")),
        irc.as_ref().map(|l| (l, " (IRC)")),
        tls.as_ref().map(|(l, _)| (l, " (TLS)")),
        plain.as_ref().map(|l| (l, "")),
    ];
    for (listener, kind) in announced.into_iter().flatten() {
        match listener.local_addr() {
            Ok(addr) => {
                let _ = writeln!(stdout, "Servidor escuchando en {addr}{kind}");
            }
            Err(e) => {
                eprintln!("charla-server: cannot read the listening address: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = stdout.flush();
    let listeners = Listeners {
        plain,
        tls,
        irc,
        irc_tls,
        health,
        relay: Some(relay),
    };
    match server.run(listeners) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("charla-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first SIGINT/SIGTERM stops the server in order; a second one ends
/// the process at once.
fn watch_signals(shutdown: Shutdown) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen == 1 {
                log::info!("signal {signal}: stopping");
                shutdown.trigger();
            } else {
                log::warn!("second signal: exiting now");
                std::process::exit(130);
            }
        }
    })?;
    Ok(())
}

fn display(path: &Option<PathBuf>) -> String {
    path.as_ref().map_or_else(String::new, |p| p.display().to_string())
}
