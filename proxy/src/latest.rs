//! The `latest` sink: the newest value of every numeric series, served by
//! `/metrics` in the Prometheus text format.
//!
//! The table is bounded: at most `max_series` series (new ones beyond it are
//! dropped, counted and logged), and a series not updated for `ttl` (by the
//! arrival time of its newest batch) leaves it. Text values have no
//! Prometheus representation and are skipped. The table is fed from the
//! store's tail, so at start it is rebuilt from what the store received
//! within `ttl`. Names, units and help come from the collectors'
//! descriptions (`descriptors.rs`) when the table is rendered, so a
//! description that arrives after the values still names them.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::{Equivalent, HashMap};
use wasmtap_protocol::message::{Labels, Value};

use crate::descriptors::{Descriptors, Names};
use crate::exposition::{self, Exposition, Kind};
use crate::series;
use crate::sink::Sink;
use crate::store::StoredBatch;

/// Expired series are swept at most this often when the table is full.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Drops are logged at most this often (with the running total).
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A series: its project, agent, collector, field and kind, and the
/// sample's own labels (shared with the batch it came in; the exposition's
/// label set is worked out when rendering).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    project: Arc<str>,
    agent: Arc<str>,
    collector: Arc<str>,
    field: Arc<str>,
    counter: bool,
    labels: Labels,
}

/// A [`Key`] borrowed from an incoming sample: an update of a held series
/// is found without copying or counting references.
#[derive(Hash)]
struct KeyRef<'a> {
    project: &'a str,
    agent: &'a str,
    collector: &'a str,
    field: &'a str,
    counter: bool,
    labels: &'a [(String, String)],
}

impl Key {
    fn borrowed(&self) -> KeyRef<'_> {
        KeyRef {
            project: &self.project,
            agent: &self.agent,
            collector: &self.collector,
            field: &self.field,
            counter: self.counter,
            labels: &self.labels,
        }
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        let k = key.borrowed();
        self.field == k.field
            && self.counter == k.counter
            && self.labels == k.labels
            && self.collector == k.collector
            && self.agent == k.agent
            && self.project == k.project
    }
}

/// A series as rendered: its metric name, kind, help, key, label set and
/// point.
type Named = (Arc<str>, Kind, Arc<str>, Key, Vec<(String, String)>, Point);

#[derive(Debug, Clone, Copy)]
struct Point {
    value: f64,
    time_ms: u64,
    /// When the proxy received it, ms since the epoch.
    updated_ms: u64,
}

#[derive(Debug)]
struct Table {
    series: HashMap<Key, Point>,
    last_sweep: Instant,
    last_drop_log: Option<Instant>,
}

/// The latest value of every numeric series; see the module docs.
#[derive(Debug)]
pub struct Latest {
    descriptors: Arc<Descriptors>,
    max_series: usize,
    ttl: Duration,
    table: Mutex<Table>,
    dropped: AtomicU64,
}

impl Latest {
    /// An empty table holding at most `max_series` series, each for `ttl`
    /// after its last update, named from `descriptors`.
    pub fn new(max_series: usize, ttl: Duration, descriptors: Arc<Descriptors>) -> Self {
        let table =
            Table { series: HashMap::new(), last_sweep: Instant::now(), last_drop_log: None };
        let dropped = AtomicU64::new(0);
        Self { descriptors, max_series, ttl, table: Mutex::new(table), dropped }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Series currently held.
    pub fn len(&self) -> usize {
        self.lock().series.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New series refused because the table was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether a point that arrived at `updated_ms` is still fresh at `now_ms`.
    fn fresh(&self, updated_ms: u64, now_ms: u64) -> bool {
        u128::from(now_ms.saturating_sub(updated_ms)) < self.ttl.as_millis()
    }

    fn sweep(&self, table: &mut Table, now: Instant, now_ms: u64) {
        table.series.retain(|_, p| self.fresh(p.updated_ms, now_ms));
        table.last_sweep = now;
    }

    /// The table as a text exposition, sorted by metric name then labels,
    /// followed by the table's own size and drop counters.
    pub fn render(&self, out: &mut Exposition) {
        self.render_at(out, crate::now_ms());
    }

    fn render_at(&self, out: &mut Exposition, now_ms: u64) {
        let points: Vec<(Key, Point)> = {
            let mut table = self.lock();
            self.sweep(&mut table, Instant::now(), now_ms);
            table.series.iter().map(|(k, p)| (k.clone(), *p)).collect()
        };
        // Each series' name, kind and help, worked out once per field (a
        // field has many series); a family of mixed kinds is untyped.
        let mut names = Names::default();
        let mut named: Vec<Named> = points
            .into_iter()
            .map(|(key, p)| {
                let d = &self.descriptors;
                let (name, help) =
                    names.get(d, &key.project, &key.collector, &key.field, key.counter);
                let kind = if key.counter { Kind::Counter } else { Kind::Gauge };
                let labels =
                    series::labels_of(&key.project, &key.agent, &key.collector, &key.labels);
                (name, kind, help, key, labels, p)
            })
            .collect();
        named.sort_unstable_by(|a, b| (&a.0, &a.4).cmp(&(&b.0, &b.4)));
        for family in named.chunk_by(|a, b| a.0 == b.0) {
            let (name, first) = (&family[0].0, family[0].1);
            let kind = if family.iter().all(|f| f.1 == first) { first } else { Kind::Untyped };
            let help = family.iter().map(|f| &*f.2).find(|h| !h.is_empty());
            let help = help.map_or_else(
                || {
                    format!(
                        "{} of collector {} (not described).",
                        family[0].3.field, family[0].3.collector
                    )
                },
                str::to_owned,
            );
            exposition::family(out, name, &help, kind);
            for (_, _, _, _, labels, p) in family {
                exposition::sample(out, name, labels, p.value, Some(p.time_ms));
            }
        }
        self.render_counters(out, named.len());
    }

    /// The table's own size and drop counters alone (`/metrics/proxy`).
    pub fn render_own(&self, out: &mut Exposition) {
        let held = self.lock().series.len();
        self.render_counters(out, held);
    }

    fn render_counters(&self, out: &mut Exposition, held: usize) {
        exposition::family(
            out,
            "wasmtap_proxy_latest_series",
            "Series held for /metrics.",
            Kind::Gauge,
        );
        exposition::sample(out, "wasmtap_proxy_latest_series", &[], held as f64, None);
        exposition::family(
            out,
            "wasmtap_proxy_latest_dropped_total",
            "New series not held for /metrics because the table was full.",
            Kind::Counter,
        );
        let dropped = self.dropped() as f64;
        exposition::sample(out, "wasmtap_proxy_latest_dropped_total", &[], dropped, None);
    }
}

impl Sink for Latest {
    fn accept(&self, project: &str, record: &StoredBatch) {
        self.accept_at(project, record, crate::now_ms());
    }
}

impl Latest {
    fn accept_at(&self, project: &str, record: &StoredBatch, now_ms: u64) {
        if !self.fresh(record.received_ms, now_ms) {
            return;
        }
        let now = Instant::now();
        let mut refused = 0u64;
        let mut table = self.lock();
        // Shared by every new series of the batch, made on the first.
        let mut owned: Option<(Arc<str>, Arc<str>)> = None;
        for sample in &record.batch.samples {
            for (field, value) in &sample.values {
                let (counter, value) = match value {
                    Value::Gauge(v) => (false, *v),
                    Value::Counter(v) => (true, *v),
                    Value::Text(_) => continue,
                };
                let point =
                    Point { value, time_ms: sample.time_ms, updated_ms: record.received_ms };
                let borrowed = KeyRef {
                    project,
                    agent: &record.agent,
                    collector: &sample.collector,
                    field,
                    counter,
                    labels: &sample.labels,
                };
                if let Some(old) = table.series.get_mut(&borrowed) {
                    if sample.time_ms >= old.time_ms {
                        *old = point;
                    }
                    continue;
                }
                if table.series.len() >= self.max_series
                    && now.duration_since(table.last_sweep) >= SWEEP_INTERVAL
                {
                    self.sweep(&mut table, now, now_ms);
                }
                if table.series.len() >= self.max_series {
                    refused += 1;
                    continue;
                }
                let (project, agent) = owned
                    .get_or_insert_with(|| (project.into(), record.agent.as_str().into()))
                    .clone();
                let key = Key {
                    project,
                    agent,
                    collector: sample.collector.clone(),
                    field: field.clone(),
                    counter,
                    labels: sample.labels.clone(),
                };
                table.series.insert(key, point);
            }
        }
        if refused > 0 {
            let total = self.dropped.fetch_add(refused, Ordering::Relaxed) + refused;
            if table.last_drop_log.is_none_or(|t| now.duration_since(t) >= DROP_LOG_INTERVAL) {
                table.last_drop_log = Some(now);
                tracing::warn!(
                    max_series = self.max_series,
                    dropped_total = total,
                    "/metrics series table full: new series dropped"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_protocol::message::{Batch, Sample};

    /// Arrival time of the test records.
    const T: u64 = 1_700_000_000_000;

    fn record(agent: &str, time_ms: u64, values: Vec<(&str, Value)>) -> StoredBatch {
        StoredBatch {
            agent: agent.into(),
            session: 1,
            received_ms: T,
            batch: Batch {
                seq: 1,
                samples: vec![Sample {
                    collector: "net".into(),
                    time_ms,
                    labels: vec![("interface".into(), "eth\"0".into())].into(),
                    values: values.into_iter().map(|(f, v)| (f.into(), v)).collect(),
                }],
            },
        }
    }

    fn latest(max_series: usize, ttl: Duration) -> Latest {
        Latest::new(max_series, ttl, Arc::new(Descriptors::in_memory()))
    }

    fn text(latest: &Latest, now_ms: u64) -> String {
        let mut out = Exposition::new(exposition::Format::Prometheus);
        latest.render_at(&mut out, now_ms);
        out.finish()
    }

    #[test]
    fn renders_the_latest_value_per_series_with_types() {
        let latest = latest(100, Duration::from_secs(60));
        let accept =
            |agent, time, values| latest.accept_at("shop", &record(agent, time, values), T);
        accept("web", 1000, vec![("rx_bytes", Value::Counter(5.0))]);
        accept(
            "web",
            2000,
            vec![("rx_bytes", Value::Counter(7.0)), ("up", Value::Text("yes".into()))],
        );
        accept("web", 1500, vec![("rx_bytes", Value::Counter(6.0))]);
        accept("db", 2000, vec![("rx_rate", Value::Gauge(0.5))]);
        assert_eq!(
            text(&latest, T).split("# HELP wasmtap_proxy").next(),
            Some(
                "# HELP wasmtap_net_rx_bytes_total rx_bytes of collector net (not described).\n\
                 # TYPE wasmtap_net_rx_bytes_total counter\n\
                 wasmtap_net_rx_bytes_total{project=\"shop\",agent=\"web\",collector=\"net\",interface=\"eth\\\"0\"} 7.0 2000\n\
                 # HELP wasmtap_net_rx_rate rx_rate of collector net (not described).\n\
                 # TYPE wasmtap_net_rx_rate gauge\n\
                 wasmtap_net_rx_rate{project=\"shop\",agent=\"db\",collector=\"net\",interface=\"eth\\\"0\"} 0.5 2000\n"
            )
        );
        // A description that arrives later names and explains the series.
        let answer = r#"{"collectors":[{"name":"net","fields":[
            {"name":"rx_bytes","kind":"counter","unit":"bytes","help":"Bytes received."},
            {"name":"rx_rate","kind":"gauge","unit":"bytes","help":"Bytes per second."}]}]}"#;
        latest.descriptors.update("shop", answer).expect("described");
        let described = text(&latest, T);
        assert!(described.contains("# HELP wasmtap_net_rx_bytes_total Bytes received.\n"));
        assert!(described.contains("\nwasmtap_net_rx_rate_bytes{project=\"shop\""), "{described}");
    }

    #[test]
    fn full_table_drops_and_counts_new_series_and_expiry_frees_room() {
        let latest = latest(2, Duration::from_millis(50));
        let values =
            vec![("a", Value::Gauge(1.0)), ("b", Value::Gauge(2.0)), ("c", Value::Gauge(3.0))];
        latest.accept_at("p", &record("x", 1, values), T);
        assert_eq!((latest.len(), latest.dropped()), (2, 1));
        // Updates to held series are never dropped.
        latest.accept_at("p", &record("x", 2, vec![("a", Value::Gauge(9.0))]), T);
        assert_eq!(latest.dropped(), 1);
        assert!(text(&latest, T).contains("wasmtap_proxy_latest_dropped_total 1.0\n"));
        assert!(text(&latest, T + 50).contains("wasmtap_proxy_latest_series 0.0\n"));
        assert!(latest.is_empty());
        let mut fresh = record("x", 3, vec![("c", Value::Gauge(3.0))]);
        fresh.received_ms = T + 50;
        latest.accept_at("p", &fresh, T + 50);
        assert_eq!(latest.len(), 1);
    }

    #[test]
    fn batches_older_than_the_ttl_are_not_taken_when_the_table_is_rebuilt() {
        let latest = latest(10, Duration::from_secs(60));
        latest.accept_at("p", &record("x", 1, vec![("a", Value::Gauge(1.0))]), T + 60_000);
        assert!(latest.is_empty());
        latest.accept_at("p", &record("x", 1, vec![("a", Value::Gauge(1.0))]), T + 59_999);
        assert_eq!(latest.len(), 1);
    }
}
