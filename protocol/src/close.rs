//! Close frames: why a peer ends the session.

use std::fmt;

use crate::codec::{DecodeError, Reader, put_short_str};

/// Longest close message, in bytes.
pub const MAX_CLOSE_MESSAGE: usize = 200;

/// Machine-readable reason for a close. Values are fixed by the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseCode {
    /// Orderly end.
    Normal = 0,
    /// The proxy does not accept these credentials (unknown project, unknown
    /// key, wrong key or a replayed hello: one answer for all of them).
    Refused = 1,
    /// The peer broke the protocol (bad frame, unexpected message).
    ProtocolError = 2,
    /// The peer is shutting down.
    Shutdown = 3,
    /// A frame failed authentication.
    AuthFailure = 4,
    /// A deadline passed (handshake, idle).
    Timeout = 5,
    /// The peer is over a resource limit.
    Overloaded = 6,
    /// The agent's clock is too far from the proxy's.
    ClockSkew = 7,
    /// The agent's identity is not the one bound to its name, or it awaits approval.
    IdentityRefused = 8,
    /// Any code this build does not know.
    Other = 255,
}

impl CloseCode {
    fn from_u8(b: u8) -> Self {
        use CloseCode::*;
        match b {
            0 => Normal,
            1 => Refused,
            2 => ProtocolError,
            3 => Shutdown,
            4 => AuthFailure,
            5 => Timeout,
            6 => Overloaded,
            7 => ClockSkew,
            8 => IdentityRefused,
            _ => Other,
        }
    }
}

/// The body of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Why.
    pub code: CloseCode,
    /// Human-readable detail (never holds secrets), at most
    /// [`MAX_CLOSE_MESSAGE`] bytes.
    pub message: String,
}

impl Close {
    /// A close with `code` and `message` (cut at a character boundary to the limit).
    pub fn new(code: CloseCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_CLOSE_MESSAGE {
            let mut end = MAX_CLOSE_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self { code, message }
    }

    /// Appends the encoded body to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code as u8);
        put_short_str(out, &self.message);
    }

    /// Decodes a body.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let code = CloseCode::from_u8(r.u8()?);
        let message = r.short_str()?.to_owned();
        r.finish()?;
        Ok(Self { code, message })
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let c = Close::new(CloseCode::Refused, "é".repeat(150));
        assert!(c.message.len() <= MAX_CLOSE_MESSAGE);
        let mut out = Vec::new();
        c.encode(&mut out);
        assert_eq!(Close::decode(&out), Ok(c));
        assert_eq!(Close::decode(&[9, 0]).map(|c| c.code), Ok(CloseCode::Other));
        assert_eq!(Close::decode(&[7, 0]).map(|c| c.code), Ok(CloseCode::ClockSkew));
        assert!(Close::decode(&[1]).is_err());
    }
}
