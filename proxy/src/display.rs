//! Turning stored batches into lines for people (`query`, `run --print`) and
//! into JSON objects (`query --json`).

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use wasmtap_protocol::message::{Sample, Value};

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
