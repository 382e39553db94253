//! The simple path: a cheap cipher for numeric payloads.
//!
//! Numeric values (the bulk of what an agent sends) travel in `Simple`
//! frames, encrypted with a ChaCha8 keystream under the direction's simple
//! key and carrying no per-frame tag. Their integrity is checked in bulk: the
//! sender absorbs every simple frame (header and ciphertext) into a POLYVAL
//! universal hash, and the next sealed message carries a [`Checkpoint`] with
//! the frame count, byte count and masked tag. The receiver holds simple
//! payloads as unverified until the checkpoint matches, and only then
//! releases them. A tampered, dropped, replayed or reordered simple frame
//! makes the checkpoint fail, and the session closes.
//!
//! Keystream use: checkpoint epoch `e` uses ChaCha8 with nonce
//! `0u32 ‖ e (u64 BE)`. Its first 64-byte block is reserved: bytes 0..16 are
//! the epoch's POLYVAL key and bytes 16..32 the tag mask. Payload bytes use
//! the keystream from block 1 on. Epochs only move forward, so no keystream
//! byte is ever used twice.
//!
//! The API takes only [`NumericPayload`]s, which can be built only from
//! numbers: there is no way to put bytes or text into one.

use chacha20::ChaCha8;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use polyval::Polyval;
use polyval::universal_hash::UniversalHash;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::frame::{Frame, FrameKind};
use crate::secret::Key256;

/// Most unverified simple-payload bytes a receiver holds before a checkpoint.
pub const MAX_PENDING_BYTES: u64 = 8 << 20;
/// Most simple frames a receiver holds before a checkpoint.
pub const MAX_PENDING_FRAMES: u32 = 16_384;

/// A payload of numbers, encoded compactly. It can only be built with
/// [`NumericWriter`], so it never holds text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumericPayload {
    bytes: Vec<u8>,
}

impl NumericPayload {
    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it holds no numbers.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A reader over the numbers, in the order they were written.
    pub fn reader(&self) -> NumericReader<'_> {
        NumericReader { buf: &self.bytes }
    }
}

/// Builds a [`NumericPayload`] from unsigned, signed and floating-point numbers.
#[derive(Debug, Default)]
pub struct NumericWriter {
    bytes: Vec<u8>,
}

impl NumericWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an unsigned integer (LEB128 varint: 1 byte below 128).
    pub fn u64(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.bytes.push(byte);
                return self;
            }
            self.bytes.push(byte | 0x80);
        }
    }

    /// Appends a signed integer (zigzag, then varint: small magnitudes are short).
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(((v << 1) ^ (v >> 63)) as u64)
    }

    /// Appends a float as its 8 IEEE-754 bytes, little-endian.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The finished payload.
    pub fn finish(self) -> NumericPayload {
        NumericPayload { bytes: self.bytes }
    }
}

/// A numeric payload ended early or holds an overlong varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed numeric payload")]
pub struct NumericError;

/// Reads numbers back from a [`NumericPayload`].
#[derive(Debug)]
pub struct NumericReader<'a> {
    buf: &'a [u8],
}

impl NumericReader<'_> {
    /// The next unsigned integer.
    pub fn u64(&mut self) -> Result<u64, NumericError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(NumericError)?;
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err(NumericError);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(NumericError)
    }

    /// The next signed integer.
    pub fn i64(&mut self) -> Result<i64, NumericError> {
        let z = self.u64()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// The next float.
    pub fn f64(&mut self) -> Result<f64, NumericError> {
        let (head, rest) = self.buf.split_first_chunk::<8>().ok_or(NumericError)?;
        self.buf = rest;
        Ok(f64::from_le_bytes(*head))
    }

    /// Whether every number was read.
    pub fn is_done(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The integrity check of the simple frames sent since the previous one,
/// carried inside a sealed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The epoch it closes.
    pub epoch: u64,
    /// Simple frames in the epoch.
    pub frames: u32,
    /// Payload bytes in those frames.
    pub bytes: u64,
    /// Masked POLYVAL tag over their headers and ciphertexts.
    pub tag: [u8; 16],
}

/// Why a simple frame or checkpoint was refused. The session must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimpleError {
    /// More unverified bytes than [`MAX_PENDING_BYTES`], or more frames than [`MAX_PENDING_FRAMES`].
    #[error(
        "more than {MAX_PENDING_BYTES} bytes or {MAX_PENDING_FRAMES} simple frames without a checkpoint"
    )]
    TooMuchPending,
    /// A simple frame without a payload (it carries nothing and costs the receiver work).
    #[error("empty simple frame")]
    Empty,
    /// The checkpoint does not match the frames received.
    #[error(
        "simple-path checkpoint does not match: frames were altered, lost, replayed or reordered"
    )]
    CheckpointMismatch,
}

/// One direction's simple-path state (the same type on both ends).
pub(crate) struct SimpleState {
    key: Key256,
    epoch: u64,
    cipher: ChaCha8,
    mac: Polyval,
    mask: [u8; 16],
    frames: u32,
    bytes: u64,
    pending: Vec<NumericPayload>,
}

impl std::fmt::Debug for SimpleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleState")
            .field("epoch", &self.epoch)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

fn epoch_state(key: &Key256, epoch: u64) -> (ChaCha8, Polyval, [u8; 16]) {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&epoch.to_be_bytes());
    let mut cipher = ChaCha8::new(key.expose().into(), &nonce.into());
    let mut block0 = [0u8; 64];
    cipher.apply_keystream(&mut block0);
    let mut h = [0u8; 16];
    h.copy_from_slice(&block0[..16]);
    let mut mask = [0u8; 16];
    mask.copy_from_slice(&block0[16..32]);
    let mac = Polyval::new(&h.into());
    block0.zeroize();
    h.zeroize();
    debug_assert_eq!(cipher.current_pos::<u64>(), 64);
    (cipher, mac, mask)
}

impl SimpleState {
    pub(crate) fn new(key: Key256) -> Self {
        let (cipher, mac, mask) = epoch_state(&key, 0);
        Self { key, epoch: 0, cipher, mac, mask, frames: 0, bytes: 0, pending: Vec::new() }
    }

    fn absorb(&mut self, header: &[u8], ciphertext: &[u8]) {
        self.mac.update_padded(header);
        self.mac.update_padded(ciphertext);
        self.frames = self.frames.saturating_add(1);
        self.bytes += ciphertext.len() as u64;
    }

    fn close_epoch(&mut self) -> Checkpoint {
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&u64::from(self.frames).to_be_bytes());
        lengths[8..].copy_from_slice(&self.bytes.to_be_bytes());
        self.mac.update_padded(&lengths);
        let (cipher, mac, mask) = epoch_state(&self.key, self.epoch + 1);
        let done = std::mem::replace(&mut self.mac, mac);
        let mut tag: [u8; 16] = done.finalize().into();
        for (t, m) in tag.iter_mut().zip(self.mask) {
            *t ^= m;
        }
        let cp = Checkpoint { epoch: self.epoch, frames: self.frames, bytes: self.bytes, tag };
        self.cipher = cipher;
        self.mask = mask;
        self.epoch += 1;
        self.frames = 0;
        self.bytes = 0;
        cp
    }

    /// Sender: encrypts `payload` into a `Simple` frame appended to `out`.
    pub(crate) fn seal_into(&mut self, payload: &NumericPayload, out: &mut Vec<u8>) {
        let header = Frame::header(FrameKind::Simple, crate::frame::payload_len(&payload.bytes));
        out.extend_from_slice(&header);
        let start = out.len();
        out.extend_from_slice(&payload.bytes);
        self.cipher.apply_keystream(&mut out[start..]);
        self.absorb(&header, &out[start..]);
    }

    /// Sender: the checkpoint over everything sent since the last one.
    pub(crate) fn checkpoint(&mut self) -> Checkpoint {
        self.close_epoch()
    }

    /// Receiver: decrypts a `Simple` frame and holds it until the checkpoint.
    pub(crate) fn open(&mut self, frame: Frame) -> Result<(), SimpleError> {
        if frame.payload.is_empty() {
            return Err(SimpleError::Empty);
        }
        if self.bytes + frame.payload.len() as u64 > MAX_PENDING_BYTES
            || self.frames >= MAX_PENDING_FRAMES
        {
            return Err(SimpleError::TooMuchPending);
        }
        let header = frame.header_bytes();
        let mut bytes = frame.payload;
        self.absorb(&header, &bytes);
        self.cipher.apply_keystream(&mut bytes);
        self.pending.push(NumericPayload { bytes });
        Ok(())
    }

    /// Whether no simple frame was sent or received since the last checkpoint.
    pub(crate) fn is_idle(&self) -> bool {
        self.frames == 0 && self.pending.is_empty()
    }

    /// Moves to `key`, starting again at epoch 0. Only between epochs
    /// (see [`SimpleState::is_idle`]): both ends then agree where the new
    /// key starts.
    pub(crate) fn rekey(&mut self, key: Key256) {
        let (cipher, mac, mask) = epoch_state(&key, 0);
        *self = Self { key, epoch: 0, cipher, mac, mask, frames: 0, bytes: 0, pending: Vec::new() };
    }

    /// The current key (to derive the next one from).
    pub(crate) fn key(&self) -> &Key256 {
        &self.key
    }

    /// Receiver: checks `cp` against the frames held, and releases them.
    pub(crate) fn verify(&mut self, cp: &Checkpoint) -> Result<Vec<NumericPayload>, SimpleError> {
        let pending = std::mem::take(&mut self.pending);
        let expected = self.close_epoch();
        let tag_ok: bool = expected.tag.ct_eq(&cp.tag).into();
        if tag_ok && expected == *cp { Ok(pending) } else { Err(SimpleError::CheckpointMismatch) }
    }
}

#[cfg(test)]
mod tests;
