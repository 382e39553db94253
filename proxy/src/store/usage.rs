//! What the store holds and what its retention deleted, per project, for
//! `/metrics`: kept up to date by the maintenance thread.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use wasmtap_protocol::access_key::ProjectId;

use crate::exposition::{self, Kind};

/// Why retention deleted a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Its newest batch arrived before the retention period.
    Age,
    /// The store was over its size cap.
    Size,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Size => "size",
        }
    }
}

/// One project's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectUsage {
    /// Bytes of its segment files.
    pub bytes: u64,
    /// Segments kept as row files.
    pub row_segments: u64,
    /// Compressed segments.
    pub compressed_segments: u64,
    /// Segments compressed since start.
    pub compressed_total: u64,
    /// Segments deleted by age since start, and their bytes.
    pub expired_age: (u64, u64),
    /// Segments deleted for the size cap since start, and their bytes.
    pub expired_size: (u64, u64),
}

/// Every project's figures, and the limits in force.
#[derive(Debug, Default)]
pub struct Usage {
    projects: Mutex<BTreeMap<ProjectId, ProjectUsage>>,
    /// The retention period in seconds (0: none) and the size cap in bytes (0: none).
    limits: Mutex<(u64, u64)>,
}

/// A metric family: name, help, kind and which figure it shows.
type Family = (&'static str, &'static str, Kind, fn(&ProjectUsage) -> u64);
/// A family of deletions: name, help, and which count it shows.
type Deleted = (&'static str, &'static str, fn((u64, u64)) -> u64);

impl Usage {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<ProjectId, ProjectUsage>> {
        self.projects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_limits(&self, retention_s: u64, max_bytes: u64) {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = (retention_s, max_bytes);
    }

    /// `project`'s figures now.
    pub fn get(&self, project: &ProjectId) -> ProjectUsage {
        self.lock().get(project).copied().unwrap_or_default()
    }

    /// Bytes of every project's segment files.
    pub fn total_bytes(&self) -> u64 {
        self.lock().values().map(|u| u.bytes).sum()
    }

    pub(super) fn update(&self, project: &ProjectId, f: impl FnOnce(&mut ProjectUsage)) {
        f(self.lock().entry(project.clone()).or_default());
    }

    /// The `wasmtap_proxy_store_*` families.
    pub fn render(&self, out: &mut exposition::Exposition) {
        let (retention_s, max_bytes) = *self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        let limits: [(&str, &str, u64); 2] = [
            (
                "wasmtap_proxy_store_retention_seconds",
                "The retention period (0: none).",
                retention_s,
            ),
            ("wasmtap_proxy_store_max_bytes", "The store's size cap (0: none).", max_bytes),
        ];
        for (name, help, v) in limits {
            exposition::family(out, name, help, Kind::Gauge);
            exposition::sample(out, name, &[], v as f64, None);
        }
        let map = self.lock().clone();
        let project = |p: &ProjectId| vec![("project".to_owned(), p.as_str().to_owned())];
        let families: [Family; 3] = [
            (
                "wasmtap_proxy_store_bytes",
                "Bytes of the project's segment files.",
                Kind::Gauge,
                |u| u.bytes,
            ),
            (
                "wasmtap_proxy_store_compressed_total",
                "Segments compressed since the proxy started.",
                Kind::Counter,
                |u| u.compressed_total,
            ),
            (
                "wasmtap_proxy_store_row_segments",
                "Segments kept as row files (the one being written, and closed ones not yet compressed).",
                Kind::Gauge,
                |u| u.row_segments,
            ),
        ];
        for (name, help, kind, get) in families {
            exposition::family(out, name, help, kind);
            for (p, u) in &map {
                exposition::sample(out, name, &project(p), get(u) as f64, None);
            }
        }
        let name = "wasmtap_proxy_store_compressed_segments";
        exposition::family(out, name, "Compressed segments kept.", Kind::Gauge);
        for (p, u) in &map {
            exposition::sample(out, name, &project(p), u.compressed_segments as f64, None);
        }
        let expired: [Deleted; 2] = [
            (
                "wasmtap_proxy_store_expired_segments_total",
                "Segments deleted by retention since the proxy started.",
                |c| c.0,
            ),
            (
                "wasmtap_proxy_store_expired_bytes_total",
                "Bytes of the segments deleted by retention since the proxy started.",
                |c| c.1,
            ),
        ];
        for (name, help, get) in expired {
            exposition::family(out, name, help, Kind::Counter);
            for (p, u) in &map {
                for (reason, counts) in
                    [(Reason::Age, u.expired_age), (Reason::Size, u.expired_size)]
                {
                    let mut labels = project(p);
                    labels.push(("reason".to_owned(), reason.as_str().to_owned()));
                    exposition::sample(out, name, &labels, get(counts) as f64, None);
                }
            }
        }
    }
}
