//! One established session: sends every pending batch from the spool
//! (oldest first, a bounded window in flight), applies acknowledgements,
//! answers control requests concurrently, and keeps the session alive with
//! authenticated pings.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::compact::Encoder;
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::message::{
    self, Ack, Batch, ControlRequest, ControlResponse, Ping, Pong, SealedBatch, Value,
};
use wasmtap_protocol::session::Session;

use super::{Shared, UplinkError, read_frame};
use crate::clock::now_ms;
use crate::stats::AgentStats;

/// Batches sent and not yet acknowledged, at most.
pub const WINDOW: usize = 32;
/// How often the agent pings the proxy (keepalive, round-trip time, clock offset).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// The session is given up when the proxy has sent nothing for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// On shutdown, how long the agent waits for pending batches to be acknowledged.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Control requests answered at the same time; more get a "busy" error.
pub const MAX_CONCURRENT_REQUESTS: usize = 8;

/// How a session ended.
pub(super) enum Ended {
    /// The agent is shutting down and closed the session.
    Done,
    /// The session failed; reconnect.
    Lost(UplinkError),
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The state of one session.
pub(super) struct Live<'a> {
    pub(super) shared: &'a Shared,
    pub(super) session: Session,
    pub(super) writer: OwnedWriteHalf,
    pub(super) encoder: Encoder,
    /// The last batch sent in this session.
    pub(super) cursor: Option<u64>,
    pub(super) in_flight: VecDeque<u64>,
    /// The highest batch sent in any session (to count resends).
    pub(super) highest_sent: &'a mut u64,
}

impl Live<'_> {
    /// Runs the session until it fails or the agent has shut down.
    pub(super) async fn run(
        mut self,
        stream_decoder: (tokio::net::tcp::OwnedReadHalf, FrameDecoder),
        mut input_done: watch::Receiver<bool>,
    ) -> Ended {
        let (mut reader, mut decoder) = stream_decoder;
        let (frames_tx, mut frames) = mpsc::channel::<Result<Frame, UplinkError>>(16);
        let _reader = AbortOnDrop(tokio::spawn(async move {
            loop {
                let frame = read_frame(&mut reader, &mut decoder).await;
                let failed = frame.is_err();
                if frames_tx.send(frame).await.is_err() || failed {
                    return;
                }
            }
        }));
        let (responses_tx, mut responses) =
            mpsc::channel::<ControlResponse>(MAX_CONCURRENT_REQUESTS);
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
        let mut ping = tokio::time::interval(PING_INTERVAL);
        let mut last_heard = Instant::now();
        let mut drain_until: Option<Instant> =
            input_done.borrow().then(|| Instant::now() + DRAIN_TIMEOUT);
        loop {
            if let Err(e) = self.send_pending().await {
                return Ended::Lost(e);
            }
            if let Some(deadline) = drain_until
                && (self.in_flight.is_empty() || Instant::now() >= deadline)
            {
                let left = self.shared.spool().stats().pending_batches;
                if left > 0 {
                    tracing::warn!(
                        batches = left,
                        "shutting down with unacknowledged batches; they stay in the spool"
                    );
                }
                self.close(CloseCode::Shutdown, "agent shutting down").await;
                return Ended::Done;
            }
            let deadline =
                drain_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let result = tokio::select! {
                _ = self.shared.written.notified() => Ok(()),
                frame = frames.recv() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(f)) => self.handle(f, &responses_tx, &permits),
                        Some(Err(e)) => Err(e),
                        None => Err(UplinkError::Eof),
                    }
                }
                Some(resp) = responses.recv() => self.respond(&resp).await,
                _ = ping.tick() => {
                    if last_heard.elapsed() > IDLE_TIMEOUT {
                        Err(UplinkError::Timeout("idle session"))
                    } else {
                        self.ping().await
                    }
                }
                _ = input_done.changed(), if drain_until.is_none() => {
                    drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
                    Ok(())
                }
                _ = tokio::time::sleep_until(deadline), if drain_until.is_some() => Ok(()),
            };
            if let Err(e) = result {
                return Ended::Lost(e);
            }
        }
    }

    /// Sends pending batches while the window has room.
    async fn send_pending(&mut self) -> Result<(), UplinkError> {
        while self.in_flight.len() < WINDOW {
            let Some(seq) = self.shared.spool().next_pending(self.cursor) else {
                return Ok(());
            };
            let spool = self.shared.spool.clone();
            let batch = tokio::task::spawn_blocking(move || {
                spool.lock().unwrap_or_else(PoisonError::into_inner).get(seq)
            })
            .await
            .map_err(|e| UplinkError::Io(std::io::Error::other(e)))?;
            self.cursor = Some(seq);
            match batch {
                Ok(Some(batch)) => self.send_batch(&batch).await?,
                // Acknowledged or dropped meanwhile.
                Ok(None) => {}
                // Not skipped: a later batch's cumulative ack would delete it
                // uncounted. The session ends and the batch is tried again on
                // the next; the spool counts it lost if it can never be read.
                Err(e) => return Err(UplinkError::Io(std::io::Error::other(e))),
            }
        }
        Ok(())
    }

    async fn send_batch(&mut self, batch: &Batch) -> Result<(), UplinkError> {
        let (head, numbers) = self.encoder.encode(batch);
        let mut bytes = Vec::new();
        for payload in &numbers {
            self.session.seal_simple(payload, &mut bytes);
        }
        let simple = bytes.len();
        let checkpoint = self.session.simple_checkpoint();
        let body = message::encode(&SealedBatch { head, checkpoint });
        self.session.seal_into(FrameKind::Sealed, &body, &mut bytes)?;
        self.writer.write_all(&bytes).await?;
        let stats = &self.shared.stats;
        let count = batch
            .samples
            .iter()
            .flat_map(|s| &s.values)
            .filter(|(_, v)| !matches!(v, Value::Text(_)))
            .count();
        AgentStats::add(&stats.numbers_sent, count as u64);
        AgentStats::add(&stats.bytes_simple, simple as u64);
        AgentStats::add(&stats.bytes_sealed, (bytes.len() - simple) as u64);
        AgentStats::add(&stats.batches_sent, 1);
        if batch.seq <= *self.highest_sent {
            AgentStats::add(&stats.batches_resent, 1);
        }
        *self.highest_sent = (*self.highest_sent).max(batch.seq);
        self.in_flight.push_back(batch.seq);
        tracing::debug!(
            seq = batch.seq,
            samples = batch.samples.len(),
            bytes = bytes.len(),
            "batch sent"
        );
        Ok(())
    }

    fn handle(
        &mut self,
        frame: Frame,
        responses: &mpsc::Sender<ControlResponse>,
        permits: &Arc<Semaphore>,
    ) -> Result<(), UplinkError> {
        let kind = frame.kind;
        let body = self.session.open(frame)?;
        let bad = |_: message::MessageError| UplinkError::Unexpected(kind);
        match kind {
            FrameKind::Ack => {
                let ack: Ack = message::decode(&body).map_err(bad)?;
                let before = self.in_flight.len();
                self.in_flight.retain(|s| *s > ack.seq);
                AgentStats::add(
                    &self.shared.stats.batches_acked,
                    (before - self.in_flight.len()) as u64,
                );
                if let Err(e) = self.shared.spool().ack(ack.seq) {
                    tracing::warn!(error = %e, "cannot record an acknowledgement in the spool");
                }
                tracing::trace!(seq = ack.seq, "batch acknowledged");
                Ok(())
            }
            FrameKind::Pong => {
                let pong: Pong = message::decode(&body).map_err(bad)?;
                let (rtt_ms, offset_ms) = pong.time_sync(now_ms());
                self.shared.stats.rtt_ms.store(rtt_ms, Ordering::Relaxed);
                self.shared.stats.clock_offset_ms.store(offset_ms, Ordering::Relaxed);
                tracing::debug!(rtt_ms, offset_ms, "proxy clock probe");
                Ok(())
            }
            FrameKind::ControlRequest => {
                let req: ControlRequest = message::decode(&body).map_err(bad)?;
                let responses = responses.clone();
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    let busy = ControlResponse {
                        id: req.id,
                        result: Err("agent busy: too many requests at once".into()),
                    };
                    tokio::spawn(async move {
                        let _ = responses.send(busy).await;
                    });
                    return Ok(());
                };
                let control = self.shared.control.clone();
                tokio::spawn(async move {
                    let resp = control.handle(req).await;
                    let _ = responses.send(resp).await;
                    drop(permit);
                });
                Ok(())
            }
            FrameKind::Close => {
                let close = Close::decode(&body).map_err(|_| UplinkError::Unexpected(kind))?;
                Err(UplinkError::Closed(close))
            }
            other => Err(UplinkError::Unexpected(other)),
        }
    }

    async fn respond(&mut self, resp: &ControlResponse) -> Result<(), UplinkError> {
        let bytes = self.session.seal(FrameKind::ControlResponse, &message::encode(resp))?;
        self.writer.write_all(&bytes).await?;
        AgentStats::add(&self.shared.stats.bytes_sealed, bytes.len() as u64);
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), UplinkError> {
        let bytes =
            self.session.seal(FrameKind::Ping, &message::encode(&Ping { t1_ms: now_ms() }))?;
        self.writer.write_all(&bytes).await?;
        Ok(())
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let mut body = Vec::new();
        Close::new(code, reason).encode(&mut body);
        if let Ok(bytes) = self.session.seal(FrameKind::Close, &body) {
            let _ = self.writer.write_all(&bytes).await;
        }
        let _ = self.writer.shutdown().await;
    }
}
