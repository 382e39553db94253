//! Remote write under `[cluster]`: each endpoint is fed once for the
//! whole cluster, from the stream, by whichever proxy holds its lease
//! ([`super::lease`]).
//!
//! The holder reads the stream in order from the endpoint's position (the
//! stream sequence of the last batch the endpoint took, kept as the one
//! message of subject `<stream>.positions.remote-write-<id>` in the stream
//! `<stream>-positions`, the id a checksum of the URL as for a single
//! proxy's position file). It
//! groups up to [`GROUP`] batches, sends their values in requests of
//! `batch_size`, retried as a single proxy's sink retries them
//! ([`send_until_taken`]) for as long as it takes, and moves
//! the position once the endpoint took the group. A holder that dies
//! mid-way leaves the position before the group: the next holder sends
//! the group again, in order (the backend gets some samples twice, which
//! remote write accepts). A newly configured endpoint starts with the
//! batches published since the first proxy configured with it started
//! ([`mark_start`]).

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures_util::StreamExt as _;

use super::{Cluster, subject};
use crate::remote_write::{Endpoint, Point};
use crate::tail::follow::{Deliver as _, Settings, send_until_taken};

/// Most batches sent as one group.
const GROUP: usize = 256;

/// Delivers to `backend` (whose position is kept under `key`) while this
/// proxy holds its lease; returns when the stream cannot be read.
pub async fn deliver(cluster: &Cluster, key: &str, backend: &mut Endpoint, settings: Settings) {
    if let Err(e) = follow(cluster, key, backend, settings).await {
        tracing::warn!(endpoint = key, error = %e, "remote write from the cluster's stream stopped; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(
    cluster: &Cluster,
    key: &str,
    backend: &mut Endpoint,
    settings: Settings,
) -> Result<(), String> {
    let stream_name = cluster.config().stream.clone();
    let stream = cluster.stream().await?;
    let positions = super::lease::register(cluster, "positions", Duration::ZERO).await?;
    let position = position_subject(cluster, key);
    // A new endpoint's start is marked by the first proxy configured with it.
    let at = loop {
        if let Some(at) = saved(&positions, &position).await {
            break at;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let deliver_policy = match at {
        Position::After(seq) => DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
        Position::Since(ms) => {
            let nanos = i128::from(ms) * 1_000_000;
            let start_time = async_nats::datetime::from_nanos(nanos).map_err(|e| e.to_string())?;
            DeliverPolicy::ByStartTime { start_time }
        }
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject::all_batches(&stream_name),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let wait = settings.batch_wait.max(Duration::from_millis(50));
    let mut items: Vec<Point> = Vec::new();
    loop {
        // The first batch of a group is waited for; the rest until `wait` passed.
        let mut group = 0;
        let mut last = None;
        let mut deadline = None;
        while group < GROUP {
            let next = match deadline {
                None => messages.next().await,
                Some(d) => match tokio::time::timeout_at(d, messages.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let message = next.ok_or("the stream's messages ended")?.map_err(|e| e.to_string())?;
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + wait);
            let project = subject::project_of(&stream_name, &message.subject);
            match (project, super::payload::decode(message.headers.as_ref(), &message.payload)) {
                (Some(project), Ok(record)) => backend.items(&project, &record, &mut items),
                _ => {
                    tracing::warn!(subject = %message.subject, "a message in the stream is not a batch; not sent")
                }
            }
            last = Some(message.info().map_err(|e| e.to_string())?.stream_sequence);
            group += 1;
        }
        for chunk in items.chunks(settings.batch_size.max(1)) {
            send_until_taken(backend, key, chunk, settings).await;
        }
        items.clear();
        if let Some(seq) = last {
            save(cluster, &position, seq).await?;
        }
    }
}

fn position_subject(cluster: &Cluster, key: &str) -> String {
    format!("{}.positions.{key}", cluster.config().stream)
}

/// Where an endpoint stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// It took every batch up to this stream sequence (saved as the number).
    After(u64),
    /// Newly configured: batches published since this time, ms since the
    /// epoch (saved as `t` and the number).
    Since(u64),
}

impl Position {
    fn parse(text: &str) -> Option<Self> {
        match text.strip_prefix('t') {
            Some(ms) => ms.parse().ok().map(Self::Since),
            None => text.parse().ok().map(Self::After),
        }
    }
}

/// The position saved under `subject`, if any.
async fn saved(
    positions: &async_nats::jetstream::stream::Stream,
    subject: &str,
) -> Option<Position> {
    let message = positions.get_last_raw_message_by_subject(subject).await.ok()?;
    Position::parse(std::str::from_utf8(&message.payload).ok()?)
}

/// How far before its proxy's start a new endpoint begins (the proxy's
/// clock and the NATS servers' may differ a little).
const START_MARGIN_MS: u64 = 60_000;

/// Marks where the endpoint of `key` starts if no proxy did before: with
/// the batches published since `started_ms` (when this proxy started),
/// less a minute. The first mark wins. Tries until JetStream answers or
/// `shutdown` flips.
pub async fn mark_start(
    cluster: Cluster,
    key: String,
    started_ms: u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let since = started_ms.saturating_sub(START_MARGIN_MS);
    loop {
        match try_mark(&cluster, &key, since).await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(endpoint = %key, error = %e, "cannot mark the endpoint's start yet")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn try_mark(cluster: &Cluster, key: &str, since: u64) -> Result<(), String> {
    let positions = super::lease::register(cluster, "positions", Duration::ZERO).await?;
    let subject = position_subject(cluster, key);
    if saved(&positions, &subject).await.is_some() {
        return Ok(());
    }
    match super::lease::publish_if(cluster, &subject, format!("t{since}"), 0).await {
        Ok(_) => Ok(()),
        // Another proxy marked it first.
        Err(_) if saved(&positions, &subject).await.is_some() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Keeps `seq` as the position under `subject`.
async fn save(cluster: &Cluster, subject: &str, seq: u64) -> Result<(), String> {
    let js = cluster.jetstream();
    let confirm = js.publish(subject.to_owned(), seq.to_string().into()).await;
    confirm.map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn positions_read_back() {
        assert_eq!(Position::parse("42"), Some(Position::After(42)));
        assert_eq!(Position::parse("t1700000000000"), Some(Position::Since(1_700_000_000_000)));
        for bad in ["", "t", "x1", "-1", "t-5"] {
            assert_eq!(Position::parse(bad), None, "{bad}");
        }
    }
}
