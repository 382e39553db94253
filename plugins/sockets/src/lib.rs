//! The `sockets` collector: TCP connections by state, from `/proc/net/tcp`
//! and `/proc/net/tcp6`, and socket counts per protocol, from
//! `/proc/net/sockstat` and `/proc/net/sockstat6` (node_exporter's
//! `tcpstat` and `sockstat` collectors). All values are gauges, for the
//! agent's network namespace.
//!
//! Samples:
//! - labels `family` (`ipv4`, `ipv6`) and `state` (`established`,
//!   `syn_sent`, `syn_recv`, `fin_wait1`, `fin_wait2`, `time_wait`,
//!   `close`, `close_wait`, `last_ack`, `listen`, `closing`; every state
//!   always, zero or not, and `unknown` when a line has another code):
//!   `tcp_connection_states`, the connections in that state;
//! - no labels: `sockets_used`, sockets of all kinds in use;
//! - labels `protocol` (`tcp`, `udp`, `udplite`, `raw`, `frag`) and
//!   `family`: what sockstat lists for it, among `inuse` (sockets, or
//!   reassembly queues for `frag`), `orphan` (TCP sockets no process holds),
//!   `time_wait`, `alloc` (TCP sockets allocated) and `mem_bytes` (memory of
//!   the protocol's buffers: the kernel's pages times 4096, or `frag`'s
//!   bytes). The kernel prints TCP's `orphan`, `tw`, `alloc` and `mem` on
//!   the IPv4 line only and counts both families in them.
//!
//! `/proc/net/tcp` holds a line of about 150 bytes per socket, so on a busy
//! server it is large: the collector streams it line by line through a
//! small buffer, keeps only the counts, and stops after `[config]
//! max_connections` lines per file (default 100,000); past it the counts
//! are a lower bound, and the collector logs that once.

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtap_collector::{
    Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, config, log, procfs,
};

struct Sockets;

/// TCP states by the kernel's code (1 to 11), as label values.
pub const TCP_STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];
/// Bytes in a page of sockstat's `mem` (4 KiB on x86-64 and most arm64).
pub const PAGE_SIZE: u64 = 4096;
const DEFAULT_MAX: u64 = 100_000;

static MAX_CONNECTIONS: AtomicU64 = AtomicU64::new(DEFAULT_MAX);
static LOGGED_CAP: log::Once = log::Once::new();

struct Fields {
    tcp_states: Gauge,
    sockets_used: Gauge,
    inuse: Gauge,
    orphan: Gauge,
    time_wait: Gauge,
    alloc: Gauge,
    mem_bytes: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        tcp_states: s.gauge(
            "tcp_connection_states",
            "connections",
            "TCP connections in the state of the label `state`",
        ),
        sockets_used: s.gauge("sockets_used", "sockets", "Sockets of all kinds in use"),
        inuse: s.gauge("inuse", "sockets", "Sockets of the protocol in use"),
        orphan: s.gauge("orphan", "sockets", "TCP sockets no process holds any more"),
        time_wait: s.gauge("time_wait", "sockets", "TCP sockets in TIME_WAIT"),
        alloc: s.gauge("alloc", "sockets", "TCP sockets allocated"),
        mem_bytes: s.gauge("mem_bytes", "bytes", "Memory used by the protocol's buffers"),
    };
    (s, f)
}

/// Connections per state of one `/proc/net/tcp` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpCounts {
    /// Connections per [`TCP_STATES`] entry.
    pub states: [u64; 11],
    /// Lines with a state code outside 1 to 11.
    pub unknown: u64,
    /// Whether reading stopped at the cap before the end of the file.
    pub truncated: bool,
}

/// The state code of one `/proc/net/tcp` line (`   0: 0100007F:A71D
/// 00000000:0000 0A …`), or `None` for the header line (`  sl
/// local_address …`).
pub fn tcp_state(line: &str) -> Result<Option<u8>, String> {
    let mut words = line.split_whitespace();
    let slot = words.next().ok_or("empty line")?;
    if slot == "sl" {
        return Ok(None);
    }
    let bad = || format!("bad line `{}`", line.escape_debug());
    if !slot.strip_suffix(':').is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    let (Some(_local), Some(_remote), Some(state)) = (words.next(), words.next(), words.next())
    else {
        return Err(bad());
    };
    if state.len() != 2 {
        return Err(bad());
    }
    u8::from_str_radix(state, 16).map(Some).map_err(|_| bad())
}

/// Counts the connections per state of a `/proc/net/tcp` or `tcp6` stream,
/// one line at a time, stopping after `cap` connection lines.
pub fn count_tcp(mut reader: impl BufRead, cap: u64) -> Result<TcpCounts, String> {
    let mut counts = TcpCounts::default();
    let mut line = String::with_capacity(256);
    let mut seen = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Ok(counts);
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some(code) = tcp_state(&line)? else { continue };
        if seen == cap {
            counts.truncated = true;
            return Ok(counts);
        }
        seen += 1;
        match usize::from(code).checked_sub(1).and_then(|i| counts.states.get_mut(i)) {
            Some(c) => *c += 1,
            None => counts.unknown += 1,
        }
    }
}

/// [`count_tcp`] over a whole file's text, without a cap.
pub fn parse_tcp(text: &str) -> Result<TcpCounts, String> {
    count_tcp(text.as_bytes(), u64::MAX)
}

/// One line of `/proc/net/sockstat`: `TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 52`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockstatLine {
    /// What precedes the colon: `sockets`, `TCP`, `UDP6`, …
    pub name: String,
    /// The `key value` pairs, in order.
    pub values: Vec<(String, u64)>,
}

/// Parses `/proc/net/sockstat` or `sockstat6`.
pub fn parse_sockstat(text: &str) -> Result<Vec<SockstatLine>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || format!("bad line `{}`", line.escape_debug());
        let (name, rest) = line.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad());
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.is_empty() || !words.len().is_multiple_of(2) {
            return Err(bad());
        }
        let values = words
            .chunks_exact(2)
            .map(|kv| Ok((kv[0].to_owned(), procfs::parse_u64(kv[1], kv[0])?)))
            .collect::<Result<Vec<_>, String>>()?;
        out.push(SockstatLine { name: name.to_owned(), values });
    }
    if out.is_empty() {
        return Err("empty sockstat".into());
    }
    Ok(out)
}

/// A sockstat protocol name as the `protocol` label: lower case, without
/// sockstat6's trailing `6` (`TCP6` → `tcp`).
pub fn protocol_label(name: &str) -> String {
    name.strip_suffix('6').unwrap_or(name).to_ascii_lowercase()
}

fn sockstat_samples(lines: &[SockstatLine], family: &str, f: &Fields) -> Vec<Sample> {
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        if l.name == "sockets" {
            if let Some((_, used)) = l.values.iter().find(|(k, _)| k == "used") {
                out.push(SampleBuilder::new().gauge(f.sockets_used, *used as f64).build());
            }
            continue;
        }
        let mut sample =
            SampleBuilder::new().label("protocol", protocol_label(&l.name)).label("family", family);
        for (key, value) in &l.values {
            let v = *value as f64;
            sample = match key.as_str() {
                "inuse" => sample.gauge(f.inuse, v),
                "orphan" => sample.gauge(f.orphan, v),
                "tw" => sample.gauge(f.time_wait, v),
                "alloc" => sample.gauge(f.alloc, v),
                "mem" => sample.gauge(f.mem_bytes, value.saturating_mul(PAGE_SIZE) as f64),
                "memory" => sample.gauge(f.mem_bytes, v),
                _ => sample,
            };
        }
        out.push(sample.build());
    }
    out
}

fn tcp_samples(counts: &TcpCounts, family: &str, f: &Fields) -> Vec<Sample> {
    let state = |name: &str, n: u64| {
        SampleBuilder::new()
            .label("family", family)
            .label("state", name)
            .gauge(f.tcp_states, n as f64)
            .build()
    };
    let mut out: Vec<Sample> =
        TCP_STATES.iter().zip(counts.states).map(|(name, n)| state(name, n)).collect();
    if counts.unknown > 0 {
        out.push(state("unknown", counts.unknown));
    }
    out
}

/// Counts `/proc/net/<file>`; a missing file (no IPv6) counts nothing.
fn read_tcp(file: &str, cap: u64) -> Result<Option<TcpCounts>, String> {
    let path = format!("/proc/net/{file}");
    let handle = match std::fs::File::open(&path) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("opening {path}: {e}")),
    };
    let counts = count_tcp(std::io::BufReader::with_capacity(64 << 10, handle), cap)
        .map_err(|e| format!("{path}: {e}"))?;
    if counts.truncated && LOGGED_CAP.first() {
        log::warn(&format!(
            "{path} has more than {cap} connections: counted the first {cap} \
             (raise [config] max_connections and the timeout)"
        ));
    }
    Ok(Some(counts))
}

/// Parses `/proc/net/<file>`; a missing file (no IPv6) lists nothing.
fn read_sockstat(file: &str) -> Result<Vec<SockstatLine>, String> {
    let path = format!("/proc/net/{file}");
    match procfs::read_if_exists(&path)? {
        Some(text) => parse_sockstat(&text).map_err(|e| format!("{path}: {e}")),
        None => Ok(Vec::new()),
    }
}

impl Guest for Sockets {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("sockets", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["max_connections"])?;
        let max = config::number(&config, "max_connections", DEFAULT_MAX, 1..=100_000_000)?;
        MAX_CONNECTIONS.store(max, Ordering::Relaxed);
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, f) = schema();
        let cap = MAX_CONNECTIONS.load(Ordering::Relaxed);
        let mut out = Vec::with_capacity(40);
        for (file, family) in [("tcp", "ipv4"), ("tcp6", "ipv6")] {
            if let Some(counts) = read_tcp(file, cap)? {
                out.extend(tcp_samples(&counts, family, &f));
            }
        }
        for (file, family) in [("sockstat", "ipv4"), ("sockstat6", "ipv6")] {
            out.extend(sockstat_samples(&read_sockstat(file)?, family, &f));
        }
        Ok(out)
    }
}

wasmtap_collector::export!(Sockets);

#[cfg(test)]
mod tests {
    use super::*;

    fn state(counts: &TcpCounts, name: &str) -> u64 {
        let i = TCP_STATES.iter().position(|s| *s == name).expect("a state");
        counts.states[i]
    }

    #[test]
    fn counts_this_machines_connections() {
        let quiet = parse_tcp(include_str!("../fixtures/tcp-6.18.44")).expect("tcp");
        assert_eq!(
            [state(&quiet, "listen"), state(&quiet, "established"), state(&quiet, "time_wait")],
            [5, 4, 4]
        );
        assert_eq!(quiet.states.iter().sum::<u64>(), 13);
        let none = parse_tcp(include_str!("../fixtures/tcp6-6.18.44")).expect("tcp6");
        assert_eq!(none, TcpCounts::default(), "a header and nothing else");

        let busy = parse_tcp(include_str!("../fixtures/tcp-6.18.44-busy")).expect("busy tcp");
        assert_eq!(
            [
                state(&busy, "listen"),
                state(&busy, "established"),
                state(&busy, "time_wait"),
                state(&busy, "close_wait"),
                state(&busy, "fin_wait1")
            ],
            [6, 6, 14, 1, 1]
        );
        assert_eq!((busy.states.iter().sum::<u64>(), busy.unknown), (28, 0));
        let busy6 = parse_tcp(include_str!("../fixtures/tcp6-6.18.44-busy")).expect("busy tcp6");
        assert_eq!(
            [state(&busy6, "listen"), state(&busy6, "established"), state(&busy6, "fin_wait1")],
            [1, 2, 1]
        );
    }

    #[test]
    fn stops_at_the_cap() {
        let text = include_str!("../fixtures/tcp-6.18.44-busy");
        let capped = count_tcp(text.as_bytes(), 10).expect("capped");
        assert!(capped.truncated);
        assert_eq!(capped.states.iter().sum::<u64>(), 10);
        let exact = count_tcp(text.as_bytes(), 28).expect("exactly the lines");
        assert!(!exact.truncated);
    }

    #[test]
    fn streams_through_a_small_buffer() {
        let text = include_str!("../fixtures/tcp-6.18.44-busy");
        let small = std::io::BufReader::with_capacity(16, text.as_bytes());
        assert_eq!(count_tcp(small, u64::MAX), parse_tcp(text));
    }

    #[test]
    fn unknown_state_codes_are_counted_apart() {
        let text = "  sl  local_address rem_address   st\n   0: 0100007F:A71D 00000000:0000 0C 0\n";
        let c = parse_tcp(text).expect("parses");
        assert_eq!((c.unknown, c.states.iter().sum::<u64>()), (1, 0));
    }

    #[test]
    fn refuses_malformed_tcp_lines() {
        for bad in [
            "   0: 0100007F:A71D 00000000:0000\n",
            "   0: 0100007F:A71D 00000000:0000 ZZ 0\n",
            "   0: 0100007F:A71D 00000000:0000 0A0 0\n",
            "   x: 0100007F:A71D 00000000:0000 0A 0\n",
            "   0 0100007F:A71D 00000000:0000 0A 0\n",
            "garbage\n",
        ] {
            assert!(parse_tcp(bad).is_err(), "{bad:?} should fail");
        }
        assert!(count_tcp(&b"   0: a b 0A\n\xff\xfe\n"[..], 10).is_err(), "not UTF-8");
    }

    #[test]
    fn parses_this_machines_sockstat() {
        let v4 = parse_sockstat(include_str!("../fixtures/sockstat-6.18.44-busy")).expect("v4");
        assert_eq!(
            v4[0],
            SockstatLine { name: "sockets".into(), values: vec![("used".into(), 44)] }
        );
        let tcp = &v4[1];
        assert_eq!(tcp.name, "TCP");
        let tcp: Vec<(&str, u64)> = tcp.values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(tcp, [("inuse", 13), ("orphan", 0), ("tw", 16), ("alloc", 17), ("mem", 0)]);
        assert_eq!(v4.len(), 6);
        let frag = &v4[5];
        assert_eq!(frag.values, [("inuse".to_owned(), 0), ("memory".to_owned(), 0)]);
        let v6 = parse_sockstat(include_str!("../fixtures/sockstat6-6.18.44-busy")).expect("v6");
        assert_eq!(
            v6.iter().map(|l| protocol_label(&l.name)).collect::<Vec<_>>(),
            ["tcp", "udp", "udplite", "raw", "frag"]
        );
        assert_eq!(v6[0].values, [("inuse".to_owned(), 4)]);
        assert!(parse_sockstat(include_str!("../fixtures/sockstat-6.18.44")).is_ok());
        assert!(parse_sockstat(include_str!("../fixtures/sockstat6-6.18.44")).is_ok());
    }

    #[test]
    fn refuses_malformed_sockstat() {
        for bad in [
            "",
            "TCP inuse 1\n",
            "TCP: inuse\n",
            "TCP:\n",
            "TCP: inuse x\n",
            "TCP: inuse -1\n",
            "TC P: inuse 1\n",
            ": inuse 1\n",
        ] {
            assert!(parse_sockstat(bad).is_err(), "{bad:?} should fail");
        }
    }
}
