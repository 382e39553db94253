//! Prometheus naming shared by `/metrics` and remote write: a sample's
//! numeric values become series named `wasmtap_<collector>_<field>` with the
//! labels `project`, `agent`, `collector` and the sample's own labels.
//!
//! The name follows Prometheus' conventions, whatever the collector chose:
//! the field's declared unit is appended when it is a base unit the name
//! does not already end with (`bytes`, `seconds`, …; a count such as
//! `packets` or a rate such as `bytes/s` is not a unit suffix), a counter
//! ends in `_total`, and a gauge never does (a trailing `_total` is
//! dropped). Fields are best named with their unit (`rx_bytes`), so that
//! the name does not depend on the description having arrived.

use wasmtap_protocol::message::Sample;

/// Labels the proxy sets itself; a sample label of the same name is renamed
/// `exported_<name>`, as Prometheus does on a scrape conflict.
pub const OWN_LABELS: [&str; 3] = ["project", "agent", "collector"];

/// Units appended to a name that does not end with them: Prometheus' base
/// units, and the two dimensionless ones in common use.
pub const SUFFIX_UNITS: [&str; 12] = [
    "bytes", "seconds", "celsius", "volts", "amperes", "joules", "watts", "hertz", "meters",
    "grams", "ratio", "percent",
];

/// The name of a counter (`counter`) or gauge field `field` of `collector`
/// with the declared `unit` (empty when not known): see the module docs.
/// Characters outside `[a-zA-Z0-9_:]` become `_`.
pub fn metric_name(collector: &str, field: &str, counter: bool, unit: &str) -> String {
    let mut name = String::with_capacity(16 + collector.len() + field.len() + unit.len());
    name.push_str("wasmtap_");
    push_sanitised(&mut name, collector, true);
    name.push('_');
    push_sanitised(&mut name, field, true);
    if counter && let Some(stem) = name.strip_suffix("_total") {
        name.truncate(stem.len());
    }
    let unit = unit.trim();
    if let Some(u) = SUFFIX_UNITS.iter().find(|u| u.eq_ignore_ascii_case(unit))
        && !name.strip_suffix(u).is_some_and(|stem| stem.ends_with('_'))
    {
        name.push('_');
        name.push_str(u);
    }
    if counter {
        name.push_str("_total");
    } else if let Some(stem) = name.strip_suffix("_total")
        && stem.len() > "wasmtap_".len()
    {
        name.truncate(stem.len());
    }
    name
}

/// The unit a name built by [`metric_name`] ends with (before `_total`),
/// as OpenMetrics' `# UNIT` line gives it, if any.
pub fn unit_of(name: &str) -> Option<&'static str> {
    let stem = name.strip_suffix("_total").unwrap_or(name);
    SUFFIX_UNITS.iter().find(|u| stem.strip_suffix(**u).is_some_and(|s| s.ends_with('_'))).copied()
}

/// A valid label name for `raw`: characters outside `[a-zA-Z0-9_]` become
/// `_`, a leading digit or empty name gets a `_` prefix, and names starting
/// with the reserved `__` get a `label` prefix.
pub fn label_name(raw: &str) -> String {
    let mut name = String::with_capacity(raw.len() + 1);
    if raw.is_empty() || raw.starts_with(|c: char| c.is_ascii_digit()) {
        name.push('_');
    }
    push_sanitised(&mut name, raw, false);
    if name.starts_with("__") {
        name.insert_str(0, "label");
    }
    name
}

fn push_sanitised(out: &mut String, raw: &str, colon_ok: bool) {
    out.extend(raw.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || (colon_ok && c == ':') { c } else { '_' }
    }));
}

/// The labels of `sample`'s series (without `__name__`): the proxy's own
/// three first, then the sample's, renamed to valid, unique names.
pub fn labels(project: &str, agent: &str, sample: &Sample) -> Vec<(String, String)> {
    labels_of(project, agent, &sample.collector, &sample.labels)
}

/// [`labels`] of a series given by its parts.
pub fn labels_of(
    project: &str,
    agent: &str,
    collector: &str,
    labels: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("project".into(), project.into()),
        ("agent".into(), agent.into()),
        ("collector".into(), collector.to_owned()),
    ];
    for (k, v) in labels {
        let mut name = label_name(k);
        while out.iter().any(|(n, _)| *n == name) {
            name.insert_str(0, "exported_");
        }
        out.push((name, v.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(metric_name("load", "load1", false, ""), "wasmtap_load_load1");
        assert_eq!(
            metric_name("my-disk.io", "read bytes/s", false, "bytes/s"),
            "wasmtap_my_disk_io_read_bytes_s"
        );
        assert_eq!(metric_name("a:b", "é", false, ""), "wasmtap_a:b__");
        assert_eq!(label_name("interface"), "interface");
        assert_eq!(label_name("a:b-c"), "a_b_c");
        assert_eq!(label_name("0day"), "_0day");
        assert_eq!(label_name("__name__"), "label__name__");
        assert_eq!(label_name(""), "_");
    }

    #[test]
    fn names_follow_the_conventions_of_prometheus() {
        let cases = [
            // collector, field, counter, unit: name
            (("net", "rx_bytes", true, "bytes"), "wasmtap_net_rx_bytes_total"),
            (("net", "rx", true, "bytes"), "wasmtap_net_rx_bytes_total"),
            (("net", "rx_packets", true, "packets"), "wasmtap_net_rx_packets_total"),
            (("net", "errors_total", true, ""), "wasmtap_net_errors_total"),
            (("net", "bytes_total", true, "bytes"), "wasmtap_net_bytes_total"),
            (("memory", "total", false, "bytes"), "wasmtap_memory_total_bytes"),
            (("memory", "swap_total", false, "Bytes"), "wasmtap_memory_swap_total_bytes"),
            (("filefd", "open_total", false, ""), "wasmtap_filefd_open"),
            (("x", "total", false, ""), "wasmtap_x"),
            (("cpu", "busy", false, "percent"), "wasmtap_cpu_busy_percent"),
            (("cpu", "user_seconds", true, "seconds"), "wasmtap_cpu_user_seconds_total"),
            (("disk", "io_time", true, "ms"), "wasmtap_disk_io_time_total"),
            (("hwmon", "subbytes", false, "bytes"), "wasmtap_hwmon_subbytes_bytes"),
        ];
        for ((collector, field, counter, unit), want) in cases {
            assert_eq!(metric_name(collector, field, counter, unit), want, "{collector} {field}");
        }
        assert_eq!(unit_of("wasmtap_net_rx_bytes_total"), Some("bytes"));
        assert_eq!(unit_of("wasmtap_cpu_busy_percent"), Some("percent"));
        assert_eq!(unit_of("wasmtap_hwmon_subbytes"), None);
        assert_eq!(unit_of("wasmtap_load_load1"), None);
    }

    #[test]
    fn sample_labels_never_shadow_the_proxys() {
        let sample = Sample {
            collector: "c".into(),
            time_ms: 0,
            labels: vec![
                ("project".into(), "fake".into()),
                ("exported_project".into(), "x".into()),
                ("if".into(), "eth0".into()),
            ]
            .into(),
            values: vec![],
        };
        let l = labels("shop", "web", &sample);
        let names: Vec<&str> = l.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "project",
                "agent",
                "collector",
                "exported_project",
                "exported_exported_project",
                "if"
            ]
        );
        assert_eq!(l[0].1, "shop");
        assert_eq!(l[3].1, "fake");
    }
}
