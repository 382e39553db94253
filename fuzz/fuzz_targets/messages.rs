//! Arbitrary bytes into `Close::decode` and `message::decode` for every
//! message type. Whatever decodes must re-encode to a stable canonical form
//! that decodes again; a decoded `Batch` must survive `split` and `join`, and
//! joining a decoded `SealedBatch`'s heads must not panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::message::{
    self, Ack, Batch, ControlRequest, ControlResponse, Ping, Pong, SealedBatch,
};

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
        if data[0] <= 7 || data[0] == 255 {
            assert_eq!(out, data);
        } else {
            assert_eq!(c.code, CloseCode::Other);
        }
        assert_eq!(Close::decode(&out), Ok(c));
    }

    if let Some(b) = stable!(Batch, data) {
        let bytes = message::encode(&b);
        let (heads, numbers) = b.split();
        let joined = Batch::join(b.seq, heads, &numbers).expect("own split joins");
        assert_eq!(message::encode(&joined), bytes);
    }
    if let Some(sb) = stable!(SealedBatch, data) {
        // Without its numbers, it joins only if it has no numeric field.
        let _ = Batch::join(sb.seq, sb.samples, &[]);
    }
    stable!(Ack, data);
    stable!(Ping, data);
    stable!(Pong, data);
    stable!(ControlRequest, data);
    stable!(ControlResponse, data);
});
