//! One session's batches handed to the store and not yet acknowledged.
//!
//! A session keeps reading while its batches wait for the store's group
//! commit, so one `fsync` covers the batches of many sessions and many
//! batches of one session. Answers are taken in submission order, and an
//! acknowledgement goes out only for a batch the store has answered.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::store::{Appended, Receipt, StoreError, StoredBatch};

/// Most batches one session has waiting for the store; reading pauses at
/// it (an agent keeps at most 32 unacknowledged).
pub const MAX_INFLIGHT: usize = 32;
/// Most values one session has waiting for the store (decoded, a value
/// takes about 50 bytes); reading pauses at it.
pub const MAX_INFLIGHT_VALUES: usize = 1 << 20;

/// A batch waiting for the store.
#[derive(Debug)]
struct Waiting {
    record: Arc<StoredBatch>,
    receipt: Receipt,
    /// Values in `record`, counted once.
    values: usize,
}

/// The store's answer for one batch.
#[derive(Debug)]
pub struct Settled {
    /// The batch.
    pub record: Arc<StoredBatch>,
    /// Stored, duplicate, or the write failed.
    pub result: Result<Appended, StoreError>,
}

/// Batches submitted to the store, oldest first.
#[derive(Debug, Default)]
pub struct Inflight {
    queue: VecDeque<Waiting>,
    /// Values in the queued batches.
    values: usize,
}

fn values(record: &StoredBatch) -> usize {
    record.batch.samples.iter().map(|s| s.values.len()).sum()
}

impl Inflight {
    /// Records a submitted batch.
    pub fn push(&mut self, record: Arc<StoredBatch>, receipt: Receipt) {
        let values = values(&record);
        self.values += values;
        self.queue.push_back(Waiting { record, receipt, values });
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether reading should pause until the store answers.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= MAX_INFLIGHT || self.values >= MAX_INFLIGHT_VALUES
    }

    fn pop(&mut self) -> Option<Waiting> {
        let w = self.queue.pop_front()?;
        self.values -= w.values;
        Some(w)
    }

    /// Waits for the oldest batch's answer, then moves it and every later
    /// batch already answered into `out`. Never completes while nothing is
    /// in flight. Cancel-safe: nothing is taken before the answer is in.
    pub async fn settled(&mut self, out: &mut Vec<Settled>) {
        let Some(front) = self.queue.front_mut() else {
            return std::future::pending().await;
        };
        let first = (&mut front.receipt).await.unwrap_or(Err(StoreError::Closed));
        let Some(w) = self.pop() else { return };
        out.push(Settled { record: w.record, result: first });
        while let Some(front) = self.queue.front_mut() {
            let result = match front.receipt.try_recv() {
                Ok(r) => r,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => break,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => Err(StoreError::Closed),
            };
            let Some(w) = self.pop() else { break };
            out.push(Settled { record: w.record, result });
        }
    }

    /// Waits for every batch still in flight (the session is ending).
    pub async fn drain(&mut self) -> Vec<Settled> {
        let mut out = Vec::with_capacity(self.queue.len());
        self.values = 0;
        for w in self.queue.drain(..) {
            let result = w.receipt.await.unwrap_or(Err(StoreError::Closed));
            out.push(Settled { record: w.record, result });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;
    use wasmtap_protocol::message::Batch;

    fn record(seq: u64) -> Arc<StoredBatch> {
        Arc::new(StoredBatch {
            agent: "a".into(),
            session: 1,
            received_ms: 0,
            batch: Batch { seq, samples: Vec::new() },
        })
    }

    fn seqs(settled: &[Settled]) -> Vec<u64> {
        settled.iter().map(|s| s.record.batch.seq).collect()
    }

    #[tokio::test]
    async fn answers_come_out_in_submission_order_and_together_when_ready() {
        let mut inflight = Inflight::default();
        let mut replies = Vec::new();
        for seq in 1..=3 {
            let (tx, rx) = oneshot::channel();
            inflight.push(record(seq), rx);
            replies.push(tx);
        }
        let mut replies = replies.into_iter();
        let (r1, r2, r3) = (replies.next(), replies.next(), replies.next());
        // The third is answered first: nothing may come out before the first.
        r3.map(|t| t.send(Ok(Appended::Stored)));
        let mut out = Vec::new();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), inflight.settled(&mut out));
        assert!(waited.await.is_err(), "settled before the oldest batch was answered");
        assert!(out.is_empty());
        r2.map(|t| t.send(Ok(Appended::Duplicate)));
        r1.map(|t| t.send(Ok(Appended::Stored)));
        inflight.settled(&mut out).await;
        assert_eq!(seqs(&out), [1, 2, 3]);
        assert!(matches!(out[1].result, Ok(Appended::Duplicate)));
    }

    #[tokio::test]
    async fn a_vanished_writer_is_a_closed_store_and_drain_waits_for_all() {
        let mut inflight = Inflight::default();
        let (tx1, rx1) = oneshot::channel::<Result<Appended, StoreError>>();
        let (tx2, rx2) = oneshot::channel();
        inflight.push(record(1), rx1);
        inflight.push(record(2), rx2);
        drop(tx1);
        let later = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let _ = tx2.send(Ok(Appended::Stored));
        });
        let out = inflight.drain().await;
        later.await.ok();
        assert_eq!(seqs(&out), [1, 2]);
        assert!(matches!(out[0].result, Err(StoreError::Closed)));
        assert!(matches!(out[1].result, Ok(Appended::Stored)));
    }

    #[test]
    fn full_at_the_value_budget_and_free_again_once_answered() {
        let mut inflight = Inflight::default();
        let (tx, rx) = oneshot::channel();
        let mut big = StoredBatch::clone(&record(1));
        big.batch.samples = vec![wasmtap_protocol::message::Sample {
            collector: "c".into(),
            time_ms: 0,
            labels: Vec::new().into(),
            values: vec![
                ("v".into(), wasmtap_protocol::message::Value::Gauge(0.0));
                MAX_INFLIGHT_VALUES
            ],
        }];
        inflight.push(Arc::new(big), rx);
        assert!(inflight.is_full(), "one batch of the whole budget");
        let _ = tx.send(Ok(Appended::Stored));
        let mut out = Vec::new();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(inflight.settled(&mut out));
        assert!(!inflight.is_full());
    }

    #[test]
    fn full_at_the_limit() {
        let mut inflight = Inflight::default();
        let mut keep = Vec::new();
        for seq in 0..MAX_INFLIGHT as u64 {
            assert!(!inflight.is_full());
            let (tx, rx) = oneshot::channel();
            keep.push(tx);
            inflight.push(record(seq), rx);
        }
        assert!(inflight.is_full());
    }
}
