//! The durable consumer `store-<name>` that copies the cluster's batches
//! into this proxy's embedded store.
//!
//! Messages are handed to the store as they arrive (many wait for one
//! group commit) and acknowledged to JetStream in order once the store
//! has answered, so a proxy killed at any moment gets again whatever it
//! had not stored. The store deduplicates by agent and batch sequence, so
//! a batch published twice (through two proxies after the duplicate
//! window, or redelivered) is kept once. Batches this proxy published
//! itself are not decoded again: the store has them from memory ([`own`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{Message, consumer::pull};
use futures_util::StreamExt as _;
use tokio::sync::watch;

use super::{Cluster, own, subject};
use crate::store::{Appended, Receipt, Store, StoreError};

/// Most messages handed to the store and not yet acknowledged to JetStream.
const MAX_PENDING: usize = 256;
/// Wait before trying again after the consumer failed.
const RETRY: Duration = Duration::from_secs(1);
/// How long JetStream waits for an acknowledgement before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// Copies the stream into `store` until `shutdown` flips.
pub async fn run(cluster: Cluster, store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            r = follow(&cluster, &store) => r,
            _ = shutdown.changed() => return,
        };
        if let Err(e) = result {
            cluster.stats().confirming.store(false, Ordering::Relaxed);
            failures += 1;
            // Once per outage, not once a second.
            if failures == 1 {
                tracing::warn!(error = %e, "cannot read the cluster's stream; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Reads the stream until it fails.
async fn follow(cluster: &Cluster, store: &Store) -> Result<(), String> {
    let config = cluster.config();
    let stream = cluster.stream().await?;
    cluster.stats().confirming.store(true, Ordering::Relaxed);
    let durable = format!("store-{}", config.name);
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                filter_subject: subject::all_batches(&config.stream),
                max_ack_pending: i64::try_from(MAX_PENDING * 4).unwrap_or(i64::MAX),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    tracing::info!(consumer = %durable, "copying the cluster's batches into the store");
    let mut pending: VecDeque<(Message, Handed)> = VecDeque::new();
    loop {
        let room = pending.len() < MAX_PENDING;
        let front_ready = async {
            match pending.front_mut() {
                Some((message, handed)) => {
                    Some(handed.settle(config.stream.as_str(), store, message).await)
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            answer = front_ready => {
                let Some((message, _)) = pending.pop_front() else { continue };
                match answer {
                    Some(Ok(appended)) => {
                        if appended == Appended::Stored {
                            cluster.stats().fed.fetch_add(1, Ordering::Relaxed);
                        }
                        message.ack().await.map_err(|e| e.to_string())?;
                    }
                    Some(Err(e)) => return Err(format!("the store refused a batch: {e}")),
                    None => {}
                }
            }
            next = messages.next(), if room => {
                let Some(next) = next else { return Err("the consumer's messages ended".into()) };
                let message = next.map_err(|e| e.to_string())?;
                let origin = message.headers.as_ref().and_then(|h| h.get(own::ORIGIN)).map(|v| v.as_str());
                let handed = match cluster.own().and_then(|own| own.take(origin)) {
                    Some(slot) => Handed::Own(slot),
                    None => hand_over(config.stream.as_str(), store, &message),
                };
                pending.push_back((message, handed));
            }
        }
    }
}

/// Where a message read from the stream stands.
enum Handed {
    /// Handed to the store, which answers through the receipt.
    Store(Receipt),
    /// Published by this process: the store gets it from memory (see
    /// [`own`]), or the slot says to decode it after all.
    Own(own::Slot),
    /// Not a batch this proxy can read (logged); acknowledged so that it
    /// does not come back.
    Skipped,
}

impl Handed {
    /// The store's answer for `message`. Cancel-safe: what was handed on
    /// is kept in `self` across every wait.
    async fn settle(
        &mut self,
        stream: &str,
        store: &Store,
        message: &Message,
    ) -> Result<Appended, StoreError> {
        loop {
            match self {
                Self::Store(receipt) => return receipt.await.unwrap_or(Err(StoreError::Closed)),
                Self::Own(slot) => {
                    *self = match slot.await {
                        Ok(Some(receipt)) => Self::Store(receipt),
                        Ok(None) | Err(_) => hand_over(stream, store, message),
                    };
                }
                Self::Skipped => return Ok(Appended::Duplicate),
            }
        }
    }
}

/// Decodes `message` and hands it to the store.
fn hand_over(stream: &str, store: &Store, message: &Message) -> Handed {
    let Some(project) = subject::project_of(stream, &message.subject) else {
        tracing::warn!(subject = %message.subject, "a message in the stream is not a batch; skipped");
        return Handed::Skipped;
    };
    match super::payload::decode(message.headers.as_ref(), &message.payload) {
        Ok(record) => Handed::Store(store.submit(&project, Arc::new(record))),
        Err(e) => {
            tracing::error!(subject = %message.subject, error = %e, "a batch in the stream cannot be read; skipped");
            Handed::Skipped
        }
    }
}
