//! Prometheus naming shared by `/metrics` and remote write: a sample's
//! numeric values become series named `wasmtap_<collector>_<field>` with the
//! labels `project`, `agent`, `collector` and the sample's own labels.

use wasmtap_protocol::message::Sample;

/// Labels the proxy sets itself; a sample label of the same name is renamed
/// `exported_<name>`, as Prometheus does on a scrape conflict.
pub const OWN_LABELS: [&str; 3] = ["project", "agent", "collector"];

/// `wasmtap_<collector>_<field>`, with every character outside
/// `[a-zA-Z0-9_:]` replaced by `_`.
pub fn metric_name(collector: &str, field: &str) -> String {
    let mut name = String::with_capacity(9 + collector.len() + field.len());
    name.push_str("wasmtap_");
    push_sanitised(&mut name, collector, true);
    name.push('_');
    push_sanitised(&mut name, field, true);
    name
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
    let mut out: Vec<(String, String)> = vec![
        ("project".into(), project.into()),
        ("agent".into(), agent.into()),
        ("collector".into(), sample.collector.to_string()),
    ];
    for (k, v) in sample.labels.iter() {
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
        assert_eq!(metric_name("load", "load1"), "wasmtap_load_load1");
        assert_eq!(metric_name("my-disk.io", "read bytes/s"), "wasmtap_my_disk_io_read_bytes_s");
        assert_eq!(metric_name("a:b", "é"), "wasmtap_a:b__");
        assert_eq!(label_name("interface"), "interface");
        assert_eq!(label_name("a:b-c"), "a_b_c");
        assert_eq!(label_name("0day"), "_0day");
        assert_eq!(label_name("__name__"), "label__name__");
        assert_eq!(label_name(""), "_");
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
