//! Shared helpers for the fuzz targets: a fixed project key, a generator
//! whose output the target knows, and hand-built handshake messages that put
//! fuzzer-chosen bytes *behind* the AEAD, so the parsers there are reached.
//!
//! The hand-built messages follow the key schedule of `protocol/PROTOCOL.md`
//! (and `protocol/src/handshake/mod.rs`); the targets check it too: a
//! well-formed hand-built body must be accepted by the real code.
//!
//! [`records`] is a naive model of the record scanner, and [`damage`] the
//! damage the recovery targets do to segments of records.

pub mod damage;
pub mod records;

use std::collections::HashMap;
use std::convert::Infallible;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::crypto::{Aead, TAG_LEN, derive_key, sha256, x25519_agree};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::{
    ClientEstablished, ClientHandshake, ReplayGuard, ServerEstablished, ServerHandshake,
};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::secret::Key256;
use wasmtap_protocol::simple::SimpleSuite;

/// The project every target uses.
pub const PROJECT: &str = "shop";

/// The X25519 base point.
pub const BASEPOINT: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 9;
    b
};

/// Every frame kind.
pub const ALL_KINDS: [FrameKind; 12] = [
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

/// X25519 points of small order (0, 1, p - 1, p): with any clamped scalar
/// the shared secret is all zeros.
pub const LOW_ORDER_POINTS: [[u8; 32]; 4] = [
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

/// A generator that returns the same byte forever: the agent's ephemeral
/// secret becomes `[b; 32]`, whatever order the handshake draws values in.
#[derive(Debug)]
pub struct ConstRng(pub u8);

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

/// A seeded generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The project's access key (a fixed secret).
pub fn project_key() -> AccessKey {
    AccessKey::from_parts(ProjectId::new(PROJECT).expect("valid"), Key256::new([0x5a; 32]))
}

/// The proxy's key store.
pub fn store() -> HashMap<ProjectId, AccessKey> {
    let k = project_key();
    [(k.project().clone(), k)].into()
}

/// The single complete frame in `bytes`.
pub fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    let f = d.next_frame().expect("valid").expect("complete");
    assert_eq!(d.buffered(), 0, "exactly one frame");
    f
}

/// When every fuzzed hello says it was sent, and the proxy reads it.
pub const NOW_MS: u64 = 1_800_000_000_000;

/// A complete handshake; both ends' results.
pub fn handshake(seed: u64) -> (ClientEstablished, ServerEstablished) {
    let (key, keys) = (project_key(), store());
    let mut r = rng(seed);
    let (agent, proxy) = (StaticKey::generate(&mut r), StaticKey::generate(&mut r));
    let (expect, hello) =
        ClientHandshake::start(&key, &agent, "web-01", NOW_MS, &mut r).expect("hello");
    let read =
        ServerHandshake::read_hello(frame(&hello), &keys, &mut ReplayGuard::default(), NOW_MS)
            .expect("proxy accepts");
    let (pending, answer) = read.respond(&proxy, NOW_MS, &mut r).expect("answer");
    let client = expect.receive(frame(&answer), Some(&proxy.identity())).expect("agent accepts");
    let server = pending.receive_finished(frame(&client.finished)).expect("confirmed");
    (client, server)
}

/// `k_hello` of the key schedule in `protocol/src/handshake/mod.rs`.
fn hello_key(e_a: &[u8; 32]) -> Key256 {
    let key = project_key();
    let info =
        [&b"wasmtap/2 hello"[..], PROJECT.as_bytes(), &key.key_id().0.to_be_bytes()].concat();
    derive_key(e_a, &[key.secret().expose()], &info)
}

/// A `ClientHello` frame for [`PROJECT`] and the project key, sent at
/// [`NOW_MS`] with the ephemeral share `e_a`, whose sealed body is `body`.
pub fn sealed_hello(e_a: &[u8; 32], mut body: Vec<u8>) -> Vec<u8> {
    let key = project_key();
    let mut clear = vec![u8::try_from(PROJECT.len()).expect("short")];
    clear.extend_from_slice(PROJECT.as_bytes());
    clear.extend_from_slice(&key.key_id().0.to_be_bytes());
    clear.extend_from_slice(&NOW_MS.to_be_bytes());
    clear.extend_from_slice(e_a);
    let len = clear.len() + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ClientHello, u32::try_from(len).expect("small"));
    Aead::new(&hello_key(e_a)).seal(&[0; 12], &[&header[..], &clear].concat(), &mut body);
    Frame { kind: FrameKind::ClientHello, payload: [clear, body].concat() }.to_bytes()
}

/// Whether the proxy must accept a hello with this sealed `body`: a
/// non-empty UTF-8 agent name of exactly its length byte, then a 32-byte
/// identity, then a known simple-path suite byte, and nothing more.
pub fn hello_body_is_acceptable(body: &[u8]) -> bool {
    let Some((&len, rest)) = body.split_first() else { return false };
    let len = usize::from(len);
    len > 0
        && rest.len() == len + 32 + 1
        && std::str::from_utf8(&rest[..len]).is_ok()
        && SimpleSuite::from_byte(rest[len + 32]).is_some()
}

/// Whether an X25519 exchange with `share` is contributory (not of low order).
pub fn contributory(share: &[u8; 32]) -> bool {
    x25519_agree(&[0x42; 32], share).is_ok()
}

/// A `ServerHello` answering `client_hello` (sent by an agent whose ephemeral
/// public key is `e_a`) from a proxy whose ephemeral and static secrets are
/// `ephemeral` and `identity`, whose session keys box holds `body`.
pub fn sealed_server_hello(
    client_hello: &[u8],
    e_a: &[u8; 32],
    ephemeral: &[u8; 32],
    identity: &[u8; 32],
    mut body: Vec<u8>,
) -> Frame {
    let psk = project_key();
    let psk = psk.secret().expose();
    // X25519 clamps the scalar (bit 254 set, a multiple of 8): with the base
    // point or a genuine agent share the result is never zero.
    let e_p = *x25519_agree(ephemeral, &BASEPOINT).expect("contributory").expose();
    let s_p = *x25519_agree(identity, &BASEPOINT).expect("contributory").expose();
    let ee = x25519_agree(ephemeral, e_a).expect("contributory");
    let es = x25519_agree(identity, e_a).expect("contributory");
    let h2 = sha256(&[client_hello, &e_p]);
    let len = 32 + (32 + TAG_LEN) + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ServerHello, u32::try_from(len).expect("small"));
    let mut id_box = s_p.to_vec();
    let k_id = derive_key(&h2, &[psk, ee.expose()], b"wasmtap/2 identity");
    Aead::new(&k_id).seal(&[0; 12], &[&header[..], &e_p].concat(), &mut id_box);
    let mut payload = [e_p.as_slice(), &id_box].concat();
    let k_srv = derive_key(&h2, &[psk, ee.expose(), es.expose()], b"wasmtap/2 server");
    Aead::new(&k_srv).seal(&[0; 12], &[&header[..], &payload].concat(), &mut body);
    payload.extend_from_slice(&body);
    Frame { kind: FrameKind::ServerHello, payload }
}

/// The public key of the X25519 secret `secret`.
pub fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    *x25519_agree(secret, &BASEPOINT).expect("contributory").expose()
}

/// Checks once that the hand-built messages follow the real key schedule:
/// a well-formed hello and a well-formed answer built here are accepted by
/// the real code (otherwise the targets would only ever see refusals).
pub fn check_hand_built() {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        let suite = [SimpleSuite::Aegis128L.to_byte()];
        let body = [&[6u8][..], b"web-01", &public_of(&[7; 32]), &suite].concat();
        let e_a = public_of(&[9; 32]);
        let hello = frame(&sealed_hello(&e_a, body));
        let read =
            ServerHandshake::read_hello(hello, &store(), &mut ReplayGuard::default(), NOW_MS)
                .expect("a hand-built hello is accepted");
        assert_eq!(read.agent(), "web-01");

        let agent = StaticKey::generate(&mut ConstRng(3));
        let (expect, hello) =
            ClientHandshake::start(&project_key(), &agent, "web-01", NOW_MS, &mut ConstRng(3))
                .expect("hello");
        let answer =
            sealed_server_hello(&hello, &public_of(&[3; 32]), &[4; 32], &[5; 32], vec![1; 80]);
        expect.receive(answer, None).expect("a hand-built answer is accepted");
    });
}
