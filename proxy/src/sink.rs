//! Where stored batches go next: the [`Sink`] hook.
//!
//! The session task calls every sink right after a batch is durably stored,
//! so a sink must return at once: it copies what it needs into a bounded
//! structure of its own and counts (and logs) what does not fit.

use std::sync::Arc;

use crate::store::StoredBatch;

/// Receives every batch once it is on disk.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Takes `record`, stored for `project`. Must not block or fail: a sink
    /// that cannot keep up drops data and counts it.
    fn accept(&self, project: &str, record: &StoredBatch);
}

/// The sinks a proxy feeds, in order.
pub type Sinks = Vec<Arc<dyn Sink>>;

/// Hands `record` to every sink in `sinks`.
pub fn deliver(sinks: &[Arc<dyn Sink>], project: &str, record: &StoredBatch) {
    for sink in sinks {
        sink.accept(project, record);
    }
}
