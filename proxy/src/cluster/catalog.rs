//! The fleet catalog in JetStream, so that every proxy of a cluster serves
//! the same releases: the stream `<stream>-fleet` holds one message per
//! subject, kept for good:
//!
//! - `<stream>.fleet.<project>.catalog`: the project's catalog document
//!   (the JSON of `catalog.json`); it is replaced only on the condition
//!   that it is still the one the change was made to ([`Shared::put_catalog`],
//!   through [`lease::publish_if`]), so that two proxies changing it at
//!   once cannot lose either change;
//! - `<stream>.fleet.<project>.blob.<sha256>.<n>`: the components, in
//!   pieces of [`PIECE`] bytes (under NATS's 1 MiB `max_payload`), each
//!   carrying their number in the header [`PIECES`]; a component read back
//!   is checked against its SHA-256 before use.

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use std::time::Duration;
use wasmtap_protocol::access_key::ProjectId;

use super::{Cluster, lease};

/// Bytes of a component per message.
pub const PIECE: usize = 256 << 10;
/// The header holding how many pieces a component has.
pub const PIECES: &str = "Wasmtap-Pieces";

/// Why the shared catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// Another proxy changed the catalog since it was read.
    #[error("the catalog was changed through another proxy meanwhile")]
    Conflict,
    /// JetStream did not answer or refused.
    #[error("the cluster's catalog cannot be reached: {0}")]
    Unreachable(String),
    /// What the stream holds is not whole or not what it says.
    #[error("the cluster's copy of component {sha256}: {why}")]
    Damaged {
        /// The component.
        sha256: String,
        /// What is wrong.
        why: String,
    },
}

fn unreachable(e: impl std::fmt::Display) -> SharedError {
    SharedError::Unreachable(e.to_string())
}

/// The fleet catalogs of a cluster's projects.
#[derive(Debug, Clone)]
pub struct Shared {
    cluster: Cluster,
    /// The stream, once made (or found).
    stream: std::sync::Arc<tokio::sync::OnceCell<Stream>>,
}

impl Shared {
    /// The catalogs in `cluster`'s stream.
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster, stream: std::sync::Arc::default() }
    }

    async fn stream(&self) -> Result<Stream, SharedError> {
        let made = self.stream.get_or_try_init(|| async {
            lease::register(&self.cluster, "fleet", Duration::ZERO).await.map_err(unreachable)
        });
        made.await.cloned()
    }

    fn subject(&self, project: &ProjectId, rest: &str) -> String {
        format!("{}.fleet.{project}.{rest}", self.cluster.config().stream)
    }

    /// The last message of `subject`, if it has one.
    async fn last(
        &self,
        stream: &Stream,
        subject: &str,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, SharedError> {
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unreachable(e)),
        }
    }

    /// `project`'s catalog document and its revision (0 and `None`: none yet).
    pub async fn catalog(
        &self,
        project: &ProjectId,
    ) -> Result<(u64, Option<Vec<u8>>), SharedError> {
        let stream = self.stream().await?;
        let last = self.last(&stream, &self.subject(project, "catalog")).await?;
        Ok(last.map_or((0, None), |m| (m.sequence, Some(m.payload.to_vec()))))
    }

    /// Replaces `project`'s catalog document by `doc` if its revision is
    /// still `revision` (0: there is none); the new revision.
    pub async fn put_catalog(
        &self,
        project: &ProjectId,
        doc: Vec<u8>,
        revision: u64,
    ) -> Result<u64, SharedError> {
        self.stream().await?;
        let subject = self.subject(project, "catalog");
        lease::publish_if(&self.cluster, &subject, doc, revision).await.map_err(|e| match e {
            lease::Unpublished::Changed => SharedError::Conflict,
            lease::Unpublished::Failed(e) => SharedError::Unreachable(e),
        })
    }

    /// Whether component `sha256` of `project` is whole in the stream.
    async fn has_blob(
        &self,
        stream: &Stream,
        project: &ProjectId,
        sha256: &str,
    ) -> Result<bool, SharedError> {
        let Some(first) =
            self.last(stream, &self.subject(project, &format!("blob.{sha256}.0"))).await?
        else {
            return Ok(false);
        };
        let Some(n) = pieces(&first.headers) else { return Ok(false) };
        let last = self.subject(project, &format!("blob.{sha256}.{}", n.saturating_sub(1)));
        Ok(self.last(stream, &last).await?.is_some())
    }

    /// Puts component `blob` of `project` in the stream, unless it is there.
    pub async fn put_blob(&self, project: &ProjectId, blob: &[u8]) -> Result<(), SharedError> {
        let sha256 = wasmtap_protocol::fleet::sha256_hex(blob);
        let stream = self.stream().await?;
        if self.has_blob(&stream, project, &sha256).await? {
            return Ok(());
        }
        let count = blob.len().div_ceil(PIECE).max(1);
        let js = self.cluster.jetstream();
        let mut confirms = Vec::with_capacity(count);
        for (i, piece) in blob.chunks(PIECE).chain(blob.is_empty().then_some(&[][..])).enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(PIECES, count.to_string().as_str());
            let message = PublishMessage::build().headers(headers).payload(piece.to_vec().into());
            let subject = self.subject(project, &format!("blob.{sha256}.{i}"));
            confirms.push(js.send_publish(subject, message).await.map_err(unreachable)?);
        }
        for confirm in confirms {
            confirm.await.map_err(unreachable)?;
        }
        Ok(())
    }

    /// Component `sha256` of `project`, checked, if the stream has it.
    pub async fn blob(
        &self,
        project: &ProjectId,
        sha256: &str,
    ) -> Result<Option<Vec<u8>>, SharedError> {
        let stream = self.stream().await?;
        let damaged = |why: String| SharedError::Damaged { sha256: sha256.to_owned(), why };
        let Some(first) =
            self.last(&stream, &self.subject(project, &format!("blob.{sha256}.0"))).await?
        else {
            return Ok(None);
        };
        let count = pieces(&first.headers).ok_or_else(|| damaged("no piece count".into()))?;
        let mut blob = first.payload.to_vec();
        for i in 1..count {
            let subject = self.subject(project, &format!("blob.{sha256}.{i}"));
            let piece = self
                .last(&stream, &subject)
                .await?
                .ok_or_else(|| damaged(format!("piece {i} of {count} missing")))?;
            blob.extend_from_slice(&piece.payload);
        }
        if wasmtap_protocol::fleet::sha256_hex(&blob) != sha256 {
            return Err(damaged("its bytes do not match its SHA-256".into()));
        }
        Ok(Some(blob))
    }
}

/// The piece count a piece's headers give.
fn pieces(headers: &HeaderMap) -> Option<usize> {
    headers.get(PIECES)?.as_str().parse().ok().filter(|n| *n > 0)
}
