//! Running a query over a project's store: every segment that may hold
//! matching samples is read, the others are skipped by their time range;
//! a compressed segment by its index (only the chunks of matching series
//! and times are read), a row segment record by record, a window at a
//! time. Nothing is collected: each sample found is handed to the caller,
//! so memory stays bounded whatever the store's size.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::{Sample, Value};

use super::Filter;
use crate::store::block::chunk::{self, Cursor, SeriesView};
use crate::store::block::index::Select;
use crate::store::block::table::BatchMeta;
use crate::store::block::{self, BlockError, Header};
use crate::store::blocks;
use crate::store::catalog::{self, Form, block_path, row_path};
use crate::store::format::{self, FormatError, Viewed};
use crate::store::rows::{Item, RowFile};
use crate::store::{Mark, StoreError, io_err};

/// One sample found: its series, time, batch and the values kept.
#[derive(Debug)]
pub struct Found<'a> {
    /// The project.
    pub project: &'a str,
    /// The agent.
    pub agent: &'a str,
    /// The collector.
    pub collector: &'a str,
    /// The series' labels.
    pub labels: &'a [(String, String)],
    /// When it was taken (ms since the epoch).
    pub time_ms: u64,
    /// The agent's batch sequence number (`None` if that part of a
    /// compressed segment's table is damaged).
    pub seq: Option<u64>,
    /// Field names and values kept by the filter.
    pub values: &'a [(&'a str, &'a Value)],
}

/// What a query read and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Segments looked at.
    pub segments: u64,
    /// Segments passed over by their time range or series.
    pub skipped: u64,
    /// Chunks of compressed segments read.
    pub chunks: u64,
    /// Row records read.
    pub records: u64,
    /// Samples handed out.
    pub samples: u64,
    /// Damaged records passed over.
    pub damaged: u64,
}

/// Why a query stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller's output failed (a closed pipe, a client gone).
    #[error("writing the answer: {0}")]
    Output(std::io::Error),
}

/// A compressed segment's chunks are chosen in its index: by the block's
/// time range first, then each chunk's series and time range.
impl Select for Filter {
    fn block(&self, header: &Header) -> bool {
        header.overlaps(self.since_ms, self.until_ms)
    }

    fn chunk(&self, series: &SeriesView<'_>, min_time: u64, max_time: u64) -> bool {
        block::overlaps(min_time, max_time, self.since_ms, self.until_ms)
            && self.agent.as_ref().is_none_or(|a| a == series.agent)
            && self.collector.as_ref().is_none_or(|c| c == series.collector)
            && self
                .labels
                .iter()
                .all(|(k, v)| series.labels().any(|l| l == (k.as_str(), v.as_str())))
            && self.field.as_ref().is_none_or(|f| series.field_names().any(|n| n == f))
    }
}

impl Filter {
    fn time(&self, t: u64) -> bool {
        self.since_ms.is_none_or(|s| t >= s) && self.until_ms.is_none_or(|u| t < u)
    }

    fn field(&self, name: &str) -> bool {
        self.field.as_ref().is_none_or(|f| f == name)
    }
}

/// Runs `filter` over `project`'s store under `data_dir`, up to `mark`
/// when given (what the writer has committed; otherwise up to the end of
/// each file), handing every sample found to `emit`.
pub fn project(
    data_dir: &Path,
    project: &ProjectId,
    filter: &Filter,
    mark: Option<&Mark>,
    emit: &mut dyn FnMut(&Found<'_>) -> std::io::Result<()>,
) -> Result<Stats, QueryError> {
    let dir = data_dir.join(project.as_str());
    let mut stats = Stats::default();
    let segments = catalog::list(&dir)?;
    let newest = segments.last().map(|s| s.id);
    for s in segments {
        if mark.is_some_and(|m| s.id > m.segment) {
            break;
        }
        stats.segments += 1;
        let end = match mark.filter(|m| m.segment == s.id) {
            Some(m) => End::Mark(m.offset),
            None => End::File { newest: mark.is_none() && Some(s.id) == newest },
        };
        let done = match s.form() {
            Form::Block => block(&dir, s.id, project, filter, emit, &mut stats)?,
            Form::Rows => rows(&dir, s.id, end, project, filter, emit, &mut stats)?,
        };
        // Compressed or deleted since it was listed: the block, if any.
        if !done && s.form() == Form::Rows {
            block(&dir, s.id, project, filter, emit, &mut stats)?;
        }
    }
    Ok(stats)
}

/// Reads the compressed segment `id`; false if it is gone.
fn block(
    dir: &Path,
    id: u64,
    project: &ProjectId,
    filter: &Filter,
    emit: &mut dyn FnMut(&Found<'_>) -> std::io::Result<()>,
    stats: &mut Stats,
) -> Result<bool, QueryError> {
    let Some(index) = blocks::index_where(dir, id, filter)? else { return Ok(false) };
    let wanted = &index.chunks;
    if wanted.is_empty() {
        stats.skipped += 1;
        return Ok(true);
    }
    let path = block_path(dir, id);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::from_io(&path, e).into()),
    };
    let mut table: Option<Vec<Option<BatchMeta>>> = None;
    let mut values: Vec<Option<Value>> = Vec::new();
    for c in wanted {
        stats.chunks += 1;
        let payload = blocks::chunk(&file, c).map_err(io_err(&path))?;
        let Some(payload) = payload else {
            stats.damaged += 1;
            tracing::error!(block = %path.display(), offset = c.offset, "a damaged chunk is skipped");
            continue;
        };
        let parsed = chunk::parse(&payload)
            .map_err(|e| StoreError::Unreadable { path: path.clone(), message: e.to_string() })?;
        if table.is_none() {
            table = Some(blocks::batch_table(&file, &index.tables).map_err(io_err(&path))?);
        }
        let metas = table.as_deref().unwrap_or_default();
        let unreadable =
            |e: BlockError| StoreError::Unreadable { path: path.clone(), message: e.to_string() };
        let raw = parsed.inflate(&payload).map_err(unreadable)?;
        let fields = &parsed.def.fields;
        let mut cursor = Cursor::new(&parsed, |i| filter.field(&fields[i].0));
        loop {
            let row = cursor.next(&raw, fields, &mut values).map_err(unreadable)?;
            let Some(row) = row else { break };
            if !filter.time(row.time) {
                continue;
            }
            let kept: Vec<(&str, &Value)> = fields
                .iter()
                .zip(&values)
                .filter_map(|((name, _), v)| Some((name.as_str(), v.as_ref()?)))
                .collect();
            if kept.is_empty() {
                continue;
            }
            let seq =
                usize::try_from(row.batch).ok().and_then(|b| metas.get(b)?.as_ref()).map(|m| m.seq);
            stats.samples += 1;
            emit(&Found {
                project: project.as_str(),
                agent: &parsed.def.agent,
                collector: &parsed.def.collector,
                labels: &parsed.def.labels,
                time_ms: row.time,
                seq,
                values: &kept,
            })
            .map_err(QueryError::Output)?;
        }
    }
    Ok(true)
}

/// How far a row segment is read.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Up to where the writer had committed.
    Mark(u64),
    /// To the end of the file; the newest segment may end in a record
    /// being written, where reading stops without a word.
    File { newest: bool },
}

/// Reads the row segment `id` up to `end`; false if it is gone.
fn rows(
    dir: &Path,
    id: u64,
    end: End,
    project: &ProjectId,
    filter: &Filter,
    emit: &mut dyn FnMut(&Found<'_>) -> std::io::Result<()>,
    stats: &mut Stats,
) -> Result<bool, QueryError> {
    let path = row_path(dir, id);
    let Some(file) = RowFile::open(&path).map_err(io_err(&path))? else { return Ok(false) };
    let (end, resync) = match end {
        End::Mark(offset) => (offset, true),
        End::File { newest } => (file.size().map_err(io_err(&path))?, !newest),
    };
    let mut at = 0;
    let mut failed: Option<std::io::Error> = None;
    while at < end && failed.is_none() {
        let from = at;
        at = file
            .window(at, end, resync, |item| {
                if failed.is_some() {
                    return;
                }
                match item {
                    Item::Record { payload, at } => {
                        stats.records += 1;
                        let done = match format::view(payload) {
                            Ok(Viewed::View(v)) => view(project, v, filter, emit, stats),
                            Ok(Viewed::Decoded(r)) => {
                                let mut done = Ok(Ok(()));
                                for s in r.batch.samples.iter().filter(|s| filter.sample(&r.agent, s)) {
                                    stats.samples += 1;
                                    if let Err(e) = emit_sample(project, &r.agent, r.batch.seq, s, filter, emit) {
                                        done = Ok(Err(e));
                                        break;
                                    }
                                }
                                done
                            }
                            Err(e) => Err(e),
                        };
                        match done {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => failed = Some(e),
                            Err(e) => {
                                stats.damaged += 1;
                                tracing::error!(segment = %path.display(), offset = at.start, error = %e, "a stored record cannot be read; the query skips it");
                            }
                        }
                    }
                    Item::Damage { offset, len } => {
                        stats.damaged += 1;
                        tracing::warn!(segment = %path.display(), offset, bytes = len, "damaged records skipped by the query");
                    }
                }
            })
            .map_err(io_err(&path))?;
        if at == from {
            break; // a record being written: not read yet
        }
    }
    match failed {
        Some(e) => Err(QueryError::Output(e)),
        None => Ok(true),
    }
}

/// The samples of a row record read in place that `filter` keeps, handed
/// to `emit`: nothing is copied for the others.
fn view(
    project: &ProjectId,
    mut v: format::View<'_>,
    filter: &Filter,
    emit: &mut dyn FnMut(&Found<'_>) -> std::io::Result<()>,
    stats: &mut Stats,
) -> Result<std::io::Result<()>, FormatError> {
    if filter.agent.as_ref().is_some_and(|a| a != v.agent) {
        return Ok(Ok(()));
    }
    while let Some(s) = v.next_sample()? {
        if filter.collector.as_ref().is_some_and(|c| c != s.collector) || !filter.time(s.time_ms) {
            continue;
        }
        let has = |(k, val): &(String, String)| s.labels().any(|(a, b)| a == k && b == val);
        if !filter.labels.iter().all(has) {
            continue;
        }
        let layout = v.layout(s.layout);
        if filter.field.as_ref().is_some_and(|f| !layout.iter().any(|(n, _)| n == f)) {
            continue;
        }
        let values: Vec<(&str, Value)> =
            s.values(layout).filter(|(n, _)| filter.field(n)).collect();
        if values.is_empty() {
            continue;
        }
        let kept: Vec<(&str, &Value)> = values.iter().map(|(n, v)| (*n, v)).collect();
        let labels: Vec<(String, String)> =
            s.labels().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        stats.samples += 1;
        let found = Found {
            project: project.as_str(),
            agent: v.agent,
            collector: s.collector,
            labels: &labels,
            time_ms: s.time_ms,
            seq: Some(v.seq),
            values: &kept,
        };
        if let Err(e) = emit(&found) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

fn emit_sample(
    project: &ProjectId,
    agent: &str,
    seq: u64,
    s: &Sample,
    filter: &Filter,
    emit: &mut dyn FnMut(&Found<'_>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let kept: Vec<(&str, &Value)> =
        s.values.iter().filter(|(n, _)| filter.field(n)).map(|(n, v)| (&**n, v)).collect();
    if kept.is_empty() {
        return Ok(());
    }
    emit(&Found {
        project: project.as_str(),
        agent,
        collector: &s.collector,
        labels: &s.labels,
        time_ms: s.time_ms,
        seq: Some(seq),
        values: &kept,
    })
}

/// Runs `filter` over every project in `projects`, in order.
pub fn projects(
    data_dir: &Path,
    projects: &[ProjectId],
    filter: &Filter,
    marks: Option<&BTreeMap<ProjectId, Mark>>,
    emit: &mut dyn FnMut(&Found<'_>) -> std::io::Result<()>,
) -> Result<Stats, QueryError> {
    let mut total = Stats::default();
    for p in projects {
        let mark = marks.and_then(|m| m.get(p));
        if marks.is_some() && mark.is_none() {
            continue; // nothing committed
        }
        let s = project(data_dir, p, filter, mark, emit)?;
        total.segments += s.segments;
        total.skipped += s.skipped;
        total.chunks += s.chunks;
        total.records += s.records;
        total.samples += s.samples;
        total.damaged += s.damaged;
    }
    Ok(total)
}
