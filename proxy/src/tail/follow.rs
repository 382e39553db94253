//! Durable delivery: a [`Follower`] reads stored records from its
//! [`Tail`], turns them into items ([`Deliver::items`]), sends them in
//! batches ([`Deliver::send`]) and saves its position only once the backend
//! took a batch. Before a batch goes out, its end is saved as `sending`: a
//! batch that may have reached the backend before a crash is resent alone,
//! with the same items, so a backend that refuses repeated samples refuses
//! only repeated ones. Failed sends are retried with exponential backoff
//! and jitter (a server's `Retry-After` is obeyed) for as long as it takes;
//! the store, not memory, holds what waits.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wasmtap_protocol::access_key::ProjectId;

use super::batch::{Queue, Taken};
use super::progress::Progress;
use super::saved::{At, PositionFile, Saved};
use super::{Read, Tail, TailError};
use crate::store::{Snapshot, Store, StoredBatch, numeric_values};

/// Bytes of records read from the store at a time.
const READ_BUDGET: u64 = 1 << 20;
/// Longest a follower waits without looking at the store again.
const RESCAN: Duration = Duration::from_secs(5);
/// Longest `Retry-After` obeyed; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What a batch's send came to.
#[derive(Debug)]
pub enum Sent {
    /// The backend took it.
    Accepted,
    /// The backend refused it for good (counted and logged by the sink): it is not resent.
    Refused,
    /// Try again: why, and after how long if the backend said.
    Retry(String, Option<Duration>),
}

/// A backend a [`Follower`] delivers to.
pub trait Deliver: Send + 'static {
    /// What is sent (one value, for remote write).
    type Item: Clone + Send + Sync + 'static;
    /// The items of `record`, always the same ones in the same order.
    fn items(&self, project: &ProjectId, record: &StoredBatch, out: &mut Vec<Self::Item>);
    /// Sends `items` once.
    fn send(&mut self, items: &[Self::Item]) -> impl Future<Output = Sent> + Send;
}

/// How a follower batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Items per batch at most (a record's items may span batches).
    pub batch_size: usize,
    /// How long a partial batch waits for more.
    pub batch_wait: Duration,
    /// First retry delay; doubles per failure.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

/// One durable sink's delivery loop; see the module docs.
#[derive(Debug)]
pub struct Follower<D: Deliver> {
    name: String,
    backend: D,
    settings: Settings,
    tail: Option<Tail>,
    file: Option<PositionFile>,
    saved: Saved,
    acked: BTreeMap<ProjectId, At>,
    /// `acked` moved since the last save (the next save, before the next
    /// batch goes out or when the follower has nothing to do, records it).
    dirty: bool,
    queue: Queue<D::Item>,
    /// When the oldest item not yet in a batch was read.
    waiting_since: Option<tokio::time::Instant>,
    progress: Arc<Progress>,
    signal: watch::Receiver<u64>,
    /// What [`count_backlog`] needs, until `run` starts it.
    backlog: Option<Backlog>,
}

/// The start-up backlog to count: a reader at the delivered positions and
/// the marks (and values count) when the follower opened.
#[derive(Debug)]
struct Backlog {
    tail: Tail,
    snapshot: Snapshot,
    acked: BTreeMap<ProjectId, At>,
}

fn by_name(map: &BTreeMap<ProjectId, At>) -> BTreeMap<String, At> {
    map.iter().map(|(p, at)| (p.to_string(), *at)).collect()
}

fn by_project(map: &BTreeMap<String, At>) -> BTreeMap<ProjectId, At> {
    map.iter().filter_map(|(p, at)| Some((ProjectId::new(p).ok()?, *at))).collect()
}

/// Sends `items` to `backend` (the sink `name`, for logs) until it takes
/// or refuses them: failed sends are retried with exponential backoff and
/// jitter, a server's `Retry-After` obeyed (never less than the backoff,
/// at most [`MAX_RETRY_AFTER`]).
pub async fn send_until_taken<D: Deliver>(
    backend: &mut D,
    name: &str,
    items: &[D::Item],
    settings: Settings,
) {
    let mut backoff = settings.min_backoff;
    let mut failures = 0u32;
    loop {
        match backend.send(items).await {
            Sent::Accepted | Sent::Refused => {
                if failures > 0 {
                    tracing::info!(sink = %name, failures, "delivery recovered");
                }
                return;
            }
            Sent::Retry(why, asked) => {
                failures += 1;
                // The server's wait, but never less than the backoff.
                let delay = asked.map_or_else(
                    || jitter(backoff),
                    |d| d.max(jitter(backoff)).min(MAX_RETRY_AFTER),
                );
                if failures == 1 || backoff == settings.max_backoff {
                    tracing::warn!(sink = %name, error = %why, failures, retry_in = ?delay, "delivery failed; retrying");
                }
                tokio::time::sleep(delay).await;
                backoff = backoff.saturating_mul(2).min(settings.max_backoff);
            }
        }
    }
}

/// A delay between `backoff / 2` and `backoff`, uniformly.
fn jitter(backoff: Duration) -> Duration {
    let half = backoff / 2;
    let extra = rand::random_range(0..=u64::try_from(half.as_micros()).unwrap_or(u64::MAX));
    half.saturating_add(Duration::from_micros(extra))
}

impl<D: Deliver> Follower<D> {
    /// A follower of `store` for the sink `name`, whose position file is
    /// `<data_dir>/_sinks/<file>.pos`, reporting to `progress`. A sink
    /// without a position file starts with what is stored from now on.
    pub fn open(
        store: &Store,
        name: &str,
        file: &str,
        backend: D,
        settings: Settings,
        progress: Arc<Progress>,
    ) -> Result<Self, TailError> {
        let initial = || {
            let tail = Tail::at_end(store)?;
            let acked =
                tail.positions().iter().map(|(p, pos)| (p.to_string(), At { pos: *pos, skip: 0 }));
            Ok(Saved { sink: name.to_owned(), acked: acked.collect(), sending: None })
        };
        let (positions, saved) = PositionFile::open(store.dir(), file, initial)?;
        let acked = by_project(&saved.acked);
        let positions_of = |acked: &BTreeMap<ProjectId, At>| {
            acked.iter().map(|(p, at)| (p.clone(), at.pos)).collect()
        };
        let tail = Tail::new(store, positions_of(&acked));
        let backlog = Backlog {
            tail: Tail::new(store, positions_of(&acked)),
            snapshot: store.commits().snapshot(),
            acked: acked.clone(),
        };
        let follower = Self {
            name: name.to_owned(),
            backend,
            settings,
            tail: Some(tail),
            file: Some(positions),
            saved,
            acked,
            dirty: false,
            queue: Queue::default(),
            waiting_since: None,
            progress,
            signal: store.commits().subscribe(),
            backlog: Some(backlog),
        };
        Ok(follower)
    }

    /// Reads records until `want` items wait or the store has no more; the
    /// last read, or `None` when reading failed.
    async fn fill(&mut self, want: usize, until: Option<&BTreeMap<ProjectId, At>>) -> Option<Read> {
        loop {
            let mut tail = self.tail.take()?;
            let joined = tokio::task::spawn_blocking(move || {
                let read = tail.read(READ_BUDGET);
                (tail, read)
            })
            .await;
            let Ok((tail, read)) = joined else {
                tracing::error!(sink = %self.name, "the store reader stopped");
                return None;
            };
            self.progress.skipped(&tail.skipped);
            let covered = |p: &ProjectId, at: &At| {
                tail.positions()
                    .get(p)
                    .is_some_and(|&pos| pos > at.pos || (pos == at.pos && at.skip == 0))
            };
            let covered = until.is_some_and(|u| u.iter().all(|(p, at)| covered(p, at)));
            self.tail = Some(tail);
            let read = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(sink = %self.name, error = %e, "cannot read the store; trying again");
                    return None;
                }
            };
            for e in &read.entries {
                let mut items = Vec::new();
                self.backend.items(&e.project, &e.record, &mut items);
                let at = self.acked.get(&e.project).filter(|at| at.pos == e.start);
                let done = at.map_or(0, |at| {
                    usize::try_from(at.skip).unwrap_or(usize::MAX).min(items.len())
                });
                if items.len() > done && self.waiting_since.is_none() {
                    self.waiting_since = Some(tokio::time::Instant::now());
                }
                self.queue.push(e, items, done);
            }
            self.progress.oldest(self.queue.oldest_ms());
            if read.complete || read.entries.is_empty() || covered || self.queue.untaken() >= want {
                return Some(read);
            }
        }
    }

    /// Marks a delivered batch done and moves the positions.
    fn commit(&mut self, taken: &Taken<D::Item>) {
        self.queue.done(taken);
        self.acked.extend(taken.end.iter().map(|(p, at)| (p.clone(), *at)));
        self.progress.delivered(taken.items.len());
        self.progress.oldest(self.queue.oldest_ms());
        self.waiting_since = (self.queue.untaken() > 0).then(tokio::time::Instant::now);
    }

    /// Saves the positions (and the batch in flight); logs a failure.
    async fn save(&mut self) -> bool {
        self.saved.acked = by_name(&self.acked);
        let Some(mut file) = self.file.take() else { return false };
        let saved = self.saved.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let r = file.save(&saved);
            (file, r)
        })
        .await;
        let Ok((file, result)) = joined else {
            tracing::error!(sink = %self.name, "the sink's position file was lost; delivery stops");
            return false;
        };
        self.file = Some(file);
        match result {
            Ok(()) => {
                self.dirty = false;
                true
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot save the sink's position");
                false
            }
        }
    }

    /// Delivers one batch (up to `max` items, within `bound`), retrying
    /// until the backend answers for good.
    async fn deliver(&mut self, max: usize, bound: Option<&BTreeMap<ProjectId, At>>) {
        let taken = self.queue.take(max, bound);
        if !taken.items.is_empty() {
            let mut end = self.acked.clone();
            end.extend(taken.end.iter().map(|(p, at)| (p.clone(), *at)));
            self.saved.sending = Some(by_name(&end));
            let mut backoff = self.settings.min_backoff;
            // Nothing goes out before its end is on disk.
            while !self.save().await {
                if self.file.is_none() {
                    return;
                }
                tokio::time::sleep(jitter(backoff)).await;
                backoff = backoff.saturating_mul(2).min(self.settings.max_backoff);
            }
            self.send(&taken.items).await;
            self.saved.sending = None;
        }
        self.commit(&taken);
        self.dirty = true;
    }

    async fn send(&mut self, items: &[D::Item]) {
        send_until_taken(&mut self.backend, &self.name, items, self.settings).await;
    }

    /// Delivers until `stop` flips, then until everything the store holds
    /// is delivered (the caller bounds how long that may take).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if let Some(b) = self.backlog.take() {
            let progress = self.progress.clone();
            tokio::task::spawn_blocking(move || count_backlog(b, &progress));
        }
        if let Some(sending) = self.saved.sending.as_ref().map(by_project) {
            tracing::info!(sink = %self.name, "resending the batch in flight when the proxy stopped");
            self.fill(usize::MAX, Some(&sending)).await;
            self.deliver(usize::MAX, Some(&sending)).await;
        }
        loop {
            let stopping = *stop.borrow_and_update();
            let batch = self.settings.batch_size;
            let Some(read) = self.fill(batch, None).await else {
                tokio::select! {
                    () = tokio::time::sleep(RESCAN) => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let untaken = self.queue.untaken();
            let due = self.waiting_since.is_some_and(|t| t.elapsed() >= self.settings.batch_wait);
            if untaken >= batch || (untaken > 0 && (stopping || due)) {
                self.deliver(batch, None).await;
                continue;
            }
            if untaken == 0 && !self.queue.is_empty() {
                // Records without items: only the positions move.
                self.deliver(batch, None).await;
            }
            if untaken == 0 && !read.complete {
                continue;
            }
            if self.dirty {
                self.save().await;
            }
            if untaken == 0 {
                self.progress.caught_up(read.committed_values);
                if stopping {
                    return;
                }
            }
            let wait = self
                .waiting_since
                .map_or(RESCAN, |t| self.settings.batch_wait.saturating_sub(t.elapsed()));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = self.signal.changed() => {}
                _ = stop.changed(), if !stopping => {}
            }
        }
    }
}

/// Counts the values stored after the delivered positions when the
/// follower opened (blocking; run off the async threads), for [`Progress`].
fn count_backlog(mut b: Backlog, progress: &Progress) {
    let mut values = 0u64;
    loop {
        let Ok(read) = b.tail.read_until(&b.snapshot.marks, 8 * READ_BUDGET) else { return };
        for e in &read.entries {
            let at = b.acked.get(&e.project).filter(|at| at.pos == e.start);
            values += numeric_values(&e.record).saturating_sub(at.map_or(0, |at| at.skip));
        }
        if read.complete || read.entries.is_empty() {
            break;
        }
    }
    progress.backlog(values, b.snapshot.values);
}
