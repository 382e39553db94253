//! One direction's simple-path state, the same type on both ends: the
//! suite's key, the number of the next frame under it (the nonce), the
//! epoch, and the sender's tags or the receiver's held frames.
//!
//! No associated data: a frame that reaches the simple path has version 2
//! and kind `Simple` (the decoder and the session refuse anything else),
//! so the only variable field of its header is the length, and both suites
//! authenticate the message length themselves.

use zeroize::Zeroize;

use super::suite::{SimpleSuite, SuiteKey};
use super::{Checkpoint, MAX_PENDING_BYTES, MAX_PENDING_FRAMES, NumericPayload, SimpleError};
use crate::frame::{Frame, FrameKind, HEADER_LEN, payload_len};
use crate::secret::Key256;

pub(crate) struct SimpleState {
    /// `k_simple`, kept to derive the next one from.
    key: Key256,
    cipher: SuiteKey,
    /// The number of the next simple frame under this key: its nonce.
    next: u64,
    /// Checkpoints taken (sender) or verified (receiver) under this key.
    epoch: u64,
    /// Sender: the tags of the frames sent since the last checkpoint.
    tags: Vec<[u8; 16]>,
    /// Receiver: the frames held since the last checkpoint, still
    /// encrypted; after a checkpoint matched, its payloads, decrypted,
    /// until the next frame arrives.
    held: Vec<NumericPayload>,
    /// Whether `held` is the last checkpoint's released payloads.
    released: bool,
    pending_bytes: u64,
}

impl std::fmt::Debug for SimpleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleState")
            .field("suite", &self.cipher.suite())
            .field("next", &self.next)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl SimpleState {
    pub(crate) fn new(suite: SimpleSuite, key: Key256) -> Self {
        Self {
            cipher: SuiteKey::new(suite, &key),
            key,
            next: 0,
            epoch: 0,
            tags: Vec::new(),
            held: Vec::new(),
            released: false,
            pending_bytes: 0,
        }
    }

    pub(crate) fn suite(&self) -> SimpleSuite {
        self.cipher.suite()
    }

    /// Sender: encrypts `payload` into a `Simple` frame appended to `out`.
    pub(crate) fn seal_into(&mut self, payload: &NumericPayload, out: &mut Vec<u8>) {
        let header = Frame::header(FrameKind::Simple, payload_len(&payload.bytes));
        out.reserve(HEADER_LEN + payload.bytes.len());
        out.extend_from_slice(&header);
        let start = out.len();
        out.extend_from_slice(&payload.bytes);
        let tag = self.cipher.seal(self.next, &mut out[start..]);
        self.tags.push(tag);
        self.next += 1;
    }

    /// Sender: the checkpoint over everything sent since the last one.
    pub(crate) fn checkpoint(&mut self) -> Checkpoint {
        let cp = Checkpoint { epoch: self.epoch, tags: std::mem::take(&mut self.tags) };
        self.epoch += 1;
        cp
    }

    /// Receiver: holds a `Simple` frame, still encrypted, until the checkpoint.
    pub(crate) fn open(&mut self, frame: Frame) -> Result<(), SimpleError> {
        self.forget_released();
        if frame.payload.is_empty() {
            return Err(SimpleError::Empty);
        }
        let len = frame.payload.len() as u64;
        if self.pending_bytes + len > MAX_PENDING_BYTES
            || self.held.len() >= MAX_PENDING_FRAMES as usize
        {
            return Err(SimpleError::TooMuchPending);
        }
        self.held.push(NumericPayload { bytes: frame.payload });
        self.pending_bytes += len;
        self.next += 1;
        Ok(())
    }

    /// Drops the payloads the last checkpoint released (keeping the room).
    fn forget_released(&mut self) {
        if self.released {
            self.held.clear();
            self.released = false;
        }
    }

    /// Whether no simple frame was sent or received since the last checkpoint.
    pub(crate) fn is_idle(&self) -> bool {
        self.tags.is_empty() && (self.released || self.held.is_empty())
    }

    /// Moves to `key`, starting again at frame 0 and epoch 0. Only between
    /// epochs (see [`SimpleState::is_idle`]): both ends then agree where the
    /// new key starts.
    pub(crate) fn rekey(&mut self, key: Key256) {
        *self = Self::new(self.suite(), key);
    }

    /// The current key (to derive the next one from).
    pub(crate) fn key(&self) -> &Key256 {
        &self.key
    }

    /// Receiver: opens the held frames against the checkpoint's tags and
    /// releases them, in arrival order, only if every one authenticates.
    /// They stay readable until the next frame is held.
    pub(crate) fn verify(&mut self, cp: &Checkpoint) -> Result<&[NumericPayload], SimpleError> {
        self.forget_released();
        let held = self.held.len();
        let first = self.next - held as u64;
        let epoch = self.epoch;
        self.epoch += 1;
        self.pending_bytes = 0;
        if cp.epoch != epoch || cp.tags.len() != held {
            self.held.clear();
            return Err(SimpleError::CheckpointMismatch);
        }
        for ((n, payload), tag) in (first..).zip(&mut self.held).zip(&cp.tags) {
            if self.cipher.open(n, tag, &mut payload.bytes).is_err() {
                for p in &mut self.held {
                    p.bytes.zeroize();
                }
                self.held.clear();
                return Err(SimpleError::CheckpointMismatch);
            }
        }
        self.released = true;
        Ok(&self.held)
    }
}
