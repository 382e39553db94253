//! In-memory consumers fed from the store's tail: the `/metrics` table
//! and `run --print` are [`Sink`]s handed every record as soon as the
//! writer commits it, with a position kept in memory only (the table is
//! rebuilt from the store at start instead).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Tail;
use crate::sink::Sink;
use crate::store::Commits;

/// Bytes of records read from the store at a time.
const READ_BUDGET: u64 = 4 << 20;
/// Longest the loop waits without looking at the store again.
const RESCAN: Duration = Duration::from_secs(5);

/// Hands every record `tail` reads to `sink`, as the store commits them,
/// until `stop` flips; then once more up to what is stored.
pub async fn run(
    mut tail: Tail,
    sink: Arc<dyn Sink>,
    commits: Arc<Commits>,
    mut stop: watch::Receiver<bool>,
) {
    let mut signal = commits.subscribe();
    loop {
        let stopping = *stop.borrow_and_update();
        loop {
            let joined = tokio::task::spawn_blocking(move || {
                let read = tail.read(READ_BUDGET);
                (tail, read)
            })
            .await;
            let Ok((back, read)) = joined else {
                tracing::error!(sink = ?sink, "the store reader stopped");
                return;
            };
            tail = back;
            match read {
                Ok(read) => {
                    for e in &read.entries {
                        sink.accept(e.project.as_str(), &e.record);
                    }
                    if read.complete || read.entries.is_empty() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(sink = ?sink, error = %e, "cannot read the store; trying again");
                    break;
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = signal.changed() => {}
            _ = stop.changed() => {}
            () = tokio::time::sleep(RESCAN) => {}
        }
    }
}
