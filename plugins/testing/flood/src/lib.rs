//! Test collector `flood`: well behaved in `describe` and `init`; `collect`
//! returns far more than the host accepts, alternating between two floods:
//!
//! - calls 1, 3, 5, …: [`SAMPLES`] samples, each with one `value`;
//! - calls 2, 4, 6, …: one sample with a label of [`LABEL_BYTES`] bytes.
//!
//! The call count lives in the instance, so it restarts from the first kind
//! whenever the host re-instantiates the collector.

use std::sync::atomic::{AtomicU64, Ordering};

use wasmtap_collector::{Descriptor, Guest, Sample, SampleBuilder, Schema};

struct Flood;

/// Samples returned by the odd calls.
pub const SAMPLES: usize = 1_000_000;
/// Bytes of the label value returned by the even calls.
pub const LABEL_BYTES: usize = 10 * 1000 * 1000;

static CALLS: AtomicU64 = AtomicU64::new(0);

impl Guest for Flood {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("value", "", "Index of the sample in the flood");
        s.into_descriptor("flood", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let mut s = Schema::new();
        let value = s.gauge("value", "", "");
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        if call.is_multiple_of(2) {
            Ok((0..SAMPLES).map(|i| SampleBuilder::new().gauge(value, i as f64).build()).collect())
        } else {
            Ok(vec![
                SampleBuilder::new()
                    .label("flood", "x".repeat(LABEL_BYTES))
                    .gauge(value, 1.0)
                    .build(),
            ])
        }
    }
}

wasmtap_collector::export!(Flood);
