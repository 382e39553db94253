//! One established session: a thin driver around the sans-IO [`AgentConn`].
//! It feeds the connection the spool's pending batches (oldest first, while
//! the window has room), the proxy's bytes and its deadlines, applies
//! acknowledgements to the spool, and answers control requests
//! concurrently.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use wasmtap_protocol::conn::{AgentConn, AgentEvent};
use wasmtap_protocol::message::{Batch, ControlRequest, ControlResponse};

use super::{Shared, UplinkError};
use crate::clock::now_ms;
use crate::stats::AgentStats;

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
    shared: &'a Shared,
    reader: Option<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    conn: AgentConn,
    /// The last batch handed to the connection in this session.
    cursor: Option<u64>,
    /// The highest batch sent in any session (to count resends).
    highest_sent: &'a mut u64,
}

impl<'a> Live<'a> {
    pub(super) fn new(
        shared: &'a Shared,
        stream: TcpStream,
        conn: AgentConn,
        highest_sent: &'a mut u64,
    ) -> Self {
        let (reader, writer) = stream.into_split();
        Self { shared, reader: Some(reader), writer, conn, cursor: None, highest_sent }
    }

    /// Runs the session until it fails or the agent has shut down.
    pub(super) async fn run(mut self, input_done: watch::Receiver<bool>) -> Ended {
        let result = self.drive(input_done).await;
        // Whatever the connection queued last (a close saying why) goes out.
        let _ = self.flush().await;
        let _ = self.writer.shutdown().await;
        match result {
            Ok(()) => Ended::Done,
            Err(e) => Ended::Lost(e),
        }
    }

    async fn drive(&mut self, mut input_done: watch::Receiver<bool>) -> Result<(), UplinkError> {
        let (bytes_tx, mut bytes) = mpsc::channel::<std::io::Result<Vec<u8>>>(16);
        let Some(mut reader) = self.reader.take() else { return Err(UplinkError::Eof) };
        let _reader = AbortOnDrop(tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let read = reader.read(&mut buf).await.map(|n| buf[..n].to_vec());
                let stop = !matches!(&read, Ok(b) if !b.is_empty());
                if bytes_tx.send(read).await.is_err() || stop {
                    return;
                }
            }
        }));
        let (responses_tx, mut responses) =
            mpsc::channel::<ControlResponse>(MAX_CONCURRENT_REQUESTS);
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
        let mut draining = false;
        loop {
            self.send_pending().await?;
            self.flush().await?;
            if self.conn.is_closed() {
                return Ok(());
            }
            let far = Instant::now() + Duration::from_secs(3600);
            let deadline = self.conn.poll_timeout().map_or(far, Instant::from_std);
            tokio::select! {
                _ = self.shared.written.notified() => {}
                read = bytes.recv() => match read {
                    Some(Ok(b)) if !b.is_empty() => {
                        self.conn.handle_input(&b, Instant::now().into_std(), now_ms())?;
                    }
                    Some(Err(e)) => return Err(e.into()),
                    _ => return Err(UplinkError::Eof),
                },
                Some(resp) = responses.recv() => {
                    let n = self.conn.send_response(&resp)?;
                    AgentStats::add(&self.shared.stats.bytes_sealed, n as u64);
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.conn.handle_timeout(Instant::now().into_std(), now_ms())?;
                }
                // `wait_for` looks at the current value first: a flip while
                // this task was busy elsewhere is never missed.
                _ = input_done.wait_for(|d| *d), if !draining => {
                    draining = true;
                    let now = Instant::now();
                    self.conn.drain(now.into_std(), (now + DRAIN_TIMEOUT).into_std());
                }
            }
            self.events(&responses_tx, &permits);
        }
    }

    /// Hands pending batches to the connection while its window has room.
    async fn send_pending(&mut self) -> Result<(), UplinkError> {
        while self.conn.can_send() {
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
                Ok(Some(batch)) => self.send_batch(&batch)?,
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

    fn send_batch(&mut self, batch: &Batch) -> Result<(), UplinkError> {
        let sent = self.conn.send_batch(batch, Instant::now().into_std())?;
        let stats = &self.shared.stats;
        AgentStats::add(&stats.numbers_sent, sent.numbers as u64);
        AgentStats::add(&stats.bytes_simple, sent.simple_bytes as u64);
        AgentStats::add(&stats.bytes_sealed, sent.sealed_bytes as u64);
        AgentStats::add(&stats.batches_sent, 1);
        if batch.seq <= *self.highest_sent {
            AgentStats::add(&stats.batches_resent, 1);
        }
        *self.highest_sent = (*self.highest_sent).max(batch.seq);
        tracing::debug!(
            seq = batch.seq,
            samples = batch.samples.len(),
            bytes = sent.simple_bytes + sent.sealed_bytes,
            "batch sent"
        );
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), UplinkError> {
        if let Some(bytes) = self.conn.poll_transmit() {
            self.writer.write_all(&bytes).await?;
        }
        Ok(())
    }

    fn events(&mut self, responses: &mpsc::Sender<ControlResponse>, permits: &Arc<Semaphore>) {
        let stats = &self.shared.stats;
        while let Some(event) = self.conn.poll_event() {
            match event {
                AgentEvent::Acked { seq, batches } => {
                    AgentStats::add(&stats.batches_acked, batches as u64);
                    if let Err(e) = self.shared.spool().ack(seq) {
                        tracing::warn!(error = %e, "cannot record an acknowledgement in the spool");
                    }
                    tracing::trace!(seq, "batch acknowledged");
                }
                AgentEvent::TimeSync { rtt_ms, offset_ms } => {
                    stats.rtt_ms.store(rtt_ms, Ordering::Relaxed);
                    stats.clock_offset_ms.store(offset_ms, Ordering::Relaxed);
                    tracing::debug!(rtt_ms, offset_ms, "proxy clock probe");
                }
                AgentEvent::Request(req) => self.answer(req, responses, permits),
                AgentEvent::Drained { unacknowledged } => {
                    let left = self.shared.spool().stats().pending_batches;
                    if left > 0 {
                        tracing::warn!(
                            batches = left,
                            in_flight = unacknowledged,
                            "shutting down with unacknowledged batches; they stay in the spool"
                        );
                    }
                }
            }
        }
    }

    /// Answers a control request in its own task, at most
    /// [`MAX_CONCURRENT_REQUESTS`] at once.
    fn answer(
        &self,
        req: ControlRequest,
        responses: &mpsc::Sender<ControlResponse>,
        permits: &Arc<Semaphore>,
    ) {
        let responses = responses.clone();
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let busy = ControlResponse {
                id: req.id,
                result: Err("agent busy: too many requests at once".into()),
            };
            tokio::spawn(async move {
                let _ = responses.send(busy).await;
            });
            return;
        };
        let control = self.shared.control.clone();
        tokio::spawn(async move {
            let resp = control.handle(req).await;
            let _ = responses.send(resp).await;
            drop(permit);
        });
    }
}
