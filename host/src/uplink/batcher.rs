//! Turns the collectors' samples into batches and writes each to the spool
//! before anything is sent: a batch is formed every `interval` (by default
//! [`BATCH_INTERVAL`]), or as soon as [`MAX_BATCH_SAMPLES`] are waiting.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use wasmtap_protocol::message::{Batch, Sample};

use crate::spool::Spool;
use crate::stats::AgentStats;

/// How long samples wait to be batched, unless configured.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// A batch is formed early once this many samples wait.
pub const MAX_BATCH_SAMPLES: usize = 2_000;

/// The batcher's inputs and outputs.
#[derive(Debug)]
pub struct Batcher {
    /// Samples from the collectors; the batcher ends when every sender is gone.
    pub input: mpsc::Receiver<Vec<Sample>>,
    /// Where batches go.
    pub spool: Arc<Mutex<Spool>>,
    /// Woken after every batch written.
    pub written: Arc<Notify>,
    /// Counters.
    pub stats: Arc<AgentStats>,
    /// How long samples wait to be batched.
    pub interval: Duration,
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Batcher {
    /// Batches until the input closes, then writes what is left and returns.
    pub async fn run(mut self) {
        let mut waiting: Vec<Sample> = Vec::new();
        // The timer runs only while samples wait: the first one to arrive
        // sets when the batch closes, and an agent with nothing to send
        // never wakes for it.
        let mut closes_at: Option<tokio::time::Instant> = None;
        loop {
            let closed = tokio::select! {
                got = self.input.recv() => match got {
                    Some(samples) => {
                        AgentStats::add(&self.stats.queued_samples, samples.len() as u64);
                        waiting.extend(samples);
                        if waiting.len() < MAX_BATCH_SAMPLES {
                            closes_at.get_or_insert_with(|| tokio::time::Instant::now() + self.interval);
                            continue;
                        }
                        false
                    }
                    None => true,
                },
                () = sleep_until_some(closes_at) => false,
            };
            closes_at = None;
            while !waiting.is_empty() {
                let rest = waiting.split_off(waiting.len().min(MAX_BATCH_SAMPLES));
                let batch = std::mem::replace(&mut waiting, rest);
                self.write(batch).await;
            }
            if closed {
                tracing::debug!("batcher: input closed, everything written");
                return;
            }
        }
    }

    async fn write(&self, samples: Vec<Sample>) {
        let n = samples.len() as u64;
        let spool = self.spool.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = spool.next_seq();
            spool.append(Batch { seq, samples }).map(|()| seq)
        })
        .await;
        self.stats.queued_samples.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(Ok(seq)) => {
                tracing::trace!(seq, samples = n, "batch spooled");
                self.written.notify_one();
            }
            Ok(Err(e)) => {
                AgentStats::add(&self.stats.lost_samples, n);
                tracing::error!(error = %e, lost_samples = n, "cannot write a batch to the spool; its samples are lost");
            }
            Err(e) => {
                AgentStats::add(&self.stats.lost_samples, n);
                tracing::error!(error = %e, lost_samples = n, "spool writer failed; its samples are lost");
            }
        }
    }
}
