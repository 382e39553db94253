//! Framing: every message on the wire is one frame.
//!
//! ```text
//! +---------+------+----------------+-----------------+
//! | version | kind | length (u32 BE)| payload         |
//! |  1 byte |  1 B |    4 bytes     | `length` bytes  |
//! +---------+------+----------------+-----------------+
//! ```
//!
//! The decoder checks the version, the kind and the declared length against
//! its limit before it buffers the payload, and keeps "need more bytes"
//! (`Ok(None)`) apart from "invalid: close the connection" (`Err`).

/// The protocol version this crate speaks.
pub const VERSION: u8 = 2;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 6;
/// Default largest payload accepted from a peer (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: u32 = 1 << 20;

/// What a frame carries. Values are fixed by the spec (`PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Agent → proxy: first handshake message.
    ClientHello = 0x01,
    /// Proxy → agent: second handshake message, carrying the session keys.
    ServerHello = 0x02,
    /// Agent → proxy: key confirmation.
    ClientFinished = 0x03,
    /// Sealed data (AES-256-GCM under the strong key).
    Sealed = 0x10,
    /// Numeric data under the simple key.
    Simple = 0x11,
    /// Proxy → agent: a batch was durably stored (sealed).
    Ack = 0x12,
    /// Proxy → agent: a control request (sealed).
    ControlRequest = 0x13,
    /// Agent → proxy: a control response (sealed).
    ControlResponse = 0x14,
    /// Keepalive and time sync request (sealed).
    Ping = 0x15,
    /// Keepalive and time sync answer (sealed).
    Pong = 0x16,
    /// The sender moves its direction to the next keys (sealed, empty).
    KeyUpdate = 0x17,
    /// Closing the session, with a reason (sealed once the session is up).
    Close = 0x1f,
}

impl FrameKind {
    /// Maps a wire byte to a kind.
    pub fn from_u8(b: u8) -> Option<Self> {
        use FrameKind::*;
        Some(match b {
            0x01 => ClientHello,
            0x02 => ServerHello,
            0x03 => ClientFinished,
            0x10 => Sealed,
            0x11 => Simple,
            0x12 => Ack,
            0x13 => ControlRequest,
            0x14 => ControlResponse,
            0x15 => Ping,
            0x16 => Pong,
            0x17 => KeyUpdate,
            0x1f => Close,
            _ => return None,
        })
    }
}

/// Why a byte stream is not a valid frame sequence. The connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer speaks another protocol version (or another protocol).
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    /// The kind byte is not one the spec defines.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The declared length is above the limit.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Declared payload length.
        len: u32,
        /// The decoder's limit.
        max: u32,
    },
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: FrameKind,
    /// The payload, still sealed where the kind is sealed.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The header bytes of a frame of `kind` with a payload of `len` bytes.
    pub fn header(kind: FrameKind, len: u32) -> [u8; HEADER_LEN] {
        let l = len.to_be_bytes();
        [VERSION, kind as u8, l[0], l[1], l[2], l[3]]
    }

    /// This frame's header.
    pub fn header_bytes(&self) -> [u8; HEADER_LEN] {
        Self::header(self.kind, payload_len(&self.payload))
    }

    /// Appends the frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// The frame as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        self.encode(&mut out);
        out
    }
}

/// Payload length as the `u32` the header carries. Payloads are built by this
/// crate and bounded far below 4 GiB.
pub(crate) fn payload_len(payload: &[u8]) -> u32 {
    u32::try_from(payload.len()).unwrap_or(u32::MAX)
}

/// Parses a header: `Ok(None)` when fewer than [`HEADER_LEN`] bytes are given.
pub fn parse_header(buf: &[u8], max: u32) -> Result<Option<(FrameKind, u32)>, FrameError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        // Reject a wrong version as soon as its byte arrives.
        if let Some(&v) = buf.first()
            && v != VERSION
        {
            return Err(FrameError::BadVersion(v));
        }
        return Ok(None);
    };
    if h[0] != VERSION {
        return Err(FrameError::BadVersion(h[0]));
    }
    let kind = FrameKind::from_u8(h[1]).ok_or(FrameError::UnknownKind(h[1]))?;
    let len = u32::from_be_bytes([h[2], h[3], h[4], h[5]]);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some((kind, len)))
}

/// Reassembles frames from a byte stream delivered in pieces of any size.
///
/// Frames are read at a cursor into the buffer; the consumed prefix is
/// dropped only once it is at least half the buffer, so many small frames in
/// one read cost one copy each, not one shift of the whole buffer each.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames.
    start: usize,
    max: u32,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl FrameDecoder {
    /// A decoder accepting payloads of at most `max` bytes.
    pub fn new(max: u32) -> Self {
        Self { buf: Vec::new(), start: 0, max }
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Changes the payload limit (a server raises it after the handshake).
    pub fn set_max(&mut self, max: u32) {
        self.max = max;
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Frees the buffer's memory when nothing is buffered (an idle session
    /// then holds none).
    pub fn shrink(&mut self) {
        if self.buffered() == 0 {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or an
    /// error after which the connection must close.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = &self.buf[self.start..];
        let Some((kind, len)) = parse_header(rest, self.max)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + len as usize;
        let Some(frame) = rest.get(..total) else {
            return Ok(None);
        };
        let payload = frame[HEADER_LEN..].to_vec();
        self.start += total;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(Frame { kind, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let f = Frame { kind: FrameKind::Sealed, payload: vec![1, 2, 3] };
        let bytes = f.to_bytes();
        assert_eq!(bytes[..HEADER_LEN], [VERSION, 0x10, 0, 0, 0, 3]);
        let mut d = FrameDecoder::default();
        d.push(&bytes);
        assert_eq!(d.next_frame(), Ok(Some(f)));
        assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let frames: Vec<Frame> = (0..4u8)
            .map(|i| Frame { kind: FrameKind::Ping, payload: vec![i; usize::from(i) * 3] })
            .collect();
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        for cut in 0..=wire.len() {
            let mut d = FrameDecoder::default();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                d.push(part);
                while let Some(f) = d.next_frame().expect("valid") {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "cut at {cut}");
        }
    }

    #[test]
    fn many_small_frames_in_one_read_and_leftovers_across_reads() {
        let mut wire = Vec::new();
        for i in 0..1_000u32 {
            Frame { kind: FrameKind::Ping, payload: i.to_be_bytes().to_vec() }.encode(&mut wire);
        }
        let mut d = FrameDecoder::default();
        let mut got = 0u32;
        for chunk in wire.chunks(4_093) {
            d.push(chunk);
            while let Some(f) = d.next_frame().expect("valid") {
                assert_eq!(f.payload, got.to_be_bytes());
                got += 1;
            }
            assert!(d.buffered() < 10, "only a partial frame stays buffered");
        }
        assert_eq!(got, 1_000);
        d.shrink();
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut d = FrameDecoder::new(16);
        d.push(&Frame::header(FrameKind::Sealed, 17));
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: 17, max: 16 }));
    }

    #[test]
    fn bad_version_and_kind_are_invalid_not_incomplete() {
        let mut d = FrameDecoder::default();
        d.push(b"G");
        assert_eq!(d.next_frame(), Err(FrameError::BadVersion(b'G')));
        let mut d = FrameDecoder::default();
        d.push(&[VERSION, 0x7e, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind(0x7e)));
    }
}
