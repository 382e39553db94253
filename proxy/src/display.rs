//! Turning stored batches into lines for people (`query`, `run --print`) and
//! into JSON objects (`query --json`).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use wasmtap_protocol::message::{Sample, Value};

use crate::query::scan::Found;

/// RFC 3339 time with milliseconds, UTC. A time RFC 3339 cannot show (after
/// the year 9999: the agent's clock or collector says so) is shown as
/// `unix-ms:<ms>`.
pub fn format_time(ms: u64) -> String {
    let mut out = String::new();
    let time = UNIX_EPOCH.checked_add(Duration::from_millis(ms));
    match time.map(|t| write!(out, "{}", humantime::format_rfc3339_millis(t))) {
        Some(Ok(())) => out,
        _ => format!("unix-ms:{ms}"),
    }
}

fn format_value(v: &Value) -> String {
    match v {
        Value::Gauge(x) | Value::Counter(x) => format!("{x}"),
        Value::Text(t) => format!("{t:?}"),
    }
}

/// One line per sample: time, agent, collector, labels, then `field=value` pairs.
pub fn human_line(agent: &str, sample: &Sample) -> String {
    let labels = if sample.labels.is_empty() {
        String::new()
    } else {
        let inner: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}} ", inner.join(","))
    };
    let values: Vec<String> =
        sample.values.iter().map(|(f, v)| format!("{f}={}", format_value(v))).collect();
    format!(
        "{} {agent} {} {labels}{}",
        format_time(sample.time_ms),
        sample.collector,
        values.join(" ")
    )
}

/// One JSON object per field value of `sample`, which arrived in the
/// agent's batch `seq`.
pub fn json_lines(project: &str, agent: &str, seq: u64, sample: &Sample) -> Vec<serde_json::Value> {
    let labels: serde_json::Map<String, serde_json::Value> =
        sample.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    sample
        .values
        .iter()
        .map(|(field, v)| {
            let (value, kind) = match v {
                Value::Gauge(x) => (json!(x), "gauge"),
                Value::Counter(x) => (json!(x), "counter"),
                Value::Text(t) => (json!(t), "text"),
            };
            json!({
                "project": project,
                "agent": agent,
                "collector": sample.collector,
                "labels": labels,
                "field": field,
                "kind": kind,
                "value": value,
                "time": sample.time_ms,
                "seq": seq,
            })
        })
        .collect()
}

/// The JSON lines of `found`, one per value, appended to `out`: the same
/// objects as [`json_lines`] (keys in the same order), written directly.
pub fn write_json_lines(found: &Found<'_>, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, s: &str| {
        // Serialising a str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    };
    let mut labels: Vec<(&str, &str)> =
        found.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // As a JSON map: sorted by key, the last of a repeated key kept.
    labels.reverse();
    labels.sort_by_key(|(k, _)| *k);
    labels.dedup_by_key(|(k, _)| *k);
    for (field, value) in found.values {
        out.extend_from_slice(b"{\"agent\":");
        text(out, found.agent);
        out.extend_from_slice(b",\"collector\":");
        text(out, found.collector);
        out.extend_from_slice(b",\"field\":");
        text(out, field);
        let kind = match value {
            Value::Gauge(_) => "gauge",
            Value::Counter(_) => "counter",
            Value::Text(_) => "text",
        };
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"labels\":{");
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            text(out, k);
            out.push(b':');
            text(out, v);
        }
        out.extend_from_slice(b"},\"project\":");
        text(out, found.project);
        out.extend_from_slice(b",\"seq\":");
        match found.seq {
            Some(seq) => out.extend_from_slice(seq.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"time\":");
        out.extend_from_slice(found.time_ms.to_string().as_bytes());
        out.extend_from_slice(b",\"value\":");
        match value {
            Value::Gauge(x) | Value::Counter(x) => {
                let _ = serde_json::to_writer(&mut *out, &json!(x));
            }
            Value::Text(t) => text(out, t),
        }
        out.extend_from_slice(b"}\n");
    }
}

/// The [`human_line`] of `found`.
pub fn found_line(found: &Found<'_>) -> String {
    let labels = if found.labels.is_empty() {
        String::new()
    } else {
        let inner: Vec<String> = found.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}} ", inner.join(","))
    };
    let values: Vec<String> =
        found.values.iter().map(|(f, v)| format!("{f}={}", format_value(v))).collect();
    format!(
        "{} {} {} {labels}{}",
        format_time(found.time_ms),
        found.agent,
        found.collector,
        values.join(" ")
    )
}

/// A sink that prints every stored sample as a [`human_line`] on stdout
/// (`wasmtap-proxy run --print`).
#[derive(Debug, Clone, Copy)]
pub struct Print;

impl crate::sink::Sink for Print {
    fn accept(&self, _project: &str, record: &crate::store::StoredBatch) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for s in &record.batch.samples {
            let _ = writeln!(out, "{}", human_line(&record.agent, s));
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            collector: "load".into(),
            time_ms: 0,
            labels: vec![("cpu".into(), "0".into())].into(),
            values: vec![
                ("load1".into(), Value::Gauge(0.5)),
                ("state".into(), Value::Text("up".into())),
            ],
        }
    }

    #[test]
    fn human_format() {
        assert_eq!(
            human_line("web", &sample()),
            "1970-01-01T00:00:00.000Z web load {cpu=\"0\"} load1=0.5 state=\"up\""
        );
    }

    #[test]
    fn times_after_the_year_9999_are_shown_not_a_panic() {
        assert_eq!(format_time(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_time(253_402_300_800_000), "unix-ms:253402300800000");
        assert_eq!(format_time(u64::MAX), format!("unix-ms:{}", u64::MAX));
        let mut far = sample();
        far.time_ms = u64::MAX;
        assert!(human_line("web", &far).starts_with("unix-ms:18446744073709551615 web load"));
        assert_eq!(json_lines("demo", "web", 1, &far)[0]["time"], u64::MAX);
    }

    #[test]
    fn written_lines_are_the_json_objects_byte_for_byte() {
        let mut s = sample();
        s.labels =
            vec![("z".into(), "\"q\"".into()), ("a".into(), "1".into()), ("z".into(), "2".into())]
                .into();
        s.values.push(("nan".into(), Value::Counter(f64::NAN)));
        s.values.push(("big".into(), Value::Gauge(1e300)));
        s.values.push(("whole".into(), Value::Gauge(3.0)));
        let values: Vec<(&str, &Value)> = s.values.iter().map(|(n, v)| (&**n, v)).collect();
        let found = Found {
            project: "demo",
            agent: "wéb",
            collector: &s.collector,
            labels: &s.labels,
            time_ms: s.time_ms,
            seq: Some(4),
            values: &values,
        };
        let mut out = Vec::new();
        write_json_lines(&found, &mut out);
        let expected: String =
            json_lines("demo", "wéb", 4, &s).iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
        assert_eq!(found_line(&found), human_line("wéb", &s));
    }

    #[test]
    fn json_format_has_the_documented_keys() {
        let lines = json_lines("demo", "web", 4, &sample());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["project"], "demo");
        assert_eq!(lines[0]["labels"]["cpu"], "0");
        assert_eq!(lines[0]["value"], 0.5);
        assert_eq!(lines[1]["value"], "up");
        assert_eq!(lines[0]["time"], 0);
        assert_eq!(lines[0]["seq"], 4);
    }
}
