//! The proxy's end of an established connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{ConnError, seal_close, update_keys_if_due};
use crate::close::{Close, CloseCode};
use crate::compact::Decoder;
use crate::frame::{Frame, FrameDecoder, FrameKind};
use crate::message::{self, Ack, Batch, ControlRequest, ControlResponse, Ping, Pong, SealedBatch};
use crate::session::Session;

/// The proxy's connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    /// A session with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Bytes the session's series dictionary may hold.
    pub dictionary_bytes: usize,
    /// How far ahead of the proxy's clock a batch sequence's time part may be, ms.
    pub max_skew_ms: u64,
    /// Acknowledgements are cumulative: after one is sent, batches stored
    /// within this time are acknowledged together when it has passed (or
    /// at once on a ping, on close, or when [`ProxyConfig::ack_batches`]
    /// wait), instead of one frame per batch.
    pub ack_interval: Duration,
    /// Held acknowledgements that are sent at once.
    pub ack_batches: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(120),
            dictionary_bytes: 32 << 20,
            max_skew_ms: crate::handshake::DEFAULT_MAX_SKEW_MS,
            ack_interval: Duration::from_secs(5),
            ack_batches: 8,
        }
    }
}

/// What the agent sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyEvent {
    /// A verified, decoded batch. Store it, then [`ProxyConn::acknowledge`]
    /// batches in the order they arrived.
    Batch(Batch),
    /// The answer to a request sent with [`ProxyConn::send_request`].
    Response(ControlResponse),
}

/// The proxy's end of a session.
#[derive(Debug)]
pub struct ProxyConn {
    pub(super) session: Session,
    config: ProxyConfig,
    decoder: FrameDecoder,
    batches: Decoder,
    /// Batches received and not yet acknowledged, in arrival order.
    unacked: VecDeque<u64>,
    /// The newest stored batch whose acknowledgement is held back, and how
    /// many are held.
    ack_held: Option<(u64, usize)>,
    /// When the last acknowledgement was sent.
    last_ack: Option<Instant>,
    last_heard: Instant,
    closed: bool,
    outbox: Vec<u8>,
    events: VecDeque<ProxyEvent>,
}

impl ProxyConn {
    /// Wraps an established session at `now`. Pass the handshake's decoder:
    /// it may already hold the agent's first frames.
    pub fn new(
        mut session: Session,
        decoder: FrameDecoder,
        config: ProxyConfig,
        now: Instant,
    ) -> Self {
        // Starts the keys' clock: they are updated REKEY_AFTER from now.
        session.rekey_due(now);
        Self {
            session,
            config,
            decoder,
            batches: Decoder::with_limit(config.dictionary_bytes),
            unacked: VecDeque::new(),
            ack_held: None,
            last_ack: None,
            last_heard: now,
            closed: false,
            outbox: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.session.id()
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Batches received and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.unacked.len()
    }

    /// Processes bytes from the agent. Input after the connection closed
    /// is an error.
    pub fn handle_input(
        &mut self,
        bytes: &[u8],
        now: Instant,
        wall_ms: u64,
    ) -> Result<(), ConnError> {
        if self.closed {
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
            if let Err(e) = self.frame(frame, now, wall_ms) {
                return Err(self.fail(e));
            }
        }
        self.decoder.shrink();
        Ok(())
    }

    /// Acknowledges the oldest unacknowledged batch, which must be `seq`
    /// (batches are acknowledged in arrival order). Returns `false`, and
    /// sends nothing, when `seq` is not the oldest. The `Ack` frame goes
    /// out now if none was sent for [`ProxyConfig::ack_interval`], else
    /// when that time has passed, covering every batch stored meanwhile.
    pub fn acknowledge(&mut self, seq: u64, now: Instant) -> Result<bool, ConnError> {
        if self.closed {
            return Err(ConnError::Closed);
        }
        if self.unacked.front() != Some(&seq) {
            return Ok(false);
        }
        self.unacked.pop_front();
        let held = self.ack_held.map_or(0, |(_, n)| n) + 1;
        self.ack_held = Some((seq, held));
        if held >= self.config.ack_batches || self.ack_due().is_none_or(|due| now >= due) {
            self.send_ack(now)?;
        }
        self.maybe_update_keys(now)?;
        Ok(true)
    }

    /// When the held acknowledgement must go out, if one is held and one
    /// was sent before.
    fn ack_due(&self) -> Option<Instant> {
        self.ack_held?;
        self.last_ack.map(|t| t + self.config.ack_interval)
    }

    /// Sends the held acknowledgement, if any, and starts the interval.
    fn send_ack(&mut self, now: Instant) -> Result<(), ConnError> {
        if self.seal_held_ack()? {
            self.last_ack = Some(now);
        }
        Ok(())
    }

    /// Seals the held acknowledgement into the outbox; whether there was one.
    fn seal_held_ack(&mut self) -> Result<bool, ConnError> {
        let Some((seq, _)) = self.ack_held.take() else { return Ok(false) };
        let ack = message::encode(&Ack { seq });
        self.session.seal_into(FrameKind::Ack, &ack, &mut self.outbox)?;
        Ok(true)
    }

    /// Seals a control request for the agent.
    pub fn send_request(&mut self, request: &ControlRequest) -> Result<(), ConnError> {
        if self.closed {
            return Err(ConnError::Closed);
        }
        let body = message::encode(request);
        self.session.seal_into(FrameKind::ControlRequest, &body, &mut self.outbox)?;
        Ok(())
    }

    /// Queues a close with `code` and ends the connection; a held
    /// acknowledgement goes out first.
    pub fn close(&mut self, code: CloseCode, message: &str) {
        if !self.closed {
            // Best effort: a session that cannot seal any more closes anyway.
            let _ = self.seal_held_ack();
        }
        self.close_now(code, message);
    }

    /// Queues a close with `code` and ends the connection, sending nothing else.
    fn close_now(&mut self, code: CloseCode, message: &str) {
        if !self.closed {
            seal_close(&mut self.session, code, message, &mut self.outbox);
            self.closed = true;
        }
    }

    /// The next moment [`ProxyConn::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.last_heard + self.config.idle_timeout;
        let next = self.ack_due().map_or(idle, |due| due.min(idle));
        let next = self.session.rekey_deadline().map_or(next, |r| r.min(next));
        (!self.closed).then_some(next)
    }

    /// Acts on passed deadlines: the idle check, a held acknowledgement,
    /// and a key update when due (a session that only pings included).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnError> {
        if self.closed {
            return Err(ConnError::Closed);
        }
        if now >= self.last_heard + self.config.idle_timeout {
            return Err(self.fail(ConnError::Idle(self.config.idle_timeout.as_secs())));
        }
        if self.ack_due().is_some_and(|due| now >= due) {
            self.send_ack(now)?;
        }
        self.maybe_update_keys(now)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the agent, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.outbox.is_empty()).then(|| std::mem::take(&mut self.outbox))
    }

    fn maybe_update_keys(&mut self, now: Instant) -> Result<(), ConnError> {
        // The proxy sends no simple frames, so it may update at any time.
        Ok(update_keys_if_due(&mut self.session, now, &mut self.outbox)?)
    }

    fn fail(&mut self, e: ConnError) -> ConnError {
        if !matches!(e, ConnError::PeerClosed(_)) {
            self.close_now(e.close_code(), &e.to_string());
        }
        self.closed = true;
        e
    }

    fn frame(&mut self, frame: Frame, now: Instant, wall_ms: u64) -> Result<(), ConnError> {
        if frame.kind == FrameKind::Simple {
            return Ok(self.session.open_simple(frame)?);
        }
        let kind = frame.kind;
        let body = self.session.open(frame)?;
        let malformed = |error| ConnError::Malformed { kind, error };
        match kind {
            FrameKind::Sealed => {
                let sealed: SealedBatch = message::decode(&body).map_err(malformed)?;
                self.check_seq(sealed.head.seq, wall_ms)?;
                let numbers = self.session.verify_simple(&sealed.checkpoint)?;
                let batch = self.batches.decode(sealed.head, numbers)?;
                self.unacked.push_back(batch.seq);
                self.events.push_back(ProxyEvent::Batch(batch));
            }
            FrameKind::Ping => {
                let ping: Ping = message::decode(&body).map_err(malformed)?;
                // A ping asks for everything held: an agent draining before
                // it stops pings so that it need not wait for the interval.
                self.send_ack(now)?;
                let pong = Pong { t1_ms: ping.t1_ms, t2_ms: wall_ms, t3_ms: wall_ms };
                self.session.seal_into(
                    FrameKind::Pong,
                    &message::encode(&pong),
                    &mut self.outbox,
                )?;
            }
            FrameKind::ControlResponse => {
                let resp: ControlResponse = message::decode(&body).map_err(malformed)?;
                self.events.push_back(ProxyEvent::Response(resp));
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

    /// Sequence numbers carry the agent's clock in their upper 48 bits; one
    /// from beyond the allowed skew would poison deduplication for ever.
    fn check_seq(&self, seq: u64, wall_ms: u64) -> Result<(), ConnError> {
        let limit = wall_ms.saturating_add(self.config.max_skew_ms);
        let time = seq >> 16;
        if time > limit {
            return Err(ConnError::SeqFromTheFuture { seq, ahead_ms: time - limit });
        }
        Ok(())
    }
}
