//! `charla-bench`: parses the command line and runs one load scenario
//! against a running server (see docs/PERFORMANCE.md).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use charla::bench::connect::{self, ConnectOptions};
use charla::bench::fanout::{self, FanoutOptions};
use charla::bench::login::{self, LoginOptions};
use charla::bench::rooms::{self, RoomsOptions};
use charla::bench::wire::Tls;
use charla::bench::{BenchError, Common, Protocol};

/// Load scenarios for charla-server (and, for comparison, an IRC server).
///
/// Opening many connections needs file descriptors: `ulimit -n` must exceed
/// the number of clients (10,000 clients: `ulimit -n 20000`).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// The server to load; only loopback servers are benchmarked here.
    #[arg(long, default_value = "127.0.0.1:8000", global = true)]
    addr: String,
    /// Protocol of the server.
    #[arg(long, value_enum, default_value_t = Protocol::Charla, global = true)]
    protocol: Protocol,
    /// The server's pid: report its CPU time, RSS and context switches.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Print one JSON line instead of the human summary.
    #[arg(long, global = true)]
    json: bool,
    /// Prefix of the bench accounts (created on first use, then reused).
    #[arg(long, default_value = "bench", global = true)]
    prefix: String,
    /// Password of the bench accounts.
    #[arg(long, default_value = "bench-pass-1", global = true)]
    password: String,
    /// Seconds any phase may take before the run gives up.
    #[arg(long, default_value_t = 120, global = true)]
    timeout: u64,
    /// Every connection over TLS (the server's --tls-addr; charla protocol
    /// only), verifying the certificate for the host of --addr.
    #[arg(long, global = true)]
    tls: bool,
    /// With --tls, trust the certificates in this PEM file (the server's
    /// self-signed certificate) instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls", global = true)]
    ca: Option<PathBuf>,
    /// With --protocol irc against charla's IRC front end (--irc-addr):
    /// make the bench accounts first at this charla-protocol address.
    #[arg(long, value_name = "HOST:PORT", global = true)]
    accounts_at: Option<String>,
    /// Connect from this local address (another loopback address, such as
    /// 127.0.0.2): a cluster node that trusts PROXY headers from 127.0.0.1
    /// (its balancer) takes connections from any other address directly.
    #[arg(long, value_name = "IP", global = true)]
    source: Option<std::net::IpAddr>,
    /// The scenario.
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N sessions, S senders, M messages each, window W: rates, loss, latency.
    Fanout(FanoutArgs),
    /// C sessions connect and log in; then one message reaches all of them.
    Connect {
        /// Sessions to open.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Connections opened at once.
        #[arg(long, default_value_t = 32)]
        parallel: usize,
    },
    /// L logins over P connections at once, against what the cores can hash.
    Login(LoginArgs),
    /// Protocol 1.1: R rooms of M members (S senders each), P private
    /// pairs, I idle sessions that must hear nothing but presence.
    Rooms(RoomsArgs),
    /// Chat latency of a fanout alone and during a login storm.
    Storm {
        #[command(flatten)]
        chat: FanoutArgs,
        #[command(flatten)]
        logins: LoginArgs,
    },
}

#[derive(Args, Debug)]
struct FanoutArgs {
    /// Sessions in the room.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// How many of them send.
    #[arg(long, default_value_t = 50)]
    senders: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Most unacknowledged messages per sender.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The sessions that do not send connect here, the senders at --addr
    /// (two nodes of one cluster: delivery from one node to another; the
    /// listeners' own latency is reported as receivers_latency_*).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "spread")]
    receivers_addr: Option<String>,
    /// Deal the sessions over these addresses in turn instead of --addr
    /// (the nodes of one cluster).
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    spread: Vec<String>,
}

#[derive(Args, Debug)]
struct RoomsArgs {
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Member accounts of each room, one session each.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Members of each room that send.
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// Messages per sender (room senders and each side of a private pair).
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Private conversations: pairs of accounts sending to each other.
    #[arg(long, default_value_t = 0)]
    private: usize,
    /// Most unacknowledged messages per sender.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Idle sessions logged in, in no room; they must receive only presence.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

#[derive(Args, Debug)]
struct LoginArgs {
    /// Logins in all.
    #[arg(long, default_value_t = 200)]
    logins: usize,
    /// Connections logging in at once.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// The server's bcrypt cost (to compare with what the cores can hash).
    #[arg(long, default_value_t = charla::config::DEFAULT_BCRYPT_COST)]
    cost: u32,
}

impl FanoutArgs {
    /// The options, with the addresses resolved.
    ///
    /// # Errors
    /// What to tell the user when an address does not resolve.
    fn options(&self) -> Result<FanoutOptions, String> {
        Ok(FanoutOptions {
            clients: self.clients,
            senders: self.senders,
            messages: self.messages,
            window: self.window,
            size: self.size,
            receivers_addr: self
                .receivers_addr
                .as_deref()
                .map(|a| resolve("--receivers-addr", a))
                .transpose()?,
            spread: self
                .spread
                .iter()
                .map(|a| resolve("--spread", a))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The first address `text` resolves to.
///
/// # Errors
/// `cannot resolve OPTION TEXT` when it resolves to none.
fn resolve(option: &str, text: &str) -> Result<SocketAddr, String> {
    match text.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Ok(addr),
        _ => Err(format!("cannot resolve {option} {text}")),
    }
}

impl LoginArgs {
    fn options(&self) -> LoginOptions {
        LoginOptions {
            logins: self.logins,
            parallel: self.parallel,
            cost: self.cost,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let addr = match resolve("--addr", &cli.addr) {
        Ok(addr) => addr,
        Err(told) => {
            eprintln!("charla-bench: {told}");
            return ExitCode::from(2);
        }
    };
    let accounts_at = match &cli.accounts_at {
        None => None,
        Some(_) if cli.protocol != Protocol::Irc => {
            eprintln!("charla-bench: --accounts-at is for --protocol irc");
            return ExitCode::from(2);
        }
        Some(at) => match resolve("--accounts-at", at) {
            Ok(at) => Some(at),
            Err(told) => {
                eprintln!("charla-bench: {told}");
                return ExitCode::from(2);
            }
        },
    };
    let tls = if cli.tls {
        if cli.protocol != Protocol::Charla {
            eprintln!("charla-bench: --tls is for the charla protocol only");
            return ExitCode::from(2);
        }
        let Some(name) = charla::client::tls::server_name(&cli.addr) else {
            eprintln!(
                "charla-bench: --addr {} has no host to verify the certificate against",
                cli.addr
            );
            return ExitCode::from(2);
        };
        match charla::client::tls::client_config(cli.ca.as_deref()) {
            Ok(config) => Some(Tls { config, name }),
            Err(problem) => {
                let path = cli.ca.as_deref().map_or_else(String::new, |p| p.display().to_string());
                let told = charla::client::i18n::Text::CaUnusable {
                    path: &path,
                    problem: &problem,
                };
                eprintln!("charla-bench: {}", told.render(charla::client::i18n::Lang::En));
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let common = Common {
        addr,
        protocol: cli.protocol,
        server_pid: cli.server_pid,
        prefix: cli.prefix,
        password: cli.password,
        timeout: Duration::from_secs(cli.timeout),
        progress: true,
        tls,
        accounts_at,
        source: cli.source,
    };
    let report = match &cli.scenario {
        Scenario::Fanout(args) => args
            .options()
            .map_err(BenchError::Usage)
            .and_then(|options| fanout::run(&common, &options)),
        Scenario::Connect { clients, parallel } => connect::run(
            &common,
            &ConnectOptions {
                clients: *clients,
                parallel: *parallel,
            },
        ),
        Scenario::Login(args) => login::run(&common, &args.options()),
        Scenario::Rooms(a) => rooms::run(
            &common,
            &RoomsOptions {
                rooms: a.rooms,
                members: a.members,
                senders: a.senders,
                messages: a.messages,
                private: a.private,
                window: a.window,
                idle: a.idle,
                size: a.size,
            },
        ),
        Scenario::Storm { chat, logins } => chat
            .options()
            .map_err(BenchError::Usage)
            .and_then(|chat| login::storm(&common, &chat, &logins.options())),
    };
    match report {
        Ok(report) if cli.json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.to_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("charla-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
