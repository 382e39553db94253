//! Arbitrary bytes as a store record payload (what a damaged segment file
//! holds): decoding never panics, and a record that decodes encodes to a
//! form that decodes to the same record and encodes to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmtap_proxy::store::format;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = format::decode(data) else { return };
    let mut bytes = Vec::new();
    format::encode(&record, &mut bytes);
    let again = format::decode(&bytes).expect("own encoding decodes");
    let mut twice = Vec::new();
    format::encode(&again, &mut twice);
    // Compared as bytes, so NaN values compare bit for bit.
    assert_eq!(twice, bytes);
});
