//! Application messages carried inside sealed frames, encoded with
//! [postcard](https://docs.rs/postcard) (varint integers, length-prefixed
//! strings and sequences; see `PROTOCOL.md`).

use serde::{Deserialize, Serialize, de::DeserializeOwned};

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
    pub collector: String,
    /// When it was taken, ms since the Unix epoch (agent clock).
    pub time_ms: u64,
    /// The series' labels, in the collector's order.
    pub labels: Vec<(String, String)>,
    /// Field name and value pairs.
    pub values: Vec<(String, Value)>,
}

/// Agent → proxy in a `Sealed` frame: samples to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Per-agent batch sequence number, for acknowledgement and deduplication.
    pub seq: u64,
    /// The samples.
    pub samples: Vec<Sample>,
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
                labels: vec![("host".into(), "a".into())],
                values: vec![
                    ("load1".into(), Value::Gauge(0.5)),
                    ("x".into(), Value::Text("t".into())),
                ],
            }],
        };
        assert_eq!(decode::<Batch>(&encode(&b)), Ok(b));
    }

    #[test]
    fn garbage_and_trailing_are_refused() {
        assert!(decode::<Batch>(&[0xff; 3]).is_err());
        let mut bytes = encode(&Ack { seq: 1 });
        bytes.push(0);
        assert_eq!(decode::<Ack>(&bytes), Err(MessageError::Trailing(1)));
    }
}
