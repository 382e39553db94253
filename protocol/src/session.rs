//! An established session: per-direction sealed state, counters and key updates.
//!
//! Every frame after the handshake except `Simple` is sealed with AES-256-GCM
//! (AWS-LC, see [`crate::crypto`]) under the sending direction's key. The nonce is the frame's position in that
//! direction under the current key (a 64-bit counter, never sent, never
//! reused), so a replayed, dropped or reordered frame fails authentication,
//! and one failure ends the session. The frame header is the associated data.
//!
//! A direction moves to new keys when its sender sends a `KeyUpdate` frame
//! (sealed under the old key): its sealed and simple keys are each derived
//! from their predecessor and its counter restarts. Senders update after
//! [`REKEY_BYTES`] or [`REKEY_AFTER`], whichever comes first
//! ([`Session::rekey_due`]); a receiver refuses a direction that goes on
//! past [`MAX_BYTES_PER_KEY`] without one.

use std::time::{Duration, Instant};

use crate::crypto::{Aead, AuthError, NONCE_LEN, TAG_LEN, derive_key};
use crate::frame::{Frame, FrameKind, HEADER_LEN};
use crate::secret::Key256;
use crate::simple::{Checkpoint, NumericPayload, SimpleError, SimpleState, SimpleSuite};

/// Bytes (sealed and simple, both counted) after which a sender updates its keys.
pub const REKEY_BYTES: u64 = 1 << 32;
/// Time after which a sender updates its keys.
pub const REKEY_AFTER: Duration = Duration::from_secs(3600);
/// Bytes a receiver accepts under one key before it insists on an update
/// (four times [`REKEY_BYTES`]: senders update well before).
pub const MAX_BYTES_PER_KEY: u64 = 4 * REKEY_BYTES;

const REKEY_SEALED: &[u8] = b"wasmtap/2 rekey sealed";
const REKEY_SIMPLE: &[u8] = b"wasmtap/2 rekey simple";

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The agent.
    Client,
    /// The proxy.
    Server,
}

/// Why a frame could not be sealed or opened. Every error but
/// [`SessionError::NotSealed`] and [`SessionError::TooLarge`] (caller
/// mistakes) means the session must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The frame did not authenticate (altered, replayed, dropped before, reordered).
    #[error("a frame failed authentication")]
    Auth,
    /// The frame kind is not sealed under the strong key.
    #[error("frame kind {0:?} is not a sealed kind")]
    NotSealed(FrameKind),
    /// The payload is too large for one frame.
    #[error("payload of {0} bytes does not fit a frame")]
    TooLarge(usize),
    /// The simple path failed.
    #[error(transparent)]
    Simple(#[from] SimpleError),
    /// A frame of another kind was given to the simple path.
    #[error("frame kind {0:?} is not a simple frame")]
    NotSimple(FrameKind),
    /// Keys may change only between simple-path epochs.
    #[error("key update while simple frames wait for their checkpoint")]
    UpdateInEpoch,
    /// The peer sent more than [`MAX_BYTES_PER_KEY`] under one key.
    #[error("peer did not update its keys within {MAX_BYTES_PER_KEY} bytes")]
    KeyWornOut,
}

/// Whether frames of `kind` are sealed under the strong key once the session is up.
pub fn is_sealed_kind(kind: FrameKind) -> bool {
    use FrameKind::*;
    matches!(
        kind,
        ClientFinished
            | Sealed
            | Ack
            | ControlRequest
            | ControlResponse
            | Ping
            | Pong
            | KeyUpdate
            | Close
    )
}

/// One direction's keys, expanded cipher, counter and usage.
#[derive(Debug)]
pub(crate) struct Direction {
    key: Key256,
    aead: Aead,
    counter: u64,
    simple: SimpleState,
    /// Bytes sealed or simple-encrypted under the current keys.
    bytes: u64,
    /// When the current keys were first used (set at the first check of
    /// [`Session::rekey_due`], so the handshake needs no clock).
    since: Option<Instant>,
}

impl Direction {
    fn new(suite: SimpleSuite, keys: DirectionKeys) -> Self {
        Self {
            aead: Aead::new(&keys.sealed),
            key: keys.sealed,
            counter: 0,
            simple: SimpleState::new(suite, keys.simple),
            bytes: 0,
            since: None,
        }
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }

    fn advance(&mut self, bytes: usize) {
        self.counter += 1;
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }

    fn update(&mut self) -> Result<(), SessionError> {
        if !self.simple.is_idle() {
            return Err(SessionError::UpdateInEpoch);
        }
        self.key = derive_key(&[], &[self.key.expose()], REKEY_SEALED);
        self.aead = Aead::new(&self.key);
        let simple = derive_key(&[], &[self.simple.key().expose()], REKEY_SIMPLE);
        self.simple.rekey(simple);
        self.counter = 0;
        self.bytes = 0;
        self.since = None;
        Ok(())
    }
}

/// The sealed state of an established session.
#[derive(Debug)]
pub struct Session {
    id: u64,
    role: Role,
    send: Direction,
    recv: Direction,
    failed: bool,
}

/// One direction's sealed and simple keys.
#[derive(Debug)]
pub(crate) struct DirectionKeys {
    pub(crate) sealed: Key256,
    pub(crate) simple: Key256,
}

impl Session {
    pub(crate) fn new(
        id: u64,
        role: Role,
        suite: SimpleSuite,
        send: DirectionKeys,
        recv: DirectionKeys,
    ) -> Self {
        Self {
            id,
            role,
            send: Direction::new(suite, send),
            recv: Direction::new(suite, recv),
            failed: false,
        }
    }

    /// The session id the proxy assigned.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The simple path's cipher, as the agent chose it.
    pub fn simple_suite(&self) -> SimpleSuite {
        self.send.simple.suite()
    }

    /// Seals `plaintext` into a frame of `kind` and appends it to `out`.
    pub fn seal_into(
        &mut self,
        kind: FrameKind,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        if !is_sealed_kind(kind) {
            return Err(SessionError::NotSealed(kind));
        }
        let len = u32::try_from(plaintext.len() + TAG_LEN)
            .map_err(|_| SessionError::TooLarge(plaintext.len()))?;
        let header = Frame::header(kind, len);
        out.reserve(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&header);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self.send.aead.seal_detached(&self.send.nonce(), &header, &mut out[start..]);
        out.extend_from_slice(&tag);
        self.send.advance(plaintext.len());
        Ok(())
    }

    /// Seals `plaintext` into a new frame of `kind`.
    pub fn seal(&mut self, kind: FrameKind, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let mut out = Vec::new();
        self.seal_into(kind, plaintext, &mut out)?;
        Ok(out)
    }

    /// Authenticates and decrypts a sealed frame, returning its plaintext.
    /// A `KeyUpdate` frame moves the receiving direction to its next keys
    /// (its plaintext is empty).
    ///
    /// Any failure is final: every later call fails too.
    pub fn open(&mut self, mut frame: Frame) -> Result<Vec<u8>, SessionError> {
        self.open_in_place(&mut frame)?;
        Ok(frame.payload)
    }

    /// [`Session::open`] without giving up the frame: on success its payload
    /// is the plaintext (decrypted in place, the tag cut off).
    pub fn open_in_place(&mut self, frame: &mut Frame) -> Result<(), SessionError> {
        if !is_sealed_kind(frame.kind) {
            return Err(SessionError::NotSealed(frame.kind));
        }
        if self.failed {
            return Err(SessionError::Auth);
        }
        if self.recv.bytes > MAX_BYTES_PER_KEY {
            self.failed = true;
            return Err(SessionError::KeyWornOut);
        }
        let header = frame.header_bytes();
        match self.recv.aead.open(&self.recv.nonce(), &header, &mut frame.payload) {
            Ok(()) => {
                self.recv.advance(frame.payload.len());
                if frame.kind == FrameKind::KeyUpdate {
                    self.recv.update().inspect_err(|_| self.failed = true)?;
                }
                Ok(())
            }
            Err(AuthError) => {
                self.failed = true;
                Err(SessionError::Auth)
            }
        }
    }

    /// Whether this side should update its sending keys now ([`REKEY_BYTES`]
    /// sent or [`REKEY_AFTER`] passed since they were first checked).
    pub fn rekey_due(&mut self, now: Instant) -> bool {
        let since = *self.send.since.get_or_insert(now);
        self.send.bytes >= REKEY_BYTES || now.saturating_duration_since(since) >= REKEY_AFTER
    }

    /// When the sending keys reach [`REKEY_AFTER`]: `None` until their
    /// clock starts, at the first [`Session::rekey_due`] under them.
    pub fn rekey_deadline(&self) -> Option<Instant> {
        self.send.since.map(|since| since + REKEY_AFTER)
    }

    /// Whether the sending keys may change now: no simple frame waits for
    /// its checkpoint ([`Session::update_keys`] refuses otherwise).
    pub fn may_update_keys(&self) -> bool {
        self.send.simple.is_idle()
    }

    /// Appends a `KeyUpdate` frame to `out` and moves the sending direction
    /// to its next keys. Only between simple-path epochs, that is right
    /// after a checkpoint was taken and before the next simple frame.
    pub fn update_keys(&mut self, out: &mut Vec<u8>) -> Result<(), SessionError> {
        if !self.send.simple.is_idle() {
            return Err(SessionError::UpdateInEpoch);
        }
        self.seal_into(FrameKind::KeyUpdate, &[], out)?;
        self.send.update()
    }

    /// Encrypts numbers into a `Simple` frame appended to `out` (nothing for
    /// an empty payload). They are verified by the peer at the next
    /// [`Session::simple_checkpoint`].
    pub fn seal_simple(&mut self, payload: &NumericPayload, out: &mut Vec<u8>) {
        if !payload.is_empty() {
            self.send.simple.seal_into(payload, out);
            self.send.bytes = self.send.bytes.saturating_add(payload.len() as u64);
        }
    }

    /// The checkpoint over the simple frames sent since the previous one, to
    /// carry in the next sealed message.
    pub fn simple_checkpoint(&mut self) -> Checkpoint {
        self.send.simple.checkpoint()
    }

    /// Decrypts a received `Simple` frame and holds it, unverified.
    pub fn open_simple(&mut self, frame: Frame) -> Result<(), SessionError> {
        if frame.kind != FrameKind::Simple {
            return Err(SessionError::NotSimple(frame.kind));
        }
        let len = frame.payload.len() as u64;
        self.recv.simple.open(frame)?;
        self.recv.bytes = self.recv.bytes.saturating_add(len);
        Ok(())
    }

    /// Checks a received checkpoint and releases the payloads it covers, in
    /// the order they arrived. A mismatch is fatal: close the session.
    /// They stay readable until the next simple frame is held (so that a
    /// steady stream of batches reuses the same memory).
    pub fn verify_simple(&mut self, cp: &Checkpoint) -> Result<&[NumericPayload], SessionError> {
        Ok(self.recv.simple.verify(cp)?)
    }

    #[cfg(test)]
    pub(crate) fn send_counter(&self) -> u64 {
        self.send.counter
    }

    /// A client session whose sending direction has exactly these keys.
    #[cfg(test)]
    pub(crate) fn sending_with(suite: SimpleSuite, sealed: Key256, simple: Key256) -> Self {
        let recv = DirectionKeys { sealed: Key256::new([0; 32]), simple: Key256::new([0; 32]) };
        Self::new(7, Role::Client, suite, DirectionKeys { sealed, simple }, recv)
    }

    #[cfg(test)]
    pub(crate) fn with_keys(suite: SimpleSuite, send: [u8; 2], recv: [u8; 2]) -> Self {
        let keys = |[a, b]: [u8; 2]| DirectionKeys {
            sealed: Key256::new([a; 32]),
            simple: Key256::new([b; 32]),
        };
        Self::new(7, Role::Client, suite, keys(send), keys(recv))
    }
}

#[cfg(test)]
mod tests;
