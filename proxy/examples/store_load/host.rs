//! The values of the store benchmarks: one simulated agent's series,
//! second by second, deterministic (shared by the `store_load` example and
//! the `compact` bench).

use wasmtap_protocol::message::{Batch, FieldName, Labels, Sample, Value};

/// Samples per agent and second.
pub const SAMPLES: usize = 100;
/// Fields per sample.
pub const FIELDS: usize = 10;

pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One agent's series and their state, second by second.
pub struct Host {
    agent: u64,
    labels: Vec<Labels>,
    names: Vec<FieldName>,
    /// Per series: the mantissa of its value (its scale is its field's).
    state: Vec<i64>,
    second: u64,
}

/// Decimal places of each field kind.
const SCALE: [u8; FIELDS] = [1, 2, 0, 0, 0, 0, 0, 2, 0, 0];

impl Host {
    pub fn new(agent: u64) -> Self {
        let labels = (0..SAMPLES)
            .map(|s| Labels::from(vec![("series".to_owned(), s.to_string())]))
            .collect();
        let names = (0..FIELDS).map(|f| FieldName::from(format!("f{f}"))).collect();
        let state = (0..SAMPLES * FIELDS)
            .map(|i| {
                let r = splitmix(agent << 32 | i as u64);
                match i % FIELDS {
                    0 => (r % 1000) as i64,
                    1 => (r % 10_000) as i64,
                    4 => 8_000_000_000 + (i as i64) * 1_000_000,
                    5 => 100 + (r % 50) as i64,
                    6 => ((r % 1_000_000) * 4096) as i64,
                    7 => (r % 400) as i64,
                    _ => (r % 1_000_000) as i64,
                }
            })
            .collect();
        Self { agent, labels, names, state, second: 0 }
    }

    /// The values of the next second, in series order (sample by sample, field by field).
    pub fn step(&mut self) -> Vec<f64> {
        let second = self.second;
        self.second += 1;
        let mut out = Vec::with_capacity(SAMPLES * FIELDS);
        for (i, m) in self.state.iter_mut().enumerate() {
            let r = splitmix(splitmix(self.agent << 32 | i as u64) ^ second);
            let f = i % FIELDS;
            let step = |n: u64| (r % (2 * n + 1)) as i64 - n as i64;
            match f {
                0 => *m = (*m + step(5)).clamp(0, 1_000),
                1 => *m = (*m + step(20)).clamp(0, 10_000),
                2 => *m += (r % 51) as i64,
                3 => *m += (r % 20_001) as i64,
                4 => {}
                5 if r.is_multiple_of(20) => *m += step(1),
                6 => *m = (*m + step(8) * 4096).max(0),
                7 => *m = (*m + step(3)).max(0),
                8 => *m += 95 + (r % 11) as i64,
                _ => {}
            }
            let v = if f == 9 {
                // A utilisation percentage as a collector computes it: busy
                // ticks over all ticks of the interval (about 400 of them).
                let total = 395 + (r >> 8) % 11;
                100.0 * ((r >> 16) % (total + 1)) as f64 / total as f64
            } else {
                *m as f64 / 10f64.powi(i32::from(SCALE[f]))
            };
            out.push(v);
        }
        out
    }

    pub fn batch(&mut self, seq: u64, time_ms: u64) -> Batch {
        let values = self.step();
        let samples = (0..SAMPLES)
            .map(|s| Sample {
                collector: "bench".into(),
                time_ms,
                labels: self.labels[s].clone(),
                values: (0..FIELDS)
                    .map(|f| {
                        let v = values[s * FIELDS + f];
                        let v = if matches!(f, 2 | 3 | 8) {
                            Value::Counter(v)
                        } else {
                            Value::Gauge(v)
                        };
                        (self.names[f].clone(), v)
                    })
                    .collect(),
            })
            .collect();
        Batch { seq, samples }
    }
}
