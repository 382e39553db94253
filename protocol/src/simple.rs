//! The simple path: numeric payloads without a tag on the wire.
//!
//! Numeric values (the bulk of what an agent sends) travel in `Simple`
//! frames that carry only the ciphertext. Each frame is one message of the
//! session's simple-path [`SimpleSuite`] (an AEAD: AEGIS-128L, or
//! ChaCha20-Poly1305 where the agent's CPU has no AES instructions) under
//! the direction's simple key, with no associated data (see `state` for why
//! none is needed) and the frame's number under that key as the nonce. Its
//! tag does not travel
//! with it: the sender collects the tags of a batch's frames and the next
//! sealed message carries them in a [`Checkpoint`]. The receiver holds the
//! frames, still encrypted, until the checkpoint arrives, then opens each
//! against its tag and releases the payloads only if every one
//! authenticates and none is missing. A tampered, dropped, replayed or
//! reordered simple frame fails there, and the session closes.
//!
//! What this saves: the sealed path's AES-256-GCM for the numbers (AEGIS-128L
//! is cheaper per byte where AES instructions exist, ChaCha20-Poly1305 far
//! cheaper where they do not) and nothing else; the tag bytes only move into
//! the sealed message. The benchmark (`cargo bench -p wasmtap-protocol`)
//! reports both paths side by side.
//!
//! Modules: [`numeric`](NumericPayload) (the payload encoding), `suite`
//! (the ciphers and the suite byte), `state` (one direction's counters and
//! held frames).
//!
//! The API takes only [`NumericPayload`]s, which can be built only from
//! numbers: there is no way to put bytes or text into one.

mod numeric;
mod state;
mod suite;

use serde::{Deserialize, Serialize};

pub use numeric::{NumericError, NumericPayload, NumericReader, NumericWriter};
pub(crate) use state::SimpleState;
pub use suite::SimpleSuite;

/// Most simple-payload bytes a receiver holds before a checkpoint.
pub const MAX_PENDING_BYTES: u64 = 8 << 20;
/// Most simple frames a receiver holds before a checkpoint.
pub const MAX_PENDING_FRAMES: u32 = 16_384;

/// The tags of the simple frames sent since the previous checkpoint,
/// carried inside a sealed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The epoch it closes (the number of checkpoints before it under the
    /// current key).
    pub epoch: u64,
    /// One tag per simple frame of the epoch, in the order they were sent.
    pub tags: Vec<[u8; 16]>,
}

/// Why a simple frame or checkpoint was refused. The session must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimpleError {
    /// More held bytes than [`MAX_PENDING_BYTES`], or more frames than [`MAX_PENDING_FRAMES`].
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

#[cfg(test)]
mod tests;
