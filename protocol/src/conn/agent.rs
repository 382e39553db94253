//! The agent's end of an established connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{ConnError, seal_close, update_keys_if_due};
use crate::close::{Close, CloseCode};
use crate::compact::Encoder;
use crate::frame::{Frame, FrameDecoder, FrameKind};
use crate::message::{
    self, Ack, Batch, ControlRequest, ControlResponse, Ping, Pong, SealedBatch, Value,
};
use crate::session::Session;

/// The agent's connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentConfig {
    /// Batches sent and not yet acknowledged, at most.
    pub window: usize,
    /// How often to ping the proxy (keepalive, round-trip time, clock offset).
    pub ping_interval: Duration,
    /// Give the session up when the proxy has sent nothing for this long.
    pub idle_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            window: 32,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
        }
    }
}

/// What the proxy told the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// Every batch up to and including `seq` is stored; `batches` of this
    /// session's in-flight batches are settled by it.
    Acked {
        /// The acknowledged sequence.
        seq: u64,
        /// In-flight batches it settled.
        batches: usize,
    },
    /// A control request to answer with [`AgentConn::send_response`].
    Request(ControlRequest),
    /// A pong arrived: round-trip time and the proxy clock's offset, ms.
    TimeSync {
        /// Round-trip time.
        rtt_ms: i64,
        /// Proxy clock minus agent clock.
        offset_ms: i64,
    },
    /// The drain finished (every batch acknowledged, or its deadline
    /// passed) and a close was queued; `unacknowledged` batches stay unsettled.
    Drained {
        /// Batches sent and never acknowledged.
        unacknowledged: usize,
    },
}

/// What sending a batch cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentBatch {
    /// Bytes of `Simple` frames.
    pub simple_bytes: usize,
    /// Bytes of the `Sealed` frame (and a key update, if one followed).
    pub sealed_bytes: usize,
    /// Numeric values carried on the simple path.
    pub numbers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Draining { until: Instant },
    Closed,
}

/// The agent's end of a session.
#[derive(Debug)]
pub struct AgentConn {
    pub(super) session: Session,
    config: AgentConfig,
    decoder: FrameDecoder,
    encoder: Encoder,
    in_flight: VecDeque<u64>,
    highest_sent: Option<u64>,
    last_heard: Instant,
    next_ping: Instant,
    state: State,
    outbox: Vec<u8>,
    events: VecDeque<AgentEvent>,
}

impl AgentConn {
    /// Wraps an established session at `now`. Pass the decoder used for the
    /// handshake: it may already hold the proxy's first frames.
    pub fn new(
        mut session: Session,
        decoder: FrameDecoder,
        config: AgentConfig,
        now: Instant,
    ) -> Self {
        // Starts the keys' clock: they are updated REKEY_AFTER from now.
        session.rekey_due(now);
        Self {
            session,
            config,
            decoder,
            encoder: Encoder::new(),
            in_flight: VecDeque::new(),
            highest_sent: None,
            last_heard: now,
            next_ping: now + config.ping_interval,
            state: State::Open,
            outbox: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.session.id()
    }

    /// Batches sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether another batch may be sent now (open, and the window has room).
    pub fn can_send(&self) -> bool {
        self.state == State::Open && self.in_flight.len() < self.config.window
    }

    /// Whether the connection has closed (a close was queued or received).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Encodes and seals `batch`: its numbers on the simple path, its text
    /// and structure sealed, with the checkpoint covering the numbers.
    pub fn send_batch(&mut self, batch: &Batch, now: Instant) -> Result<SentBatch, ConnError> {
        if self.state == State::Closed {
            return Err(ConnError::Closed);
        }
        let start = self.outbox.len();
        let (head, numbers) = self.encoder.encode(batch);
        for payload in &numbers {
            self.session.seal_simple(payload, &mut self.outbox);
        }
        let simple_bytes = self.outbox.len() - start;
        let checkpoint = self.session.simple_checkpoint();
        let body = message::encode(&SealedBatch { head, checkpoint });
        self.session.seal_into(FrameKind::Sealed, &body, &mut self.outbox)?;
        // Right after a checkpoint: keys may change.
        update_keys_if_due(&mut self.session, now, &mut self.outbox)?;
        self.in_flight.push_back(batch.seq);
        self.highest_sent = Some(self.highest_sent.map_or(batch.seq, |h| h.max(batch.seq)));
        let numbers = batch
            .samples
            .iter()
            .flat_map(|s| &s.values)
            .filter(|(_, v)| !matches!(v, Value::Text(_)))
            .count();
        Ok(SentBatch {
            simple_bytes,
            sealed_bytes: self.outbox.len() - start - simple_bytes,
            numbers,
        })
    }

    /// Seals the answer to a control request.
    pub fn send_response(&mut self, response: &ControlResponse) -> Result<usize, ConnError> {
        if self.state == State::Closed {
            return Err(ConnError::Closed);
        }
        let before = self.outbox.len();
        self.session.seal_into(
            FrameKind::ControlResponse,
            &message::encode(response),
            &mut self.outbox,
        )?;
        Ok(self.outbox.len() - before)
    }

    /// Starts an orderly end: no new batches; the session closes once every
    /// batch in flight is acknowledged or at `until`, whichever is first.
    pub fn drain(&mut self, now: Instant, until: Instant) {
        if self.state == State::Open {
            self.state = State::Draining { until };
            // The proxy holds acknowledgements for a while and sends what
            // it holds on a ping: ask at once rather than wait for them.
            if !self.in_flight.is_empty() {
                self.next_ping = now;
            }
            self.finish_drain(now);
        }
    }

    /// Queues a close with `code` and ends the connection.
    pub fn close(&mut self, code: CloseCode, message: &str) {
        if self.state != State::Closed {
            seal_close(&mut self.session, code, message, &mut self.outbox);
            self.state = State::Closed;
        }
    }

    /// Processes bytes from the proxy.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        now: Instant,
        wall_ms: u64,
    ) -> Result<(), ConnError> {
        if self.state == State::Closed {
            return Err(ConnError::Closed);
        }
        self.decoder.push(bytes);
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(self.fail(e.into())),
            };
            self.last_heard = now;
            if let Err(e) = self.frame(frame, wall_ms) {
                return Err(self.fail(e));
            }
        }
        self.decoder.shrink();
        if let State::Draining { .. } = self.state {
            self.finish_drain(now);
        }
        Ok(())
    }

    /// The next moment [`AgentConn::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.last_heard + self.config.idle_timeout;
        let next = idle.min(self.next_ping);
        let next = self.session.rekey_deadline().map_or(next, |r| r.min(next));
        match self.state {
            State::Open => Some(next),
            State::Draining { until } => Some(next.min(until)),
            State::Closed => None,
        }
    }

    /// Acts on passed deadlines: idle check, key update, ping, drain deadline.
    pub fn handle_timeout(&mut self, now: Instant, wall_ms: u64) -> Result<(), ConnError> {
        if self.state == State::Closed {
            return Err(ConnError::Closed);
        }
        if now >= self.last_heard + self.config.idle_timeout {
            return Err(self.fail(ConnError::Idle(self.config.idle_timeout.as_secs())));
        }
        // Every batch ends with its checkpoint, so between calls no simple
        // frame waits for one and the keys may change: a session that only
        // pings updates them on time too.
        if let Err(e) = update_keys_if_due(&mut self.session, now, &mut self.outbox) {
            return Err(self.fail(e.into()));
        }
        if now >= self.next_ping {
            self.session.seal_into(
                FrameKind::Ping,
                &message::encode(&Ping { t1_ms: wall_ms }),
                &mut self.outbox,
            )?;
            self.next_ping = now + self.config.ping_interval;
        }
        if let State::Draining { .. } = self.state {
            self.finish_drain(now);
        }
        Ok(())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<AgentEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the proxy, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.outbox.is_empty()).then(|| std::mem::take(&mut self.outbox))
    }

    fn finish_drain(&mut self, now: Instant) {
        if let State::Draining { until } = self.state
            && (self.in_flight.is_empty() || now >= until)
        {
            self.events.push_back(AgentEvent::Drained { unacknowledged: self.in_flight.len() });
            self.close(CloseCode::Shutdown, "agent shutting down");
        }
    }

    /// Queues the close `e` calls for and returns `e`.
    fn fail(&mut self, e: ConnError) -> ConnError {
        if !matches!(e, ConnError::PeerClosed(_)) {
            self.close(e.close_code(), &e.to_string());
        }
        self.state = State::Closed;
        e
    }

    fn frame(&mut self, frame: Frame, wall_ms: u64) -> Result<(), ConnError> {
        let kind = frame.kind;
        let body = self.session.open(frame)?;
        let malformed = |error| ConnError::Malformed { kind, error };
        match kind {
            FrameKind::Ack => {
                let ack: Ack = message::decode(&body).map_err(malformed)?;
                if self.highest_sent.is_none_or(|h| ack.seq > h) {
                    return Err(ConnError::AckBeyondSent {
                        ack: ack.seq,
                        highest: self.highest_sent,
                    });
                }
                let before = self.in_flight.len();
                self.in_flight.retain(|s| *s > ack.seq);
                let batches = before - self.in_flight.len();
                self.events.push_back(AgentEvent::Acked { seq: ack.seq, batches });
            }
            FrameKind::Pong => {
                let pong: Pong = message::decode(&body).map_err(malformed)?;
                let (rtt_ms, offset_ms) = pong.time_sync(wall_ms);
                self.events.push_back(AgentEvent::TimeSync { rtt_ms, offset_ms });
            }
            FrameKind::ControlRequest => {
                let req: ControlRequest = message::decode(&body).map_err(malformed)?;
                self.events.push_back(AgentEvent::Request(req));
            }
            FrameKind::KeyUpdate => {}
            FrameKind::Close => {
                let close = Close::decode(&body).map_err(|e| ConnError::Malformed {
                    kind,
                    error: message::MessageError::Malformed(e.to_string()),
                })?;
                return Err(ConnError::PeerClosed(close));
            }
            other => return Err(ConnError::Unexpected(other)),
        }
        Ok(())
    }
}
