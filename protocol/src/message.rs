//! Application messages carried inside sealed frames, encoded with
//! [postcard](https://docs.rs/postcard) (varint integers, length-prefixed
//! strings and sequences; see `PROTOCOL.md`).

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::compact::CompactHead;
use crate::simple::Checkpoint;

/// A message body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not a valid encoding of the expected message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Bytes left after the message.
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
}

/// A field name, shared between samples (it travels as a string).
pub type FieldName = std::sync::Arc<str>;
/// A collector's name, shared between its samples (it travels as a string).
pub type CollectorName = std::sync::Arc<str>;
/// A series' labels, shared between its samples (they travel as a list of pairs).
pub type Labels = std::sync::Arc<[(String, String)]>;

/// One value of a sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A numeric gauge.
    Gauge(f64),
    /// A numeric counter (monotonic, may reset).
    Counter(f64),
    /// A text value.
    Text(String),
}

/// One observation of a series by a collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The collector that produced it.
    pub collector: CollectorName,
    /// When it was taken, ms since the Unix epoch (agent clock).
    pub time_ms: u64,
    /// The series' labels, in the collector's order. Shared, not copied,
    /// between the samples of one series where the producer can.
    pub labels: Labels,
    /// Field name and value pairs. Names are shared, not copied, between
    /// the samples of one collector.
    pub values: Vec<(FieldName, Value)>,
}

/// Agent → proxy in a `Sealed` frame: samples to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Per-agent batch sequence number, for acknowledgement and deduplication.
    pub seq: u64,
    /// The samples.
    pub samples: Vec<Sample>,
}

/// Agent → proxy in a `Sealed` frame: the text and structure of a compact
/// batch whose numbers were sent just before in `Simple` frames, and the
/// checkpoint that authenticates those frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedBatch {
    /// The batch without its numbers.
    pub head: CompactHead,
    /// Covers every simple frame sent since the previous checkpoint.
    pub checkpoint: Checkpoint,
}

/// Agent → proxy in a `Ping` frame: keepalive and clock probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Agent clock when sent, ms since the epoch.
    pub t1_ms: u64,
}

/// Proxy → agent in a `Pong` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's `t1_ms`, echoed.
    pub t1_ms: u64,
    /// Proxy clock when the ping arrived.
    pub t2_ms: u64,
    /// Proxy clock when the pong left.
    pub t3_ms: u64,
}

impl Pong {
    /// Round-trip time and the proxy clock's offset from the agent's
    /// (positive: the proxy is ahead), given the agent clock `t4_ms` at arrival.
    /// NTP's formulas; both in milliseconds.
    pub fn time_sync(&self, t4_ms: u64) -> (i64, i64) {
        // In i128, no combination of u64 clocks can overflow; the results are
        // then clamped into i64 (a peer may send any timestamps).
        let (t1, t2, t3, t4) = (
            i128::from(self.t1_ms),
            i128::from(self.t2_ms),
            i128::from(self.t3_ms),
            i128::from(t4_ms),
        );
        let clamp = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        let rtt = (t4 - t1) - (t3 - t2);
        let offset = ((t2 - t1) + (t3 - t4)) / 2;
        (clamp(rtt.max(0)), clamp(offset))
    }
}

/// Proxy → agent in a `ControlRequest` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Chosen by the proxy; echoed in the response.
    pub id: u64,
    /// The command, such as `info` or `run`.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// Agent → proxy in a `ControlResponse` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// The request's id.
    pub id: u64,
    /// A JSON document, or an error message.
    pub result: Result<String, String>,
}

/// Proxy → agent in an `Ack` frame: every batch up to and including `seq`
/// is durably stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest stored batch sequence.
    pub seq: u64,
}

/// Encodes `msg`.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising our own plain structs to a Vec cannot fail.
    postcard::to_stdvec(msg).unwrap_or_default()
}

/// Decodes a `T`, refusing trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, MessageError> {
    let (msg, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| MessageError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(MessageError::Trailing(rest.len()));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let b = Batch {
            seq: 3,
            samples: vec![Sample {
                collector: "load".into(),
                time_ms: 1_700_000_000_000,
                labels: vec![("host".into(), "a".into())].into(),
                values: vec![
                    ("load1".into(), Value::Gauge(0.5)),
                    ("x".into(), Value::Text("t".into())),
                ],
            }],
        };
        assert_eq!(decode::<Batch>(&encode(&b)), Ok(b));
    }

    #[test]
    fn time_sync_never_overflows() {
        let p = Pong { t1_ms: 0, t2_ms: 0, t3_ms: 1 << 63 };
        let _ = p.time_sync(1_700_000_000_000);
        let p = Pong { t1_ms: u64::MAX, t2_ms: 0, t3_ms: u64::MAX };
        assert_eq!(p.time_sync(0).0, 0);
        let p = Pong { t1_ms: 0, t2_ms: u64::MAX, t3_ms: u64::MAX };
        assert_eq!(p.time_sync(0).1, i64::MAX);
    }

    #[test]
    fn time_sync_follows_ntp() {
        // Proxy 100 ms ahead, 10 ms each way, 2 ms in the proxy.
        let p = Pong { t1_ms: 1_000, t2_ms: 1_110, t3_ms: 1_112 };
        assert_eq!(p.time_sync(1_022), (20, 100));
    }

    #[test]
    fn garbage_and_trailing_are_refused() {
        assert!(decode::<Batch>(&[0xff; 3]).is_err());
        let mut bytes = encode(&Ack { seq: 1 });
        bytes.push(0);
        assert_eq!(decode::<Ack>(&bytes), Err(MessageError::Trailing(1)));
    }
}
