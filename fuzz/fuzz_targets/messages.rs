//! Arbitrary bytes into `Close::decode` and `message::decode` for every
//! message type. Whatever decodes must re-encode to a stable canonical form
//! that decodes again; a decoded `Batch` must survive the compact codec, and
//! decoding a `SealedBatch`'s head with numbers taken from the input must
//! not panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::compact::{Decoder, Encoder};
use wasmtap_protocol::message::{
    self, Ack, Batch, ControlRequest, ControlResponse, Ping, Pong, SealedBatch,
};
use wasmtap_protocol::simple::NumericWriter;

/// `decode(encode(x))` encodes to the same bytes again (floats compare by bits).
macro_rules! stable {
    ($t:ty, $data:expr) => {
        if let Ok(v) = message::decode::<$t>($data) {
            let bytes = message::encode(&v);
            let again: $t = message::decode(&bytes).expect("own encoding decodes");
            assert_eq!(message::encode(&again), bytes);
            Some(v)
        } else {
            None
        }
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Close::decode(data) {
        assert_eq!(data.len(), 2 + usize::from(data[1]));
        assert_eq!(c.message.as_bytes(), &data[2..]);
        let mut out = Vec::new();
        c.encode(&mut out);
        // Codes 0 to 8 are known (`CloseCode`); others read as `Other`.
        if data[0] <= 8 || data[0] == 255 {
            assert_eq!(out, data);
        } else {
            assert_eq!(c.code, CloseCode::Other);
        }
        assert_eq!(Close::decode(&out), Ok(c));
    }

    if let Some(b) = stable!(Batch, data) {
        let bytes = message::encode(&b);
        let (head, numbers) = Encoder::new().encode(&b);
        let back = Decoder::new().decode(head, &numbers).expect("own encoding decodes");
        assert_eq!(message::encode(&back), bytes);
    }
    if let Some(sb) = stable!(SealedBatch, data) {
        // Numbers from the input's bytes, eight at a time.
        let mut w = NumericWriter::new();
        for chunk in data.chunks_exact(8) {
            w.u64(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let _ = Decoder::new().decode(sb.head, &[w.finish()]);
    }
    stable!(Ack, data);
    stable!(Ping, data);
    stable!(Pong, data);
    stable!(ControlRequest, data);
    stable!(ControlResponse, data);
});
