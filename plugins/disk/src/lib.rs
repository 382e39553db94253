//! The `disk` collector: block device I/O from `/proc/diskstats` and the
//! mounted filesystems from `/proc/self/mountinfo`.
//!
//! Per block device (label `device`; `loop*` and `ram*` are skipped, and so
//! are partitions unless `[config] include_partitions = "true"`): the
//! kernel's counters of reads and writes completed, bytes read and written
//! (sectors × 512) and seconds with I/O in flight (whose `rate()` is what
//! `iostat` calls `%util`), the I/Os in flight, and the device size from
//! `/proc/partitions`. With `[config] rates = "true"` the collector also
//! reports reads, writes and bytes per second and the busy percentage over
//! its interval, from the previous reading kept in the persisted state (the
//! first collect after a fresh start has none).
//!
//! Per mounted filesystem backed by a block device or a network/pool store
//! (label `mount`; pseudo filesystems such as proc, tmpfs and overlay are
//! not reported): its type and source as text, whether it is mounted
//! read-only (a filesystem remounted read-only after errors shows here), the
//! size of the block device it lives on, and how full it is: size, free,
//! available (to unprivileged users, as `df` shows) and used bytes, total
//! and free inodes. Usage comes from the host's `filesystem.usage` import
//! (`statvfs`), which answers only inside the manifest's grants: the shipped
//! manifest grants `usage = ["/"]`, usage of every filesystem without read
//! access to any file on it. Without that grant the usage fields are
//! missing and the collector logs why, once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtap_collector::{
    Counter, Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, TextField, config,
    filesystem, log, procfs, state,
};

struct Disk;

/// Bytes in a `/proc/diskstats` sector, whatever the device's real sector size.
pub const SECTOR: u64 = 512;
/// Longest label the host accepts; longer mount points are skipped.
const MAX_LABEL: usize = 256;
/// Most filesystems reported per collect.
const MAX_MOUNTS: usize = 1000;

static INCLUDE_PARTITIONS: AtomicBool = AtomicBool::new(false);
static RATES_TOO: AtomicBool = AtomicBool::new(false);
/// A failed usage query is logged once per instance.
static USAGE_WARNED: log::Once = log::Once::new();

struct Fields {
    reads_per_second: Gauge,
    writes_per_second: Gauge,
    read_bytes_per_second: Gauge,
    written_bytes_per_second: Gauge,
    io_time_percent: Gauge,
    ios_in_progress: Gauge,
    reads_completed: Counter,
    writes_completed: Counter,
    read_bytes: Counter,
    written_bytes: Counter,
    io_time_seconds: Counter,
    size_bytes: Gauge,
    fstype: TextField,
    source: TextField,
    read_only: Gauge,
    device_size_bytes: Gauge,
    fs_size_bytes: Gauge,
    fs_free_bytes: Gauge,
    fs_avail_bytes: Gauge,
    fs_used_bytes: Gauge,
    fs_files: Gauge,
    fs_files_free: Gauge,
}

/// The field handles, built once (`schema` allocates every name).
fn fields() -> &'static Fields {
    static FIELDS: std::sync::OnceLock<Fields> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| schema().1)
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        reads_per_second: s.gauge(
            "reads_per_second",
            "operations/s",
            "Reads completed per second (rates = true)",
        ),
        writes_per_second: s.gauge(
            "writes_per_second",
            "operations/s",
            "Writes completed per second (rates = true)",
        ),
        read_bytes_per_second: s.gauge(
            "read_bytes_per_second",
            "bytes/s",
            "Bytes read per second (rates = true)",
        ),
        written_bytes_per_second: s.gauge(
            "written_bytes_per_second",
            "bytes/s",
            "Bytes written per second (rates = true)",
        ),
        io_time_percent: s.gauge(
            "io_time_percent",
            "percent",
            "Time the device had I/O in flight over the interval (busy, %util; rates = true)",
        ),
        ios_in_progress: s.gauge("ios_in_progress", "operations", "I/Os in flight now"),
        reads_completed: s.counter("reads_completed", "operations", "Reads completed since boot"),
        writes_completed: s.counter(
            "writes_completed",
            "operations",
            "Writes completed since boot",
        ),
        read_bytes: s.counter("read_bytes", "bytes", "Bytes read since boot"),
        written_bytes: s.counter("written_bytes", "bytes", "Bytes written since boot"),
        io_time_seconds: s.counter(
            "io_time_seconds",
            "seconds",
            "Time with I/O in flight since boot (its rate is the busy share)",
        ),
        size_bytes: s.gauge("size_bytes", "bytes", "Size of the block device"),
        fstype: s.text("fstype", "Filesystem type of the mount"),
        source: s.text("source", "What is mounted (device, export, pool)"),
        read_only: s.gauge("read_only", "", "1 if mounted read-only, else 0"),
        device_size_bytes: s.gauge(
            "device_size_bytes",
            "bytes",
            "Size of the block device under the mount",
        ),
        fs_size_bytes: s.gauge("fs_size_bytes", "bytes", "Size of the filesystem"),
        fs_free_bytes: s.gauge(
            "fs_free_bytes",
            "bytes",
            "Free bytes, including those reserved for root",
        ),
        fs_avail_bytes: s.gauge(
            "fs_avail_bytes",
            "bytes",
            "Bytes available to unprivileged users (df's Avail)",
        ),
        fs_used_bytes: s.gauge("fs_used_bytes", "bytes", "Bytes in use: size - free (df's Used)"),
        fs_files: s.gauge("fs_files", "inodes", "Inodes of the filesystem"),
        fs_files_free: s.gauge("fs_files_free", "inodes", "Free inodes"),
    };
    // Rates over an interval of milliseconds: whole bytes, hundredths of an operation.
    for (g, places) in [
        (f.reads_per_second, 2),
        (f.writes_per_second, 2),
        (f.read_bytes_per_second, 0),
        (f.written_bytes_per_second, 0),
        (f.io_time_percent, 1),
    ] {
        s.precision(g, places);
    }
    // Milliseconds, exact in three decimal places of a second.
    s.precision(f.io_time_seconds, 3);
    (s, f)
}

/// One line of `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStats {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Kernel name, such as `sda` or `nvme0n1`.
    pub device: String,
    /// Reads completed.
    pub reads: u64,
    /// Sectors read.
    pub sectors_read: u64,
    /// Writes completed.
    pub writes: u64,
    /// Sectors written.
    pub sectors_written: u64,
    /// I/Os in flight.
    pub in_progress: u64,
    /// Milliseconds with I/O in flight.
    pub io_ms: u64,
}

impl DiskStats {
    /// The counters kept for rates: reads, writes, bytes read, bytes written, I/O ms.
    pub fn counters(&self) -> [f64; 5] {
        [
            self.reads as f64,
            self.writes as f64,
            self.sectors_read.saturating_mul(SECTOR) as f64,
            self.sectors_written.saturating_mul(SECTOR) as f64,
            self.io_ms as f64,
        ]
    }
}

/// Parses `/proc/diskstats` (Linux 2.6.25 and later: at least 11 numbers per device).
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskStats>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if words.len() < 14 {
            return Err(format!(
                "/proc/diskstats line with {} columns: `{}`",
                words.len(),
                line.escape_debug()
            ));
        }
        let device = words[2];
        let n = procfs::parse_u64s(words[3..14].iter().copied(), device)?;
        out.push(DiskStats {
            major: procfs::parse_u64(words[0], "major number")?,
            minor: procfs::parse_u64(words[1], "minor number")?,
            device: device.to_owned(),
            reads: n[0],
            sectors_read: n[2],
            writes: n[4],
            sectors_written: n[6],
            in_progress: n[8],
            io_ms: n[9],
        });
    }
    Ok(out)
}

/// Whether `name` is a partition of another device in `all`: `sda1` of
/// `sda`, `nvme0n1p2` of `nvme0n1`, `mmcblk0p1` of `mmcblk0`.
pub fn is_partition(name: &str, all: &[&str]) -> bool {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() == name.len() || stem.is_empty() {
        return false;
    }
    let with_p = stem.strip_suffix('p').filter(|d| d.ends_with(|c: char| c.is_ascii_digit()));
    all.iter().any(|d| *d != name && (*d == stem || Some(*d) == with_p))
}

/// The devices worth reporting: not `loop*` nor `ram*`, and not partitions
/// unless asked for.
pub fn reported(disks: &[DiskStats], include_partitions: bool) -> Vec<&DiskStats> {
    let names: Vec<&str> = disks.iter().map(|d| d.device.as_str()).collect();
    disks
        .iter()
        .filter(|d| !d.device.starts_with("loop") && !d.device.starts_with("ram"))
        .filter(|d| include_partitions || !is_partition(&d.device, &names))
        .collect()
}

/// Device sizes in bytes from `/proc/partitions`, by `(major, minor)`.
pub fn parse_partitions(text: &str) -> Result<HashMap<(u64, u64), u64>, String> {
    let mut out = HashMap::new();
    for line in text.lines().skip_while(|l| !l.trim_start().starts_with("major")).skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.is_empty() {
            continue;
        }
        if w.len() != 4 {
            return Err(format!("bad /proc/partitions line `{}`", line.escape_debug()));
        }
        let n = procfs::parse_u64s(w[..3].iter().copied(), "/proc/partitions")?;
        out.insert((n[0], n[1]), n[2].saturating_mul(1024));
    }
    Ok(out)
}

/// One mounted filesystem from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device major number (0 for filesystems without a block device).
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Where it is mounted, unescaped.
    pub mount_point: String,
    /// Whether the mount is read-only.
    pub read_only: bool,
    /// Filesystem type, such as `ext4`.
    pub fstype: String,
    /// What is mounted, such as `/dev/sda1`.
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || format!("bad mountinfo line `{}`", line.escape_debug());
        let w: Vec<&str> = line.split_whitespace().collect();
        // id parent major:minor root mount-point options [optional…] - fstype source super-options
        let sep = w.iter().position(|x| *x == "-").ok_or_else(bad)?;
        if sep < 6 || w.len() < sep + 3 {
            return Err(bad());
        }
        let (major, minor) = w[2].split_once(':').ok_or_else(bad)?;
        out.push(Mount {
            major: procfs::parse_u64(major, "major number")?,
            minor: procfs::parse_u64(minor, "minor number")?,
            mount_point: unescape(w[4]),
            read_only: w[5].split(',').any(|o| o == "ro"),
            fstype: unescape(w[sep + 1]),
            source: unescape(w[sep + 2]),
        });
    }
    Ok(out)
}

/// Filesystem types kept even though their source is not a `/dev` path.
const NON_DEVICE_STORES: &[&str] = &["zfs", "nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs"];

/// The mounts worth reporting: filesystems on a block device (not a loop
/// device) or on a network or pool store; one per mount point (the last,
/// which hides the others).
pub fn real_mounts(mounts: Vec<Mount>) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for m in mounts {
        let device = m.source.starts_with("/dev/") && !m.source.starts_with("/dev/loop");
        if !(device || NON_DEVICE_STORES.contains(&m.fstype.as_str())) {
            continue;
        }
        out.retain(|o| o.mount_point != m.mount_point);
        out.push(m);
    }
    out
}

fn filesystems(f: &Fields, sizes: &HashMap<(u64, u64), u64>) -> Result<Vec<Sample>, String> {
    let mounts = real_mounts(parse_mountinfo(&procfs::read("/proc/self/mountinfo")?)?);
    let mut out = Vec::new();
    for m in mounts.into_iter().take(MAX_MOUNTS) {
        if m.mount_point.len() > MAX_LABEL {
            continue;
        }
        let mount_point = m.mount_point;
        let mut b = SampleBuilder::new()
            .label("mount", mount_point.as_str())
            .text(f.fstype, truncate(m.fstype))
            .text(f.source, truncate(m.source))
            .gauge(f.read_only, if m.read_only { 1.0 } else { 0.0 });
        if m.major != 0
            && let Some(size) = sizes.get(&(m.major, m.minor))
        {
            b = b.gauge(f.device_size_bytes, *size as f64);
        }
        match filesystem::usage(&mount_point) {
            Ok(u) => {
                let used = u.total_bytes.saturating_sub(u.free_bytes);
                b = b
                    .gauge(f.fs_size_bytes, u.total_bytes as f64)
                    .gauge(f.fs_free_bytes, u.free_bytes as f64)
                    .gauge(f.fs_avail_bytes, u.available_bytes as f64)
                    .gauge(f.fs_used_bytes, used as f64)
                    .gauge(f.fs_files, u.total_inodes as f64)
                    .gauge(f.fs_files_free, u.free_inodes as f64);
            }
            Err(e) => {
                if USAGE_WARNED.first() {
                    log::warn(&format!("no usage of {mount_point}: {e}"));
                }
            }
        }
        out.push(b.build());
    }
    Ok(out)
}

/// Cuts text to 1 KiB on a character boundary (the host refuses texts over 4 KiB).
fn truncate(mut s: String) -> String {
    if s.len() > 1024 {
        let mut end = 1024;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Guest for Disk {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("disk", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["include_partitions", "rates"])?;
        let p = config::flag(&config, "include_partitions", false)?;
        INCLUDE_PARTITIONS.store(p, Ordering::Relaxed);
        RATES_TOO.store(config::flag(&config, "rates", false)?, Ordering::Relaxed);
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let f = fields();
        let all = parse_diskstats(&procfs::read("/proc/diskstats")?)?;
        let disks = reported(&all, INCLUDE_PARTITIONS.load(Ordering::Relaxed));
        let sizes = procfs::read("/proc/partitions")
            .and_then(|t| parse_partitions(&t))
            .unwrap_or_else(|e| {
                log::warn(&e);
                HashMap::new()
            });
        // Rates only when asked for: without them nothing is persisted.
        let rates = if RATES_TOO.load(Ordering::Relaxed) {
            let counters: Vec<[f64; 5]> = disks.iter().map(|d| d.counters()).collect();
            let series: Vec<(&str, &[f64])> = disks
                .iter()
                .zip(&counters)
                .map(|(d, c)| (d.device.as_str(), c.as_slice()))
                .collect();
            state::series_rates("dev:", &series, state::now_secs())
        } else {
            disks.iter().map(|_| Ok(Vec::new())).collect()
        };
        let mut out = Vec::with_capacity(disks.len());
        let mut warned = false;
        for (d, r) in disks.iter().zip(rates) {
            let r = r.unwrap_or_else(|e| {
                if !std::mem::replace(&mut warned, true) {
                    log::warn(&format!("no rates for {}: {e}", d.device));
                }
                Vec::new()
            });
            let mut b = SampleBuilder::new()
                .label("device", d.device.as_str())
                .gauge(f.ios_in_progress, d.in_progress as f64)
                .counter(f.reads_completed, d.reads as f64)
                .counter(f.writes_completed, d.writes as f64)
                .counter(f.read_bytes, d.sectors_read.saturating_mul(SECTOR) as f64)
                .counter(f.written_bytes, d.sectors_written.saturating_mul(SECTOR) as f64)
                .counter(f.io_time_seconds, d.io_ms as f64 / 1000.0);
            let gauges = [
                f.reads_per_second,
                f.writes_per_second,
                f.read_bytes_per_second,
                f.written_bytes_per_second,
            ];
            for (field, rate) in gauges.into_iter().zip(&r) {
                if let Some(rate) = rate {
                    b = b.gauge(field, *rate);
                }
            }
            if let Some(Some(ms_per_sec)) = r.get(4) {
                b = b.gauge(f.io_time_percent, io_percent(*ms_per_sec));
            }
            if let Some(size) = sizes.get(&(d.major, d.minor)) {
                b = b.gauge(f.size_bytes, *size as f64);
            }
            out.push(b.build());
        }
        match filesystems(f, &sizes) {
            Ok(fs) => out.extend(fs),
            Err(e) => log::warn(&format!("no filesystems: {e}")),
        }
        Ok(out)
    }
}

/// Busy percentage from milliseconds of I/O time per second.
pub fn io_percent(ms_per_sec: f64) -> f64 {
    (ms_per_sec / 10.0).clamp(0.0, 100.0)
}

wasmtap_collector::export!(Disk);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_collector::state::rates;

    const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 289797 6997 12387146 511826 12804 36888 19873216 161286 0 29700 679811 6303 59 3809936 6067 170 631
 254       1 vda1 1000 0 8000 100 10 0 80 5 0 90 105
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 10 0 80 1 20 0 160 2 3 7 9
 259       1 nvme0n1p1 5 0 40 1 10 0 80 1 0 3 4
   8      16 sdb 1 2 3 4 5 6 7 8 9 10 11
";

    #[test]
    fn parses_diskstats() {
        let d = parse_diskstats(DISKSTATS).expect("parses");
        assert_eq!(d.len(), 8);
        let vda = &d[2];
        assert_eq!((vda.major, vda.minor, vda.device.as_str()), (254, 0, "vda"));
        assert_eq!(vda.reads, 289797);
        assert_eq!(vda.sectors_read, 12387146);
        assert_eq!(vda.writes, 12804);
        assert_eq!(vda.sectors_written, 19873216);
        assert_eq!(vda.in_progress, 0);
        assert_eq!(vda.io_ms, 29700);
        assert_eq!(vda.counters()[2], 12387146.0 * 512.0);
    }

    #[test]
    fn skips_loop_ram_and_partitions() {
        let d = parse_diskstats(DISKSTATS).expect("parses");
        let names = |v: Vec<&DiskStats>| v.iter().map(|d| d.device.clone()).collect::<Vec<_>>();
        assert_eq!(names(reported(&d, false)), ["vda", "zram0", "nvme0n1", "sdb"]);
        assert_eq!(
            names(reported(&d, true)),
            ["vda", "vda1", "zram0", "nvme0n1", "nvme0n1p1", "sdb"]
        );
    }

    #[test]
    fn partitions() {
        let all = ["sda", "sda1", "sda12", "nvme0n1", "nvme0n1p2", "mmcblk0", "mmcblk0p1", "md0"];
        for p in ["sda1", "sda12", "nvme0n1p2", "mmcblk0p1"] {
            assert!(is_partition(p, &all), "{p}");
        }
        for d in ["sda", "nvme0n1", "mmcblk0", "md0", "dm-0", "sr0", "1"] {
            assert!(!is_partition(d, &all), "{d}");
        }
    }

    #[test]
    fn refuses_bad_diskstats() {
        for text in [
            "254 0 vda 1 2 3\n",
            "254 0 vda 1 2 3 4 5 6 7 8 9 10 x\n",
            "x 0 vda 1 2 3 4 5 6 7 8 9 10 11\n",
            "254 0 vda 1 2 3 4 5 6 7 8 9 10 -11\n",
        ] {
            assert!(parse_diskstats(text).is_err(), "{text:?} should fail");
        }
        assert_eq!(parse_diskstats("\n"), Ok(vec![]));
    }

    #[test]
    fn busy_percent_from_rates() {
        // 10 s apart: 5000 ms of I/O time is 50 % busy; 1000 sectors read is 51200 B/s.
        let before = [0.0, 0.0, 0.0, 0.0, 0.0, 1000.0];
        let d = DiskStats {
            major: 8,
            minor: 0,
            device: "sda".into(),
            reads: 100,
            sectors_read: 1000,
            writes: 0,
            sectors_written: 0,
            in_progress: 0,
            io_ms: 6000,
        };
        let r = rates(Some(&before), &d.counters(), 10.0);
        assert_eq!(r[0], Some(10.0));
        assert_eq!(r[2], Some(51200.0));
        assert_eq!(r[4].map(io_percent), Some(50.0));
        assert_eq!(io_percent(1500.0), 100.0, "merged queues can exceed 1000 ms/s");
    }

    #[test]
    fn parses_partitions() {
        let p = parse_partitions(
            "major minor  #blocks  name\n\n 254        0  268435456 vda\n 254 1 1024 vda1\n",
        )
        .expect("parses");
        assert_eq!(p.get(&(254, 0)), Some(&(268435456 * 1024)));
        assert_eq!(p.get(&(254, 1)), Some(&(1024 * 1024)));
        assert!(parse_partitions("major minor #blocks name\n 8 0 x sda\n").is_err());
        assert!(parse_partitions("major minor #blocks name\n 8 0 sda\n").is_err());
    }

    const MOUNTINFO: &str = r"22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683656k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 259:1 / /mnt/my\040disk ro,relatime shared:5 master:1 - xfs /dev/nvme0n1p1 ro
41 27 0:45 / /srv/nfs rw - nfs4 server:/export rw,vers=4.2
42 27 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro
43 27 0:46 / /tank rw,noatime shared:9 - zfs tank rw,xattr
44 27 254:0 / / rw,relatime - ext4 /dev/vda rw,errors=remount-ro
";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(MOUNTINFO).expect("parses");
        assert_eq!(m.len(), 8);
        assert_eq!(m[3].mount_point, "/mnt/my disk");
        assert_eq!((m[3].major, m[3].minor), (259, 1));
        assert!(m[3].read_only);
        assert_eq!(m[3].fstype, "xfs");
        assert_eq!(m[3].source, "/dev/nvme0n1p1");
        let real = real_mounts(m);
        let points: Vec<&str> = real.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/mnt/my disk", "/srv/nfs", "/tank", "/"]);
    }

    #[test]
    fn refuses_bad_mountinfo() {
        for text in [
            "22 27 0:21 / /proc rw,relatime proc proc rw\n",
            "22 27 021 / /proc rw - proc proc rw\n",
            "22 27 0:21 / - proc proc\n",
            "22 27 a:b / /proc rw - proc proc rw\n",
            "22 27 0:21 / /proc rw -\n",
        ] {
            assert!(parse_mountinfo(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/a\040b\011c\134d"), "/a b\tc\\d");
        assert_eq!(unescape(r"\0"), r"\0");
        assert_eq!(unescape(r"\999x\"), r"\999x\");
        assert_eq!(unescape(r"\377"), "\u{fffd}");
    }
}
