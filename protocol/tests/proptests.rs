//! Property tests: encodings round-trip, malformed input is refused without
//! panicking, and no tampered or forged message is ever accepted.
//!
//! Some properties build handshake messages by hand from the key schedule in
//! `handshake/mod.rs` (and `PROTOCOL.md`), so that arbitrary *authenticated*
//! bodies reach the parsers behind the AEAD. [`ConstRng`] makes the agent's
//! ephemeral key known to the test for that purpose.

use std::collections::HashMap;
use std::convert::Infallible;

use proptest::prelude::*;
use proptest::sample::Index;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::close::{Close, CloseCode, MAX_CLOSE_MESSAGE};
use wasmtap_protocol::compact;
use wasmtap_protocol::crypto::{Aead, TAG_LEN, derive_key, sha256, x25519_agree};
use wasmtap_protocol::frame::{
    DEFAULT_MAX_PAYLOAD, Frame, FrameDecoder, FrameError, FrameKind, HEADER_LEN, VERSION,
};
use wasmtap_protocol::handshake::{
    ClientEstablished, ClientHandshake, HandshakeError, ServerEstablished, ServerHandshake,
};
use wasmtap_protocol::message::{self, Ack, Batch, MessageError, Sample, Value};
use wasmtap_protocol::secret::Key256;
use wasmtap_protocol::session::{SessionError, is_sealed_kind};

// ---------------------------------------------------------------- helpers

const ALL_KINDS: [FrameKind; 11] = [
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
    FrameKind::Close,
];

const ALL_CODES: [CloseCode; 9] = [
    CloseCode::Normal,
    CloseCode::UnknownProject,
    CloseCode::BadCredentials,
    CloseCode::ProtocolError,
    CloseCode::Shutdown,
    CloseCode::AuthFailures,
    CloseCode::Timeout,
    CloseCode::Overloaded,
    CloseCode::Other,
];

const BASEPOINT: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 9;
    b
};

/// X25519 points of small order (and non-canonical encodings of them): with
/// any clamped scalar the shared secret is all zeros.
const LOW_ORDER_POINTS: [[u8; 32]; 4] = [
    [0; 32],
    {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    },
    // p - 1 and p, both with the high bit clear.
    {
        let mut p = [0xff; 32];
        p[0] = 0xec;
        p[31] = 0x7f;
        p
    },
    {
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    },
];

const PROJECT: &str = "shop";

/// A generator that returns the same byte forever, so the test knows every
/// "random" value the handshake draws (the ephemeral secret is `[b; 32]`)
/// whatever order it draws them in. Test-only, obviously.
#[derive(Debug)]
struct ConstRng(u8);

impl rand::TryRng for ConstRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(u32::from_le_bytes([self.0; 4]))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(u64::from_le_bytes([self.0; 8]))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        dst.fill(self.0);
        Ok(())
    }
}

impl rand::TryCryptoRng for ConstRng {}

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
    let (expect, hello) = ClientHandshake::start(&key, "web-01", 1, &mut r).expect("hello");
    let (pending, answer) =
        ServerHandshake::receive_hello(frame(&hello), &keys, 2, &mut r).expect("proxy accepts");
    let client = expect.receive(frame(&answer)).expect("agent accepts");
    let server = pending.receive_finished(frame(&client.finished)).expect("confirmed");
    (client, server)
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).expect("short field"));
    out.extend_from_slice(bytes);
}

/// A `ClientHello` frame for project [`PROJECT`] with `body` (the part sealed
/// under the hello key) chosen by the caller, built from the key schedule:
/// `k_hello = HKDF(salt = client_random, ikm = secret, info = "wasmtap/1 hello" ‖ project)`,
/// zero nonce, associated data = header ‖ clear part.
fn sealed_hello(client_random: &[u8; 32], mut body: Vec<u8>) -> Vec<u8> {
    let key = project_key();
    let mut clear = Vec::new();
    put_short(&mut clear, PROJECT.as_bytes());
    clear.extend_from_slice(client_random);
    let len = clear.len() + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ClientHello, u32::try_from(len).expect("small"));
    let info = [b"wasmtap/1 hello".as_slice(), PROJECT.as_bytes()].concat();
    let k = derive_key(client_random, &[key.secret().expose()], &info);
    Aead::new(&k).seal(&[0; 12], &[&header[..], &clear].concat(), &mut body);
    Frame { kind: FrameKind::ClientHello, payload: [clear, body].concat() }.to_bytes()
}

/// A `ServerHello` frame answering `client_hello`, whose sealed body is
/// chosen by the caller: `k_hs = HKDF(salt = th1, ikm = secret ‖ X25519,
/// info = "wasmtap/1 handshake")` with `th1 = SHA-256(ClientHello ‖ share ‖ random)`.
fn sealed_server_hello(
    client_hello: &[u8],
    client_public: &[u8; 32],
    server_secret: &[u8; 32],
    server_random: &[u8; 32],
    mut body: Vec<u8>,
) -> Frame {
    let key = project_key();
    // X25519 clamps the scalar (bit 254 set, multiple of 8): with the base
    // point or a genuine agent share the result is never zero.
    let server_share = *x25519_agree(server_secret, &BASEPOINT).expect("contributory").expose();
    let dh = x25519_agree(server_secret, client_public).expect("contributory");
    let th1 = sha256(&[client_hello, &server_share, server_random]);
    let k_hs = derive_key(&th1, &[key.secret().expose(), dh.expose()], b"wasmtap/1 handshake");
    let len = 64 + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ServerHello, u32::try_from(len).expect("small"));
    Aead::new(&k_hs).seal(
        &[0; 12],
        &[&header[..], server_share.as_slice(), server_random].concat(),
        &mut body,
    );
    let payload = [server_share.as_slice(), server_random, &body].concat();
    Frame { kind: FrameKind::ServerHello, payload }
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

/// A hello body: mostly well-formed (share, time, agent name), sometimes
/// with a low-order share, a lying length byte, bad UTF-8 or junk.
fn hello_body() -> impl Strategy<Value = Vec<u8>> {
    let share = prop_oneof![
        3 => any::<[u8; 32]>(),
        1 => prop::sample::select(LOW_ORDER_POINTS.to_vec()),
    ];
    let name = prop_oneof![
        "[a-z0-9-]{0,20}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..300),
    ];
    prop_oneof![
        4 => (share, any::<u64>(), name, prop_oneof![3 => Just(0i16), 1 => -3i16..3])
            .prop_map(|(share, time, name, lie)| {
                let mut body = share.to_vec();
                body.extend_from_slice(&time.to_be_bytes());
                let len = i16::try_from(name.len()).expect("short") + lie;
                body.push(u8::try_from(len.clamp(0, 255)).expect("clamped"));
                body.extend_from_slice(&name);
                body
            }),
        1 => prop::collection::vec(any::<u8>(), 0..100),
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
            if bytes[0] <= 7 || bytes[0] == 255 {
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

// ----------------------------------------------------- the proxy's handshake

proptest! {
    #[test]
    fn arbitrary_client_hello_is_refused(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            // A known project, so the AEAD is reached.
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|rest| {
                let mut p = vec![4];
                p.extend_from_slice(PROJECT.as_bytes());
                p.extend_from_slice(&rest);
                p
            }),
        ],
        seed in any::<u64>(),
    ) {
        let f = Frame { kind: FrameKind::ClientHello, payload };
        let result = ServerHandshake::receive_hello(f, &store(), 0, &mut rng(seed));
        prop_assert!(result.is_err(), "a forged hello was accepted");
    }

    #[test]
    fn tampered_client_hello_is_refused(
        seed in any::<u64>(),
        damage in prop::collection::vec((any::<Index>(), 1u8..), 1..4),
        cut in prop::option::of(any::<Index>()),
    ) {
        let (_, hello) =
            ClientHandshake::start(&project_key(), "web-01", 0, &mut rng(seed)).expect("hello");
        let mut f = frame(&hello);
        for (i, x) in damage {
            let i = i.index(f.payload.len());
            f.payload[i] ^= x;
        }
        if let Some(cut) = cut {
            f.payload.truncate(cut.index(f.payload.len()));
        }
        let result = ServerHandshake::receive_hello(f, &store(), 0, &mut rng(seed));
        prop_assert!(result.is_err());
    }

    /// Arbitrary bodies sealed under the right key reach the body parser; a
    /// body is accepted exactly when it is well-formed.
    #[test]
    fn authenticated_hello_bodies_are_parsed_strictly(
        client_random in any::<[u8; 32]>(),
        body in hello_body(),
        seed in any::<u64>(),
    ) {
        let hello = sealed_hello(&client_random, body.clone());
        let result = ServerHandshake::receive_hello(frame(&hello), &store(), 0, &mut rng(seed));
        let share: Option<[u8; 32]> = body.get(..32).and_then(|s| s.try_into().ok());
        let name = body.get(41..).filter(|n| body.get(40).map(|&l| usize::from(l)) == Some(n.len()));
        let name = name.and_then(|n| std::str::from_utf8(n).ok()).filter(|n| !n.is_empty());
        match (share, name) {
            (Some(share), Some(name)) => {
                let low_order = x25519_agree(&[0x42; 32], &share).is_err();
                match result {
                    Ok((pending, answer)) => {
                        prop_assert!(!low_order, "low-order share accepted");
                        prop_assert_eq!(pending.agent(), name);
                        prop_assert_eq!(pending.project().as_str(), PROJECT);
                        prop_assert_eq!(frame(&answer).kind, FrameKind::ServerHello);
                    }
                    Err(e) => {
                        prop_assert!(low_order, "well-formed body refused: {}", e);
                        prop_assert!(matches!(e, HandshakeError::LowOrderShare(_)), "{:?}", e);
                    }
                }
            }
            _ => prop_assert!(result.is_err(), "malformed body accepted"),
        }
    }

    /// After an accepted hello, nothing but the agent's genuine finished
    /// frame completes the handshake.
    #[test]
    fn arbitrary_client_finished_is_refused(
        payload in prop::collection::vec(any::<u8>(), 0..100),
        kind in kind(),
        seed in any::<u64>(),
    ) {
        let mut r = rng(seed);
        let (_, hello) = ClientHandshake::start(&project_key(), "web-01", 0, &mut r).expect("hello");
        let (pending, _) =
            ServerHandshake::receive_hello(frame(&hello), &store(), 0, &mut r).expect("accepted");
        let result = pending.receive_finished(Frame { kind, payload });
        prop_assert!(result.is_err(), "a forged finished was accepted");
    }
}

// ----------------------------------------------------- the agent's handshake

proptest! {
    #[test]
    fn arbitrary_server_answer_is_refused(
        payload in prop::collection::vec(any::<u8>(), 0..200),
        kind in kind(),
        seed in any::<u64>(),
    ) {
        let (expect, _) =
            ClientHandshake::start(&project_key(), "web-01", 0, &mut rng(seed)).expect("hello");
        let result = expect.receive(Frame { kind, payload: payload.clone() });
        match kind {
            FrameKind::Close => match Close::decode(&payload) {
                Ok(c) => prop_assert_eq!(result.err(), Some(HandshakeError::Refused(c))),
                Err(e) => prop_assert_eq!(result.err(), Some(HandshakeError::Decode(e))),
            },
            FrameKind::ServerHello => prop_assert!(result.is_err(), "forged answer accepted"),
            got => prop_assert_eq!(
                result.err(),
                Some(HandshakeError::UnexpectedFrame { expected: FrameKind::ServerHello, got })
            ),
        }
    }

    #[test]
    fn low_order_server_share_is_refused(
        point in prop::sample::select(LOW_ORDER_POINTS.to_vec()),
        rest in prop::collection::vec(any::<u8>(), 32..150),
        seed in any::<u64>(),
    ) {
        let (expect, _) =
            ClientHandshake::start(&project_key(), "web-01", 0, &mut rng(seed)).expect("hello");
        let payload = [point.as_slice(), &rest].concat();
        let result = expect.receive(Frame { kind: FrameKind::ServerHello, payload });
        prop_assert!(matches!(result, Err(HandshakeError::LowOrderShare(_))), "{:?}", result.err());
    }

    /// Arbitrary bodies sealed under the right handshake key reach the
    /// agent's parser: it accepts exactly the 80-byte layout.
    #[test]
    fn authenticated_server_hello_bodies_are_parsed_strictly(
        client_byte in any::<u8>(),
        server_secret in any::<[u8; 32]>(),
        server_random in any::<[u8; 32]>(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 80..=80),
            prop::collection::vec(any::<u8>(), 0..120),
        ],
    ) {
        let mut r = ConstRng(client_byte);
        let (expect, hello) = ClientHandshake::start(&project_key(), "web-01", 0, &mut r).expect("hello");
        let client_public = *x25519_agree(&[client_byte; 32], &BASEPOINT).expect("ok").expose();
        let answer =
            sealed_server_hello(&hello, &client_public, &server_secret, &server_random, body.clone());
        match expect.receive(answer) {
            Ok(c) => {
                prop_assert_eq!(body.len(), 80, "accepted a body of the wrong length");
                let id = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
                let time = u64::from_be_bytes(body[72..].try_into().expect("8 bytes"));
                prop_assert_eq!(c.session.id(), id);
                prop_assert_eq!(c.server_time_ms, time);
                prop_assert_eq!(frame(&c.finished).kind, FrameKind::ClientFinished);
            }
            Err(e) => {
                prop_assert_ne!(body.len(), 80, "well-formed body refused: {}", e);
                prop_assert!(matches!(e, HandshakeError::Decode(_)), "{:?}", e);
            }
        }
    }
}

/// The hand-built messages above follow the real ones byte for byte, so the
/// properties that use them test what the agent actually sends.
#[test]
fn hand_built_hello_matches_the_agent() {
    for b in [1u8, 0x42, 0xfe] {
        let (_, hello) =
            ClientHandshake::start(&project_key(), "web-01", 77, &mut ConstRng(b)).expect("hello");
        let public = *x25519_agree(&[b; 32], &BASEPOINT).expect("ok").expose();
        let mut body = public.to_vec();
        body.extend_from_slice(&77u64.to_be_bytes());
        put_short(&mut body, b"web-01");
        assert_eq!(sealed_hello(&[b; 32], body), hello);
    }
}

// ------------------------------------------------------------- the session

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// One flipped bit anywhere in a sealed frame (header included) and the
    /// frame is refused, by the decoder or by `Session::open`; the genuine
    /// frame still opens afterwards.
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
            Err(_) | Ok(None) => {} // refused or never complete
            Ok(Some(f)) => {
                let result = rx.open(f);
                prop_assert!(
                    matches!(result, Err(SessionError::Auth { .. } | SessionError::NotSealed(_))),
                    "bit {} flipped: {:?}", bit, result
                );
            }
        }
        prop_assert_eq!(rx.open(frame(&genuine)), Ok(plaintext));
    }
}
