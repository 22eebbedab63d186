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
    fn parses_status_values() {
        let s = "Name:\tx\nVmRSS:\t  1234 kB\nThreads:\t7\n";
        assert_eq!(status_value(s, "VmRSS"), 1234);
        assert_eq!(status_value(s, "Threads"), 7);
        assert_eq!(status_value(s, "VmHWM"), 0);
    }
}
