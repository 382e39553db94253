//! An established session: per-direction sealed state, counters and rekeying.
//!
//! Every frame after the handshake except `Simple` is sealed with AES-256-GCM
//! under the sending direction's key. The nonce is the frame's position in that
//! direction (a 64-bit counter, never sent, never reused), so a replayed,
//! dropped or reordered frame fails authentication. The frame header is the
//! associated data. After [`REKEY_INTERVAL`] frames a direction moves to a key
//! derived from the previous one and restarts its counter.

use crate::crypto::{Aead, AuthError, NONCE_LEN, TAG_LEN, derive_key};
use crate::frame::{Frame, FrameKind, HEADER_LEN};
use crate::secret::Key256;
use crate::simple::{Checkpoint, NumericPayload, SimpleError, SimpleState};

/// Frames sealed under one key before both sides move to the next
/// (2^24, far below AES-GCM's per-key limits for our frame sizes).
pub const REKEY_INTERVAL: u64 = 1 << 24;
/// Authentication failures tolerated in one session before it must close.
pub const MAX_AUTH_FAILURES: u32 = 3;

const REKEY_INFO: &[u8] = b"wasmtap/1 rekey";

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The agent.
    Client,
    /// The proxy.
    Server,
}

/// Why a frame could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The frame did not authenticate; the session may go on.
    #[error("frame failed authentication ({failures} so far)")]
    Auth {
        /// Failures in this session so far.
        failures: u32,
    },
    /// Too many frames failed authentication: close the session.
    #[error("{MAX_AUTH_FAILURES} frames failed authentication; closing")]
    TooManyAuthFailures,
    /// The frame kind is not sealed under the strong key.
    #[error("frame kind {0:?} is not a sealed kind")]
    NotSealed(FrameKind),
    /// The payload is too large for one frame.
    #[error("payload of {0} bytes does not fit a frame")]
    TooLarge(usize),
    /// The simple path failed: close the session.
    #[error(transparent)]
    Simple(#[from] SimpleError),
    /// A frame of another kind was given to the simple path.
    #[error("frame kind {0:?} is not a simple frame")]
    NotSimple(FrameKind),
}

/// Whether frames of `kind` are sealed under the strong key once the session is up.
pub fn is_sealed_kind(kind: FrameKind) -> bool {
    use FrameKind::*;
    matches!(
        kind,
        ClientFinished | Sealed | Ack | ControlRequest | ControlResponse | Ping | Pong | Close
    )
}

/// One direction's key, expanded cipher and counter.
#[derive(Debug)]
pub(crate) struct Direction {
    key: Key256,
    aead: Aead,
    counter: u64,
    rekey_interval: u64,
}

impl Direction {
    pub(crate) fn new(key: Key256, rekey_interval: u64) -> Self {
        Self { aead: Aead::new(&key), key, counter: 0, rekey_interval }
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut n = [0u8; NONCE_LEN];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }

    fn advance(&mut self) {
        self.counter += 1;
        if self.counter == self.rekey_interval {
            self.key = derive_key(&[], &[self.key.expose()], REKEY_INFO);
            self.aead = Aead::new(&self.key);
            self.counter = 0;
        }
    }
}

/// The sealed state of an established session.
#[derive(Debug)]
pub struct Session {
    id: u64,
    role: Role,
    send: Direction,
    recv: Direction,
    simple_send: SimpleState,
    simple_recv: SimpleState,
    auth_failures: u32,
}

/// One direction's sealed and simple keys.
#[derive(Debug)]
pub(crate) struct DirectionKeys {
    pub(crate) sealed: Key256,
    pub(crate) simple: Key256,
}

impl Session {
    pub(crate) fn new(id: u64, role: Role, send: DirectionKeys, recv: DirectionKeys) -> Self {
        Self::with_rekey_interval(id, role, send, recv, REKEY_INTERVAL)
    }

    pub(crate) fn with_rekey_interval(
        id: u64,
        role: Role,
        send: DirectionKeys,
        recv: DirectionKeys,
        rekey_interval: u64,
    ) -> Self {
        Self {
            id,
            role,
            send: Direction::new(send.sealed, rekey_interval),
            recv: Direction::new(recv.sealed, rekey_interval),
            simple_send: SimpleState::new(send.simple),
            simple_recv: SimpleState::new(recv.simple),
            auth_failures: 0,
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
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.send.aead.seal(&self.send.nonce(), &header, &mut buf);
        self.send.advance();
        out.reserve(HEADER_LEN + buf.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&buf);
        Ok(())
    }

    /// Seals `plaintext` into a new frame of `kind`.
    pub fn seal(&mut self, kind: FrameKind, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let mut out = Vec::new();
        self.seal_into(kind, plaintext, &mut out)?;
        Ok(out)
    }

    /// Authenticates and decrypts a sealed frame, returning its plaintext.
    ///
    /// A failure does not advance the receive counter, so an injected frame
    /// does not desynchronise the session; after [`MAX_AUTH_FAILURES`] the
    /// error becomes [`SessionError::TooManyAuthFailures`].
    pub fn open(&mut self, frame: Frame) -> Result<Vec<u8>, SessionError> {
        if !is_sealed_kind(frame.kind) {
            return Err(SessionError::NotSealed(frame.kind));
        }
        if self.auth_failures >= MAX_AUTH_FAILURES {
            return Err(SessionError::TooManyAuthFailures);
        }
        let header = frame.header_bytes();
        let mut buf = frame.payload;
        match self.recv.aead.open(&self.recv.nonce(), &header, &mut buf) {
            Ok(()) => {
                self.recv.advance();
                Ok(buf)
            }
            Err(AuthError) => {
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    Err(SessionError::TooManyAuthFailures)
                } else {
                    Err(SessionError::Auth { failures: self.auth_failures })
                }
            }
        }
    }

    /// Encrypts numbers into a `Simple` frame appended to `out`. They are
    /// verified by the peer at the next [`Session::simple_checkpoint`].
    pub fn seal_simple(&mut self, payload: &NumericPayload, out: &mut Vec<u8>) {
        self.simple_send.seal_into(payload, out);
    }

    /// The checkpoint over the simple frames sent since the previous one, to
    /// carry in the next sealed message.
    pub fn simple_checkpoint(&mut self) -> Checkpoint {
        self.simple_send.checkpoint()
    }

    /// Decrypts a received `Simple` frame and holds it, unverified.
    pub fn open_simple(&mut self, frame: Frame) -> Result<(), SessionError> {
        if frame.kind != FrameKind::Simple {
            return Err(SessionError::NotSimple(frame.kind));
        }
        Ok(self.simple_recv.open(frame)?)
    }

    /// Checks a received checkpoint and releases the payloads it covers, in
    /// the order they arrived. A mismatch is fatal: close the session.
    pub fn verify_simple(&mut self, cp: &Checkpoint) -> Result<Vec<NumericPayload>, SessionError> {
        Ok(self.simple_recv.verify(cp)?)
    }

    #[cfg(test)]
    pub(crate) fn send_counter(&self) -> u64 {
        self.send.counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(interval: u64) -> (Session, Session) {
        let keys = |n: u8| DirectionKeys {
            sealed: Key256::new([n; 32]),
            simple: Key256::new([n + 10; 32]),
        };
        (
            Session::with_rekey_interval(7, Role::Client, keys(1), keys(2), interval),
            Session::with_rekey_interval(7, Role::Server, keys(2), keys(1), interval),
        )
    }

    fn frame(bytes: &[u8]) -> Frame {
        let mut d = crate::frame::FrameDecoder::default();
        d.push(bytes);
        d.next_frame().expect("valid").expect("complete")
    }

    #[test]
    fn round_trip_both_ways() {
        let (mut c, mut s) = pair(REKEY_INTERVAL);
        let f = c.seal(FrameKind::Sealed, b"up").expect("seals");
        assert_eq!(s.open(frame(&f)), Ok(b"up".to_vec()));
        let f = s.seal(FrameKind::Ack, b"down").expect("seals");
        assert_eq!(c.open(frame(&f)), Ok(b"down".to_vec()));
    }

    #[test]
    fn replay_and_reorder_fail() {
        let (mut c, mut s) = pair(REKEY_INTERVAL);
        let f1 = c.seal(FrameKind::Sealed, b"one").expect("seals");
        let f2 = c.seal(FrameKind::Sealed, b"two").expect("seals");
        assert!(matches!(s.open(frame(&f2)), Err(SessionError::Auth { .. })));
        assert_eq!(s.open(frame(&f1)), Ok(b"one".to_vec()));
        assert!(matches!(s.open(frame(&f1)), Err(SessionError::Auth { .. })));
        // Failed frames did not move the counter: the genuine next frame still opens.
        assert_eq!(s.open(frame(&f2)), Ok(b"two".to_vec()));
        assert_eq!(s.open(frame(&f2)), Err(SessionError::TooManyAuthFailures));
        let f3 = c.seal(FrameKind::Sealed, b"three").expect("seals");
        assert_eq!(s.open(frame(&f3)), Err(SessionError::TooManyAuthFailures));
    }

    #[test]
    fn header_is_authenticated() {
        let (mut c, mut s) = pair(REKEY_INTERVAL);
        let mut f = frame(&c.seal(FrameKind::Sealed, b"x").expect("seals"));
        f.kind = FrameKind::Ping;
        assert!(matches!(s.open(f), Err(SessionError::Auth { .. })));
    }

    #[test]
    fn rekeys_in_step_and_never_reuses_a_nonce() {
        let (mut c, mut s) = pair(4);
        let mut seen = std::collections::HashSet::new();
        for i in 0..10u8 {
            let f = c.seal(FrameKind::Sealed, &[i]).expect("seals");
            assert!(seen.insert(f.clone()), "identical ciphertext for distinct frames");
            assert_eq!(s.open(frame(&f)), Ok(vec![i]));
        }
        assert_eq!(c.send_counter(), 10 % 4);
    }

    #[test]
    fn simple_kind_is_not_sealed_here() {
        let (mut c, _) = pair(REKEY_INTERVAL);
        assert_eq!(
            c.seal(FrameKind::Simple, b"1"),
            Err(SessionError::NotSealed(FrameKind::Simple))
        );
    }
}
