//! The `process` collector: processes by state, process and thread totals,
//! and the processes that used the most CPU since the previous collect,
//! from `/proc/[pid]/stat` (what `top` shows), one read per process per
//! collect and nothing else of the process: its resident pages are in
//! `stat` too (the same count `statm` gives).
//!
//! Samples:
//! - no labels: `processes` and `threads` in all;
//! - label `state` (`running`, `sleeping`, `disk_sleep`, `zombie`,
//!   `stopped`, `idle`, …): `processes_in_state`; the common states are
//!   always reported, zero or not;
//! - labels `pid` and `name` (the process's `comm`: untrusted text, which
//!   the host seals like every label): `cpu_seconds` (its CPU time since
//!   it started, a counter, what `rate()` takes) and `rss_bytes`, for the
//!   `[config] top` processes (default 5) with the most CPU time since the
//!   previous collect; with `[config] percent = "true"` also `cpu_percent`,
//!   that CPU time as a share of the interval (100 % is one CPU fully
//!   used, so a multithreaded process can exceed it). The first collect
//!   after a fresh start has no previous reading and reports no top
//!   processes.
//!
//! Each process's CPU time (utime + stime, in clock ticks) is kept in the
//! persisted state in a compact encoding (about 5 bytes a process); should a
//! machine run so many processes that they do not fit the 64 KiB state, the
//! ones with the least CPU time are left out. A process that started since
//! the previous collect counts all its CPU time. Processes that exit while
//! being read are skipped.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use wasmtap_collector::{
    Counter, Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, config, log, procfs, state,
};

struct Process;

/// Clock ticks per second of `/proc/[pid]/stat` times (`USER_HZ`, 100 on
/// every Linux architecture that matters; WASI cannot ask `sysconf`).
pub const CLOCK_TICKS: f64 = 100.0;
/// Bytes in a page of `/proc/[pid]/stat`'s `rss` (4 KiB on x86-64 and most arm64).
pub const PAGE_SIZE: u64 = 4096;
/// State key holding the previous CPU times.
const STATE_KEY: &str = "cpu_ticks";
/// Largest encoded snapshot kept in the state (the whole state is 64 KiB).
pub const SNAPSHOT_BUDGET: usize = 60 << 10;
/// Default and largest `top`.
const DEFAULT_TOP: u64 = 5;
const MAX_TOP: u64 = 100;

static TOP: AtomicU32 = AtomicU32::new(DEFAULT_TOP as u32);
static PERCENT: AtomicBool = AtomicBool::new(false);

/// Process states of `/proc/[pid]/stat`, with readable names. The first six
/// are always reported.
pub const STATES: [(u8, &str); 12] = [
    (b'R', "running"),
    (b'S', "sleeping"),
    (b'D', "disk_sleep"),
    (b'Z', "zombie"),
    (b'T', "stopped"),
    (b'I', "idle"),
    (b't', "tracing_stop"),
    (b'X', "dead"),
    (b'x', "dead"),
    (b'P', "parked"),
    (b'W', "waking"),
    (b'K', "wakekill"),
];
const ALWAYS_REPORTED: usize = 6;

/// The readable name of a state letter.
pub fn state_name(state: u8) -> &'static str {
    STATES.iter().find(|(c, _)| *c == state).map_or("unknown", |(_, n)| n)
}

struct Fields {
    processes: Gauge,
    threads: Gauge,
    processes_in_state: Gauge,
    cpu_percent: Gauge,
    cpu_seconds: Counter,
    rss_bytes: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        processes: s.gauge("processes", "processes", "Processes that exist"),
        threads: s.gauge("threads", "threads", "Threads of all processes"),
        processes_in_state: s.gauge(
            "processes_in_state",
            "processes",
            "Processes in the state of the label `state`",
        ),
        cpu_percent: s.gauge(
            "cpu_percent",
            "percent",
            "CPU used since the previous collect; 100 is one full CPU (percent = true)",
        ),
        cpu_seconds: s.counter(
            "cpu_seconds",
            "seconds",
            "CPU time (user and system) the process used since it started",
        ),
        rss_bytes: s.gauge("rss_bytes", "bytes", "Resident memory"),
    };
    // Clock ticks of 1/100 s: exact in two decimal places.
    s.precision(f.cpu_seconds, 2);
    // Jiffies (1/100 s) over the interval: tenths of a percent at most.
    s.precision(f.cpu_percent, 1);
    (s, f)
}

/// What the collector uses of one `/proc/[pid]/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// `comm`, the executable name (at most 15 bytes, any bytes but NUL).
    pub name: String,
    /// State letter (`R`, `S`, …).
    pub state: u8,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses `/proc/[pid]/stat`, e.g. `1 (systemd) S 0 1 1 0 -1 …`. The name
/// may hold spaces and parentheses: it runs from the first `(` to the last `)`.
pub fn parse_stat(bytes: &[u8]) -> Result<ProcStat, String> {
    let open = bytes.iter().position(|&b| b == b'(').ok_or("no ( in stat")?;
    let close = bytes.iter().rposition(|&b| b == b')').ok_or("no ) in stat")?;
    if close < open {
        return Err("bad stat: ) before (".into());
    }
    let pid = std::str::from_utf8(&bytes[..open]).map_err(|_| "bad pid in stat".to_owned())?.trim();
    let pid: u32 = pid.parse().map_err(|_| format!("bad pid `{}`", pid.escape_debug()))?;
    let name = String::from_utf8_lossy(&bytes[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&bytes[close + 1..]).map_err(|_| "stat is not text")?;
    // After the name: state(0) ppid … utime(11) stime(12) … num_threads(17) itrealvalue starttime(19) vsize rss(21)
    // (the first 22 words, without allocating: this runs for every process at every collect).
    let mut w = [""; 22];
    let mut found = 0;
    for (slot, word) in w.iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = word;
        found += 1;
    }
    if found < w.len() {
        return Err(format!("stat of {pid} has {found} fields after the name"));
    }
    let state = match w[0].as_bytes() {
        [c] => *c,
        _ => return Err(format!("bad state `{}` of {pid}", w[0].escape_debug())),
    };
    let num = |i: usize, what: &str| procfs::parse_u64(w[i], what);
    let rss: i64 = w[21].parse().map_err(|_| format!("bad rss of {pid}"))?;
    Ok(ProcStat {
        pid,
        name,
        state,
        cpu_ticks: num(11, "utime")?.saturating_add(num(12, "stime")?),
        threads: num(17, "num_threads")?,
        start_ticks: num(19, "starttime")?,
        rss_pages: rss.max(0).unsigned_abs(),
    })
}

/// Seconds since boot from `/proc/uptime` (`2757.15 1433.69`).
pub fn parse_uptime(text: &str) -> Result<f64, String> {
    let word = text.split_whitespace().next().ok_or("empty /proc/uptime")?;
    match word.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("bad uptime `{}`", word.escape_debug())),
    }
}

/// CPU times of every process at one moment, as kept in the state.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Seconds since boot when it was taken.
    pub uptime: f64,
    /// `(pid, cpu_ticks)`, sorted by pid.
    pub ticks: Vec<(u32, u64)>,
}

const SNAPSHOT_MAGIC: &[u8; 2] = b"P1";

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Most bytes one `(pid delta, ticks)` entry takes.
const MAX_ENTRY: usize = 5 + 10;

impl Snapshot {
    /// Takes a snapshot of `procs`; if it would not fit `budget` bytes
    /// encoded, keeps the processes with the most CPU time.
    pub fn new(uptime: f64, procs: &[ProcStat], budget: usize) -> Self {
        let mut ticks: Vec<(u32, u64)> = procs.iter().map(|p| (p.pid, p.cpu_ticks)).collect();
        ticks.sort_unstable();
        ticks.dedup_by_key(|t| t.0);
        let mut s = Self { uptime, ticks };
        if s.encode().len() > budget {
            let keep = budget.saturating_sub(SNAPSHOT_MAGIC.len() + 8) / MAX_ENTRY;
            s.ticks.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            s.ticks.truncate(keep);
            s.ticks.sort_unstable();
        }
        s
    }

    /// The compact encoding: magic, uptime, then per process the pid's
    /// distance from the previous one and its ticks, as LEB128 varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.ticks.len() * 5);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.uptime.to_le_bytes());
        let mut last = 0u32;
        for &(pid, ticks) in &self.ticks {
            put_varint(&mut out, u64::from(pid.wrapping_sub(last)));
            put_varint(&mut out, ticks);
            last = pid;
        }
        out
    }

    /// Decodes [`Snapshot::encode`]'s output; anything malformed is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let bad = || "malformed process snapshot".to_owned();
        let rest = bytes.strip_prefix(SNAPSHOT_MAGIC).ok_or_else(bad)?;
        let (uptime, mut rest) = rest.split_first_chunk::<8>().ok_or_else(bad)?;
        let uptime = f64::from_le_bytes(*uptime);
        let mut ticks = Vec::new();
        let mut last = 0u32;
        while !rest.is_empty() {
            let delta = get_varint(&mut rest).ok_or_else(bad)?;
            let t = get_varint(&mut rest).ok_or_else(bad)?;
            let pid =
                u32::try_from(delta).ok().and_then(|d| last.checked_add(d)).ok_or_else(bad)?;
            if !ticks.is_empty() && pid <= last {
                return Err(bad());
            }
            ticks.push((pid, t));
            last = pid;
        }
        Ok(Self { uptime, ticks })
    }

    fn ticks_of(&self, pid: u32) -> Option<u64> {
        self.ticks.binary_search_by_key(&pid, |t| t.0).ok().map(|i| self.ticks[i].1)
    }
}

/// One process's CPU use since the previous snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuUse<'a> {
    /// The process.
    pub proc: &'a ProcStat,
    /// Percent of one CPU.
    pub percent: f64,
}

/// CPU use of each process between `previous` and now (`uptime`), for the
/// processes where it is known: ones in `previous` whose time did not go
/// down, and ones that started since `previous` (all their time is new).
/// Nothing when there is no previous snapshot or the machine rebooted.
pub fn cpu_use<'a>(
    previous: Option<&Snapshot>,
    uptime: f64,
    procs: &'a [ProcStat],
) -> Vec<CpuUse<'a>> {
    let Some(prev) = previous else {
        return Vec::new();
    };
    let dt = uptime - prev.uptime;
    if dt <= 0.0 || !dt.is_finite() {
        return Vec::new();
    }
    procs
        .iter()
        .filter_map(|p| {
            let started_since = p.start_ticks as f64 / CLOCK_TICKS > prev.uptime;
            let delta = if started_since {
                Some(p.cpu_ticks)
            } else {
                prev.ticks_of(p.pid).and_then(|before| p.cpu_ticks.checked_sub(before))
            }?;
            Some(CpuUse { proc: p, percent: delta as f64 / CLOCK_TICKS / dt * 100.0 })
        })
        .collect()
}

/// The `n` heaviest users: most CPU first, then most resident memory, then lowest pid.
pub fn top(mut uses: Vec<CpuUse<'_>>, n: usize) -> Vec<CpuUse<'_>> {
    uses.sort_by(|a, b| {
        b.percent
            .total_cmp(&a.percent)
            .then(b.proc.rss_pages.cmp(&a.proc.rss_pages))
            .then(a.proc.pid.cmp(&b.proc.pid))
    });
    uses.truncate(n);
    uses
}

/// Processes per state name: the always-reported states first, in
/// [`STATES`] order, then any other state seen.
pub fn count_states(procs: &[ProcStat]) -> Vec<(&'static str, u64)> {
    let mut out: Vec<(&'static str, u64)> = Vec::new();
    for (_, name) in &STATES[..ALWAYS_REPORTED] {
        out.push((name, 0));
    }
    for p in procs {
        let name = state_name(p.state);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => out.push((name, 1)),
        }
    }
    out
}

/// Reads `/proc/[pid]/stat` of every process (one host call each);
/// processes that vanish (or whose files are unreadable) while being read
/// are skipped.
fn scan() -> Result<Vec<ProcStat>, String> {
    let mut out = Vec::new();
    for name in procfs::list("/proc")? {
        let Ok(pid) = name.parse::<u32>() else { continue };
        let Ok(bytes) = procfs::read_bytes(&format!("/proc/{pid}/stat")) else {
            continue;
        };
        match parse_stat(&bytes) {
            Ok(p) => out.push(p),
            Err(e) => log::debug(&format!("skipping pid {pid}: {e}")),
        }
    }
    Ok(out)
}

fn rss_bytes(p: &ProcStat) -> u64 {
    p.rss_pages.saturating_mul(PAGE_SIZE)
}

impl Guest for Process {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("process", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["top", "percent"])?;
        let n = config::number(&config, "top", DEFAULT_TOP, 0..=MAX_TOP)?;
        TOP.store(n as u32, Ordering::Relaxed);
        PERCENT.store(config::flag(&config, "percent", false)?, Ordering::Relaxed);
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, f) = schema();
        let started = std::time::Instant::now();
        let procs = scan()?;
        let scanned = started.elapsed();
        // Read after the scan: whatever started later is new next time.
        let uptime = parse_uptime(&procfs::read("/proc/uptime")?)?;
        let previous = state::get(STATE_KEY).and_then(|b| Snapshot::decode(&b).ok());
        let snapshot = Snapshot::new(uptime, &procs, SNAPSHOT_BUDGET);
        if let Err(e) = state::set(STATE_KEY, &snapshot.encode()) {
            log::warn(&format!("cannot keep CPU times: {e}"));
        }
        let threads: u64 = procs.iter().map(|p| p.threads).sum();
        let mut out = vec![
            SampleBuilder::new()
                .gauge(f.processes, procs.len() as f64)
                .gauge(f.threads, threads as f64)
                .build(),
        ];
        for (name, count) in count_states(&procs) {
            out.push(
                SampleBuilder::new()
                    .label("state", name)
                    .gauge(f.processes_in_state, count as f64)
                    .build(),
            );
        }
        let n = TOP.load(Ordering::Relaxed) as usize;
        let percent = PERCENT.load(Ordering::Relaxed);
        for u in top(cpu_use(previous.as_ref(), uptime, &procs), n) {
            let mut b = SampleBuilder::new()
                .label("pid", u.proc.pid.to_string())
                .label("name", u.proc.name.as_str())
                .counter(f.cpu_seconds, u.proc.cpu_ticks as f64 / CLOCK_TICKS)
                .gauge(f.rss_bytes, rss_bytes(u.proc) as f64);
            if percent {
                b = b.gauge(f.cpu_percent, u.percent);
            }
            out.push(b.build());
        }
        log::debug(&format!(
            "{} processes: scan {} ms, collect {} ms",
            procs.len(),
            scanned.as_millis(),
            started.elapsed().as_millis()
        ));
        Ok(out)
    }
}

wasmtap_collector::export!(Process);

#[cfg(test)]
mod tests {
    use super::*;

    const INIT: &[u8] = b"1 (process_api) S 0 0 0 0 -1 4194560 12479 15664748 0 1381 52 107 151918 8555 10 -10 11 0 13 34955264 2239 18446744073709551615 1 1 0 0 0 0 0 4096 1256 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    fn proc(pid: u32, ticks: u64, start: u64) -> ProcStat {
        ProcStat {
            pid,
            name: format!("p{pid}"),
            state: b'S',
            cpu_ticks: ticks,
            threads: 1,
            start_ticks: start,
            rss_pages: u64::from(pid),
        }
    }

    #[test]
    fn parses_a_real_stat() {
        let p = parse_stat(INIT).expect("parses");
        assert_eq!(
            p,
            ProcStat {
                pid: 1,
                name: "process_api".into(),
                state: b'S',
                cpu_ticks: 52 + 107,
                threads: 11,
                start_ticks: 13,
                rss_pages: 2239,
            }
        );
    }

    #[test]
    fn hostile_names() {
        let text = b"42 (a) R (b) \xff) Z 1 1 1 0 -1 0 0 0 0 0 7 8 0 0 20 0 3 0 99 0 5 0\n";
        let p = parse_stat(text).expect("parses");
        assert_eq!(p.name, "a) R (b) \u{fffd}");
        assert_eq!((p.state, p.cpu_ticks, p.threads, p.start_ticks), (b'Z', 15, 3, 99));
        let p = parse_stat(b"7 () R 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 -1 0\n")
            .expect("empty name");
        assert_eq!((p.name.as_str(), p.rss_pages), ("", 0));
    }

    #[test]
    fn refuses_bad_stat() {
        for text in [
            &b""[..],
            b"1 systemd S 0",
            b"1 )systemd( S 0 0 0 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 1 0",
            b"x (a) S 0 0 0 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 1 0",
            b"1 (a) S 0 0 0 0 -1 0 0 0 0 0 1 1 0 0 20 0",
            b"1 (a) SS 0 0 0 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 1 0",
            b"1 (a) S 0 0 0 0 -1 0 0 0 0 0 x 1 0 0 20 0 1 0 9 0 1 0",
            b"1 (a) S 0 0 0 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 y 0",
            b"99999999999 (a) S 0 0 0 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 1 0",
        ] {
            assert!(parse_stat(text).is_err(), "{:?} should fail", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn uptime() {
        assert_eq!(parse_uptime("2757.15 1433.69\n"), Ok(2757.15));
        for bad in ["", "x 1", "-1 2", "inf 1", "NaN 1"] {
            assert!(parse_uptime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_names_and_counts() {
        assert_eq!(state_name(b'D'), "disk_sleep");
        assert_eq!(state_name(b'?'), "unknown");
        let mut procs = vec![proc(1, 0, 0), proc(2, 0, 0), proc(3, 0, 0)];
        procs[1].state = b'R';
        procs[2].state = b'P';
        let counts = count_states(&procs);
        assert_eq!(
            counts,
            [
                ("running", 1),
                ("sleeping", 1),
                ("disk_sleep", 0),
                ("zombie", 0),
                ("stopped", 0),
                ("idle", 0),
                ("parked", 1)
            ]
        );
    }

    #[test]
    fn snapshot_round_trip() {
        let procs = [proc(300, 5, 0), proc(1, 159, 0), proc(4_000_000, u64::MAX, 0)];
        let s = Snapshot::new(2757.15, &procs, SNAPSHOT_BUDGET);
        assert_eq!(s.ticks, [(1, 159), (300, 5), (4_000_000, u64::MAX)]);
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes), Ok(s));
        let empty = Snapshot::new(1.0, &[], SNAPSHOT_BUDGET);
        assert_eq!(Snapshot::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn snapshot_is_compact_and_capped() {
        // A busy machine: 4000 processes with small, dense pids.
        let procs: Vec<ProcStat> =
            (1..=4000).map(|pid| proc(pid * 3, u64::from(pid) * 50, 0)).collect();
        let s = Snapshot::new(10.0, &procs, SNAPSHOT_BUDGET);
        assert_eq!(s.ticks.len(), 4000);
        assert!(s.encode().len() < 4000 * 5, "{} bytes", s.encode().len());
        // Over budget: the heaviest are kept and the result fits.
        let capped = Snapshot::new(10.0, &procs, 1000);
        assert!(capped.encode().len() <= 1000);
        assert!(!capped.ticks.is_empty());
        assert_eq!(capped.ticks.last(), Some(&(12000, 200_000)));
        assert!(capped.ticks.iter().all(|t| t.1 >= 200_000 - 50 * capped.ticks.len() as u64));
    }

    #[test]
    fn refuses_bad_snapshots() {
        let good = Snapshot::new(1.0, &[proc(5, 1, 0), proc(9, 2, 0)], SNAPSHOT_BUDGET).encode();
        let mut unsorted = good[..10].to_vec();
        unsorted.extend([5, 1, 0, 2]); // pid 5, then pid 5 again
        for bad in [
            &b""[..],
            b"P1",
            b"X1\0\0\0\0\0\0\0\0",
            &good[..good.len() - 1],
            &unsorted,
            b"P1\0\0\0\0\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            b"P1\0\0\0\0\0\0\0\0\xff\xff\xff\xff\x7f\x01",
        ] {
            assert!(Snapshot::decode(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn cpu_use_since_previous() {
        let prev = Snapshot { uptime: 100.0, ticks: vec![(1, 1000), (2, 500), (3, 700)] };
        // 10 s later: pid 1 used 200 ticks (20 % of a CPU); pid 2 exited;
        // pid 3 was reused by a process started at 105 s with 50 ticks;
        // pid 4 is new (250 ticks); pid 5 is old but was not in the snapshot.
        let now = [proc(1, 1200, 50), proc(3, 50, 10_500), proc(4, 250, 10_200), proc(5, 90, 300)];
        let uses = cpu_use(Some(&prev), 110.0, &now);
        let got: Vec<(u32, f64)> = uses.iter().map(|u| (u.proc.pid, u.percent)).collect();
        assert_eq!(got, [(1, 20.0), (3, 5.0), (4, 25.0)]);
        let best = top(uses, 2);
        assert_eq!(best.iter().map(|u| u.proc.pid).collect::<Vec<_>>(), [4, 1]);
    }

    #[test]
    fn no_cpu_use_without_a_usable_previous() {
        let now = [proc(1, 1200, 50)];
        assert!(cpu_use(None, 110.0, &now).is_empty());
        let prev = Snapshot { uptime: 500.0, ticks: vec![(1, 1000)] };
        assert!(cpu_use(Some(&prev), 110.0, &now).is_empty(), "rebooted");
        let prev = Snapshot { uptime: 110.0, ticks: vec![(1, 1000)] };
        assert!(cpu_use(Some(&prev), 110.0, &now).is_empty(), "no time passed");
        let prev = Snapshot { uptime: 100.0, ticks: vec![(1, 5000)] };
        assert!(cpu_use(Some(&prev), 110.0, &now).is_empty(), "time went down");
    }

    #[test]
    fn ties_break_on_memory_then_pid() {
        let procs = [proc(7, 0, 0), proc(9, 0, 0), proc(8, 0, 0)];
        let prev = Snapshot { uptime: 1.0, ticks: vec![(7, 0), (8, 0), (9, 0)] };
        let best = top(cpu_use(Some(&prev), 2.0, &procs), 5);
        assert_eq!(best.iter().map(|u| u.proc.pid).collect::<Vec<_>>(), [9, 8, 7]);
    }
}
