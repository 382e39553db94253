//! What a process costs, read from `/proc`: CPU time (user and system, all
//! threads), resident memory, and context switches of its threads (each
//! voluntary switch is a sleep, so a wake-up).

use std::path::Path;

use anyhow::Context as _;

/// A process's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// CPU seconds used so far (user + system, every thread).
    pub cpu_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Context switches of the threads alive now (voluntary + involuntary).
    pub switches: u64,
    /// Threads alive now.
    pub threads: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`).
pub fn clock_ticks() -> anyhow::Result<f64> {
    let out =
        std::process::Command::new("getconf").arg("CLK_TCK").output().context("running getconf")?;
    String::from_utf8_lossy(&out.stdout).trim().parse().context("getconf CLK_TCK printed no number")
}

/// Reads `pid`'s counters.
pub fn sample(pid: u32, ticks: f64) -> anyhow::Result<Sample> {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(proc_dir.join("stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14 and stime field 15 (1-based).
    let field = |n: usize| -> anyhow::Result<f64> {
        fields.get(n - 3).context("short stat")?.parse::<f64>().context("stat field")
    };
    let cpu_s = (field(14)? + field(15)?) / ticks;
    let status = std::fs::read_to_string(proc_dir.join("status"))?;
    let rss_kib = status_value(&status, "VmRSS:").unwrap_or(0);
    let (mut switches, mut threads) = (0, 0);
    for task in std::fs::read_dir(proc_dir.join("task"))? {
        let Ok(text) = std::fs::read_to_string(task?.path().join("status")) else { continue };
        threads += 1;
        switches += status_value(&text, "voluntary_ctxt_switches:").unwrap_or(0)
            + status_value(&text, "nonvoluntary_ctxt_switches:").unwrap_or(0);
    }
    Ok(Sample { cpu_s, rss_kib, switches, threads })
}

/// CPU seconds used so far by the threads of `pid` named `name` (the
/// kernel keeps a thread's first 15 bytes of name).
pub fn thread_cpu(pid: u32, name: &str, ticks: f64) -> anyhow::Result<f64> {
    let short = &name[..name.len().min(15)];
    let mut total = 0.0;
    for task in std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("task"))? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        if head.split_once('(').map(|(_, comm)| comm) != Some(short) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        total += (field(14) + field(15)) / ticks;
    }
    Ok(total)
}

fn status_value(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let ticks = clock_ticks().expect("CLK_TCK");
        let s = sample(std::process::id(), ticks).expect("sample");
        assert!(s.rss_kib > 0 && s.threads >= 1, "{s:?}");
        assert_eq!(status_value("VmRSS:\t  1234 kB\n", "VmRSS:"), Some(1234));
    }
}
