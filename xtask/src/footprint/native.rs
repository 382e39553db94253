//! The reading floor: every second, the file reads of the six standard
//! collectors done natively by one small process (`cargo xtask
//! footprint-reads`, started by the footprint benchmark beside the others):
//! `/proc/stat`, `/proc/meminfo`, `/proc/loadavg`, `/proc/net/dev`,
//! `/proc/diskstats`, `/proc/partitions`, `/proc/self/mountinfo`,
//! `statvfs` of every mounted block device, `/proc/uptime`, and a listing
//! of `/proc` with every `/proc/<pid>/stat`; each file's numbers are
//! parsed. It is what reading and parsing costs without a sandbox: the
//! agent's collectors can come down to it plus the agent's own per-call
//! cost (the no-op row), not below.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FILES: [&str; 8] = [
    "/proc/stat",
    "/proc/meminfo",
    "/proc/loadavg",
    "/proc/net/dev",
    "/proc/diskstats",
    "/proc/partitions",
    "/proc/self/mountinfo",
    "/proc/uptime",
];

/// Sums every unsigned number in `text` (the parsing a collector does, at least).
fn numbers(text: &str) -> u64 {
    text.split(|c: char| c.is_ascii_whitespace() || c == ':' || c == '(' || c == ')')
        .filter_map(|w| w.parse::<u64>().ok())
        .fold(0u64, u64::wrapping_add)
}

fn round() -> u64 {
    let mut sum = 0u64;
    for path in FILES {
        if let Ok(text) = std::fs::read_to_string(path) {
            sum = sum.wrapping_add(numbers(&text));
            if path.ends_with("mountinfo") {
                for line in text.lines() {
                    let w: Vec<&str> = line.split_whitespace().collect();
                    let Some(sep) = w.iter().position(|x| *x == "-") else { continue };
                    let (Some(point), Some(source)) = (w.get(4), w.get(sep + 2)) else { continue };
                    if source.starts_with("/dev/")
                        && !source.starts_with("/dev/loop")
                        && let Ok(st) = rustix::fs::statvfs(*point)
                    {
                        sum = sum.wrapping_add(st.f_bavail);
                    }
                }
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
                continue;
            };
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                sum = sum.wrapping_add(numbers(&text));
            }
        }
    }
    sum
}

/// Reads once a second, on the second, until killed.
pub fn run() -> anyhow::Result<()> {
    loop {
        black_box(round());
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
        std::thread::sleep(Duration::from_secs(1) - into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_numbers_of_a_line() {
        assert_eq!(numbers("cpu  10 20 x 30\nMemTotal: 5 kB"), 65);
        assert_eq!(numbers("1 (name) S 2"), 3);
    }

    #[test]
    fn a_round_reads_something() {
        assert!(round() > 0, "/proc has numbers");
    }
}
