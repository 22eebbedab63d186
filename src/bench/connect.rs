//! `connect`: how fast C sessions connect and log in, what each costs the
//! server in memory, and how long one message takes to reach all of them.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::fanout::protocol_name;
use super::procstat;
use super::report::Report;
use super::wire::{self, Conn, Incoming, Protocol};
use super::{BenchError, Common, now_ns, parallel};

/// Stack of a reader thread: it only reads lines.
const THREAD_STACK: usize = 64 * 1024;
/// Body of the one message every client waits for.
const MARKER: &str = "0 0 0 connect-marker";

/// The shape of a connect run.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Sessions to open.
    pub clients: usize,
    /// Connections opened at once.
    pub parallel: usize,
}

/// Runs the scenario.
///
/// # Errors
/// When a connection or login fails, or the message does not reach every
/// client within the timeout.
pub fn run(common: &Common, options: &ConnectOptions) -> Result<Report, BenchError> {
    if options.clients < 2 {
        return Err(BenchError::Usage("--clients must be at least 2".into()));
    }
    let server_before = common.server_pid.and_then(|pid| procstat::sample(Some(pid)).ok());
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let show = common.show_progress();
    let conns = parallel(options.clients, options.parallel, |i| {
        let conn = common.open(i)?;
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if show && n.is_multiple_of(500) {
            eprint!("\rconnected {n}/{}   ", options.clients);
        }
        Ok(conn)
    })?;
    let login_time = started.elapsed();
    if show {
        eprintln!();
    }
    let server_after = common.server_pid.and_then(|pid| procstat::sample(Some(pid)).ok());

    // Every reader first drains what its login caused (JOINs of later
    // clients) by a PING round trip, so the message below is timed alone.
    let ready = Arc::new(Barrier::new(options.clients + 1));
    let received_at: Arc<Vec<AtomicU64>> = Arc::new((0..options.clients).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::with_capacity(options.clients);
    let mut streams = Vec::with_capacity(options.clients);
    for (i, mut conn) in conns.into_iter().enumerate() {
        streams.push(Arc::clone(&conn.stream));
        let (ready, received_at, protocol) = (Arc::clone(&ready), Arc::clone(&received_at), common.protocol);
        readers.push(
            thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    let synced = sync(&mut conn, protocol);
                    ready.wait();
                    if synced.is_ok() && i != 0 {
                        wait_marker(&mut conn, protocol, &received_at[i]);
                    }
                    synced
                })
                .map_err(BenchError::io("start a reader thread"))?,
        );
    }
    ready.wait();
    let sent_ns = now_ns();
    let send = match common.protocol {
        Protocol::Charla => format!("SAY {MARKER}\n"),
        Protocol::Irc => format!("PRIVMSG {} :{MARKER}\r\n", wire::IRC_CHANNEL),
    };
    let sent = (&*streams[0]).write_all(send.as_bytes());
    let deadline = Instant::now() + common.timeout;
    let all = options.clients - 1;
    let count = || {
        received_at
            .iter()
            .skip(1)
            .filter(|t| t.load(Ordering::Relaxed) != 0)
            .count()
    };
    while sent.is_ok() && count() < all && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    let got = count();
    let last = received_at.iter().map(|t| t.load(Ordering::Relaxed)).max().unwrap_or(0);
    for stream in &streams {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    let mut sync_error = None;
    for reader in readers {
        if let Ok(Err(e)) = reader.join() {
            sync_error.get_or_insert(e);
        }
    }
    sent.map_err(BenchError::io("send the marker message"))?;
    if let Some(e) = sync_error {
        return Err(e);
    }

    let mut report = Report::new("connect");
    report
        .text("protocol", protocol_name(common.protocol))
        .text("transport", common.transport())
        .int("clients", options.clients as u64)
        .int("parallel", options.parallel as u64)
        .float("login_seconds", login_time.as_secs_f64())
        .float("logins_per_s", options.clients as f64 / login_time.as_secs_f64())
        .int("marker_expected", all as u64)
        .int("marker_received", got as u64)
        .float("marker_all_ms", last.saturating_sub(sent_ns) as f64 / 1e6);
    if let (Some(before), Some(after)) = (server_before, server_after) {
        let per = after.rss_kib.saturating_sub(before.rss_kib) as f64 / options.clients as f64;
        report
            .int("server_rss_before_kib", before.rss_kib)
            .int("server_rss_after_kib", after.rss_kib)
            .float("server_rss_per_session_kib", per)
            .int("server_threads", after.threads)
            .float("server_cpu_s", after.cpu_seconds - before.cpu_seconds);
    }
    Ok(report)
}

/// Sends a PING and reads until its answer: everything queued for this
/// client before it has then been read.
fn sync(conn: &mut Conn, protocol: Protocol) -> Result<(), BenchError> {
    let (ping, answer): (&[u8], &str) = match protocol {
        Protocol::Charla => (b"PING sync\n", "OK PING sync"),
        Protocol::Irc => (b"PING :sync\r\n", " PONG "),
    };
    conn.send(ping)?;
    loop {
        match conn.read_line()? {
            Some(line) if line.contains(answer) => return Ok(()),
            Some(_) => {}
            None => return Err(BenchError::Protocol("closed before the sync PING was answered".into())),
        }
    }
}

/// Reads until the marker message arrives and records when.
fn wait_marker(conn: &mut Conn, protocol: Protocol, at: &AtomicU64) {
    while let Ok(Some(line)) = conn.read_raw() {
        if let Incoming::Delivery(body) = wire::classify(protocol, line)
            && body == MARKER.as_bytes()
        {
            at.store(now_ns(), Ordering::Relaxed);
            return;
        }
    }
}
