//! collectd as the baseline: a client with the default Linux plugins
//! (cpu, memory, df, interface, load, disk, processes) sending over its
//! encrypted network plugin, through a counting UDP relay, to a collectd
//! server that writes every value it receives to CSV files, where they are
//! counted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// Plugins of the client: collectd's usual Linux set.
const PLUGINS: [&str; 7] = ["cpu", "memory", "df", "interface", "load", "disk", "processes"];

fn common(dir: &Path, name: &str) -> String {
    format!(
        "Hostname \"{name}\"\nFQDNLookup false\nInterval 1\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\nPluginDir \"/usr/lib/collectd\"\nTypesDB \"/usr/share/collectd/types.db\"\n",
        d = dir.display()
    )
}

/// Starts the server listening on `listen`, writing CSV under `dir/csv`.
pub fn server(dir: &Path, listen: SocketAddr) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir.join("csv"))?;
    std::fs::write(dir.join("auth"), "footprint: footprint-secret\n")?;
    let config = format!(
        "{}LoadPlugin network\nLoadPlugin csv\n<Plugin network>\n  <Listen \"{}\" \"{}\">\n    SecurityLevel Encrypt\n    AuthFile \"{}\"\n  </Listen>\n</Plugin>\n<Plugin csv>\n  DataDir \"{}\"\n  StoreRates false\n</Plugin>\n",
        common(dir, "footprint-server"),
        listen.ip(),
        listen.port(),
        dir.join("auth").display(),
        dir.join("csv").display()
    );
    start(dir, &config)
}

/// Starts the client sending to `target` (the relay).
pub fn client(dir: &Path, target: SocketAddr) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    let mut config = common(dir, "footprint-client");
    for p in PLUGINS.iter().chain(&["network"]) {
        config.push_str(&format!("LoadPlugin {p}\n"));
    }
    config.push_str(&format!(
        "<Plugin network>\n  <Server \"{}\" \"{}\">\n    SecurityLevel Encrypt\n    Username \"footprint\"\n    Password \"footprint-secret\"\n  </Server>\n</Plugin>\n",
        target.ip(),
        target.port()
    ));
    start(dir, &config)
}

fn start(dir: &Path, config: &str) -> anyhow::Result<Child> {
    let file = dir.join("collectd.conf");
    std::fs::write(&file, config)?;
    Command::new(super::COLLECTD)
        .arg("-f")
        .arg("-C")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("collectd.log"))?)
        .spawn()
        .context("starting collectd")
}

/// Values the server has written so far: one per value column of every CSV row.
pub fn values_received(server_dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![server_dir.join("csv")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // First line: `epoch,value[,value…]` header; then `time,v[,v…]` rows.
            for row in text.lines().skip(1) {
                total += row.split(',').count().saturating_sub(1) as u64;
            }
        }
    }
    Ok(total)
}
