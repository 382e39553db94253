//! The standard collectors of issue 15 (`pressure`, `vmstat`, `sockets`,
//! `filefd`, `uptime`, `entropy`, `hwmon`) run in a real agent, and what
//! the proxy stores agrees with this machine's own `/proc` and `/sys`, read
//! by the test around the run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use wasmtap_tests::{Agent, Proxy, new_key, wait};

const COLLECTORS: [&str; 7] =
    ["pressure", "vmstat", "sockets", "filefd", "uptime", "entropy", "hwmon"];

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

fn first_number(text: &str) -> anyhow::Result<f64> {
    Ok(text.split_whitespace().next().context("empty")?.parse()?)
}

/// The `name value` pairs of `/proc/vmstat`.
fn vmstat() -> anyhow::Result<BTreeMap<String, u64>> {
    read("/proc/vmstat")?
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').context("vmstat line")?;
            Ok((k.to_owned(), v.trim().parse()?))
        })
        .collect()
}

/// `/proc/sys/fs/file-nr`: allocated and maximum.
fn file_nr() -> anyhow::Result<(f64, f64)> {
    let text = read("/proc/sys/fs/file-nr")?;
    let w: Vec<f64> = text.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    Ok((*w.first().context("allocated")?, *w.get(2).context("maximum")?))
}

/// Whether `/sys/class/hwmon` lists a chip.
fn has_hwmon() -> bool {
    std::fs::read_dir("/sys/class/hwmon").is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("hwmon")))
    })
}

fn value(row: &Value) -> f64 {
    row["value"].as_f64().unwrap_or(f64::NAN)
}

fn label<'a>(row: &'a Value, name: &str) -> &'a str {
    row["labels"][name].as_str().unwrap_or("")
}

/// The rows of `field`.
fn field<'a>(rows: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    rows.iter().filter(move |r| r["field"] == name)
}

/// Rewrites the `interval` of the installed manifests to one second, so
/// that a few rounds take a few seconds.
fn every_second(plugins: &Path, names: &[&str]) -> anyhow::Result<()> {
    for name in names {
        let path = plugins.join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)?;
        let fast: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with("interval") { "interval = \"1s\"".into() } else { l.into() })
            .collect();
        std::fs::write(&path, fast.join("\n") + "\n")?;
    }
    Ok(())
}

#[test]
fn standard_collectors_agree_with_this_machine() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let agent_dir = dir.path().join("agent");
    let (config, plugins) =
        Agent::prepare(&agent_dir, "web-01", proxy.addr.port(), &key, &COLLECTORS, "")?;
    every_second(&plugins, &COLLECTORS)?;

    // What the machine says before the agent starts.
    let uptime_before = first_number(&read("/proc/uptime")?)?;
    let vm_before = vmstat()?;
    let (allocated_before, maximum) = file_nr()?;
    let psi = Path::new("/proc/pressure").is_dir();
    let psi_before: BTreeMap<(String, String), f64> = if psi {
        let mut m = BTreeMap::new();
        for resource in ["cpu", "memory", "io"] {
            for line in read(&format!("/proc/pressure/{resource}"))?.lines() {
                let kind = line.split(' ').next().context("kind")?.to_owned();
                let total = line.rsplit("total=").next().context("total")?.trim().parse::<f64>()?;
                m.insert((resource.to_owned(), kind), total / 1e6);
            }
        }
        m
    } else {
        BTreeMap::new()
    };
    let btime: f64 = read("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .context("btime")?
        .trim()
        .parse()?;
    let pool_size = first_number(&read("/proc/sys/kernel/random/poolsize")?)?;

    let agent = Agent::start_with_config(&agent_dir, &config, plugins)?;
    // Three rounds of uptime: every collector has had its first ticks.
    let reporting: Vec<&str> = COLLECTORS
        .iter()
        .copied()
        .filter(|c| match *c {
            "pressure" => psi,
            "hwmon" => has_hwmon(),
            _ => true,
        })
        .collect();
    let rows: BTreeMap<&str, Vec<Value>> =
        wait::until(Duration::from_secs(60), "three rounds of every collector", || {
            let mut all = BTreeMap::new();
            for c in COLLECTORS {
                all.insert(c, proxy.query(&["--collector", c])?);
            }
            let rounds = |c: &str| {
                let mut times: Vec<u64> =
                    all[c].iter().filter_map(|r| r["time"].as_u64()).collect();
                times.dedup();
                times.len()
            };
            Ok(reporting.iter().all(|c| rounds(c) >= 3).then_some(all))
        })
        .with_context(|| format!("agent log:\n{}", agent.log_text()))?;
    let uptime_after = first_number(&read("/proc/uptime")?)?;
    let log = agent.log_text();
    // Every collect parsed what it read. A call stopped at its deadline
    // (the machine busy compiling the other collectors) is the sandbox at
    // work, not a failure of the collector; three rounds came anyway.
    let failed = log.lines().filter(|l| l.contains("collect failed"));
    assert!(failed.clone().all(|l| l.contains("error=timed out")), "{log}");

    // uptime: between the test's readings around the run (to its two
    // decimal places); the boot time is /proc/stat's.
    let up = &rows["uptime"];
    for r in field(up, "uptime_seconds") {
        let v = value(r);
        assert!(
            v + 0.01 >= uptime_before && v <= uptime_after + 0.01,
            "{v} outside [{uptime_before}, {uptime_after}]"
        );
    }
    assert!(field(up, "boot_time_seconds").all(|r| value(r) == btime), "{up:?}");

    // filefd: the maximum is the file's; allocated moves with the machine's
    // load (builds share it) but stays near the test's reading.
    let fd = &rows["filefd"];
    assert!(field(fd, "maximum").count() >= 3 && field(fd, "maximum").all(|r| value(r) == maximum));
    let (allocated_after, _) = file_nr()?;
    let (lo, hi) = (allocated_before.min(allocated_after), allocated_before.max(allocated_after));
    let slack = (0.2 * hi).max(500.0);
    for r in field(fd, "allocated") {
        let v = value(r);
        assert!(v >= lo - slack && v <= hi + slack, "allocated {v} far from {lo}..{hi}");
    }

    // vmstat: counters never below what the test read before the start.
    let vm = &rows["vmstat"];
    for (kernel, name, scale) in [
        ("pgfault", "pgfault", 1.0),
        ("pgmajfault", "pgmajfault", 1.0),
        ("pgpgin", "pgpgin_bytes", 1024.0),
        ("pgpgout", "pgpgout_bytes", 1024.0),
        ("pswpin", "pswpin", 1.0),
        ("pswpout", "pswpout", 1.0),
        ("oom_kill", "oom_kill", 1.0),
    ] {
        let Some(&before) = vm_before.get(kernel) else {
            assert_eq!(field(vm, name).count(), 0, "{name} without {kernel} in /proc/vmstat");
            continue;
        };
        let got: Vec<f64> = field(vm, name).map(value).collect();
        assert!(got.len() >= 3, "{name}: {got:?}");
        assert!(got.iter().all(|&v| v >= before as f64 * scale), "{name} {got:?} < {before}");
    }

    // pressure: present iff /proc/pressure exists, totals not below the
    // test's reading; otherwise nothing, and one log line.
    let pressure = &rows["pressure"];
    if psi {
        for ((resource, kind), before) in &psi_before {
            let got: Vec<&Value> = field(pressure, "stalled_seconds")
                .filter(|r| label(r, "resource") == resource && label(r, "kind") == kind)
                .collect();
            assert!(got.len() >= 3, "{resource} {kind}: {pressure:?}");
            assert!(
                got.iter().all(|r| value(r) >= *before - 1e-6),
                "{resource} {kind} below {before}"
            );
        }
        for avg in ["avg10_percent", "avg60_percent", "avg300_percent"] {
            assert!(field(pressure, avg).all(|r| (0.0..=100.0).contains(&value(r))));
        }
    } else {
        assert!(pressure.is_empty(), "{pressure:?}");
        assert_eq!(log.matches("no /proc/pressure").count(), 1, "{log}");
    }

    // sockets: the proxy listens on 127.0.0.1, so at least one listening
    // IPv4 socket in every round; every state is reported.
    let sockets = &rows["sockets"];
    let listening: Vec<f64> = field(sockets, "tcp_connection_states")
        .filter(|r| label(r, "state") == "listen" && label(r, "family") == "ipv4")
        .map(value)
        .collect();
    assert!(listening.len() >= 3 && listening.iter().all(|&n| n >= 1.0), "{listening:?}");
    let mut states: Vec<&str> =
        field(sockets, "tcp_connection_states").map(|r| label(r, "state")).collect();
    states.sort_unstable();
    states.dedup();
    assert!(states.len() >= 11, "{states:?}");
    assert!(field(sockets, "sockets_used").all(|r| value(r) >= 1.0));
    assert!(
        field(sockets, "inuse").any(|r| label(r, "protocol") == "tcp"
            && label(r, "family") == "ipv4"
            && value(r) >= 1.0),
        "{sockets:?}"
    );

    // entropy: the pool's size is the file's, the estimate within it.
    let entropy = &rows["entropy"];
    assert!(field(entropy, "pool_size").all(|r| value(r) == pool_size));
    assert!(field(entropy, "available").all(|r| (0.0..=pool_size).contains(&value(r))));
    assert!(field(entropy, "available").count() >= 1);

    // hwmon: sensible temperatures where the machine has chips; otherwise
    // nothing, and one log line over several rounds.
    let hwmon = &rows["hwmon"];
    if has_hwmon() {
        assert!(field(hwmon, "temp_celsius").all(|r| (-60.0..=200.0).contains(&value(r))));
    } else {
        assert!(hwmon.is_empty(), "{hwmon:?}");
        assert_eq!(log.matches("no hardware monitoring chips").count(), 1, "{log}");
    }
    Ok(())
}

/// Copies a directory tree, links as links.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Installs `hwmon` with its class directory at `<sys>/class/hwmon` and a
/// grant of `grant`.
fn hwmon_agent(
    dir: &Path,
    port: u16,
    key: &str,
    sys: &Path,
    grant: &Path,
) -> anyhow::Result<Agent> {
    let (config, plugins) = Agent::prepare(dir, "web-01", port, key, &["hwmon"], "")?;
    std::fs::write(
        plugins.join("hwmon.toml"),
        format!(
            "interval = \"1s\"\ntimeout = \"1s\"\n[grants]\nread = [{:?}]\nenv = []\n[config]\npath = {:?}\n",
            grant.display().to_string(),
            sys.join("class/hwmon").display().to_string(),
        ),
    )?;
    Agent::start_with_config(dir, &config, plugins)
}

/// The chips of a sysfs tree laid out as the kernel documents it (this
/// machine may have none): `class/hwmon/hwmonN` are links into `devices/`,
/// which the sandbox follows when the grant holds both, as the manifest's
/// grant of `/sys` does, and refuses when it holds `class/hwmon` alone.
#[test]
fn hwmon_reads_chips_through_their_links() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sys = dir.path().join("sys");
    copy_tree(&wasmtap_tests::paths::root().join("plugins/hwmon/fixtures/sys"), &sys)?;
    let key = new_key("shop")?;
    let proxy = Proxy::start(&dir.path().join("proxy"), &[("shop", &key)])?;
    let port = proxy.addr.port();
    let agent = hwmon_agent(&dir.path().join("agent"), port, &key, &sys, &sys)?;
    let rows = wait::until(Duration::from_secs(30), "hwmon samples", || {
        let rows = proxy.query(&["--collector", "hwmon"])?;
        Ok((rows.len() >= 9).then_some(rows))
    })
    .with_context(|| format!("agent log:\n{}", agent.log_text()))?;
    let find = |chip: &str, sensor: &str, name: &str| {
        rows.iter()
            .find(|r| {
                r["field"] == name && label(r, "chip") == chip && label(r, "sensor") == sensor
            })
            .cloned()
            .with_context(|| format!("{chip} {sensor} {name} in {rows:?}"))
    };
    let package = find("coretemp", "temp1", "temp_celsius")?;
    assert_eq!(value(&package), 45.0);
    assert_eq!(label(&package, "label"), "Package id 0");
    assert_eq!(label(&package, "device"), "platform/coretemp.0");
    assert_eq!(value(&find("coretemp", "temp1", "temp_crit_celsius")?), 100.0);
    assert_eq!(value(&find("nvme", "temp2", "temp_celsius")?), -5.0);
    assert_eq!(value(&find("nct6798", "fan1", "fan_rpm")?), 1132.0);
    let vcore = find("nct6798", "in0", "in_volts")?;
    assert_eq!((value(&vcore), label(&vcore, "label")), (1.048, "Vcore"));
    let zone = find("acpitz", "temp1", "temp_celsius")?;
    assert_eq!((value(&zone), label(&zone, "label")), (27.8, "temp1"));
    assert!(!rows.iter().any(|r| label(r, "sensor") == "temp7"), "unreadable sensor skipped");
    drop(agent);

    // Granted only the class directory, the links lead outside the grant.
    let narrow =
        hwmon_agent(&dir.path().join("narrow"), port, &key, &sys, &sys.join("class/hwmon"))?;
    wait::until(Duration::from_secs(30), "a failed hwmon collect", || {
        Ok(narrow.log_text().contains("collect failed").then_some(()))
    })
    .with_context(|| format!("agent log:\n{}", narrow.log_text()))?;
    Ok(())
}
