//! `query --rate`: each counter's value replaced by its per-second rate
//! since the series' previous sample, as Prometheus' `rate()` reads a
//! counter: a value lower than the one before is a reset, so the increase
//! is the new value itself. The field is renamed `<field>_per_second`.
//! Gauges and texts pass through. A series' first sample in the query,
//! and a sample not later than the one before it (a resend stored out of
//! order), have no rate and print nothing for the counter.

use std::collections::HashMap;

use wasmtap_protocol::message::Value;

use super::scan::Found;

/// The previous counter value of every series seen so far.
#[derive(Debug, Default)]
pub struct Rates {
    /// By agent, collector, labels and field: time (ms) and value.
    previous: HashMap<String, (u64, f64)>,
    key: String,
}

/// Values of one sample after [`Rates::apply`].
pub type Converted = Vec<(String, Value)>;

impl Rates {
    /// The values of `found` with counters turned into rates.
    pub fn apply(&mut self, found: &Found<'_>) -> Converted {
        let mut out = Vec::with_capacity(found.values.len());
        for (field, value) in found.values {
            let Value::Counter(v) = value else {
                out.push(((*field).to_owned(), (*value).clone()));
                continue;
            };
            self.series_key(found, field);
            let now = (found.time_ms, *v);
            let before = match self.previous.get_mut(self.key.as_str()) {
                Some(prev) if prev.0 < now.0 => std::mem::replace(prev, now),
                Some(_) => continue,
                None => {
                    self.previous.insert(self.key.clone(), now);
                    continue;
                }
            };
            let increase = if *v >= before.1 { *v - before.1 } else { *v };
            let seconds = (now.0 - before.0) as f64 / 1e3;
            out.push((format!("{field}_per_second"), Value::Gauge(increase / seconds)));
        }
        out
    }

    /// Calls `emit` with `found` converted by [`Rates::apply`]; nothing
    /// when no value is left.
    pub fn emit<E>(
        &mut self,
        found: &Found<'_>,
        emit: impl FnOnce(&Found<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let converted = self.apply(found);
        if converted.is_empty() {
            return Ok(());
        }
        let values: Vec<(&str, &Value)> = converted.iter().map(|(f, v)| (f.as_str(), v)).collect();
        emit(&Found { values: &values, ..*found })
    }

    fn series_key(&mut self, found: &Found<'_>, field: &str) {
        let k = &mut self.key;
        k.clear();
        for part in [found.project, found.agent, found.collector] {
            k.push_str(part);
            k.push('\0');
        }
        for (name, value) in found.labels {
            k.push_str(name);
            k.push('\u{1}');
            k.push_str(value);
            k.push('\0');
        }
        k.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(
        time_ms: u64,
        labels: &'a [(String, String)],
        values: &'a [(&'a str, &'a Value)],
    ) -> Found<'a> {
        Found { project: "p", agent: "a", collector: "net", labels, time_ms, seq: None, values }
    }

    #[test]
    fn counters_become_rates_and_resets_count_from_zero() {
        let mut rates = Rates::default();
        let eth0 = [("interface".to_owned(), "eth0".to_owned())];
        let eth1 = [("interface".to_owned(), "eth1".to_owned())];
        let (c, g) = (Value::Counter(1_000.0), Value::Gauge(3.0));
        let first = rates.apply(&at(10_000, &eth0, &[("rx_bytes", &c), ("up", &g)]));
        assert_eq!(first, vec![("up".to_owned(), Value::Gauge(3.0))], "no rate yet");
        let c2 = Value::Counter(3_000.0);
        let second = rates.apply(&at(12_000, &eth0, &[("rx_bytes", &c2)]));
        assert_eq!(second, vec![("rx_bytes_per_second".to_owned(), Value::Gauge(1_000.0))]);
        // Another series has its own history.
        assert!(rates.apply(&at(13_000, &eth1, &[("rx_bytes", &c2)])).is_empty());
        // A reset: the increase is the new value.
        let reset = Value::Counter(500.0);
        let third = rates.apply(&at(17_000, &eth0, &[("rx_bytes", &reset)]));
        assert_eq!(third, vec![("rx_bytes_per_second".to_owned(), Value::Gauge(100.0))]);
        // Out of order or at the same time: nothing, and the history stays.
        assert!(rates.apply(&at(17_000, &eth0, &[("rx_bytes", &c)])).is_empty());
        assert!(rates.apply(&at(15_000, &eth0, &[("rx_bytes", &c)])).is_empty());
        let later = Value::Counter(700.0);
        let fourth = rates.apply(&at(19_000, &eth0, &[("rx_bytes", &later)]));
        assert_eq!(fourth, vec![("rx_bytes_per_second".to_owned(), Value::Gauge(100.0))]);
    }
}
