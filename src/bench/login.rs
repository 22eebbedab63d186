//! `login`: logins per second at the server's bcrypt cost, compared with
//! what this machine's cores can hash; and `storm`: chat latency of a
//! fanout run while a login storm hits the server.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::fanout::{self, FanoutOptions};
use super::report::{Report, latency_histogram};
use super::wire::{Conn, Protocol};
use super::{BenchError, Common};

/// The shape of a login run.
#[derive(Clone, Debug)]
pub struct LoginOptions {
    /// Logins in all.
    pub logins: usize,
    /// Connections logging in at once.
    pub parallel: usize,
    /// The server's bcrypt cost, to measure what the cores can hash.
    pub cost: u32,
}

/// What a batch of logins did.
struct LoginRun {
    /// Successful logins.
    done: usize,
    /// Wall time.
    elapsed: Duration,
    /// Time of each login, connect to `OK LOGIN`, in ns.
    latency: Histogram<u64>,
}

/// Runs the login scenario.
///
/// # Errors
/// When the bench account cannot be created, or a login fails.
pub fn run(common: &Common, options: &LoginOptions) -> Result<Report, BenchError> {
    if common.protocol != Protocol::Charla {
        return Err(BenchError::Usage("login runs against charla only".into()));
    }
    let capacity = hash_capacity(options.cost)?;
    let run = logins(common, options)?;
    let rate = run.done as f64 / run.elapsed.as_secs_f64();
    let mut report = Report::new("login");
    report
        .int("logins", run.done as u64)
        .int("parallel", options.parallel as u64)
        .int("bcrypt_cost", u64::from(options.cost))
        .float("seconds", run.elapsed.as_secs_f64())
        .float("logins_per_s", rate)
        .float("cores_can_hash_per_s", capacity)
        .float("fraction_of_capacity", rate / capacity)
        .latency("login_", &run.latency);
    Ok(report)
}

/// Runs the storm scenario: a fanout alone, then the same fanout while
/// `logins` logins run, and the ratio of their p99 latencies.
///
/// # Errors
/// As the fanout and login scenarios.
pub fn storm(common: &Common, chat: &FanoutOptions, options: &LoginOptions) -> Result<Report, BenchError> {
    if common.protocol != Protocol::Charla {
        return Err(BenchError::Usage("storm runs against charla only".into()));
    }
    let idle = fanout::run(common, chat)?;
    let stormed: Mutex<Option<Result<LoginRun, BenchError>>> = Mutex::new(None);
    let during = thread::scope(|scope| {
        fanout::run_with(common, chat, || {
            scope.spawn(|| {
                let run = logins(common, options);
                *stormed.lock().unwrap_or_else(|p| p.into_inner()) = Some(run);
            });
        })
    })?;
    let storm = stormed
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(|| Err(BenchError::Protocol("the login storm did not run".into())))?;
    let idle_p99 = idle.number("latency_p99_us").unwrap_or(f64::NAN);
    let storm_p99 = during.number("latency_p99_us").unwrap_or(f64::NAN);
    let mut report = Report::new("storm");
    report
        .int("clients", chat.clients as u64)
        .int("senders", chat.senders as u64)
        .int("logins", storm.done as u64)
        .float("login_seconds", storm.elapsed.as_secs_f64())
        .float("logins_per_s", storm.done as f64 / storm.elapsed.as_secs_f64())
        .float("idle_p50_us", idle.number("latency_p50_us").unwrap_or(f64::NAN))
        .float("idle_p99_us", idle_p99)
        .float("storm_p50_us", during.number("latency_p50_us").unwrap_or(f64::NAN))
        .float("storm_p99_us", storm_p99)
        .float("p99_ratio", storm_p99 / idle_p99)
        .float(
            "storm_deliveries_per_s",
            during.number("deliveries_per_s").unwrap_or(f64::NAN),
        )
        .int(
            "storm_deliveries_lost",
            during.number("deliveries_lost").unwrap_or(0.0) as u64,
        );
    Ok(report)
}

/// Logs one bench account in `options.logins` times over `options.parallel`
/// connections, each login on a fresh connection.
fn logins(common: &Common, options: &LoginOptions) -> Result<LoginRun, BenchError> {
    let user = format!("{}login", common.prefix);
    // Creates the account on first use.
    let mut first = Conn::connect(common.addr, common.source, common.tls.as_ref())?;
    first.log_in(Protocol::Charla, &user, &common.password, common.timeout)?;
    first.close(Protocol::Charla);

    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let deadline = started + common.timeout;
    let results: Vec<Result<Histogram<u64>, BenchError>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..options.parallel.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut latency = latency_histogram();
                    while next.fetch_add(1, Ordering::Relaxed) < options.logins {
                        if Instant::now() > deadline {
                            return Err(BenchError::Timeout("logins did not finish".into()));
                        }
                        let t = Instant::now();
                        let mut conn = Conn::connect(common.addr, common.source, common.tls.as_ref())?;
                        conn.log_in(Protocol::Charla, &user, &common.password, common.timeout)?;
                        let _ = latency.record(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1));
                        conn.close(Protocol::Charla);
                    }
                    Ok(latency)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(BenchError::Protocol("a login worker panicked".into())))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latency = latency_histogram();
    for result in results {
        let _ = latency.add(&result?);
    }
    Ok(LoginRun {
        done: latency.len() as usize,
        elapsed,
        latency,
    })
}

/// How many bcrypt verifications per second all cores of this machine can
/// do at `cost`: one core's measured rate times the number of cores.
fn hash_capacity(cost: u32) -> Result<f64, BenchError> {
    let hash =
        bcrypt::hash("capacity-probe", cost).map_err(|e| BenchError::Usage(format!("bcrypt cost {cost}: {e}")))?;
    let started = Instant::now();
    let mut rounds = 0u32;
    while rounds < 3 || started.elapsed() < Duration::from_millis(500) {
        let _ = bcrypt::verify("capacity-probe", &hash);
        rounds += 1;
    }
    let per_core = f64::from(rounds) / started.elapsed().as_secs_f64();
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    Ok(per_core * cores as f64)
}
