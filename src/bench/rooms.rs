//! `rooms`: protocol 1.1 fan-out. R rooms of M members each, S members of
//! each room sending N timestamped messages with at most W unacknowledged
//! (`SEND #room`); P private conversations, two accounts sending N messages
//! each to the other (`SEND @user`); and I idle sessions in no room, which
//! must hear nothing but presence (`JOIN`/`LEAVE`). Receivers measure
//! end-to-end latency from the send time inside each body, as `fanout`
//! does, and check that each `POST` is for them.
//!
//! Setup connects the idle sessions first (so their readers drain the
//! presence of every later login), then the members, who join their rooms,
//! and the private pairs; it then waits until every active session has
//! answered a `PING` and no session has received anything for a quiet
//! second, so the measured window holds the messages and nothing of the
//! setup.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use hdrhistogram::Histogram;

use super::procstat::{self, ProcDelta};
use super::report::{Report, latency_histogram};
use super::wire::{self, Conn, Protocol};
use super::{BenchError, Common, join_senders, now_ns, parallel, wait_for_deliveries};

/// Stack of a bench reader or sender thread.
const THREAD_STACK: usize = 128 * 1024;
/// Stack of an idle session's reader: it only counts lines.
const IDLE_STACK: usize = 64 * 1024;
/// Connections opened at once while setting up.
const CONNECTORS: usize = 64;
/// How long no session may receive anything before the setup counts as
/// finished (presence batches wait at most 50 ms in the server).
const QUIET: Duration = Duration::from_secs(1);
/// Most lines read while waiting for `OK JOIN` (ENTER and presence lines
/// of other members may come first).
const MAX_JOIN_LINES: usize = 1_000_000;
/// The token of the PING that marks the end of an active session's setup.
const SYNC_TOKEN: &str = "rooms-sync";
/// Unexpected lines of idle sessions kept as examples for the report.
const SAMPLES: usize = 3;

/// The shape of a rooms run.
#[derive(Clone, Debug)]
pub struct RoomsOptions {
    /// Rooms.
    pub rooms: usize,
    /// Member accounts of each room (one session each).
    pub members: usize,
    /// Members of each room that send.
    pub senders: usize,
    /// Messages per sender (room senders and each side of a private pair).
    pub messages: usize,
    /// Private conversations (pairs of accounts).
    pub private: usize,
    /// Most unacknowledged messages per sender.
    pub window: usize,
    /// Idle sessions: logged in, in no room, sending nothing.
    pub idle: usize,
    /// Body size in bytes.
    pub size: usize,
}

impl RoomsOptions {
    /// Messages sent to rooms.
    pub fn room_messages(&self) -> u64 {
        (self.rooms * self.senders * self.messages) as u64
    }

    /// Messages sent in private conversations (both ways).
    pub fn private_messages(&self) -> u64 {
        (2 * self.private * self.messages) as u64
    }

    /// Deliveries a correct server makes: each room message reaches the
    /// other M-1 members (one session each), each private message the one
    /// session of the addressee.
    pub fn expected_deliveries(&self) -> u64 {
        self.room_messages() * self.members.saturating_sub(1) as u64 + self.private_messages()
    }

    /// Sessions the run opens.
    pub fn sessions(&self) -> usize {
        self.rooms * self.members + 2 * self.private + self.idle
    }
}

/// Refuses option combinations that cannot run.
///
/// # Errors
/// A usage error naming the option.
pub fn check(common: &Common, o: &RoomsOptions) -> Result<(), BenchError> {
    let usage = |m: &str| Err(BenchError::Usage(m.to_string()));
    if common.protocol != Protocol::Charla {
        return usage("rooms runs against charla only: rooms and private messages are charla protocol 1.1");
    }
    if o.rooms == 0 && o.private == 0 {
        return usage("nothing to send: give --rooms or --private");
    }
    if o.rooms > 0 && o.members < 2 {
        return usage("--members must be at least 2");
    }
    if o.rooms > 0 && (o.senders == 0 || o.senders > o.members) {
        return usage("--senders must be between 1 and --members");
    }
    if o.window == 0 || o.messages == 0 {
        return usage("--window and --messages must be at least 1");
    }
    if o.size < 32 || o.size > 2000 {
        return usage("--size must be between 32 and 2000 bytes");
    }
    if o.rooms > 0 && !valid_room(&room_name(&common.prefix, o.rooms - 1)) {
        return usage("--prefix makes invalid room names: use at most 20 of A-Z a-z 0-9 _ . -");
    }
    Ok(())
}

/// The name of room `i` (with its `#`).
pub fn room_name(prefix: &str, i: usize) -> String {
    format!("#{prefix}-r{i}")
}

/// Whether `name` is a room name the protocol accepts: `#` and 1 to 32 of
/// `[A-Za-z0-9_.-]`.
fn valid_room(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('#') else {
        return false;
    };
    (1..=32).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// A `POST ID TS TARGET USER TEXT` line, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Post<'a> {
    /// `#ROOM` or `@USER`.
    pub target: &'a [u8],
    /// The author.
    pub user: &'a [u8],
    /// The text as sent.
    pub body: &'a [u8],
}

/// Splits a `POST` line; `None` if it is not one or is malformed.
pub fn parse_post(line: &[u8]) -> Option<Post<'_>> {
    let rest = line.strip_prefix(b"POST ")?;
    let mut fields = rest.splitn(5, |&b| b == b' ');
    let digits = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
    let (id, ts) = (fields.next()?, fields.next()?);
    let (target, user, body) = (fields.next()?, fields.next()?, fields.next()?);
    let target_ok = target.len() > 1 && (target[0] == b'#' || target[0] == b'@');
    if !digits(id) || !digits(ts) || !target_ok || user.is_empty() || body.is_empty() {
        return None;
    }
    Some(Post { target, user, body })
}

/// What a line received by a member or a private account means.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A room or private message.
    Post(Post<'a>),
    /// `OK SEND`: one of our sends is stored.
    Ack,
    /// `ERR SEND`: refused; it still frees its place in the window.
    Refused,
    /// The answer to the setup's sync PING.
    Synced,
    /// `BYE`: the server is closing.
    Closing,
    /// A lobby message (`MSG`), which nobody in this scenario sends.
    Lobby,
    /// ENTER/EXIT, presence, anything else.
    Other,
}

/// Classifies a line received by an active (member or private) session.
pub fn classify(line: &[u8]) -> Line<'_> {
    if line.starts_with(b"POST ") {
        // A malformed POST counts as misrouted, like a lobby message.
        parse_post(line).map_or(Line::Lobby, Line::Post)
    } else if line.starts_with(b"OK SEND ") {
        Line::Ack
    } else if line.starts_with(b"ERR SEND ") {
        Line::Refused
    } else if line == [b"OK PING ", SYNC_TOKEN.as_bytes()].concat().as_slice() {
        Line::Synced
    } else if line.starts_with(b"BYE ") {
        Line::Closing
    } else if line.starts_with(b"MSG ") {
        Line::Lobby
    } else {
        Line::Other
    }
}

/// Whether an idle session may receive `line`: presence (`JOIN USER` or
/// `LEAVE USER`) only.
pub fn idle_may_receive(line: &[u8]) -> bool {
    let user = line.strip_prefix(b"JOIN ").or_else(|| line.strip_prefix(b"LEAVE "));
    user.is_some_and(|u| !u.is_empty() && !u.contains(&b' '))
}

/// Whom an active session expects to hear from.
#[derive(Clone, Debug)]
pub enum Expect {
    /// Posts in this room (`#name`), by any member.
    Room(String),
    /// Private posts addressed to `@me` by `partner`.
    Private {
        /// This account.
        me: String,
        /// The other account of the pair.
        partner: String,
    },
}

impl Expect {
    /// Whether `post` is one this session should receive.
    pub fn accepts(&self, post: &Post<'_>) -> bool {
        match self {
            Expect::Room(room) => post.target == room.as_bytes(),
            Expect::Private { me, partner } => {
                post.target.strip_prefix(b"@") == Some(me.as_bytes()) && post.user == partner.as_bytes()
            }
        }
    }
}

/// What an active session's reader counts, shared with the main thread.
#[derive(Default)]
struct ActiveStats {
    /// Posts for this session received.
    deliveries: AtomicU64,
    /// When the last one arrived (ns since the epoch).
    last_delivery_ns: AtomicU64,
    /// Every line received.
    lines: AtomicU64,
    /// Sends the server refused.
    refused: AtomicU64,
    /// Posts not for this session, and lobby messages.
    misrouted: AtomicU64,
    /// The sync PING was answered.
    synced: AtomicBool,
    /// The server closed the connection (BYE/EOF).
    closed: AtomicBool,
}

/// What an idle session's reader counts.
#[derive(Default)]
struct IdleStats {
    /// Every line received.
    lines: AtomicU64,
    /// Lines other than presence.
    unexpected: AtomicU64,
    /// The server closed the connection.
    closed: AtomicBool,
}

/// A session with its reader thread; its socket is shut down when dropped,
/// so the reader ends even if the run is abandoned.
struct Live<S, R> {
    /// For sending and for closing.
    stream: Arc<wire::Stream>,
    /// What the reader counts.
    stats: Arc<S>,
    /// The reader.
    reader: Option<thread::JoinHandle<R>>,
}

impl<S, R> Live<S, R> {
    /// Shuts the socket down and waits for the reader's result.
    fn finish(mut self) -> Option<R> {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.reader.take()?.join().ok()
    }
}

impl<S, R> Drop for Live<S, R> {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

type Active = Live<ActiveStats, Histogram<u64>>;
type Idle = Live<IdleStats, Vec<String>>;

/// One sender: its session's socket, the target of its sends, and the
/// permits its reader returns with each acknowledgement.
struct Plan {
    /// Index of the active session that sends.
    session: usize,
    /// `#room` or `@user`.
    target: String,
    /// The permits.
    permits: Receiver<()>,
}

/// Runs the scenario.
///
/// # Errors
/// On bad options, a failed setup, or a sender that cannot finish in time.
pub fn run(common: &Common, options: &RoomsOptions) -> Result<Report, BenchError> {
    check(common, options)?;
    let setup_started = Instant::now();
    let idle = connect_idle(common, options)?;

    // Active sessions: members of room r are accounts r*M..r*M+M, the
    // pairs follow, the idle accounts come last.
    let members = options.rooms * options.members;
    let idle_first = members + 2 * options.private;
    let mut expects = Vec::with_capacity(members + 2 * options.private);
    for r in 0..options.rooms {
        for _ in 0..options.members {
            expects.push(Expect::Room(room_name(&common.prefix, r)));
        }
    }
    for p in 0..2 * options.private {
        let (me, partner) = (members + p, members + (p ^ 1));
        expects.push(Expect::Private {
            me: common.user(me),
            partner: common.user(partner),
        });
    }
    let conns = parallel(expects.len(), CONNECTORS, |i| {
        let mut conn = Conn::connect(common.addr, common.source, common.tls.as_ref())?;
        conn.log_in(Protocol::Charla, &common.user(i), &common.password, common.timeout)?;
        if let Expect::Room(room) = &expects[i] {
            join_room(&mut conn, room, common.timeout)?;
        }
        Ok(conn)
    })?;

    let mut plans = Vec::new();
    let mut active = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let sends = if i < members {
            (i % options.members < options.senders).then(|| expects[i].clone())
        } else {
            // The partner's Expect names the partner as `me`.
            Some(expects[members + ((i - members) ^ 1)].clone())
        };
        let window = sends.map(|to| {
            let (give, take) = bounded(options.window);
            for _ in 0..options.window {
                let _ = give.send(());
            }
            let target = match to {
                Expect::Room(room) => room,
                Expect::Private { me, .. } => format!("@{me}"),
            };
            plans.push(Plan {
                session: i,
                target,
                permits: take,
            });
            give
        });
        active.push(spawn_active(conn, expects[i].clone(), window)?);
    }
    debug_assert_eq!(idle_first, active.len());
    settle(common, &active, &idle)?;
    let setup_time = setup_started.elapsed();

    let server_before = common.server_pid.and_then(|pid| procstat::sample(Some(pid)).ok());
    // The full samples walk every thread's status file (10,000 of them
    // with idle sessions), so the bench's CPU is read apart, around the
    // messages only.
    let bench_before = procstat::sample(None).ok();
    let bench_cpu_before = procstat::own_cpu_seconds().ok();
    let machine_before = procstat::machine_busy_seconds().ok();
    let idle_lines_before: u64 = idle.iter().map(|c| c.stats.lines.load(Ordering::Relaxed)).sum();

    let start = Arc::new(Barrier::new(plans.len() + 1));
    let mut senders = Vec::with_capacity(plans.len());
    for (n, plan) in plans.into_iter().enumerate() {
        let stream = Arc::clone(&active[plan.session].stream);
        let start = Arc::clone(&start);
        let (messages, window, size, timeout) = (options.messages, options.window, options.size, common.timeout);
        senders.push(
            thread::Builder::new()
                .name(format!("sender-{n}"))
                .stack_size(THREAD_STACK)
                .spawn(move || {
                    start.wait();
                    send_all(&stream, n, &plan, messages, window, size, timeout)
                })
                .map_err(BenchError::io("start a sender thread"))?,
        );
    }

    let expected = options.expected_deliveries();
    let delivered = || {
        active
            .iter()
            .map(|c| c.stats.deliveries.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let started = Instant::now();
    let started_ns = now_ns();
    start.wait();
    let sent = join_senders(senders);
    let acked = started.elapsed();
    sent?;
    let received = wait_for_deliveries(delivered, expected, started + common.timeout);
    let machine = machine_before.and_then(|b| Some(procstat::machine_busy_seconds().ok()? - b));
    let bench_cpu = bench_cpu_before.and_then(|b| Some(procstat::own_cpu_seconds().ok()? - b));
    let server = server_before.and_then(|before| {
        let after = procstat::sample(common.server_pid).ok()?;
        Some(ProcDelta::between(&before, &after))
    });
    let bench = bench_before.and_then(|b| {
        let mut delta = ProcDelta::between(&b, &procstat::sample(None).ok()?);
        delta.cpu_seconds = bench_cpu?;
        Some(delta)
    });
    let idle_lines_during = idle
        .iter()
        .map(|c| c.stats.lines.load(Ordering::Relaxed))
        .sum::<u64>()
        .saturating_sub(idle_lines_before);
    let last_ns = active
        .iter()
        .map(|c| c.stats.last_delivery_ns.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let delivery_time = Duration::from_nanos(last_ns.saturating_sub(started_ns)).max(Duration::from_micros(1));
    let sum = |f: &dyn Fn(&ActiveStats) -> u64| active.iter().map(|c| f(&c.stats)).sum::<u64>();
    let refused = sum(&|s| s.refused.load(Ordering::Relaxed));
    let misrouted = sum(&|s| s.misrouted.load(Ordering::Relaxed));
    let cut = active.iter().filter(|c| c.stats.closed.load(Ordering::Relaxed)).count()
        + idle.iter().filter(|c| c.stats.closed.load(Ordering::Relaxed)).count();

    // Close the active sessions, then the idle ones, and collect.
    let (mut all, mut in_rooms, mut in_private) = (latency_histogram(), latency_histogram(), latency_histogram());
    for (i, client) in active.into_iter().enumerate() {
        if let Some(latency) = client.finish() {
            let _ = all.add(&latency);
            let _ = if i < members { &mut in_rooms } else { &mut in_private }.add(&latency);
        }
    }
    let (mut unexpected, mut idle_lines, mut samples) = (0u64, 0u64, Vec::new());
    for client in idle {
        let stats = Arc::clone(&client.stats);
        let seen = client.finish().unwrap_or_default();
        unexpected += stats.unexpected.load(Ordering::Relaxed);
        idle_lines += stats.lines.load(Ordering::Relaxed);
        for line in seen {
            if samples.len() < SAMPLES {
                samples.push(line);
            }
        }
    }

    let total = options.room_messages() + options.private_messages();
    let mut report = Report::new("rooms");
    report
        .text("protocol", "charla")
        .int("rooms", options.rooms as u64)
        .int("members", options.members as u64)
        .int("senders", options.senders as u64)
        .int("private", options.private as u64)
        .int("idle", options.idle as u64)
        .int("sessions", options.sessions() as u64)
        .int("messages_per_sender", options.messages as u64)
        .int("window", options.window as u64)
        .int("size", options.size as u64)
        .float("setup_seconds", setup_time.as_secs_f64())
        .int("room_messages", options.room_messages())
        .int("private_messages", options.private_messages())
        .int("messages", total)
        .float("send_seconds", acked.as_secs_f64())
        .float("messages_per_s", total as f64 / acked.as_secs_f64())
        .int("deliveries_expected", expected)
        .int("deliveries_received", received)
        .int("deliveries_lost", expected.saturating_sub(received))
        .float("delivery_seconds", delivery_time.as_secs_f64())
        .float("deliveries_per_s", received as f64 / delivery_time.as_secs_f64())
        .int("refused", refused)
        .int("misrouted", misrouted)
        .int("disconnected", cut as u64)
        .int("idle_unexpected_lines", unexpected)
        .int("idle_presence_lines", idle_lines.saturating_sub(unexpected))
        .int("idle_lines_during_run", idle_lines_during)
        .latency("latency_", &all);
    if options.rooms > 0 && options.private > 0 {
        report
            .latency("room_latency_", &in_rooms)
            .latency("private_latency_", &in_private);
    }
    if let Some(server) = &server {
        report
            .process("server_", server)
            .float("server_cpu_us_per_message", server.cpu_seconds * 1e6 / total as f64);
    }
    if let Some(bench) = &bench {
        report.process("bench_", bench);
    }
    if let Some(machine) = machine {
        // What the rest of the machine (other engineers' builds, the
        // kernel's own threads) took while the messages ran; the bench's
        // and the server's own figures are sampled a moment later, so
        // this is a close estimate, not an exact difference.
        let ours = server.map_or(0.0, |s| s.cpu_seconds) + bench.map_or(0.0, |b| b.cpu_seconds);
        report
            .float("machine_busy_s", machine)
            .float("others_cpu_s", (machine - ours).max(0.0));
    }
    if !samples.is_empty() {
        report.text("idle_unexpected_sample", &samples.join(" | "));
    }
    Ok(report)
}

/// Opens the idle sessions, each with a reader counting what it receives.
fn connect_idle(common: &Common, options: &RoomsOptions) -> Result<Vec<Idle>, BenchError> {
    let first = options.rooms * options.members + 2 * options.private;
    let done = AtomicUsize::new(0);
    let show = common.show_progress() && options.idle >= 1000;
    let idle = parallel(options.idle, CONNECTORS, |i| {
        let mut conn = Conn::connect(common.addr, common.source, common.tls.as_ref())?;
        conn.log_in(
            Protocol::Charla,
            &common.user(first + i),
            &common.password,
            common.timeout,
        )?;
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if show && n.is_multiple_of(500) {
            eprint!("\ridle sessions {n}/{}   ", options.idle);
        }
        spawn_idle(conn)
    })?;
    if show {
        eprintln!();
    }
    Ok(idle)
}

/// Joins `room` and reads until `OK JOIN`.
fn join_room(conn: &mut Conn, room: &str, timeout: Duration) -> Result<(), BenchError> {
    conn.send(format!("JOIN {room}\n").as_bytes())?;
    let _ = conn.stream.set_read_timeout(Some(timeout));
    let mut result = Err(BenchError::Protocol(format!(
        "no OK JOIN {room} in {MAX_JOIN_LINES} lines"
    )));
    for _ in 0..MAX_JOIN_LINES {
        match conn.read_line() {
            Ok(Some(line)) if line.starts_with("OK JOIN ") => {
                result = Ok(());
                break;
            }
            Ok(Some(line)) if line.starts_with("ERR ") || line.starts_with("BYE ") => {
                result = Err(BenchError::Protocol(format!("JOIN {room}: {line}")));
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                result = Err(BenchError::Protocol(format!("closed while joining {room}")));
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = conn.stream.set_read_timeout(None);
    result
}

/// Waits until every active session answered a PING and then no session
/// received anything for [`QUIET`].
fn settle(common: &Common, active: &[Active], idle: &[Idle]) -> Result<(), BenchError> {
    let deadline = Instant::now() + common.timeout;
    let ping = format!("PING {SYNC_TOKEN}\n");
    for client in active {
        (&*client.stream)
            .write_all(ping.as_bytes())
            .map_err(BenchError::io("send the sync PING"))?;
    }
    while !active.iter().all(|c| c.stats.synced.load(Ordering::Relaxed)) {
        if Instant::now() > deadline {
            return Err(BenchError::Timeout("the sync PINGs were not answered".into()));
        }
        thread::sleep(Duration::from_millis(10));
    }
    let lines = || {
        active
            .iter()
            .map(|c| c.stats.lines.load(Ordering::Relaxed))
            .sum::<u64>()
            + idle.iter().map(|c| c.stats.lines.load(Ordering::Relaxed)).sum::<u64>()
    };
    let mut last = (lines(), Instant::now());
    while last.1.elapsed() < QUIET {
        if Instant::now() > deadline {
            return Err(BenchError::Timeout("the setup's events did not stop".into()));
        }
        thread::sleep(Duration::from_millis(50));
        let now = lines();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    Ok(())
}

/// Starts the reader of an idle session: it counts lines, and keeps the
/// first few that are not presence.
fn spawn_idle(mut conn: Conn) -> Result<Idle, BenchError> {
    let stats = Arc::new(IdleStats::default());
    let stream = Arc::clone(&conn.stream);
    let counted = Arc::clone(&stats);
    let reader = thread::Builder::new()
        .stack_size(IDLE_STACK)
        .spawn(move || {
            let mut seen = Vec::new();
            while let Ok(Some(line)) = conn.read_raw() {
                counted.lines.fetch_add(1, Ordering::Relaxed);
                if !idle_may_receive(line) {
                    counted.unexpected.fetch_add(1, Ordering::Relaxed);
                    if seen.len() < SAMPLES {
                        seen.push(String::from_utf8_lossy(line).into_owned());
                    }
                    if line.starts_with(b"BYE ") {
                        break;
                    }
                }
            }
            counted.closed.store(true, Ordering::Relaxed);
            seen
        })
        .map_err(BenchError::io("start an idle reader thread"))?;
    Ok(Live {
        stream,
        stats,
        reader: Some(reader),
    })
}

/// Starts the reader of a member or private account. `window` receives a
/// permit back for each acknowledgement (senders only).
fn spawn_active(mut conn: Conn, expect: Expect, window: Option<Sender<()>>) -> Result<Active, BenchError> {
    let stats = Arc::new(ActiveStats::default());
    let stream = Arc::clone(&conn.stream);
    let counted = Arc::clone(&stats);
    let reader = thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let mut latency = latency_histogram();
            let (mut deliveries, mut lines, mut last_ns, mut now) = (0u64, 0u64, 0u64, now_ns());
            loop {
                // As in fanout: one clock reading per read, counters
                // published before each read that may block.
                let fresh = !conn.has_buffered();
                if fresh {
                    counted.deliveries.store(deliveries, Ordering::Relaxed);
                    counted.lines.store(lines, Ordering::Relaxed);
                    counted.last_delivery_ns.store(last_ns, Ordering::Relaxed);
                }
                let line = match conn.read_raw() {
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => break,
                };
                if fresh {
                    now = now_ns();
                }
                lines += 1;
                match classify(line) {
                    Line::Post(post) if expect.accepts(&post) => {
                        if let Some(sent) = wire::sent_ns(post.body) {
                            let _ = latency.record(now.saturating_sub(sent).max(1));
                        }
                        deliveries += 1;
                        last_ns = now;
                    }
                    Line::Post(_) | Line::Lobby => {
                        counted.misrouted.fetch_add(1, Ordering::Relaxed);
                    }
                    Line::Ack => {
                        if let Some(window) = &window {
                            let _ = window.try_send(());
                        }
                    }
                    Line::Refused => {
                        counted.refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(window) = &window {
                            let _ = window.try_send(());
                        }
                    }
                    Line::Synced => counted.synced.store(true, Ordering::Relaxed),
                    Line::Closing => break,
                    Line::Other => {}
                }
            }
            counted.deliveries.store(deliveries, Ordering::Relaxed);
            counted.lines.store(lines, Ordering::Relaxed);
            counted.last_delivery_ns.store(last_ns, Ordering::Relaxed);
            counted.closed.store(true, Ordering::Relaxed);
            latency
        })
        .map_err(BenchError::io("start a reader thread"))?;
    Ok(Live {
        stream,
        stats,
        reader: Some(reader),
    })
}

/// A sender's loop: `messages` sends to its target, never more than
/// `window` in flight, then waits until all are acknowledged.
fn send_all(
    stream: &wire::Stream,
    sender: usize,
    plan: &Plan,
    messages: usize,
    window: usize,
    size: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    let wait = |what: &str| {
        plan.permits
            .recv_deadline(deadline)
            .map_err(|_| BenchError::Timeout(format!("sender {sender} to {}: {what}", plan.target)))
    };
    let mut line = Vec::with_capacity(size + plan.target.len() + 8);
    for seq in 0..messages {
        wait("acknowledgements stopped coming")?;
        line.clear();
        line.extend_from_slice(b"SEND ");
        line.extend_from_slice(plan.target.as_bytes());
        line.push(b' ');
        line.extend_from_slice(wire::body(sender, seq, now_ns(), size).as_bytes());
        line.push(b'\n');
        let mut out = stream;
        out.write_all(&line).map_err(BenchError::io("send a message"))?;
    }
    for _ in 0..window {
        wait("the last acknowledgements did not come")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn common(protocol: Protocol) -> Common {
        Common {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            protocol,
            server_pid: None,
            prefix: "bench".into(),
            password: "bench-pass-1".into(),
            timeout: Duration::from_secs(1),
            progress: false,
            tls: None,
            accounts_at: None,
            source: None,
        }
    }

    fn options() -> RoomsOptions {
        RoomsOptions {
            rooms: 10,
            members: 10,
            senders: 2,
            messages: 2000,
            private: 50,
            window: 8,
            idle: 10_000,
            size: 64,
        }
    }

    #[test]
    fn expected_deliveries_count_other_members_and_addressees() {
        let o = options();
        assert_eq!(o.room_messages(), 10 * 2 * 2000);
        assert_eq!(o.private_messages(), 2 * 50 * 2000);
        // Each room message reaches the 9 other members, each private
        // message its one addressee; idle sessions add nothing.
        assert_eq!(o.expected_deliveries(), 40_000 * 9 + 200_000);
        assert_eq!(o.sessions(), 100 + 100 + 10_000);
        let only_private = RoomsOptions {
            rooms: 0,
            private: 3,
            messages: 5,
            ..o
        };
        assert_eq!(only_private.expected_deliveries(), 30);
    }

    #[test]
    fn parses_post_lines() {
        assert_eq!(
            parse_post(b"POST 43 1764000002000 #Clase juan 0 1 99 x y"),
            Some(Post {
                target: b"#Clase",
                user: b"juan",
                body: b"0 1 99 x y"
            })
        );
        assert_eq!(
            parse_post(b"POST 44 1764000003000 @ana juan te escribo").map(|p| p.target),
            Some(&b"@ana"[..])
        );
        for bad in [
            &b"POST 1 2 #r u"[..],
            b"POST x 2 #r u t",
            b"POST 1 2 r u t",
            b"POST 1 2 # u t",
            b"MSG 1 2 u t",
            b"POST 1  #r u t",
        ] {
            assert_eq!(parse_post(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn classifies_what_active_sessions_receive() {
        assert!(matches!(classify(b"POST 1 2 #r u 0 0 5 x"), Line::Post(_)));
        assert_eq!(classify(b"POST 1 2 r u t"), Line::Lobby);
        assert_eq!(classify(b"OK SEND 5 6"), Line::Ack);
        assert_eq!(classify(b"ERR SEND not-member you are not a member"), Line::Refused);
        assert_eq!(classify(b"OK PING rooms-sync"), Line::Synced);
        assert_eq!(classify(b"OK PING other"), Line::Other);
        assert_eq!(classify(b"MSG 1 2 u t"), Line::Lobby);
        assert_eq!(classify(b"ENTER #r u"), Line::Other);
        assert_eq!(classify(b"BYE slow-consumer x"), Line::Closing);
    }

    #[test]
    fn posts_are_checked_against_their_session() {
        let room = Expect::Room("#bench-r1".into());
        let post = |line: &'static [u8]| parse_post(line).unwrap();
        assert!(room.accepts(&post(b"POST 1 2 #bench-r1 bench3 t")));
        assert!(!room.accepts(&post(b"POST 1 2 #bench-r2 bench3 t")));
        let private = Expect::Private {
            me: "bench4".into(),
            partner: "bench5".into(),
        };
        assert!(private.accepts(&post(b"POST 1 2 @bench4 bench5 t")));
        assert!(!private.accepts(&post(b"POST 1 2 @bench5 bench4 t")));
        assert!(!private.accepts(&post(b"POST 1 2 @bench4 bench6 t")));
        assert!(!private.accepts(&post(b"POST 1 2 #bench4 bench5 t")));
    }

    #[test]
    fn idle_sessions_may_hear_presence_only() {
        assert!(idle_may_receive(b"JOIN bench7"));
        assert!(idle_may_receive(b"LEAVE bench7"));
        assert!(!idle_may_receive(b"JOIN "));
        assert!(!idle_may_receive(b"POST 1 2 #r u t"));
        assert!(!idle_may_receive(b"MSG 1 2 u t"));
        assert!(!idle_may_receive(b"ENTER #r u"));
        assert!(!idle_may_receive(b"JOIN a b"));
    }

    #[test]
    fn refuses_irc_and_impossible_shapes() {
        let o = options();
        assert!(check(&common(Protocol::Charla), &o).is_ok());
        let irc = check(&common(Protocol::Irc), &o).unwrap_err().to_string();
        assert!(irc.contains("charla only"), "{irc}");
        let bad = [
            RoomsOptions {
                rooms: 0,
                private: 0,
                ..o.clone()
            },
            RoomsOptions {
                members: 1,
                ..o.clone()
            },
            RoomsOptions {
                senders: 11,
                ..o.clone()
            },
            RoomsOptions { window: 0, ..o.clone() },
            RoomsOptions { size: 10, ..o.clone() },
        ];
        for b in bad {
            assert!(check(&common(Protocol::Charla), &b).is_err(), "{b:?}");
        }
        let mut long = common(Protocol::Charla);
        long.prefix = "p".repeat(40);
        assert!(check(&long, &o).is_err());
        assert!(valid_room(&room_name("bench", 9)));
        assert!(!valid_room("#a b"));
    }
}
