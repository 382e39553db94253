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
    /// The proxy has no project of the name the agent sent.
    UnknownProject = 1,
    /// The agent's hello did not authenticate under the project's key.
    BadCredentials = 2,
    /// The peer broke the protocol (bad frame, unexpected message).
    ProtocolError = 3,
    /// The peer is shutting down.
    Shutdown = 4,
    /// Too many frames failed authentication.
    AuthFailures = 5,
    /// A deadline passed (handshake, idle).
    Timeout = 6,
    /// The peer is over a resource limit.
    Overloaded = 7,
    /// Any code this build does not know.
    Other = 255,
}

impl CloseCode {
    fn from_u8(b: u8) -> Self {
        use CloseCode::*;
        match b {
            0 => Normal,
            1 => UnknownProject,
            2 => BadCredentials,
            3 => ProtocolError,
            4 => Shutdown,
            5 => AuthFailures,
            6 => Timeout,
            7 => Overloaded,
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
        let c = Close::new(CloseCode::BadCredentials, "é".repeat(150));
        assert!(c.message.len() <= MAX_CLOSE_MESSAGE);
        let mut out = Vec::new();
        c.encode(&mut out);
        assert_eq!(Close::decode(&out), Ok(c));
        assert_eq!(Close::decode(&[9, 0]).map(|c| c.code), Ok(CloseCode::Other));
        assert!(Close::decode(&[1]).is_err());
    }
}
