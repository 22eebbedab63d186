//! CPU time, memory and context switches of a process, read from `/proc`,
//! so a run can show what the server (and the bench itself) spent.

use std::fs;

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size now, in KiB.
    pub rss_kib: u64,
    /// Peak resident set size, in KiB.
    pub peak_rss_kib: u64,
    /// Context switches of all its live threads, voluntary and not.
    pub context_switches: u64,
    /// Live threads.
    pub threads: u64,
}

/// Reads `/proc/PID` (`None` for this process: `/proc/self`).
///
/// # Errors
/// When the process does not exist or `/proc` cannot be read.
pub fn sample(pid: Option<u32>) -> std::io::Result<ProcSample> {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    let stat = fs::read_to_string(format!("{dir}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let cpu_seconds = (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND;
    let status = fs::read_to_string(format!("{dir}/status"))?;
    let kib = |key: &str| status_value(&status, key);
    let mut context_switches = 0;
    if let Ok(tasks) = fs::read_dir(format!("{dir}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(task.path().join("status")) {
                context_switches +=
                    status_value(&s, "voluntary_ctxt_switches") + status_value(&s, "nonvoluntary_ctxt_switches");
            }
        }
    }
    Ok(ProcSample {
        cpu_seconds,
        rss_kib: kib("VmRSS"),
        peak_rss_kib: kib("VmHWM"),
        context_switches,
        threads: kib("Threads"),
    })
}

/// CPU seconds (user plus system) of this process, read from
/// `/proc/self/stat` alone: cheap even with thousands of threads, whose
/// `status` files [`sample`] walks.
///
/// # Errors
/// When `/proc/self/stat` cannot be read.
pub fn own_cpu_seconds() -> std::io::Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Ok((ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND)
}

/// CPU seconds the whole machine has spent busy (all cores, all
/// processes: user, nice, system, irq, softirq and steal time of
/// `/proc/stat`), so a run can tell how much of the machine others used.
///
/// # Errors
/// When `/proc/stat` cannot be read.
pub fn machine_busy_seconds() -> std::io::Result<f64> {
    Ok(busy_ticks(&fs::read_to_string("/proc/stat")?) as f64 / TICKS_PER_SECOND)
}

/// The busy ticks of the `cpu` line of a `/proc/stat` text.
fn busy_ticks(stat: &str) -> u64 {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum()
}

/// The number after `key:` in a `/proc/*/status` text (0 if absent).
fn status_value(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// What a process spent between two samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcDelta {
    /// CPU seconds used.
    pub cpu_seconds: f64,
    /// Resident set size at the end, KiB.
    pub rss_kib: u64,
    /// Peak resident set size at the end, KiB.
    pub peak_rss_kib: u64,
    /// Context switches in between.
    pub context_switches: u64,
}

impl ProcDelta {
    /// `after - before`.
    pub fn between(before: &ProcSample, after: &ProcSample) -> ProcDelta {
        ProcDelta {
            cpu_seconds: after.cpu_seconds - before.cpu_seconds,
            rss_kib: after.rss_kib,
            peak_rss_kib: after.peak_rss_kib,
            context_switches: after.context_switches.saturating_sub(before.context_switches),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = sample(None).unwrap();
        assert!(me.rss_kib > 0);
        assert!(me.threads >= 1);
    }

    #[test]
    fn counts_busy_machine_ticks() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(busy_ticks(stat), 10 + 1 + 5 + 2 + 3 + 4);
        assert_eq!(busy_ticks("intr 1 2\n"), 0);
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }

    #[test]
    fn parses_status_values() {
        let s = "Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t7\n";
        assert_eq!(status_value(s, "VmRSS"), 1234);
        assert_eq!(status_value(s, "Threads"), 7);
        assert_eq!(status_value(s, "VmHWM"), 0);
    }
}
