//! Property tests of the handshake: forged, tampered and replayed messages
//! are refused, and authenticated bodies are parsed strictly.
//!
//! Some properties build handshake messages by hand from the key schedule
//! in `PROTOCOL.md` §3, so that arbitrary *authenticated* bodies reach the
//! parsers behind the AEAD. [`ConstRng`] makes every "random" value the
//! agent draws known to the test for that purpose; the test
//! `hand_built_messages_match_the_real_ones` proves the hand-built messages
//! are byte for byte what the real code sends.

use std::collections::HashMap;
use std::convert::Infallible;

use proptest::prelude::*;
use proptest::sample::Index;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::close::Close;
use wasmtap_protocol::crypto::{Aead, TAG_LEN, derive_key, sha256, x25519_agree};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::{ClientHandshake, HandshakeError, ReplayGuard, ServerHandshake};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::secret::Key256;
use wasmtap_protocol::simple::SimpleSuite;

const PROJECT: &str = "shop";
const NOW: u64 = 1_800_000_000_000;

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

/// A generator that returns the same byte forever, so the test knows every
/// value the handshake draws (the ephemeral secret is `[b; 32]`). Test-only.
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

fn agent_key() -> StaticKey {
    StaticKey::generate(&mut rng(1))
}

fn proxy_key() -> StaticKey {
    StaticKey::generate(&mut rng(2))
}

fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    d.next_frame().expect("valid").expect("complete")
}

fn read(f: Frame) -> Result<wasmtap_protocol::handshake::ReceivedHello, HandshakeError> {
    ServerHandshake::read_hello(f, &store(), &mut ReplayGuard::default(), NOW)
}

fn public(secret: u8) -> [u8; 32] {
    *x25519_agree(&[secret; 32], &BASEPOINT).expect("ok").expose()
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).expect("short field"));
    out.extend_from_slice(bytes);
}

/// A `ClientHello` for [`PROJECT`] at [`NOW`] whose sealed `body` is chosen
/// by the caller: `k_hello = HKDF(salt = e_a, ikm = psk,
/// info = "wasmtap/2 hello" ‖ project ‖ key id)`, zero nonce, associated
/// data = header ‖ clear part.
fn sealed_hello(e_a: &[u8; 32], mut body: Vec<u8>) -> Vec<u8> {
    let key = project_key();
    let mut clear = Vec::new();
    put_short(&mut clear, PROJECT.as_bytes());
    clear.extend_from_slice(&key.key_id().0.to_be_bytes());
    clear.extend_from_slice(&NOW.to_be_bytes());
    clear.extend_from_slice(e_a);
    let len = clear.len() + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ClientHello, u32::try_from(len).expect("small"));
    let info =
        [b"wasmtap/2 hello".as_slice(), PROJECT.as_bytes(), &key.key_id().0.to_be_bytes()].concat();
    let k = derive_key(e_a, &[key.secret().expose()], &info);
    Aead::new(&k).seal(&[0; 12], &[&header[..], &clear].concat(), &mut body);
    Frame { kind: FrameKind::ClientHello, payload: [clear, body].concat() }.to_bytes()
}

/// A `ServerHello` answering `client_hello` (whose ephemeral secret is
/// `[agent_eph; 32]`) from the genuine proxy key, with ephemeral secret
/// `proxy_eph` and a sealed key body chosen by the caller.
fn sealed_server_hello(
    client_hello: &[u8],
    agent_eph: u8,
    proxy_eph: &[u8; 32],
    mut body: Vec<u8>,
) -> Frame {
    let psk = project_key();
    let e_a = public(agent_eph);
    let e_p = *x25519_agree(proxy_eph, &BASEPOINT).expect("contributory").expose();
    let ee = x25519_agree(proxy_eph, &e_a).expect("ee");
    let es = proxy_key().agree(&e_a).expect("es");
    let h2 = sha256(&[client_hello, &e_p]);
    let len = 32 + 32 + TAG_LEN + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ServerHello, u32::try_from(len).expect("small"));
    let k_id = derive_key(&h2, &[psk.secret().expose(), ee.expose()], b"wasmtap/2 identity");
    let mut id_box = proxy_key().identity().as_bytes().to_vec();
    Aead::new(&k_id).seal(&[0; 12], &[&header[..], &e_p].concat(), &mut id_box);
    let mut payload = [e_p.as_slice(), &id_box].concat();
    let k_srv =
        derive_key(&h2, &[psk.secret().expose(), ee.expose(), es.expose()], b"wasmtap/2 server");
    Aead::new(&k_srv).seal(&[0; 12], &[&header[..], &payload].concat(), &mut body);
    payload.extend_from_slice(&body);
    Frame { kind: FrameKind::ServerHello, payload }
}

fn kind() -> impl Strategy<Value = FrameKind> {
    prop::sample::select(ALL_KINDS.to_vec())
}

/// A hello body: mostly well-formed (agent name, identity, suite byte),
/// sometimes with a lying length byte, bad UTF-8, an unknown suite, no
/// suite, or junk.
fn hello_body() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        "[a-z0-9-]{0,20}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..300),
    ];
    let suite = prop_oneof![3 => (1u8..=2).prop_map(Some), 1 => any::<u8>().prop_map(Some), 1 => Just(None)];
    prop_oneof![
        4 => (name, any::<[u8; 32]>(), prop_oneof![3 => Just(0i16), 1 => -3i16..3], suite)
            .prop_map(|(name, identity, lie, suite)| {
                let mut body = Vec::new();
                let len = i16::try_from(name.len()).expect("short") + lie;
                body.push(u8::try_from(len.clamp(0, 255)).expect("clamped"));
                body.extend_from_slice(&name);
                body.extend_from_slice(&identity);
                body.extend(suite);
                body
            }),
        1 => prop::collection::vec(any::<u8>(), 0..100),
    ]
}

/// The hand-built messages follow the real ones byte for byte, so the
/// properties that use them test what the agent and proxy actually send.
#[test]
fn hand_built_messages_match_the_real_ones() {
    for (b, suite) in [1u8, 0x42, 0xfe].into_iter().zip(SimpleSuite::ALL.into_iter().cycle()) {
        let (expect, hello) = ClientHandshake::start_with_suite(
            &project_key(),
            &agent_key(),
            "web-01",
            suite,
            NOW,
            &mut ConstRng(b),
        )
        .expect("hello");
        let mut body = Vec::new();
        put_short(&mut body, b"web-01");
        body.extend_from_slice(agent_key().identity().as_bytes());
        body.push(suite.to_byte());
        assert_eq!(sealed_hello(&public(b), body), hello);

        let read = read(frame(&hello)).expect("read");
        assert_eq!(read.suite(), suite);
        let (_, answer) = read.respond(&proxy_key(), NOW, &mut ConstRng(0x33)).expect("answer");
        let mut keys = Vec::new();
        keys.extend_from_slice(&u64::from_le_bytes([0x33; 8]).to_be_bytes());
        keys.extend_from_slice(&[0x33; 64]);
        keys.extend_from_slice(&NOW.to_be_bytes());
        assert_eq!(sealed_server_hello(&hello, b, &[0x33; 32], keys).to_bytes(), answer);
        assert!(expect.receive(frame(&answer), Some(&proxy_key().identity())).is_ok());
    }
}

// ----------------------------------------------------- the proxy's side

proptest! {
    #[test]
    fn arbitrary_client_hello_is_refused(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            // A known project and key id at a fresh time, so the AEAD is reached.
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|rest| {
                let mut p = vec![4];
                p.extend_from_slice(PROJECT.as_bytes());
                p.extend_from_slice(&project_key().key_id().0.to_be_bytes());
                p.extend_from_slice(&NOW.to_be_bytes());
                p.extend_from_slice(&rest);
                p
            }),
        ],
    ) {
        let f = Frame { kind: FrameKind::ClientHello, payload };
        prop_assert!(read(f).is_err(), "a forged hello was accepted");
    }

    #[test]
    fn tampered_client_hello_is_refused(
        seed in any::<u64>(),
        damage in prop::collection::vec((any::<Index>(), 1u8..), 1..4),
        cut in prop::option::of(any::<Index>()),
    ) {
        let (_, hello) =
            ClientHandshake::start(&project_key(), &agent_key(), "web-01", NOW, &mut rng(seed))
                .expect("hello");
        let mut f = frame(&hello);
        for (i, x) in damage {
            let i = i.index(f.payload.len());
            f.payload[i] ^= x;
        }
        if let Some(cut) = cut {
            f.payload.truncate(cut.index(f.payload.len()));
        }
        prop_assert!(read(f).is_err());
    }

    /// Arbitrary bodies sealed under the right key reach the body parser; a
    /// body is accepted exactly when it is well-formed.
    #[test]
    fn authenticated_hello_bodies_are_parsed_strictly(e_a in any::<[u8; 32]>(), body in hello_body()) {
        let result = read(frame(&sealed_hello(&e_a, body.clone())));
        let name_len = body.first().map(|&l| usize::from(l));
        let well_formed = match name_len {
            Some(n) if n > 0 && body.len() == 1 + n + 32 + 1 => {
                std::str::from_utf8(&body[1..=n]).is_ok()
                    && SimpleSuite::from_byte(body[1 + n + 32]).is_some()
            }
            _ => false,
        };
        match result {
            Ok(hello) => {
                prop_assert!(well_formed, "malformed body accepted");
                let n = name_len.unwrap_or_default();
                prop_assert_eq!(hello.agent().as_bytes(), &body[1..=n]);
                let identity = hello.agent_identity();
                prop_assert_eq!(&identity.as_bytes()[..], &body[1 + n..1 + n + 32]);
                prop_assert_eq!(Some(hello.suite()), SimpleSuite::from_byte(body[1 + n + 32]));
                prop_assert_eq!(hello.project().as_str(), PROJECT);
            }
            Err(e) => prop_assert!(!well_formed, "well-formed body refused: {}", e),
        }
    }

    /// However hellos and times interleave, one ephemeral key is answered
    /// at most once by one proxy.
    #[test]
    fn a_hello_is_answered_at_most_once(
        steps in prop::collection::vec((0usize..4, 0u64..400_000), 1..40),
    ) {
        let hellos: Vec<Vec<u8>> = (0..4u8)
            .map(|b| {
                ClientHandshake::start(&project_key(), &agent_key(), "a", NOW, &mut ConstRng(b + 1))
                    .expect("hello")
                    .1
            })
            .collect();
        let mut guard = ReplayGuard::default();
        let mut answered = [0u32; 4];
        let mut now = NOW - 100_000;
        for (which, advance) in steps {
            now += advance / 40;
            if ServerHandshake::read_hello(frame(&hellos[which]), &store(), &mut guard, now).is_ok() {
                answered[which] += 1;
            }
        }
        prop_assert!(answered.iter().all(|&n| n <= 1), "{:?}", answered);
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
        let (_, hello) =
            ClientHandshake::start(&project_key(), &agent_key(), "web-01", NOW, &mut r).expect("hello");
        let (pending, _) = read(frame(&hello)).expect("read").respond(&proxy_key(), NOW, &mut r).expect("answer");
        prop_assert!(pending.receive_finished(Frame { kind, payload }).is_err(), "forged finished accepted");
    }
}

// ----------------------------------------------------- the agent's side

proptest! {
    #[test]
    fn arbitrary_server_answer_is_refused(
        payload in prop::collection::vec(any::<u8>(), 0..250),
        kind in kind(),
        seed in any::<u64>(),
    ) {
        let (expect, _) =
            ClientHandshake::start(&project_key(), &agent_key(), "web-01", NOW, &mut rng(seed))
                .expect("hello");
        let result = expect.receive(Frame { kind, payload: payload.clone() }, None);
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
        rest in prop::collection::vec(any::<u8>(), 48..200),
        seed in any::<u64>(),
    ) {
        let (expect, _) =
            ClientHandshake::start(&project_key(), &agent_key(), "web-01", NOW, &mut rng(seed))
                .expect("hello");
        let payload = [point.as_slice(), &rest].concat();
        let result = expect.receive(Frame { kind: FrameKind::ServerHello, payload }, None);
        prop_assert!(matches!(result, Err(HandshakeError::LowOrderShare(_))), "{:?}", result.err());
    }

    /// Arbitrary key bodies sealed by the genuine proxy reach the agent's
    /// parser: it accepts exactly the 80-byte layout.
    #[test]
    fn authenticated_server_hello_bodies_are_parsed_strictly(
        agent_eph in any::<u8>(),
        proxy_eph in any::<[u8; 32]>(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 80..=80),
            prop::collection::vec(any::<u8>(), 0..120),
        ],
    ) {
        let (expect, hello) = ClientHandshake::start(
            &project_key(), &agent_key(), "web-01", NOW, &mut ConstRng(agent_eph),
        ).expect("hello");
        let answer = sealed_server_hello(&hello, agent_eph, &proxy_eph, body.clone());
        match expect.receive(answer, Some(&proxy_key().identity())) {
            Ok(c) => {
                prop_assert_eq!(body.len(), 80, "accepted a body of the wrong length");
                let id = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
                let time = u64::from_be_bytes(body[72..].try_into().expect("8 bytes"));
                prop_assert_eq!(c.session.id(), id);
                prop_assert_eq!(c.server_time_ms, time);
                prop_assert_eq!(c.proxy, proxy_key().identity());
                prop_assert_eq!(frame(&c.finished).kind, FrameKind::ClientFinished);
            }
            Err(e) => {
                prop_assert_ne!(body.len(), 80, "well-formed body refused: {}", e);
                prop_assert!(matches!(e, HandshakeError::Decode(_)), "{:?}", e);
            }
        }
    }
}
