//! The legacy `whatap.conf` properties file, so existing users can point
//! the agent at the file they have.
//!
//! Lines are `key=value` (or `key: value`); `#` and `!` start comments.
//! Read: `whatap.server.host` (hosts split on `/`, `,` or spaces),
//! `whatap.server.port`, and the access key as `license` (the legacy name)
//! or `access_key`; optionally `wasmtap.agent.name`, `wasmtap.data_dir`,
//! `wasmtap.plugins.dir` (default `plugins` beside the file) and
//! `wasmtap.spool_cap`. The many other settings such files carry are for
//! other agents: they are ignored and counted in one log line.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, ConfigError};

const KNOWN: [&str; 8] = [
    "whatap.server.host",
    "whatap.server.port",
    "license",
    "access_key",
    "wasmtap.agent.name",
    "wasmtap.data_dir",
    "wasmtap.plugins.dir",
    "wasmtap.spool_cap",
];

/// Whether `path` names a properties file rather than TOML.
pub fn is_legacy_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "conf" || e == "properties")
}

/// Parses properties text into key/value pairs; errors name the line.
fn properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            return Err(ConfigError::Invalid(format!(
                "line {}: expected `key=value`, found `{}`",
                n + 1,
                line.chars().take(40).collect::<String>()
            )));
        };
        let (key, value) = (line[..split].trim(), line[split + 1..].trim());
        if key.is_empty() {
            return Err(ConfigError::Invalid(format!("line {}: a setting without a name", n + 1)));
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// Reads a `whatap.conf`-style file into the same validated [`Config`].
pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
    let props = properties(text)?;
    let hosts = props.get("whatap.server.host").ok_or_else(|| {
        ConfigError::Invalid("whatap.server.host is missing (e.g. 10.0.3.1/10.0.3.2)".into())
    })?;
    let key = props
        .get("license")
        .or_else(|| props.get("access_key"))
        .ok_or_else(|| ConfigError::Invalid("the access key is missing: set `license=`".into()))?;
    let ignored = props.keys().filter(|k| !KNOWN.contains(&k.as_str())).count();
    if ignored > 0 {
        tracing::info!(ignored, "legacy config: settings for other agents ignored");
    }
    // Build the equivalent TOML and validate it the one way.
    let mut toml = toml::Table::new();
    let mut server = toml::Table::new();
    server.insert("hosts".into(), toml::Value::String(hosts.clone()));
    server.insert("access_key".into(), toml::Value::String(key.clone()));
    if let Some(port) = props.get("whatap.server.port") {
        let port: u16 = port.parse().map_err(|_| {
            ConfigError::Invalid(format!("whatap.server.port `{port}` is not a port number"))
        })?;
        server.insert("port".into(), toml::Value::Integer(i64::from(port)));
    }
    let mut agent = toml::Table::new();
    for (prop, name) in [
        ("wasmtap.agent.name", "name"),
        ("wasmtap.data_dir", "data_dir"),
        ("wasmtap.spool_cap", "spool_cap"),
    ] {
        if let Some(v) = props.get(prop) {
            agent.insert(name.into(), toml::Value::String(v.clone()));
        }
    }
    let mut plugins = toml::Table::new();
    let dir = props.get("wasmtap.plugins.dir").map_or("plugins", String::as_str);
    plugins.insert("dir".into(), toml::Value::String(dir.to_owned()));
    toml.insert("server".into(), toml::Value::Table(server));
    toml.insert("agent".into(), toml::Value::Table(agent));
    toml.insert("plugins".into(), toml::Value::Table(plugins));
    Config::parse(&toml.to_string(), base).map_err(|e| match e {
        ConfigError::AccessKey(e) => ConfigError::Invalid(format!("license: {e}")),
        ConfigError::Toml { source, .. } => ConfigError::Invalid(source.message().to_owned()),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_refused, key};

    #[test]
    fn reads_a_vendor_style_file() {
        let text = format!(
            "# WhaTap agent\nlicense={}\nwhatap.server.host=10.0.3.1/10.0.3.2,proxy.example\nwhatap.server.port = 6601\nhook_method_patterns=com.x.*\nwasmtap.agent.name: web-01\n",
            key()
        );
        let c = parse(&text, Path::new("/etc/whatap")).expect("valid");
        assert_eq!(c.hosts, ["10.0.3.1", "10.0.3.2", "proxy.example"]);
        assert_eq!(c.port, 6601);
        assert_eq!(c.name, "web-01");
        assert_eq!(c.plugins_dir, Path::new("/etc/whatap/plugins"));
        assert!(is_legacy_path(Path::new("/etc/whatap/whatap.conf")));
        assert!(!is_legacy_path(Path::new("agent.toml")));
    }

    #[test]
    fn malformed_files_say_what_and_where() {
        let k = key();
        let cases = [
            (format!("license={k}\nwhatap.server.host=h\njust words\n"), "line 3"),
            (format!("license={k}\n"), "whatap.server.host"),
            ("whatap.server.host=h\n".to_owned(), "license"),
            (format!("license={k}\nwhatap.server.host=h\nwhatap.server.port=66000\n"), "port"),
            ("license=wtap1_demo_AAAA\nwhatap.server.host=h\n".to_owned(), "license"),
            (format!("license={k}\nwhatap.server.host=/ ,\n"), "server.hosts"),
            (format!("license={k}\nwhatap.server.host=h\n=x\n"), "line 3"),
        ];
        assert_refused(|t| parse(t, Path::new(".")), &cases, &k);
    }
}
