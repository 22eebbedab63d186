//! `fanout`: N sessions in one room, S of them sending M timestamped
//! messages each with at most W unacknowledged; every receiver measures
//! end-to-end latency. With `--clients 2 --senders 1 --window 1` it is the
//! ping-pong latency test; with senders = clients and a wide window, the
//! durable ingest test. Against a cluster, `--spread` deals the sessions
//! over several nodes' addresses, and `--receivers-addr` puts the sessions
//! that only listen on another node than the senders, to measure delivery
//! from one node to another.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use hdrhistogram::Histogram;

use super::procstat::{self, ProcDelta};
use super::report::{Report, latency_histogram};
use super::wire::{self, Conn, Incoming, Protocol};
use super::{BenchError, Common, join_senders, now_ns, parallel, wait_for_deliveries};

/// Stack of a bench reader or sender thread.
const THREAD_STACK: usize = 128 * 1024;
/// Connections opened at once while setting up.
const CONNECTORS: usize = 32;

/// The shape of a fanout run.
#[derive(Clone, Debug)]
pub struct FanoutOptions {
    /// Sessions in the room.
    pub clients: usize,
    /// How many of them send.
    pub senders: usize,
    /// Messages per sender.
    pub messages: usize,
    /// Most unacknowledged messages per sender.
    pub window: usize,
    /// Body size in bytes.
    pub size: usize,
    /// Where the sessions that only listen connect (`--receivers-addr`);
    /// `None`: with the senders, at the common address.
    pub receivers_addr: Option<SocketAddr>,
    /// Addresses the sessions are dealt over in turn, senders and listeners
    /// alike (`--spread`); empty: every session at the common address.
    pub spread: Vec<SocketAddr>,
}

impl FanoutOptions {
    /// Where session `i` connects (the first `senders` sessions send):
    /// dealt over [`FanoutOptions::spread`] in turn when it is set, else a
    /// listener at [`FanoutOptions::receivers_addr`] when that is set, else
    /// `common`.
    pub fn address_of(&self, common: SocketAddr, i: usize) -> SocketAddr {
        if !self.spread.is_empty() {
            return self.spread[i % self.spread.len()];
        }
        match self.receivers_addr {
            Some(listeners) if i >= self.senders => listeners,
            _ => common,
        }
    }
}

/// What one reader thread counts, shared with the main thread.
#[derive(Default)]
struct ReaderStats {
    /// Messages from others received.
    deliveries: AtomicU64,
    /// When the last one arrived (ns since the epoch).
    last_delivery_ns: AtomicU64,
    /// Sends the server refused.
    refused: AtomicU64,
    /// Set if the server closed the connection (BYE/ERROR/EOF).
    closed: AtomicBool,
}

/// A logged-in client with its reader thread running.
pub struct LiveClient {
    /// For sending and for closing.
    pub conn_stream: Arc<wire::Stream>,
    /// What the reader counts.
    stats: Arc<ReaderStats>,
    /// The reader, returning its latency histogram.
    reader: thread::JoinHandle<Histogram<u64>>,
}

/// Runs the scenario.
///
/// # Errors
/// On bad options, a failed setup, or a sender that cannot finish in time.
pub fn run(common: &Common, options: &FanoutOptions) -> Result<Report, BenchError> {
    run_with(common, options, || {})
}

/// Runs the scenario, calling `on_start` as the senders start (the storm
/// scenario starts its logins there).
///
/// # Errors
/// As [`run`].
pub fn run_with(common: &Common, options: &FanoutOptions, on_start: impl FnOnce()) -> Result<Report, BenchError> {
    check(common.protocol, options)?;
    let conns = parallel(options.clients, CONNECTORS, |i| {
        common.open_at(i, options.address_of(common.addr, i))
    })?;
    let server_before = common
        .server_pid
        .map(|pid| procstat::sample(Some(pid)))
        .transpose()
        .ok()
        .flatten();
    let bench_before = procstat::sample(None).ok();

    let mut permits: Vec<Receiver<()>> = Vec::new();
    let mut clients = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let window = if i < options.senders {
            let (give, take) = bounded(options.window);
            for _ in 0..options.window {
                let _ = give.send(());
            }
            permits.push(take);
            Some(give)
        } else {
            None
        };
        clients.push(spawn_reader(conn, common.protocol, window)?);
    }

    let start = Arc::new(Barrier::new(options.senders + 1));
    let mut senders = Vec::with_capacity(options.senders);
    for (i, take) in permits.into_iter().enumerate() {
        let stream = Arc::clone(&clients[i].conn_stream);
        let start = Arc::clone(&start);
        let (protocol, options, timeout) = (common.protocol, options.clone(), common.timeout);
        senders.push(
            thread::Builder::new()
                .name(format!("sender-{i}"))
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    start.wait();
                    send_all(&stream, protocol, i, &options, &take, timeout)
                })
                .map_err(BenchError::io("start a sender thread"))?,
        );
    }

    let expected = (options.senders * options.messages * (options.clients - 1)) as u64;
    let delivered = || {
        clients
            .iter()
            .map(|c| c.stats.deliveries.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let started = Instant::now();
    let started_ns = now_ns();
    on_start();
    start.wait();
    let sent = join_senders(senders);
    let acked = started.elapsed();
    if let Err(e) = sent {
        close_all(clients, options.senders);
        return Err(e);
    }
    let received = wait_for_deliveries(delivered, expected, started + common.timeout);
    let last_ns = clients
        .iter()
        .map(|c| c.stats.last_delivery_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let delivery_time = Duration::from_nanos(last_ns.saturating_sub(started_ns)).max(Duration::from_micros(1));
    let refused: u64 = clients.iter().map(|c| c.stats.refused.load(Ordering::Relaxed)).sum();
    let cut = clients
        .iter()
        .filter(|c| c.stats.closed.load(Ordering::Relaxed))
        .count();
    let server = server_before.and_then(|before| {
        let after = procstat::sample(common.server_pid).ok()?;
        Some(ProcDelta::between(&before, &after))
    });
    let bench = bench_before.and_then(|b| Some(ProcDelta::between(&b, &procstat::sample(None).ok()?)));
    let (latency, listeners_latency) = close_all(clients, options.senders);

    let total = (options.senders * options.messages) as u64;
    let mut report = Report::new("fanout");
    report
        .text("protocol", protocol_name(common.protocol))
        .text("transport", common.transport())
        .int("clients", options.clients as u64)
        .int("senders", options.senders as u64)
        .int("messages_per_sender", options.messages as u64)
        .int("window", options.window as u64)
        .int("size", options.size as u64)
        .int("messages", total)
        .float("send_seconds", acked.as_secs_f64())
        .float("messages_per_s", total as f64 / acked.as_secs_f64())
        .int("deliveries_expected", expected)
        .int("deliveries_received", received)
        .int("deliveries_lost", expected.saturating_sub(received))
        .float("delivery_seconds", delivery_time.as_secs_f64())
        .float("deliveries_per_s", received as f64 / delivery_time.as_secs_f64())
        .int("refused", refused)
        .int("disconnected", cut as u64)
        .latency("latency_", &latency);
    if let Some(listeners) = options.receivers_addr {
        // Only the listeners' deliveries crossed from the senders' node.
        report
            .text("receivers_addr", &listeners.to_string())
            .latency("receivers_latency_", &listeners_latency);
    }
    if !options.spread.is_empty() {
        let spread: Vec<String> = options.spread.iter().map(ToString::to_string).collect();
        report.text("spread", &spread.join(","));
    }
    if let Some(server) = &server {
        report.process("server_", server);
    }
    if let Some(bench) = &bench {
        report.process("bench_", bench);
    }
    Ok(report)
}

/// Refuses option combinations that cannot run.
fn check(protocol: Protocol, o: &FanoutOptions) -> Result<(), BenchError> {
    let usage = |m: &str| Err(BenchError::Usage(m.to_string()));
    if o.clients < 2 {
        return usage("--clients must be at least 2");
    }
    if o.senders == 0 || o.senders > o.clients {
        return usage("--senders must be between 1 and --clients");
    }
    if o.window == 0 || o.messages == 0 {
        return usage("--window and --messages must be at least 1");
    }
    let most = match protocol {
        Protocol::Charla => 2000,
        Protocol::Irc => 400,
    };
    if o.size < 32 || o.size > most {
        return usage(&format!("--size must be between 32 and {most} bytes for this protocol"));
    }
    if o.receivers_addr.is_some() && !o.spread.is_empty() {
        return usage("--receivers-addr and --spread cannot be used together");
    }
    if o.receivers_addr.is_some() && o.senders == o.clients {
        return usage("--receivers-addr needs listeners: --senders below --clients");
    }
    Ok(())
}

/// The protocol's name for reports.
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Charla => "charla",
        Protocol::Irc => "irc",
    }
}

/// Starts the reader thread of a logged-in connection. `window` receives a
/// permit back for each acknowledgement (senders only).
///
/// # Errors
/// When the thread cannot start.
fn spawn_reader(mut conn: Conn, protocol: Protocol, window: Option<Sender<()>>) -> Result<LiveClient, BenchError> {
    let stats = Arc::new(ReaderStats::default());
    let conn_stream = Arc::clone(&conn.stream);
    let counted = Arc::clone(&stats);
    let reader = thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let mut latency = latency_histogram();
            let (mut deliveries, mut last_ns, mut now) = (0u64, 0u64, now_ns());
            loop {
                // Lines already buffered arrived with the same read: one
                // clock reading serves them all. Counters are published
                // before each read that may block.
                let fresh = !conn.has_buffered();
                if fresh {
                    counted.deliveries.store(deliveries, Ordering::Relaxed);
                    counted.last_delivery_ns.store(last_ns, Ordering::Relaxed);
                }
                let line = match conn.read_raw() {
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => break,
                };
                if fresh {
                    now = now_ns();
                }
                match wire::classify(protocol, line) {
                    Incoming::Delivery(body) => {
                        if let Some(sent) = wire::sent_ns(body) {
                            let _ = latency.record(now.saturating_sub(sent).max(1));
                        }
                        deliveries += 1;
                        last_ns = now;
                    }
                    Incoming::Ack => {
                        if let Some(window) = &window {
                            let _ = window.try_send(());
                        }
                    }
                    Incoming::Refused => {
                        counted.refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(window) = &window {
                            let _ = window.try_send(());
                        }
                    }
                    Incoming::KeepAlive(token) => {
                        let pong = [b"PONG ", token, b"\r\n"].concat();
                        let _ = conn.send(&pong);
                    }
                    Incoming::Closing => break,
                    Incoming::Other => {}
                }
            }
            counted.deliveries.store(deliveries, Ordering::Relaxed);
            counted.last_delivery_ns.store(last_ns, Ordering::Relaxed);
            counted.closed.store(true, Ordering::Relaxed);
            latency
        })
        .map_err(BenchError::io("start a reader thread"))?;
    Ok(LiveClient {
        conn_stream,
        stats,
        reader,
    })
}

/// A sender's loop: `messages` sends, never more than `window` in flight,
/// then waits until all are acknowledged.
fn send_all(
    stream: &wire::Stream,
    protocol: Protocol,
    sender: usize,
    options: &FanoutOptions,
    permits: &Receiver<()>,
    timeout: Duration,
) -> Result<(), BenchError> {
    use std::io::Write as _;
    let deadline = Instant::now() + timeout;
    let wait = |what: &str| {
        permits
            .recv_deadline(deadline)
            .map_err(|_| BenchError::Timeout(format!("sender {sender}: {what}")))
    };
    for seq in 0..options.messages {
        wait("acknowledgements stopped coming")?;
        let body = wire::body(sender, seq, now_ns(), options.size);
        let mut out = stream;
        out.write_all(&wire::encode_message(protocol, &body))
            .map_err(BenchError::io("send a message"))?;
    }
    for _ in 0..options.window {
        wait("the last acknowledgements did not come")?;
    }
    Ok(())
}

/// Closes every client and merges their latency histograms: everyone's,
/// and the listeners' alone (the clients from index `senders` on).
fn close_all(clients: Vec<LiveClient>, senders: usize) -> (Histogram<u64>, Histogram<u64>) {
    let (mut merged, mut listeners) = (latency_histogram(), latency_histogram());
    for client in &clients {
        let _ = client.conn_stream.shutdown(std::net::Shutdown::Both);
    }
    for (i, client) in clients.into_iter().enumerate() {
        if let Ok(latency) = client.reader.join() {
            let _ = merged.add(&latency);
            if i >= senders {
                let _ = listeners.add(&latency);
            }
        }
    }
    (merged, listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(receivers_addr: Option<SocketAddr>, spread: Vec<SocketAddr>) -> FanoutOptions {
        FanoutOptions {
            clients: 6,
            senders: 2,
            messages: 10,
            window: 8,
            size: 64,
            receivers_addr,
            spread,
        }
    }

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn senders_and_listeners_connect_where_told() {
        let common = at(7001);
        let all_here = options(None, Vec::new());
        assert!((0..6).all(|i| all_here.address_of(common, i) == common));

        let apart = options(Some(at(7002)), Vec::new());
        let placed: Vec<u16> = (0..6).map(|i| apart.address_of(common, i).port()).collect();
        assert_eq!(placed, [7001, 7001, 7002, 7002, 7002, 7002]);

        let spread = options(None, vec![at(7001), at(7002), at(7003)]);
        let placed: Vec<u16> = (0..6).map(|i| spread.address_of(common, i).port()).collect();
        assert_eq!(placed, [7001, 7002, 7003, 7001, 7002, 7003]);
    }

    #[test]
    fn placement_options_that_cannot_work_are_refused() {
        let both = options(Some(at(7002)), vec![at(7001)]);
        assert!(check(Protocol::Charla, &both).is_err());
        let mut no_listeners = options(Some(at(7002)), Vec::new());
        no_listeners.senders = no_listeners.clients;
        assert!(check(Protocol::Charla, &no_listeners).is_err());
        assert!(check(Protocol::Charla, &options(Some(at(7002)), Vec::new())).is_ok());
        assert!(check(Protocol::Charla, &options(None, vec![at(7001), at(7002)])).is_ok());
    }
}
