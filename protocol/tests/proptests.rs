//! Property tests: encodings round-trip, malformed input is refused without
//! panicking, and no tampered or forged message is ever accepted. The
//! handshake's properties are in `handshake_props.rs`.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::sample::Index;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::close::{Close, CloseCode, MAX_CLOSE_MESSAGE};
use wasmtap_protocol::compact;
use wasmtap_protocol::frame::{
    DEFAULT_MAX_PAYLOAD, Frame, FrameDecoder, FrameError, FrameKind, HEADER_LEN, VERSION,
};
use wasmtap_protocol::handshake::{
    ClientEstablished, ClientHandshake, ReplayGuard, ServerEstablished, ServerHandshake,
};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::message::{self, Ack, Batch, MessageError, Sample, Value};
use wasmtap_protocol::secret::Key256;
use wasmtap_protocol::session::{SessionError, is_sealed_kind};

// ---------------------------------------------------------------- helpers

const ALL_KINDS: [FrameKind; 12] = [
    FrameKind::ClientHello,
    FrameKind::ServerHello,
    FrameKind::ClientFinished,
    FrameKind::Sealed,
    FrameKind::Simple,
    FrameKind::Ack,
    FrameKind::ControlRequest,
    FrameKind::ControlResponse,
    FrameKind::Ping,
    FrameKind::Pong,
    FrameKind::KeyUpdate,
    FrameKind::Close,
];

const ALL_CODES: [CloseCode; 10] = [
    CloseCode::Normal,
    CloseCode::Refused,
    CloseCode::ProtocolError,
    CloseCode::Shutdown,
    CloseCode::AuthFailure,
    CloseCode::Timeout,
    CloseCode::Overloaded,
    CloseCode::ClockSkew,
    CloseCode::IdentityRefused,
    CloseCode::Other,
];

const PROJECT: &str = "shop";

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn project_key() -> AccessKey {
    AccessKey::from_parts(ProjectId::new(PROJECT).expect("valid"), Key256::new([0x5a; 32]))
}

fn store() -> HashMap<ProjectId, AccessKey> {
    let k = project_key();
    [(k.project().clone(), k)].into()
}

/// The single complete frame in `bytes`.
fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    let f = d.next_frame().expect("valid").expect("complete");
    assert_eq!(d.buffered(), 0, "exactly one frame");
    f
}

fn handshake(seed: u64) -> (ClientEstablished, ServerEstablished) {
    let key = project_key();
    let keys = store();
    let mut r = rng(seed);
    let (agent, proxy) = (StaticKey::generate(&mut r), StaticKey::generate(&mut r));
    let (expect, hello) = ClientHandshake::start(&key, &agent, "web-01", 1, &mut r).expect("hello");
    let read = ServerHandshake::read_hello(frame(&hello), &keys, &mut ReplayGuard::default(), 2)
        .expect("proxy accepts");
    let (pending, answer) = read.respond(&proxy, 2, &mut r).expect("answer");
    let client = expect.receive(frame(&answer), Some(&proxy.identity())).expect("agent accepts");
    let server = pending.receive_finished(frame(&client.finished)).expect("confirmed");
    (client, server)
}

/// Batches compare floats bit for bit, so that NaN round-trips count.
fn same_batch(a: &Batch, b: &Batch) -> bool {
    let same_value = |x: &Value, y: &Value| match (x, y) {
        (Value::Gauge(x), Value::Gauge(y)) | (Value::Counter(x), Value::Counter(y)) => {
            x.to_bits() == y.to_bits()
        }
        (Value::Text(x), Value::Text(y)) => x == y,
        _ => false,
    };
    a.seq == b.seq
        && a.samples.len() == b.samples.len()
        && a.samples.iter().zip(&b.samples).all(|(s, t)| {
            s.collector == t.collector
                && s.time_ms == t.time_ms
                && s.labels == t.labels
                && s.values.len() == t.values.len()
                && s.values.iter().zip(&t.values).all(|((n, x), (m, y))| n == m && same_value(x, y))
        })
}

// ------------------------------------------------------------- strategies

fn kind() -> impl Strategy<Value = FrameKind> {
    prop::sample::select(ALL_KINDS.to_vec())
}

fn any_frame() -> impl Strategy<Value = Frame> {
    (kind(), prop::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(kind, payload)| Frame { kind, payload })
}

fn text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

fn value() -> impl Strategy<Value = Value> {
    // `any::<f64>()` includes NaN, infinities, subnormals and -0.0.
    prop_oneof![
        any::<f64>().prop_map(Value::Gauge),
        any::<f64>().prop_map(Value::Counter),
        text().prop_map(Value::Text),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    let sample = (
        text(),
        any::<u64>(),
        prop::collection::vec((text(), text()), 0..4),
        prop::collection::vec((text(), value()), 0..6),
    )
        .prop_map(|(collector, time_ms, labels, values)| Sample {
            collector: collector.into(),
            time_ms,
            labels: labels.into(),
            values: values.into_iter().map(|(name, v)| (name.into(), v)).collect(),
        });
    (any::<u64>(), prop::collection::vec(sample, 0..5))
        .prop_map(|(seq, samples)| Batch { seq, samples })
}

/// Byte streams that are mostly frame-shaped, with damage.
fn frameish_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (
            prop::collection::vec(any_frame(), 0..4),
            prop::collection::vec((any::<Index>(), any::<u8>()), 0..4),
            prop::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(frames, damage, tail)| {
                let mut out = Vec::new();
                for f in &frames {
                    f.encode(&mut out);
                }
                for (i, b) in damage {
                    if !out.is_empty() {
                        let i = i.index(out.len());
                        out[i] = b;
                    }
                }
                out.extend_from_slice(&tail);
                out
            }),
    ]
}

// ------------------------------------------------------------- round trips

proptest! {
    #[test]
    fn frames_round_trip_through_the_decoder_at_any_split(
        frames in prop::collection::vec(any_frame(), 0..8),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            let before = wire.len();
            f.encode(&mut wire);
            prop_assert_eq!(wire.len() - before, HEADER_LEN + f.payload.len());
            prop_assert_eq!(f.to_bytes(), wire[before..].to_vec());
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();

        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        let mut start = 0;
        for cut in cuts {
            d.push(&wire[start..cut]);
            start = cut;
            while let Some(f) = d.next_frame().expect("a valid stream is never invalid") {
                got.push(f);
            }
        }
        prop_assert_eq!(&got, &frames);
        prop_assert_eq!(d.buffered(), 0);
        prop_assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn close_round_trips(
        code in prop::sample::select(ALL_CODES.to_vec()),
        message in "(?s).{0,150}",
    ) {
        let c = Close::new(code, message.clone());
        prop_assert!(c.message.len() <= MAX_CLOSE_MESSAGE);
        prop_assert!(message.starts_with(&c.message));
        if message.len() <= MAX_CLOSE_MESSAGE {
            prop_assert_eq!(&c.message, &message);
        } else {
            // Cut at a character boundary no further back than necessary.
            let next = message[c.message.len()..].chars().next().expect("cut before the end");
            prop_assert!(c.message.len() + next.len_utf8() > MAX_CLOSE_MESSAGE);
        }
        let mut out = Vec::new();
        c.encode(&mut out);
        prop_assert_eq!(Close::decode(&out), Ok(c));
        // Any strict prefix is refused, and so is anything appended.
        for cut in 0..out.len() {
            prop_assert!(Close::decode(&out[..cut]).is_err(), "prefix of {} accepted", cut);
        }
        out.push(0);
        prop_assert!(Close::decode(&out).is_err());
    }

    #[test]
    fn batches_round_trip(b in batch(), extra in prop::collection::vec(any::<u8>(), 1..4)) {
        let bytes = message::encode(&b);
        let back: Batch = message::decode(&bytes).expect("own encoding decodes");
        prop_assert!(same_batch(&b, &back), "{:?} != {:?}", b, back);
        prop_assert_eq!(message::encode(&back), bytes.clone());
        for cut in 0..bytes.len() {
            prop_assert!(message::decode::<Batch>(&bytes[..cut]).is_err(), "prefix of {}", cut);
        }
        let mut longer = bytes;
        longer.extend_from_slice(&extra);
        prop_assert_eq!(
            message::decode::<Batch>(&longer).err(),
            Some(MessageError::Trailing(extra.len()))
        );
    }

    #[test]
    fn batches_survive_the_compact_codec(bs in prop::collection::vec(batch(), 1..4)) {
        // One session's encoder and decoder stay in step over several batches.
        let (mut enc, mut dec) = (compact::Encoder::new(), compact::Decoder::new());
        for b in bs {
            let (head, numbers) = enc.encode(&b);
            let head = message::decode(&message::encode(&head)).expect("head codec");
            let back = dec.decode(head, &numbers).expect("own encoding decodes");
            prop_assert!(same_batch(&b, &back), "{:?} != {:?}", b, back);
        }
    }

    #[test]
    fn acks_round_trip(seq in any::<u64>()) {
        let bytes = message::encode(&Ack { seq });
        prop_assert!(bytes.len() <= 10, "varint of a u64");
        prop_assert_eq!(message::decode::<Ack>(&bytes), Ok(Ack { seq }));
        prop_assert!(message::decode::<Ack>(&bytes[..bytes.len() - 1]).is_err());
    }
}

// ------------------------------------------------ malformed input is refused

proptest! {
    #[test]
    fn frame_decoder_never_panics_and_accounts_for_every_byte(
        bytes in frameish_bytes(),
        chunks in prop::collection::vec(1usize..64, 0..16),
        max in prop::sample::select(vec![0u32, 1, 16, 300, DEFAULT_MAX_PAYLOAD]),
    ) {
        let mut d = FrameDecoder::new(max);
        let mut consumed = Vec::new();
        let mut error = None;
        let mut pos = 0;
        let mut sizes = chunks.into_iter().chain(std::iter::repeat(usize::MAX));
        'feed: while pos < bytes.len() {
            let end = pos.saturating_add(sizes.next().expect("endless")).min(bytes.len());
            d.push(&bytes[pos..end]);
            pos = end;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        prop_assert!(f.payload.len() <= max as usize);
                        f.encode(&mut consumed);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break 'feed;
                    }
                }
            }
        }
        // Decoded frames re-encode to exactly the bytes they came from.
        prop_assert_eq!(&consumed[..], &bytes[..consumed.len()]);
        let rest = &bytes[consumed.len()..];
        match error {
            None => {
                prop_assert_eq!(d.buffered(), rest.len());
                // What is left is an incomplete but so far valid frame.
                if let Some(&v) = rest.first() {
                    prop_assert_eq!(v, VERSION);
                }
                if rest.len() >= HEADER_LEN {
                    let len = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
                    prop_assert!(FrameKind::from_u8(rest[1]).is_some());
                    prop_assert!(len <= max);
                    prop_assert!(rest.len() < HEADER_LEN + len as usize);
                }
            }
            // Each error names what is wrong with the next frame's header.
            Some(FrameError::BadVersion(v)) => {
                prop_assert_eq!(Some(&v), rest.first());
                prop_assert_ne!(v, VERSION);
            }
            Some(FrameError::UnknownKind(k)) => {
                prop_assert_eq!(Some(&k), rest.get(1));
                prop_assert!(FrameKind::from_u8(k).is_none());
            }
            Some(FrameError::TooLarge { len, max: m }) => {
                prop_assert_eq!(m, max);
                prop_assert!(len > max);
                prop_assert_eq!(&len.to_be_bytes()[..], &rest[2..HEADER_LEN]);
            }
            Some(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    #[test]
    fn close_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(c) = Close::decode(&bytes) {
            // Accepted: a code byte, a length byte and exactly that much UTF-8.
            prop_assert_eq!(bytes.len(), 2 + usize::from(bytes[1]));
            prop_assert_eq!(c.message.as_bytes(), &bytes[2..]);
            if bytes[0] <= 8 || bytes[0] == 255 {
                let mut out = Vec::new();
                c.encode(&mut out);
                prop_assert_eq!(out, bytes);
            } else {
                prop_assert_eq!(c.code, CloseCode::Other);
            }
        }
    }

    #[test]
    fn message_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(b) = message::decode::<Batch>(&bytes) {
            // Whatever is accepted is a batch like any other.
            let again: Batch = message::decode(&message::encode(&b)).expect("re-encodes");
            prop_assert!(same_batch(&b, &again));
        }
        let _ = message::decode::<Ack>(&bytes);
        let _ = message::decode::<message::SealedBatch>(&bytes);
        let _ = message::decode::<message::ControlRequest>(&bytes);
        let _ = message::decode::<message::ControlResponse>(&bytes);
        let _ = message::decode::<message::Pong>(&bytes);
    }
}

// ------------------------------------------------------------- the session

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// One flipped bit anywhere in a sealed frame (header included) and the
    /// frame is refused, by the decoder or by `Session::open`; a refusal by
    /// `open` ends the session, so the genuine frame is refused after it.
    #[test]
    fn any_flipped_bit_is_refused(
        seed in any::<u64>(),
        downstream in any::<bool>(),
        warmup in 0usize..4,
        kind in prop::sample::select(
            ALL_KINDS.iter().copied().filter(|&k| is_sealed_kind(k)).collect::<Vec<_>>()
        ),
        plaintext in prop::collection::vec(any::<u8>(), 0..200),
        bit in any::<Index>(),
    ) {
        let (mut client, mut server) = handshake(seed);
        let (tx, rx) = if downstream {
            (&mut server.session, &mut client.session)
        } else {
            (&mut client.session, &mut server.session)
        };
        for i in 0..warmup {
            let f = tx.seal(FrameKind::Sealed, &[i as u8]).expect("seal");
            prop_assert_eq!(rx.open(frame(&f)), Ok(vec![i as u8]));
        }
        let genuine = tx.seal(kind, &plaintext).expect("seal");
        let bit = bit.index(genuine.len() * 8);
        let mut bad = genuine.clone();
        bad[bit / 8] ^= 1 << (bit % 8);

        let mut d = FrameDecoder::default();
        d.push(&bad);
        match d.next_frame() {
            // Refused or never complete: the session goes on.
            Err(_) | Ok(None) => prop_assert_eq!(rx.open(frame(&genuine)), Ok(plaintext)),
            Ok(Some(f)) => {
                let result = rx.open(f);
                match result {
                    Err(SessionError::NotSealed(_)) => {
                        prop_assert_eq!(rx.open(frame(&genuine)), Ok(plaintext));
                    }
                    Err(SessionError::Auth) => {
                        prop_assert_eq!(rx.open(frame(&genuine)), Err(SessionError::Auth));
                    }
                    other => prop_assert!(false, "bit {} flipped: {:?}", bit, other),
                }
            }
        }
    }
}
