//! Work that one proxy of the cluster does at a time: a lease, held as the
//! one message of subject `<stream>.lease.<key>` in the stream
//! `<stream>-leases`, whose messages expire [`TTL`] after they were written.
//!
//! A proxy takes a lease by publishing to its subject on the condition
//! that the subject holds no message (which fails while another proxy
//! holds it), renews it every third of the TTL by publishing on the
//! condition that its own message is still the last, and stops the work as
//! soon as a renewal fails. A proxy that dies lets the lease expire, and
//! another takes it within about [`TTL`]; one that shuts down purges the
//! subject so that another takes it at once.
//!
//! (These are JetStream's key-value semantics, written out on a plain
//! stream: the key-value API of the client does not work with the 2.9
//! servers Debian ships.)

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use tokio::sync::watch;

use super::Cluster;

/// How long a lease outlives its holder's last renewal.
pub const TTL: Duration = Duration::from_secs(10);

/// The stream `<stream>-<kind>` holding one message per subject
/// `<stream>.<kind>.<key>`, each kept for `max_age` (zero: for good);
/// created when missing.
pub async fn register(
    cluster: &Cluster,
    kind: &str,
    max_age: Duration,
) -> Result<stream::Stream, String> {
    let config = cluster.config();
    let name = format!("{}-{kind}", config.stream);
    cluster
        .jetstream()
        .create_or_update_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.{kind}.>", config.stream)],
            max_messages_per_subject: 1,
            max_age,
            // Within it, a second conditional publish to the same revision
            // is a duplicate (see `publish_if`); shorter than the life of
            // an expiring message, so that a lease taken again after its
            // holder's message expired is not one.
            duplicate_window: if max_age.is_zero() {
                Duration::from_secs(120)
            } else {
                (max_age / 10).max(Duration::from_millis(100))
            },
            storage: StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    cluster.jetstream().get_stream(&name).await.map_err(|e| e.to_string())
}

/// Why [`publish_if`] did not publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unpublished {
    /// The subject's last message is no longer the one expected.
    #[error("changed meanwhile (a publish to the same revision came first)")]
    Changed,
    /// JetStream did not answer or refused.
    #[error("{0}")]
    Failed(String),
}

/// Publishes `payload` to `subject` if the subject's last message is
/// `expected` (0: none); the new message's sequence.
///
/// The condition alone is not enough on a replicated stream of NATS 2.9:
/// two publishes to the same revision at once may both pass it (it is
/// checked before the first is applied). Each also carries the message id
/// `<subject>@<expected>`, so that the second is a duplicate, and fails.
pub(super) async fn publish_if(
    cluster: &Cluster,
    subject: &str,
    payload: impl Into<bytes::Bytes>,
    expected: u64,
) -> Result<u64, Unpublished> {
    let failed = |e: &dyn std::fmt::Display| Unpublished::Failed(e.to_string());
    let message = PublishMessage::build()
        .payload(payload.into())
        .expected_last_subject_sequence(expected)
        .message_id(format!("{subject}@{expected}"));
    let confirm = cluster
        .jetstream()
        .send_publish(subject.to_owned(), message)
        .await
        .map_err(|e| failed(&e))?;
    match confirm.await {
        Ok(ack) if ack.duplicate => Err(Unpublished::Changed),
        Ok(ack) => Ok(ack.sequence),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(Unpublished::Changed),
        Err(e) => Err(failed(&e)),
    }
}

/// Runs `work` whenever this proxy holds the lease `key`, until `shutdown`
/// flips; `work` is dropped when the lease is lost, and started again when
/// it is taken again.
pub async fn hold<F, Fut>(
    cluster: Cluster,
    key: String,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let me = cluster.config().name.clone();
    let subject = format!("{}.leases.{key}", cluster.config().stream);
    let pause = TTL / 3;
    let mut failing = false;
    loop {
        let leases = match register(&cluster, "leases", TTL).await {
            Ok(l) => Some(l),
            Err(e) => {
                // Once per outage, not every few seconds.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(lease = %key, error = %e, "cannot reach the leases bucket; retrying");
                }
                None
            }
        };
        if let Some(leases) = leases
            && let Ok(mut revision) = publish_if(&cluster, &subject, me.clone(), 0).await
        {
            failing = false;
            tracing::info!(lease = %key, "took the lease: this proxy does the work");
            let renew = async {
                loop {
                    tokio::time::sleep(pause).await;
                    match publish_if(&cluster, &subject, me.clone(), revision).await {
                        Ok(r) => revision = r,
                        Err(e) => return e.to_string(),
                    }
                }
            };
            tokio::select! {
                () = work() => {
                    // Handed on at once rather than at expiry.
                    let _ = leases.purge().filter(subject.as_str()).await;
                }
                why = renew => {
                    tracing::warn!(lease = %key, error = %why, "lost the lease: another proxy takes over the work");
                }
                _ = shutdown.changed() => {
                    let _ = leases.purge().filter(subject.as_str()).await;
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
