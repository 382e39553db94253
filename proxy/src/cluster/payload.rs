//! A batch as a JetStream message: the store's record encoding
//! ([`format`]), compressed with zstd (level 1), which cuts what the
//! stream stores and replicates by about three and keeps large batches
//! under NATS's `max_payload`. The header `Wasmtap-Encoding: zstd` says
//! so and `Wasmtap-Length` gives the decompressed length (at most
//! [`MAX_RECORD`], so a message cannot make a reader allocate more); a
//! message without them is the record itself.

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::store::{MAX_RECORD, StoredBatch, format};

use std::cell::RefCell;

const ENCODING: &str = "Wasmtap-Encoding";
const LENGTH: &str = "Wasmtap-Length";
const LEVEL: i32 = 1;

thread_local! {
    /// Kept from batch to batch: setting a zstd context up costs about
    /// as much as compressing a small batch.
    static PACK: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static UNPACK: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    PACK.with_borrow_mut(|c| {
        let c = match c {
            Some(c) => c,
            None => c.insert(zstd::bulk::Compressor::new(LEVEL)?),
        };
        c.compress(raw)
    })
}

fn decompress(packed: &[u8], length: usize) -> std::io::Result<Vec<u8>> {
    UNPACK.with_borrow_mut(|d| {
        let d = match d {
            Some(d) => d,
            None => d.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(packed, length)
    })
}

/// The headers and payload of `record`'s message.
pub fn encode(record: &StoredBatch) -> Result<(HeaderMap, Bytes), String> {
    let mut raw = Vec::new();
    format::encode(record, &mut raw);
    let packed = compress(&raw).map_err(|e| format!("compressing a batch: {e}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(ENCODING, "zstd");
    headers.insert(LENGTH, raw.len().to_string().as_str());
    Ok((headers, packed.into()))
}

/// The batch of a message with `headers` and `payload`.
pub fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<StoredBatch, String> {
    let header = |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    decode_parts(header(ENCODING), header(LENGTH), payload)
}

/// [`decode`], given the values of the two headers.
pub fn decode_parts(
    encoding: Option<&str>,
    length: Option<&str>,
    payload: &[u8],
) -> Result<StoredBatch, String> {
    let raw = match encoding {
        None => return format::decode(payload).map_err(|e| e.to_string()),
        Some("zstd") => {
            let length = length
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or("a zstd batch without its length")?;
            if length > MAX_RECORD as usize {
                return Err(format!("a batch of {length} bytes is over the record limit"));
            }
            let raw = decompress(payload, length).map_err(|e| format!("zstd: {e}"))?;
            if raw.len() != length {
                return Err(format!("{} bytes decompressed, {length} announced", raw.len()));
            }
            raw
        }
        Some(other) => return Err(format!("unknown batch encoding `{other}`")),
    };
    format::decode(&raw).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmtap_protocol::message::{Batch, Sample, Value};

    use super::*;

    fn record() -> StoredBatch {
        let samples = (0..100)
            .map(|i| Sample {
                collector: "cpu".into(),
                time_ms: 1_700_000_000_000 + i,
                labels: Arc::from(vec![("core".to_owned(), (i % 4).to_string())]),
                values: vec![("busy".into(), Value::Gauge(i as f64 / 4.0))],
            })
            .collect();
        StoredBatch {
            agent: "web-1".into(),
            session: 7,
            received_ms: 1_700_000_000_500,
            batch: Batch { seq: 42, samples },
        }
    }

    #[test]
    fn a_batch_round_trips_smaller() {
        let r = record();
        let (headers, payload) = encode(&r).expect("encodes");
        let mut raw = Vec::new();
        format::encode(&r, &mut raw);
        assert!(payload.len() * 2 < raw.len(), "{} vs {}", payload.len(), raw.len());
        assert_eq!(decode(Some(&headers), &payload).expect("decodes"), r);
        assert_eq!(decode(None, &raw).expect("a plain record"), r);
    }

    #[test]
    fn bad_messages_are_refused_with_the_reason() {
        let (headers, payload) = encode(&record()).expect("encodes");
        let mut lying = headers.clone();
        lying.insert(LENGTH, "12");
        let mut huge = headers.clone();
        huge.insert(LENGTH, (MAX_RECORD as usize + 1).to_string().as_str());
        let mut unknown = headers.clone();
        unknown.insert(ENCODING, "lz4");
        let mut no_length = HeaderMap::new();
        no_length.insert(ENCODING, "zstd");
        for (h, p, needle) in [
            (&lying, &payload[..], "zstd"),
            (&huge, &payload[..], "over the record limit"),
            (&unknown, &payload[..], "unknown batch encoding `lz4`"),
            (&no_length, &payload[..], "without its length"),
            (&headers, &payload[..payload.len() / 2], "zstd"),
        ] {
            let err = decode(Some(h), p).expect_err(needle);
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
        assert!(decode(None, b"garbage").is_err());
    }
}
