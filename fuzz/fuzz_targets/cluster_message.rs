//! A batch as another proxy published it to the cluster's stream: arbitrary
//! encoding and length headers and payload bytes. Decoding never panics
//! and never allocates past the record limit, and a batch that decodes
//! goes through the publisher's own encoding unchanged.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmtap_proxy::cluster::payload;
use wasmtap_proxy::store::format;

#[derive(Debug, Arbitrary)]
struct Message<'a> {
    zstd: bool,
    encoding: Option<&'a str>,
    length: Option<&'a str>,
    payload: &'a [u8],
}

fuzz_target!(|m: Message<'_>| {
    let encoding = if m.zstd { Some("zstd") } else { m.encoding };
    let Ok(record) = payload::decode_parts(encoding, m.length, m.payload) else { return };
    let (headers, bytes) = payload::encode(&record).expect("encodes");
    let again = payload::decode(Some(&headers), &bytes).expect("own encoding decodes");
    let (mut first, mut second) = (Vec::new(), Vec::new());
    format::encode(&record, &mut first);
    format::encode(&again, &mut second);
    // Compared as bytes, so NaN values compare bit for bit.
    assert_eq!(first, second);
});
