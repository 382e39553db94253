//! The store's writer thread: dedup, append, group commit and segment
//! roll, one project log at a time. Closed segments are handed to the
//! maintenance thread (compression, retention).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::record;

use super::catalog::{self, row_path};
use super::checkpoint::{self, Checkpoint};
use super::maint;
use super::recover::{DamageCounters, recover};
use super::{
    Appended, Commits, Fsync, MAX_RECORD, StoreConfig, StoreError, StoredBatch, blocks, io_err,
};
use crate::dedup::SeqSet;

/// Most batches written under one sync.
const MAX_GROUP: usize = 4_096;
/// Failed sessions remembered at most.
const MAX_FAILED_SESSIONS: usize = 4_096;
/// Largest group buffer a project keeps between groups.
const MAX_KEPT_BUFFER: usize = 256 << 10;

/// A batch on its way to the disk.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) project: ProjectId,
    pub(super) record: std::sync::Arc<StoredBatch>,
    pub(super) reply: oneshot::Sender<Result<Appended, StoreError>>,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct ProjectLog {
    dir: PathBuf,
    active: Segment,
    file: File,
    /// Bytes in the active segment, counting `pending`.
    len: u64,
    /// Records of the current group not yet written to `file`.
    pending: Vec<u8>,
    seen: HashMap<String, SeqSet>,
    /// A segment was closed since the maintenance thread was last told.
    sealed: bool,
    /// The position of the last checkpoint written or read.
    checkpointed: (u64, u64),
}

/// Adds the batches of compressed segment `id` in `dir` whose row record
/// started at `from` or later to `seen` (their table is all that is read).
fn replay_block(
    dir: &Path,
    id: u64,
    from: u64,
    seen: &mut HashMap<String, SeqSet>,
) -> Result<(), StoreError> {
    let Some(index) = blocks::index(dir, id)? else { return Ok(()) };
    let path = catalog::block_path(dir, id);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let table = blocks::batch_table(&file, &index.tables).map_err(io_err(&path))?;
    for meta in table.into_iter().flatten().filter(|m| m.rows.start >= from) {
        seen.entry(meta.agent.to_string()).or_default().insert(meta.seq);
    }
    Ok(())
}

/// Whether the log still holds what checkpoint `c` says it covered: its
/// segment is there and long enough (otherwise it is not trusted, and
/// every segment is replayed).
fn consistent(dir: &Path, segments: &[catalog::Segment], c: &Checkpoint) -> bool {
    let Some(s) = segments.iter().find(|s| s.id == c.segment) else {
        // A checkpoint at the start of a segment not yet created (the
        // store closed right after a roll) is fine; anything else is not.
        let newest = segments.last().map_or(0, |s| s.id);
        return c.offset == 0 && c.segment == newest + 1;
    };
    let len = if s.rows {
        std::fs::metadata(row_path(dir, s.id)).map(|m| m.len()).ok()
    } else {
        blocks::index(dir, s.id).ok().flatten().map(|i| i.header.row_len)
    };
    let ok = len.is_some_and(|l| l >= c.offset);
    if !ok {
        tracing::warn!(dir = %dir.display(), segment = c.segment, offset = c.offset, "the log is shorter than its checkpoint says; replaying every segment");
    }
    ok
}

impl ProjectLog {
    /// Reads `project`'s segments in `dir` from its checkpoint on (all of
    /// them without one): damaged records are skipped, logged and counted
    /// in `damage`; the last segment's torn tail is cut off. A tail not
    /// known to be torn is kept, and appends go to a new segment after it.
    fn open(
        dir: PathBuf,
        project: &ProjectId,
        damage: &DamageCounters,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let segments = catalog::list(&dir)?;
        let saved = checkpoint::load(&dir).filter(|c| consistent(&dir, &segments, c));
        let from = saved.as_ref().map_or((0, 0), |c| (c.segment, c.offset));
        let mut seen: HashMap<String, SeqSet> = saved.map(|c| c.seen).unwrap_or_default();
        let last = segments.last().map(|s| s.id);
        // The segment appends go to, and its intact length.
        let mut active: Option<(u64, u64)> = None;
        for s in segments.iter().filter(|s| s.id >= from.0) {
            let is_last = Some(s.id) == last;
            let start = if s.id == from.0 { from.1 } else { 0 };
            if s.block && !(is_last && s.rows) {
                replay_block(&dir, s.id, start, &mut seen)?;
                continue;
            }
            let path = row_path(&dir, s.id);
            let mut bytes = Vec::new();
            match File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Compressed since it was listed.
                    replay_block(&dir, s.id, start, &mut seen)?;
                    continue;
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
            // The checkpoint's position is a record boundary of this file.
            let start = usize::try_from(start).unwrap_or(usize::MAX).min(bytes.len());
            let mut r = recover(&bytes[start..]);
            r.valid_len += start;
            for d in &mut r.damaged {
                d.offset += start;
            }
            if let Some(message) = r.unreadable {
                return Err(StoreError::Unreadable { path, message });
            }
            for rec in &r.records {
                seen.entry(rec.agent.clone()).or_default().insert(rec.batch.seq);
            }
            let mut spans: Vec<(usize, usize)> =
                r.damaged.iter().map(|d| (d.offset, d.len)).collect();
            let mut fresh_active = false;
            if is_last && r.torn_tail(bytes.len()) {
                tracing::warn!(path = %path.display(), cut = bytes.len() - r.valid_len, "truncating a torn tail");
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                f.set_len(r.valid_len as u64).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            } else if r.valid_len < bytes.len() {
                // Not known to be torn: damage, left on disk.
                spans.push((r.valid_len, bytes.len() - r.valid_len));
                fresh_active = is_last;
            }
            for (offset, len) in spans {
                damage.add(project, len);
                tracing::error!(
                    path = %path.display(),
                    offset,
                    bytes = len,
                    "damaged stored records skipped; the records after them are kept"
                );
            }
            if is_last && !fresh_active {
                active = Some((s.id, r.valid_len as u64));
            }
        }
        let (id, len) = active.unwrap_or((last.map_or(1, |l| l + 1), 0));
        let active = Segment { id, path: row_path(&dir, id) };
        let file = open_append(&active.path)?;
        Ok(Self {
            dir,
            active,
            file,
            len,
            pending: Vec::new(),
            seen,
            sealed: false,
            checkpointed: from,
        })
    }

    /// Saves the checkpoint at the log's end (everything written is
    /// durable and in `seen`), unless it is there already.
    fn checkpoint(&mut self) {
        let at = (self.active.id, self.len);
        if at == self.checkpointed || !self.pending.is_empty() {
            return;
        }
        let c = Checkpoint { segment: at.0, offset: at.1, seen: self.seen.clone() };
        match checkpoint::save(&self.dir, &c) {
            Ok(()) => self.checkpointed = at,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the checkpoint; the next start replays more")
            }
        }
    }

    /// Writes the pending records (one `write` for the whole group).
    fn flush(&mut self) -> Result<(), StoreError> {
        let written = self.file.write_all(&self.pending);
        self.pending.clear();
        if self.pending.capacity() > MAX_KEPT_BUFFER {
            // A burst's buffer is not kept for every quiet project.
            self.pending = Vec::new();
        }
        written.map_err(io_err(&self.active.path))
    }

    /// Cuts the active segment back to `len` after a failed write or sync.
    fn undo(&mut self, len: u64) {
        self.pending.clear();
        let _ = self.file.set_len(len);
        self.len = len;
    }

    fn roll(&mut self) -> Result<(), StoreError> {
        let id = self.active.id + 1;
        let path = row_path(&self.dir, id);
        self.file = open_append(&path)?;
        self.active = Segment { id, path };
        self.len = 0;
        self.sealed = true;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    let f = OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    }
    Ok(f)
}

pub(super) struct Writer {
    dir: PathBuf,
    config: StoreConfig,
    damage: std::sync::Arc<DamageCounters>,
    logs: HashMap<ProjectId, ProjectLog>,
    /// Sessions with a batch that failed: (project, agent, session).
    failed_sessions: HashSet<(ProjectId, String, u64)>,
    /// Where each project's durable records end, for the sinks.
    commits: std::sync::Arc<Commits>,
    /// Told of every closed segment.
    maint: mpsc::Sender<maint::Job>,
}

impl Writer {
    pub(super) fn new(
        dir: PathBuf,
        config: StoreConfig,
        commits: std::sync::Arc<Commits>,
        damage: std::sync::Arc<DamageCounters>,
        maint: mpsc::Sender<maint::Job>,
    ) -> Self {
        Self {
            dir,
            config,
            damage,
            logs: HashMap::new(),
            failed_sessions: HashSet::new(),
            commits,
            maint,
        }
    }

    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(j) => group.push(j),
                    Err(_) => break,
                }
            }
            self.group(group);
        }
        for log in self.logs.values_mut() {
            log.checkpoint();
        }
    }

    fn log(&mut self, project: &ProjectId) -> Result<&mut ProjectLog, StoreError> {
        if !self.logs.contains_key(project) {
            let log = ProjectLog::open(self.dir.join(project.as_str()), project, &self.damage)?;
            self.commits.opened(project, log.active.id, log.len);
            self.logs.insert(project.clone(), log);
        }
        self.logs.get_mut(project).ok_or(StoreError::Closed)
    }

    /// Writes a group (one `write` per project), syncs each file once,
    /// then answers every job. Once a project's write or sync fails, the
    /// batches that were to be in that segment and every later one of the
    /// project in the group fail: none is acknowledged, and a batch that
    /// did reach the disk (in a segment closed earlier) is not failed, so
    /// no resend is stored twice. A copy of a batch in the same group gets
    /// the original's answer. After a session's batch fails, that
    /// session's later batches fail too, so none is stored ahead of it.
    fn group(&mut self, jobs: Vec<Job>) {
        // Each answer, the segment its record went to, and for a copy of a
        // batch earlier in the group, the original's index.
        let mut answers: Vec<(Result<Appended, StoreError>, u64, Option<usize>)> =
            Vec::with_capacity(jobs.len());
        // Per project touched: the active segment's length before this group.
        let mut touched: HashMap<ProjectId, u64> = HashMap::new();
        // Per project failed: the first segment that lost records, and why.
        let mut failed: HashMap<ProjectId, (u64, StoreError)> = HashMap::new();
        let mut in_group: HashMap<(ProjectId, String, u64), usize> = HashMap::new();
        let segment_bytes = self.config.segment_bytes;
        for job in &jobs {
            let r = &job.record;
            let answer = if let Some((_, e)) = failed.get(&job.project) {
                (Err(e.clone()), u64::MAX, None)
            } else if self.failed_sessions.contains(&(
                job.project.clone(),
                r.agent.clone(),
                r.session,
            )) {
                (Err(StoreError::EarlierFailed), u64::MAX, None)
            } else {
                let key = (job.project.clone(), r.agent.clone(), r.batch.seq);
                match self.log(&job.project) {
                    Err(e) => {
                        failed.insert(job.project.clone(), (0, e.clone()));
                        (Err(e), u64::MAX, None)
                    }
                    Ok(_) if in_group.contains_key(&key) => {
                        (Ok(Appended::Duplicate), u64::MAX, in_group.get(&key).copied())
                    }
                    Ok(log) if log.seen.get(&key.1).is_some_and(|s| s.contains(key.2)) => {
                        (Ok(Appended::Duplicate), u64::MAX, None)
                    }
                    Ok(log) => match append(log, r, segment_bytes, &mut touched, &job.project) {
                        Ok(Ok(segment)) => {
                            in_group.insert(key, answers.len());
                            (Ok(Appended::Stored), segment, None)
                        }
                        Ok(Err(refused)) => (Err(refused), u64::MAX, None),
                        Err((lost, e)) => {
                            failed.insert(job.project.clone(), (lost, e.clone()));
                            (Err(e), u64::MAX, None)
                        }
                    },
                }
            };
            answers.push(answer);
        }
        for (project, start) in touched {
            let Some(log) = self.logs.get_mut(&project) else { continue };
            let path = log.active.path.clone();
            let done = log.flush().and_then(|()| match self.config.fsync {
                Fsync::Group => log.file.sync_data().map_err(io_err(&path)),
                Fsync::Off => Ok(()),
            });
            if let Err(e) = done {
                tracing::error!(%project, error = %e, "write or sync failed; the group's batches are not acknowledged");
                log.undo(start);
                failed.entry(project).or_insert((log.active.id, e));
            }
        }
        let mut finals: Vec<Result<Appended, StoreError>> = Vec::with_capacity(jobs.len());
        let mut stored_values = 0;
        for (job, (result, segment, original)) in jobs.iter().zip(answers) {
            let result = match (result, failed.get(&job.project), original) {
                (Ok(Appended::Stored), Some((lost, e)), _) if segment >= *lost => Err(e.clone()),
                (Ok(Appended::Stored), _, _) => {
                    if let Some(log) = self.logs.get_mut(&job.project) {
                        log.seen
                            .entry(job.record.agent.clone())
                            .or_default()
                            .insert(job.record.batch.seq);
                    }
                    stored_values += super::numeric_values(&job.record);
                    Ok(Appended::Stored)
                }
                (Ok(Appended::Duplicate), _, Some(i)) => match finals.get(i) {
                    Some(Err(e)) => Err(e.clone()),
                    _ => Ok(Appended::Duplicate),
                },
                (other, _, _) => other,
            };
            if result.is_err() {
                self.remember_failed(job);
            }
            finals.push(result);
        }
        self.publish(&jobs, stored_values);
        // Before any answer: once a batch is acknowledged, the segments
        // closed before it are in the maintenance thread's queue.
        for (project, log) in &mut self.logs {
            if std::mem::take(&mut log.sealed) {
                log.checkpoint();
                let _ = self.maint.send(maint::Job::Sealed(project.clone()));
            }
        }
        for (job, result) in jobs.into_iter().zip(finals) {
            let _ = job.reply.send(result);
        }
    }

    /// Tells readers where the logs of the group's projects end now (what
    /// a failed write left was cut back above).
    fn publish(&self, jobs: &[Job], values: u64) {
        let mut ends: HashMap<&ProjectId, (u64, u64)> = HashMap::new();
        for job in jobs {
            if let Some(log) = self.logs.get(&job.project) {
                ends.insert(&job.project, (log.active.id, log.len));
            }
        }
        let ends: Vec<_> = ends.into_iter().map(|(p, (s, o))| (p.clone(), s, o)).collect();
        self.commits.committed(&ends, values);
    }

    /// Notes that a batch of `job`'s session failed (bounded: sessions of
    /// failures long past are forgotten first).
    fn remember_failed(&mut self, job: &Job) {
        if self.failed_sessions.len() >= MAX_FAILED_SESSIONS {
            self.failed_sessions.clear();
        }
        let r = &job.record;
        self.failed_sessions.insert((job.project.clone(), r.agent.clone(), r.session));
    }
}

/// Adds one record to `log`'s pending group, first closing the active
/// segment durably and rolling to a new one if it is full. Returns the
/// segment the record goes to, or why this record alone is refused; on
/// failure, the first segment whose records of this group are lost.
fn append(
    log: &mut ProjectLog,
    record: &StoredBatch,
    segment_bytes: u64,
    touched: &mut HashMap<ProjectId, u64>,
    project: &ProjectId,
) -> Result<Result<u64, StoreError>, (u64, StoreError)> {
    if log.len > 0 && log.len >= segment_bytes {
        let closing = log.active.id;
        if let Some(start) = touched.remove(project) {
            let path = log.active.path.clone();
            log.flush().and_then(|()| log.file.sync_data().map_err(io_err(&path))).map_err(
                |e| {
                    log.undo(start);
                    (closing, e)
                },
            )?;
        }
        // The closed segment is durable: only what follows is lost.
        log.roll().map_err(|e| (closing + 1, e))?;
    }
    let before = log.pending.len();
    record::append_with(&mut log.pending, |out| super::format::encode(record, out));
    let size = log.pending.len() - before;
    if size - record::HEADER > MAX_RECORD as usize {
        // It could be written but never read back.
        log.pending.truncate(before);
        return Ok(Err(StoreError::TooLarge(size)));
    }
    touched.entry(project.clone()).or_insert(log.len);
    log.len += size as u64;
    Ok(Ok(log.active.id))
}
