//! Process and machine figures from `/proc`: CPU ticks, RSS, threads, open descriptors; the
//! machine's CPU model, cores, memory and kernel.

use std::process::Command;

use serde::Serialize;

/// One process at one instant.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// utime + stime, clock ticks.
    pub ticks: u64,
    /// Resident set, KiB.
    pub rss_kb: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// utime + stime from a `/proc/…/stat` line, in clock ticks.
fn stat_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The process's counters now; `None` once it has gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let ticks = stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcSample {
        ticks,
        rss_kb: status_field(&status, "VmRSS:")?,
        threads: status_field(&status, "Threads:")?,
        fds,
    })
}

/// Proportional set size (shared pages split among their users), KiB; `None` when unreadable.
pub fn pss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    status_field(&text, "Pss:")
}

/// Per thread of the process: tid → (name, utime + stime ticks).
pub fn threads(pid: u32) -> std::collections::BTreeMap<u32, (String, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = e.path();
        let comm = std::fs::read_to_string(base.join("comm"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        if let Some(t) = std::fs::read_to_string(base.join("stat"))
            .ok()
            .as_deref()
            .and_then(stat_ticks)
        {
            out.insert(tid, (comm, t));
        }
    }
    out
}

/// The service's thread names folded into stages: `decode-cam-…` (a camera's own decoder),
/// `decode-N` (pool workers), `infer-N`, and the rest as they are.
pub fn stage_of(thread: &str) -> String {
    let numbered = |prefix: &str| {
        thread
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
    };
    if thread.starts_with("decode-cam") {
        "decode-cam-*".into()
    } else if numbered("decode-") {
        "decode-N".into()
    } else if numbered("infer-") {
        "infer-N".into()
    } else {
        thread.to_owned()
    }
}

/// CPU seconds per stage between two [`threads`] readings (threads that started in between count
/// from zero).
pub fn cpu_by_stage(
    before: &std::collections::BTreeMap<u32, (String, u64)>,
    after: &std::collections::BTreeMap<u32, (String, u64)>,
    ticks_per_s: f64,
) -> std::collections::BTreeMap<String, (usize, f64)> {
    let mut out: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    for (tid, (name, t1)) in after {
        let t0 = before.get(tid).map_or(0, |(_, t)| *t);
        let e = out.entry(stage_of(name)).or_default();
        e.0 += 1;
        e.1 += t1.saturating_sub(t0) as f64 / ticks_per_s;
    }
    out
}

/// (busy, total) jiffies of the whole machine, from the first line of `/proc/stat`.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Clock ticks per second for /proc times: `getconf CLK_TCK`, else Linux's usual 100.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Cores available to the runner.
    pub cores: usize,
    /// MemTotal, MiB.
    pub mem_total_mb: u64,
    /// Kernel release.
    pub kernel: String,
    /// GPU, if `nvidia-smi` names one.
    pub gpu: Option<String>,
    /// Load average (1 min) when the run started: other work on a shared machine.
    pub loadavg_at_start: Option<f64>,
}

/// Reads the machine's description.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| status_field(&m, "MemTotal:"))
        .unwrap_or(0);
    let gpu = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let loadavg_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    Machine {
        cpu_model,
        cores: cores(),
        mem_total_mb: mem_kb / 1024,
        kernel,
        gpu,
        loadavg_at_start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_sampled() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kb > 0 && s.threads >= 1 && s.fds >= 1, "{s:?}");
        assert_eq!(
            stat_ticks("1 (a b) c) S 1 1 1 0 -1 0 0 0 0 0 7 5 0 0"),
            Some(12)
        );
        let (busy, total) = machine_ticks().expect("/proc/stat");
        assert!(total >= busy);
        assert!(!threads(std::process::id()).is_empty());
        assert_eq!(stage_of("decode-cam-00001"), "decode-cam-*");
        assert_eq!(stage_of("decode-1"), "decode-N");
        assert_eq!(stage_of("decode-dispatch"), "decode-dispatch");
        assert_eq!(stage_of("infer-0"), "infer-N");
    }
}
