//! In-memory consumers of stored batches: the [`Sink`] hook.
//!
//! Sinks are fed from the store's tail ([`crate::tail::live`]): each
//! record as soon as the writer has committed it, each project's in store
//! order. A sink must return quickly: it copies what it needs into a
//! bounded structure of its own and counts (and logs) what does not fit.
//! Delivery that must survive a crash (remote write) keeps a position in
//! the store instead ([`crate::tail::follow`]).

/// Receives stored batches.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Takes `record`, stored for `project`. Must not block or fail: a sink
    /// that cannot keep up drops data and counts it.
    fn accept(&self, project: &str, record: &crate::store::StoredBatch);
}
