//! What the proxy knows of each collector's fields (unit, help), per
//! project: the agents' answers to the `describe` control request, kept in
//! `<data_dir>/descriptors.json` so that `/metrics` and remote write name
//! and explain series the same way after a restart.
//!
//! The agent describes its collectors when a session starts and again when
//! a batch has a field the proxy has no description of (a collector
//! hot-loaded since, or a new version of one). Descriptions are kept per
//! project: the newest description of a collector in a project wins for
//! every agent of the project. Agents from before the `describe` command
//! answer with an error; their collectors' series are named from their
//! kind alone (`series.rs`) unless another agent of the project described
//! the same collector.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The file, under the data directory.
pub const FILE: &str = "descriptors.json";
/// Longest help, unit or version text kept, in bytes (longer ones are cut
/// at a character), as the agent allows.
pub const MAX_HELP: usize = 256;
/// Longest collector or field name taken, in bytes, as the agent allows.
pub const MAX_NAME: usize = 64;
/// Most collectors kept per project.
pub const MAX_COLLECTORS: usize = 1024;
/// Most fields kept per collector.
pub const MAX_FIELDS: usize = 1024;
/// Most bytes of descriptions kept per project (as JSON).
pub const MAX_PROJECT_BYTES: usize = 4 << 20;
/// Most field names a [`Names`] cache holds before it starts over.
const MAX_NAMES: usize = 1 << 16;

/// One field of a collector, as the agent declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDesc {
    /// Its name.
    pub name: String,
    /// `gauge`, `counter` or `text`.
    pub kind: String,
    /// Its unit (`bytes`, `seconds`, …), or empty.
    #[serde(default)]
    pub unit: String,
    /// One line of help.
    #[serde(default)]
    pub help: String,
}

/// One collector, as the agent declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorDesc {
    /// Its name (the samples' `collector`).
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// Its fields.
    pub fields: Vec<FieldDesc>,
}

/// The agent's answer to `describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    /// Every collector it runs, its own `agent` collector included.
    pub collectors: Vec<CollectorDesc>,
}

/// Why a `describe` answer or the file is not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// Not the JSON document expected.
    #[error("not a description of collectors: {0}")]
    Json(#[from] serde_json::Error),
    /// More than a project may keep.
    #[error("descriptions of project {0} would exceed {MAX_PROJECT_BYTES} bytes; not taken")]
    TooLarge(String),
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// A field's unit and help, as naming and exposition need them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMeta {
    /// Its unit, or empty.
    pub unit: Arc<str>,
    /// Its help, or empty.
    pub help: Arc<str>,
}

type Table = BTreeMap<String, BTreeMap<String, CollectorDesc>>;

/// Every project's collector descriptions; see the module docs.
#[derive(Debug)]
pub struct Descriptors {
    path: Option<PathBuf>,
    table: Mutex<Table>,
    /// Bumped whenever a description changes (for [`Names`]).
    generation: AtomicU64,
}

fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].replace('\n', " ")
}

impl Default for Descriptors {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl Descriptors {
    /// Descriptions kept only in memory (tests, tools).
    pub fn in_memory() -> Self {
        Self { path: None, table: Mutex::new(Table::new()), generation: AtomicU64::new(0) }
    }

    /// The descriptions kept in `data_dir`. A file that cannot be read
    /// is moved aside (`descriptors.json.bad`) and logged: descriptions
    /// come back as agents reconnect.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(FILE);
        let table = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Table>(&bytes) {
                Ok(t) => t,
                Err(e) => {
                    let aside = path.with_extension("json.bad");
                    let _ = std::fs::rename(&path, &aside);
                    tracing::error!(path = %path.display(), moved_to = %aside.display(), error = %e, "collector descriptions unreadable; starting without them");
                    Table::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table::new(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read collector descriptions; starting without them");
                Table::new()
            }
        };
        Self { path: Some(path), table: Mutex::new(table), generation: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes an agent's `describe` answer for `project`; writes the file
    /// when anything changed.
    pub fn update(&self, project: &str, answer: &str) -> Result<(), DescriptorError> {
        let described: Described = serde_json::from_str(answer)?;
        let mut table = self.lock();
        let mut known = table.get(project).cloned().unwrap_or_default();
        let mut changed = false;
        let name_ok = |n: &str| !n.is_empty() && n.len() <= MAX_NAME;
        for mut c in described.collectors {
            if !name_ok(&c.name) || (known.len() >= MAX_COLLECTORS && !known.contains_key(&c.name))
            {
                continue;
            }
            c.fields.truncate(MAX_FIELDS);
            c.fields.retain(|f| {
                name_ok(&f.name) && matches!(f.kind.as_str(), "gauge" | "counter" | "text")
            });
            c.version = cut(&c.version, MAX_HELP);
            for f in &mut c.fields {
                f.help = cut(&f.help, MAX_HELP);
                f.unit = cut(&f.unit, MAX_HELP);
            }
            if known.get(&c.name) != Some(&c) {
                known.insert(c.name.clone(), c);
                changed = true;
            }
        }
        if changed && serde_json::to_vec(&known)?.len() > MAX_PROJECT_BYTES {
            return Err(DescriptorError::TooLarge(project.to_owned()));
        }
        table.insert(project.to_owned(), known);
        if changed {
            self.generation.fetch_add(1, Ordering::Relaxed);
            self.save(&table)?;
        }
        Ok(())
    }

    fn save(&self, table: &Table) -> Result<(), DescriptorError> {
        let Some(path) = &self.path else { return Ok(()) };
        let io = |source| DescriptorError::Io { path: path.clone(), source };
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(table)?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The unit and help of `collector`'s `field` in `project`, if described.
    pub fn field(&self, project: &str, collector: &str, field: &str) -> Option<FieldMeta> {
        let table = self.lock();
        let f = table.get(project)?.get(collector)?.fields.iter().find(|f| f.name == field)?;
        Some(FieldMeta { unit: f.unit.as_str().into(), help: f.help.as_str().into() })
    }
}

/// A field as [`Names`] keys it: collector, field, and whether a counter.
type FieldKey = (Arc<str>, Arc<str>, bool);
/// A field's metric name and help.
type Named = (Arc<str>, Arc<str>);

/// The metric names and help of fields, worked out once per field (a
/// field has many series, a batch many values) and again only when a
/// description changed.
#[derive(Debug, Default)]
pub struct Names {
    generation: u64,
    projects: HashMap<String, HashMap<FieldKey, Named>>,
}

impl Names {
    /// The name and help of `collector`'s field `field` in `project`.
    pub fn get(
        &mut self,
        descriptors: &Descriptors,
        project: &str,
        collector: &Arc<str>,
        field: &Arc<str>,
        counter: bool,
    ) -> Named {
        let now = descriptors.generation.load(Ordering::Relaxed);
        if now != self.generation {
            self.projects.clear();
            self.generation = now;
        }
        if self.projects.get(project).is_none_or(|f| f.len() >= MAX_NAMES) {
            // New, or grown past its bound: names are cheap to work out again.
            self.projects.insert(project.to_owned(), HashMap::new());
        }
        let Some(fields) = self.projects.get_mut(project) else {
            return (Arc::from(""), Arc::from(""));
        };
        fields
            .entry((collector.clone(), field.clone(), counter))
            .or_insert_with(|| {
                let meta = descriptors.field(project, collector, field).unwrap_or_default();
                let name = crate::series::metric_name(collector, field, counter, &meta.unit);
                (name.into(), meta.help)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Descriptors {
        /// Whether `project` has a description of `collector`.
        fn knows(&self, project: &str, collector: &str) -> bool {
            self.lock().get(project).is_some_and(|p| p.contains_key(collector))
        }
    }

    const ANSWER: &str = r#"{"collectors":[{"name":"net","version":"1","fields":[
        {"name":"rx_bytes","kind":"counter","unit":"bytes","help":"Bytes received"},
        {"name":"state","kind":"text","unit":"","help":"Link state\nsecond line"}]}]}"#;

    #[test]
    fn answers_are_kept_per_project_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Descriptors::open(dir.path());
        d.update("p", ANSWER).expect("update");
        assert!(d.knows("p", "net") && !d.knows("q", "net") && !d.knows("p", "cpu"));
        let again = Descriptors::open(dir.path());
        let f = again.field("p", "net", "rx_bytes").expect("described");
        assert_eq!((&*f.unit, &*f.help), ("bytes", "Bytes received"));
        let s = again.field("p", "net", "state").expect("described");
        assert_eq!(&*s.help, "Link state second line", "one line");
        assert!(again.field("p", "net", "tx_bytes").is_none());
    }

    #[test]
    fn bad_answers_and_a_bad_file_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = Descriptors::open(dir.path());
        d.update("p", ANSWER).expect("update");
        for bad in ["", "unknown command `describe`", "{\"collectors\":3}", "[]"] {
            assert!(d.update("p", bad).is_err(), "{bad:?}");
        }
        assert!(d.knows("p", "net"), "a bad answer keeps what was known");
        let long = "x".repeat(MAX_NAME + 1);
        let odd = format!(
            r#"{{"collectors":[{{"name":"{long}","fields":[]}},{{"name":"odd","fields":[
            {{"name":"{long}","kind":"gauge"}},{{"name":"a","kind":"histogram"}},{{"name":"b","kind":"gauge"}}]}}]}}"#
        );
        d.update("p", &odd).expect("taken, what is valid of it");
        assert!(!d.knows("p", &long) && d.knows("p", "odd"));
        assert!(d.field("p", "odd", "a").is_none() && d.field("p", "odd", "b").is_some());
        std::fs::write(dir.path().join(FILE), b"{ not json").expect("write");
        let fresh = Descriptors::open(dir.path());
        assert!(!fresh.knows("p", "net"));
        assert!(dir.path().join("descriptors.json.bad").exists(), "moved aside, not deleted");
    }

    #[test]
    fn names_follow_a_description_that_changes() {
        let d = Descriptors::in_memory();
        let mut names = Names::default();
        let (net, rx): (Arc<str>, Arc<str>) = ("net".into(), "rx".into());
        let (name, help) = names.get(&d, "p", &net, &rx, true);
        assert_eq!((&*name, &*help), ("wasmtap_net_rx_total", ""));
        let answer = r#"{"collectors":[{"name":"net","fields":[
            {"name":"rx","kind":"counter","unit":"bytes","help":"In."}]}]}"#;
        d.update("p", answer).expect("update");
        let (name, help) = names.get(&d, "p", &net, &rx, true);
        assert_eq!((&*name, &*help), ("wasmtap_net_rx_bytes_total", "In."));
        assert_eq!(&*names.get(&d, "q", &net, &rx, true).0, "wasmtap_net_rx_total");
    }

    #[test]
    fn help_is_cut_at_a_character() {
        let long = "é".repeat(MAX_HELP);
        assert_eq!(cut(&long, MAX_HELP).len(), MAX_HELP);
        assert_eq!(cut(&long, 5), "éé");
    }
}
