//! Shared helpers for the fuzz targets: a fixed project key, a generator
//! whose output the target knows, and hand-built handshake messages that put
//! fuzzer-chosen bytes *behind* the AEAD, so the parsers there are reached.
//!
//! The hand-built messages follow the key schedule of `protocol/PROTOCOL.md`
//! (and `protocol/src/handshake/mod.rs`); `protocol/tests/proptests.rs`
//! checks that they match what the agent really sends byte for byte.
//!
//! [`records`] is a naive model of the record scanner, for the `recovery`
//! target.

pub mod records;

use std::collections::HashMap;
use std::convert::Infallible;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::crypto::{Aead, TAG_LEN, derive_key, sha256, x25519_agree};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::{
    ClientEstablished, ClientHandshake, ServerEstablished, ServerHandshake,
};
use wasmtap_protocol::secret::Key256;

/// The project every target uses.
pub const PROJECT: &str = "shop";

/// The X25519 base point.
pub const BASEPOINT: [u8; 32] = {
    let mut b = [0u8; 32];
    b[0] = 9;
    b
};

/// Every frame kind.
pub const ALL_KINDS: [FrameKind; 11] = [
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

/// A complete handshake; both ends' results.
pub fn handshake(seed: u64) -> (ClientEstablished, ServerEstablished) {
    let (key, keys) = (project_key(), store());
    let mut r = rng(seed);
    let (expect, hello) = ClientHandshake::start(&key, "web-01", 1, &mut r).expect("hello");
    let (pending, answer) =
        ServerHandshake::receive_hello(frame(&hello), &keys, 2, &mut r).expect("proxy accepts");
    let client = expect.receive(frame(&answer)).expect("agent accepts");
    let server = pending.receive_finished(frame(&client.finished)).expect("confirmed");
    (client, server)
}

/// A `ClientHello` frame for [`PROJECT`] whose sealed body is `body`.
pub fn sealed_hello(client_random: &[u8; 32], mut body: Vec<u8>) -> Vec<u8> {
    let key = project_key();
    let mut clear = vec![u8::try_from(PROJECT.len()).expect("short")];
    clear.extend_from_slice(PROJECT.as_bytes());
    clear.extend_from_slice(client_random);
    let len = clear.len() + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ClientHello, u32::try_from(len).expect("small"));
    let info = [b"wasmtap/1 hello".as_slice(), PROJECT.as_bytes()].concat();
    let k = derive_key(client_random, &[key.secret().expose()], &info);
    Aead::new(&k).seal(&[0; 12], &[&header[..], &clear].concat(), &mut body);
    Frame { kind: FrameKind::ClientHello, payload: [clear, body].concat() }.to_bytes()
}

/// Whether the proxy must accept a hello with this sealed `body`: share,
/// time, then a non-empty UTF-8 agent name of exactly its length byte, and
/// a share that is not of low order.
pub fn hello_body_is_acceptable(body: &[u8]) -> bool {
    let (Some(share), Some(&len), Some(name)) = (body.get(..32), body.get(40), body.get(41..))
    else {
        return false;
    };
    let share: [u8; 32] = share.try_into().expect("32 bytes");
    usize::from(len) == name.len()
        && !name.is_empty()
        && std::str::from_utf8(name).is_ok()
        && x25519_agree(&[0x42; 32], &share).is_ok()
}

/// A `ServerHello` answering `client_hello` (sent by an agent whose ephemeral
/// public key is `client_public`), whose sealed body is `body`.
pub fn sealed_server_hello(
    client_hello: &[u8],
    client_public: &[u8; 32],
    server_secret: &[u8; 32],
    server_random: &[u8; 32],
    mut body: Vec<u8>,
) -> Frame {
    let key = project_key();
    // X25519 clamps the scalar (bit 254 set, a multiple of 8): with the base
    // point or a genuine agent share the result is never zero.
    let server_share = *x25519_agree(server_secret, &BASEPOINT).expect("contributory").expose();
    let dh = x25519_agree(server_secret, client_public).expect("contributory");
    let th1 = sha256(&[client_hello, &server_share, server_random]);
    let k_hs = derive_key(&th1, &[key.secret().expose(), dh.expose()], b"wasmtap/1 handshake");
    let len = 64 + body.len() + TAG_LEN;
    let header = Frame::header(FrameKind::ServerHello, u32::try_from(len).expect("small"));
    let aad = [&header[..], server_share.as_slice(), server_random].concat();
    Aead::new(&k_hs).seal(&[0; 12], &aad, &mut body);
    let payload = [server_share.as_slice(), server_random, &body].concat();
    Frame { kind: FrameKind::ServerHello, payload }
}
