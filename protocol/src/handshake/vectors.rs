//! The known-answer vectors of `PROTOCOL.md` §11, read from the document
//! itself and checked against the code the channel runs: a whole
//! handshake, the key schedule, key updates, and each simple-path suite's
//! layout. Run
//! `cargo test -p wasmtap-protocol print_vectors -- --ignored --nocapture`
//! to print them afresh.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;

use super::{
    ClientHandshake, Master, ReplayGuard, ServerHandshake, hello_key, identity_key, server_key,
};
use crate::access_key::{AccessKey, ProjectId};
use crate::crypto::{Aead, EphemeralKey, derive_key, sha256, x25519_agree};
use crate::frame::{Frame, FrameDecoder, FrameKind};
use crate::identity::StaticKey;
use crate::secret::Key256;
use crate::session::{Role, Session};
use crate::simple::{NumericPayload, NumericWriter, SimpleSuite};

const DOC: &str = include_str!("../../PROTOCOL.md");

/// One vector: a name and its values, in order.
type Vector = (String, Vec<(String, Vec<u8>)>);

/// Bytes `start, start + 1, …` (`len` of them).
fn counting(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn key(start: u8) -> Key256 {
    Key256::new(counting(start, 32).try_into().expect("32 bytes"))
}

/// A payload whose bytes are `values` (each below 128, so one byte each).
fn payload(values: &[u8]) -> NumericPayload {
    let mut w = NumericWriter::new();
    for &v in values {
        w.u64(u64::from(v));
    }
    w.finish()
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().expect("valid")).collect()
}

/// A "random" source that hands out the given bytes in order (integers
/// big-endian), so that a handshake's keys and randoms are the vector's.
struct Script(VecDeque<u8>);

impl Script {
    fn new(parts: &[&[u8]]) -> Self {
        Self(parts.concat().into())
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.0.pop_front().expect("the script has enough bytes"))
    }

    /// Checks that the code drew exactly the scripted bytes.
    fn finish(self) {
        assert!(self.0.is_empty(), "{} scripted bytes left over", self.0.len());
    }
}

impl rand::TryRng for Script {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(u32::from_be_bytes(self.take()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(u64::from_be_bytes(self.take()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for b in dst {
            *b = self.take::<1>()[0];
        }
        Ok(())
    }
}

impl rand::TryCryptoRng for Script {}

/// A whole handshake (§3) with fixed keys and randoms: both messages, the
/// Diffie-Hellman results and the keys derived on the way, run through
/// the real state machines of both sides.
fn handshake() -> Vector {
    const AGENT: &str = "web-01";
    const TIME: u64 = 1_800_000_000_000;
    const SERVER_TIME: u64 = TIME + 7;
    let psk = key(0x00);
    let project = ProjectId::new("shop").expect("valid");
    let access = AccessKey::from_parts(project.clone(), psk.clone());
    let key_id = access.key_id();
    let (s_a, e_a, s_p, e_p) =
        (counting(0x20, 32), counting(0x40, 32), counting(0x60, 32), counting(0x80, 32));
    let (session_id, strong, simple) = (counting(0xa0, 8), counting(0xb0, 32), counting(0xd0, 32));
    let suite = SimpleSuite::Aegis128L;

    let generate = |secret: &[u8]| {
        let mut rng = Script::new(&[secret]);
        let key = StaticKey::generate(&mut rng);
        rng.finish();
        key
    };
    let (agent, proxy) = (generate(&s_a), generate(&s_p));
    let mut rng = Script::new(&[&e_a]);
    let (expect, client_hello) =
        ClientHandshake::start_with_suite(&access, &agent, AGENT, suite, TIME, &mut rng)
            .expect("hello");
    rng.finish();
    let keys: HashMap<_, _> = [(project, access.clone())].into();
    let read = ServerHandshake::read_hello(
        frames(&client_hello).remove(0),
        &keys,
        &mut ReplayGuard::default(),
        TIME,
    )
    .expect("the proxy reads the hello");
    let mut rng = Script::new(&[&e_p, &session_id, &strong, &simple]);
    let (pending, server_hello) = read.respond(&proxy, SERVER_TIME, &mut rng).expect("answer");
    rng.finish();
    let client = expect
        .receive(frames(&server_hello).remove(0), Some(&proxy.identity()))
        .expect("the agent accepts the pinned proxy");
    let server =
        pending.receive_finished(frames(&client.finished).remove(0)).expect("finished checks");
    assert_eq!(client.server_time_ms, SERVER_TIME);
    assert_eq!((server.agent.as_str(), server.agent_identity), (AGENT, agent.identity()));
    assert_eq!(client.session.id(), u64::from_be_bytes(session_id.clone().try_into().expect("8")));

    // What §3 derives along the way, from the same inputs.
    let public = |secret: &[u8]| {
        let mut rng = Script::new(&[secret]);
        let key = EphemeralKey::generate(&mut rng);
        rng.finish();
        key.public()
    };
    let (e_a_pub, e_p_pub) = (public(&e_a), public(&e_p));
    let (s_a_pub, s_p_pub) = (*agent.identity().as_bytes(), *proxy.identity().as_bytes());
    let dh = |secret: &[u8], peer: &[u8; 32]| {
        let secret: [u8; 32] = secret.try_into().expect("32 bytes");
        *x25519_agree(&secret, peer).expect("not low order").expose()
    };
    let (ee, es, se) = (dh(&e_a, &e_p_pub), dh(&e_a, &s_p_pub), dh(&s_a, &e_p_pub));
    let h2 = sha256(&[&client_hello, &e_p_pub]);
    let th2 = sha256(&[&client_hello, &server_hello]);
    let master = Master::derive(&psk, &th2, [&ee, &es, &se]);
    let v: Vec<(&str, Vec<u8>)> = vec![
        ("psk", psk.expose().to_vec()),
        ("project", b"shop".to_vec()),
        ("key_id", key_id.0.to_be_bytes().to_vec()),
        ("agent_name", AGENT.as_bytes().to_vec()),
        ("suite", vec![suite.to_byte()]),
        ("time_ms", TIME.to_be_bytes().to_vec()),
        ("s_a.private", s_a),
        ("S_a", s_a_pub.to_vec()),
        ("e_a.private", e_a),
        ("e_a", e_a_pub.to_vec()),
        ("k_hello", hello_key(&psk, &e_a_pub, "shop", key_id).expose().to_vec()),
        ("client_hello", client_hello.clone()),
        ("s_p.private", s_p),
        ("S_p", s_p_pub.to_vec()),
        ("e_p.private", e_p),
        ("e_p", e_p_pub.to_vec()),
        ("session_id", session_id),
        ("strong", strong),
        ("simple", simple),
        ("server_time_ms", SERVER_TIME.to_be_bytes().to_vec()),
        ("ee", ee.to_vec()),
        ("es", es.to_vec()),
        ("se", se.to_vec()),
        ("h2", h2.to_vec()),
        ("k_id", identity_key(&psk, &h2, &ee).expose().to_vec()),
        ("k_srv", server_key(&psk, &h2, &ee, &es).expose().to_vec()),
        ("server_hello", server_hello.clone()),
        ("th2", th2.to_vec()),
        ("master", master.0.expose().to_vec()),
        ("finished", client.finished.clone()),
    ];
    ("handshake".into(), v.into_iter().map(|(n, b)| (n.to_owned(), b)).collect())
}

/// The traffic keys from the key schedule's inputs, as §3.3 writes them.
fn schedule() -> Vector {
    let (psk, ee, es, se, th2, strong, simple) =
        (key(0x00), key(0x20), key(0x40), key(0x60), key(0x80), key(0xa0), key(0xc0));
    let th2 = th2.expose();
    let master = derive_key(
        th2,
        &[psk.expose(), ee.expose(), es.expose(), se.expose()],
        b"wasmtap/2 master",
    );
    let traffic = |k: &Key256, info: &[u8]| derive_key(th2, &[master.expose(), k.expose()], info);
    let mut v = vec![
        ("psk".into(), psk.expose().to_vec()),
        ("ee".into(), ee.expose().to_vec()),
        ("es".into(), es.expose().to_vec()),
        ("se".into(), se.expose().to_vec()),
        ("th2".into(), th2.to_vec()),
        ("strong".into(), strong.expose().to_vec()),
        ("simple".into(), simple.expose().to_vec()),
        ("master".into(), master.expose().to_vec()),
    ];
    for (name, k, info) in [
        ("c2s_sealed", &strong, &b"wasmtap/2 c2s sealed"[..]),
        ("s2c_sealed", &strong, b"wasmtap/2 s2c sealed"),
        ("c2s_simple", &simple, b"wasmtap/2 c2s simple"),
        ("s2c_simple", &simple, b"wasmtap/2 s2c simple"),
    ] {
        v.push((name.into(), traffic(k, info).expose().to_vec()));
    }
    ("key schedule".into(), v)
}

/// Two key updates of a direction (§4.1).
fn rekey() -> Vector {
    let (mut sealed, mut simple) = (key(0xe0), key(0x10));
    let mut v = vec![
        ("k_sealed".into(), sealed.expose().to_vec()),
        ("k_simple".into(), simple.expose().to_vec()),
    ];
    for round in 1..=2 {
        sealed = derive_key(&[], &[sealed.expose()], b"wasmtap/2 rekey sealed");
        simple = derive_key(&[], &[simple.expose()], b"wasmtap/2 rekey simple");
        let tick = "'".repeat(round);
        v.push((format!("k_sealed{tick}"), sealed.expose().to_vec()));
        v.push((format!("k_simple{tick}"), simple.expose().to_vec()));
    }
    ("rekey".into(), v)
}

/// Three simple frames under `k_simple`: two in epoch 0, one in epoch 1.
fn simple(suite: SimpleSuite) -> Vector {
    let k = key(0x10);
    let mut tx = Session::sending_with(suite, key(0xe0), k.clone());
    let mut v = vec![("k_simple".into(), k.expose().to_vec())];
    let p = [payload(&[1, 2, 3, 4, 5]), payload(&counting(0, 40)), payload(&[1, 2, 3, 4, 5])];
    for (n, p) in p.iter().enumerate() {
        let mut frame = Vec::new();
        tx.seal_simple(p, &mut frame);
        v.push((format!("plaintext{n}"), p.as_bytes().to_vec()));
        v.push((format!("frame{n}"), frame));
        if n != 0 {
            let cp = tx.simple_checkpoint();
            for (i, tag) in cp.tags.iter().enumerate() {
                v.push((format!("epoch{}.tag{i}", cp.epoch), tag.to_vec()));
            }
        }
    }
    (format!("simple {}", suite.name()), v)
}

fn vectors() -> Vec<Vector> {
    let mut all = vec![handshake(), schedule(), rekey()];
    all.extend(SimpleSuite::ALL.map(simple));
    all
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The vectors in `PROTOCOL.md`: each a ```` ```text ```` block whose first
/// line is `vector: NAME`, then `name = hex` lines (a value may continue on
/// the next lines, indented).
fn documented() -> HashMap<String, Vec<(String, Vec<u8>)>> {
    let mut out = HashMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("vector: ") else { continue };
        let mut values: Vec<(String, String)> = Vec::new();
        for line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
            match line.split_once(" = ") {
                Some((k, v)) if !line.starts_with(' ') => {
                    values.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                _ => values.last_mut().expect("a continuation").1.push_str(line.trim()),
            }
        }
        let values = values
            .into_iter()
            .map(|(k, v)| {
                let bytes = (0..v.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&v[i..i + 2], 16).expect("hex"))
                    .collect();
                (k, bytes)
            })
            .collect();
        out.insert(name.trim().to_owned(), values);
    }
    out
}

/// Formats a vector as the document writes it: 32 bytes a line.
fn format(vector: &Vector) -> String {
    let mut s = format!("```text\nvector: {}\n", vector.0);
    for (name, bytes) in &vector.1 {
        let h = hex(bytes);
        let mut chunks = h.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii"));
        s += &format!("{name:<14} = {}\n", chunks.next().unwrap_or(""));
        for c in chunks {
            s += &format!("{:<17}{c}\n", "");
        }
    }
    s + "```\n"
}

#[test]
#[ignore = "prints the vectors for PROTOCOL.md"]
fn print_vectors() {
    for v in vectors() {
        println!("{}", format(&v));
    }
}

#[test]
fn the_documented_vectors_are_what_the_code_computes() {
    let doc = documented();
    let all = vectors();
    assert_eq!(doc.len(), all.len(), "vectors in PROTOCOL.md");
    for (name, values) in all {
        let written = doc.get(&name).unwrap_or_else(|| panic!("vector {name} missing"));
        assert_eq!(written, &values, "vector {name} differs; run print_vectors");
    }
}

/// The schedule above is the one the handshake runs: a session built by
/// `Master` from the same inputs seals under the vector's traffic keys.
#[test]
fn the_schedule_vector_is_the_handshakes() {
    let (_, v) = schedule();
    let get = |name: &str| {
        let bytes = &v.iter().find(|(n, _)| n == name).expect("present").1;
        Key256::new(bytes.as_slice().try_into().expect("32 bytes"))
    };
    let th2: [u8; 32] = *get("th2").expose();
    let (ee, es, se) = (get("ee"), get("es"), get("se"));
    for suite in SimpleSuite::ALL {
        let master = Master::derive(&get("psk"), &th2, [ee.expose(), es.expose(), se.expose()]);
        assert_eq!(master.0, get("master"));
        let strong_simple = (&get("strong"), &get("simple"));
        let mut client = master.into_session(&th2, strong_simple, suite, 9, Role::Client);
        let mut sealed = frames(&client.seal(FrameKind::Sealed, b"kat").expect("seal")).remove(0);
        let header = sealed.header_bytes();
        Aead::new(&get("c2s_sealed"))
            .open(&[0; 12], &header, &mut sealed.payload)
            .expect("sealed under c2s_sealed, counter 0");
        let mut wire = Vec::new();
        client.seal_simple(&payload(&[7, 8, 9]), &mut wire);
        let mut same = Vec::new();
        let mut reference = Session::sending_with(suite, key(0), get("c2s_simple"));
        reference.seal_simple(&payload(&[7, 8, 9]), &mut same);
        assert_eq!(wire, same, "{suite}: simple frames under c2s_simple");
    }
}

/// The rekey vector is what `KeyUpdate` does.
#[test]
fn the_rekey_vector_is_the_sessions() {
    let (_, v) = rekey();
    let get = |name: &str| {
        let bytes = &v.iter().find(|(n, _)| n == name).expect("present").1;
        Key256::new(bytes.as_slice().try_into().expect("32 bytes"))
    };
    let mut s = Session::sending_with(SimpleSuite::Aegis128L, get("k_sealed"), get("k_simple"));
    for tick in ["'", "''"] {
        s.update_keys(&mut Vec::new()).expect("update");
        let mut f = frames(&s.seal(FrameKind::Sealed, b"after").expect("seal")).remove(0);
        let header = f.header_bytes();
        Aead::new(&get(&format!("k_sealed{tick}")))
            .open(&[0; 12], &header, &mut f.payload)
            .expect("sealed under the updated key, counter 0");
        let mut wire = Vec::new();
        s.seal_simple(&payload(&[1]), &mut wire);
        let simple = get(&format!("k_simple{tick}"));
        let mut reference = Session::sending_with(SimpleSuite::Aegis128L, key(0), simple);
        let mut same = Vec::new();
        reference.seal_simple(&payload(&[1]), &mut same);
        assert_eq!(wire, same, "simple frames under the updated simple key");
        s.simple_checkpoint();
    }
}

/// The handshake vector holds together by §3's formulas alone: its keys,
/// derived from its inputs with HKDF and X25519, open its messages, and
/// what they hold is its inputs.
#[test]
fn the_handshake_vector_opens_by_the_documents_formulas() {
    let doc = documented();
    let v = doc.get("handshake").expect("the handshake vector");
    let get = |name: &str| v.iter().find(|(n, _)| n == name).expect(name).1.clone();
    let key32 = |name: &str| -> [u8; 32] { get(name).try_into().expect("32 bytes") };
    let dh = |secret: &str, public: &str| {
        *x25519_agree(&key32(secret), &key32(public)).expect("not low order").expose()
    };
    let psk = get("psk");
    let (ee, es, se) =
        (dh("e_a.private", "e_p"), dh("e_a.private", "S_p"), dh("s_a.private", "e_p"));
    assert_eq!((ee.to_vec(), es.to_vec(), se.to_vec()), (get("ee"), get("es"), get("se")));
    assert_eq!(dh("e_p.private", "e_a"), ee);
    assert_eq!(dh("s_p.private", "e_a"), es);
    assert_eq!(dh("e_p.private", "S_a"), se);

    // ClientHello: the clear part, then the body under k_hello.
    let info = [&b"wasmtap/2 hello"[..], &get("project"), &get("key_id")].concat();
    let k_hello = derive_key(&get("e_a"), &[&psk], &info);
    assert_eq!(k_hello.expose().to_vec(), get("k_hello"));
    let mut hello = frames(&get("client_hello")).remove(0);
    let header = hello.header_bytes();
    let clear = [
        &[get("project").len() as u8][..],
        &get("project"),
        &get("key_id"),
        &get("time_ms"),
        &get("e_a"),
    ]
    .concat();
    assert_eq!(hello.payload[..clear.len()], clear[..]);
    let mut body = hello.payload.split_off(clear.len());
    let aad = [&header[..], &clear].concat();
    Aead::new(&k_hello).open(&[0; 12], &aad, &mut body).expect("opens under k_hello");
    let name = get("agent_name");
    assert_eq!(body, [&[name.len() as u8][..], &name, &get("S_a"), &get("suite")].concat());

    // ServerHello: e_p, S_p under k_id, the session keys under k_srv.
    let h2 = sha256(&[&get("client_hello"), &get("e_p")]);
    assert_eq!(h2.to_vec(), get("h2"));
    let k_id = derive_key(&h2, &[&psk, &ee], b"wasmtap/2 identity");
    let k_srv = derive_key(&h2, &[&psk, &ee, &es], b"wasmtap/2 server");
    assert_eq!((k_id.expose().to_vec(), k_srv.expose().to_vec()), (get("k_id"), get("k_srv")));
    let answer = frames(&get("server_hello")).remove(0);
    let header = answer.header_bytes();
    let (e_p, rest) = answer.payload.split_at(32);
    let (id_box, keys_box) = rest.split_at(32 + 16);
    assert_eq!(e_p, get("e_p"));
    let mut id = id_box.to_vec();
    Aead::new(&k_id).open(&[0; 12], &[&header[..], e_p].concat(), &mut id).expect("k_id");
    assert_eq!(id, get("S_p"));
    let mut keys = keys_box.to_vec();
    let aad = [&header[..], e_p, id_box].concat();
    Aead::new(&k_srv).open(&[0; 12], &aad, &mut keys).expect("opens under k_srv");
    let issued = [get("session_id"), get("strong"), get("simple"), get("server_time_ms")].concat();
    assert_eq!(keys, issued);

    // ClientFinished: th2 under c2s_sealed, counter 0.
    let th2 = sha256(&[&get("client_hello"), &get("server_hello")]);
    assert_eq!(th2.to_vec(), get("th2"));
    let master = derive_key(&th2, &[&psk, &ee, &es, &se], b"wasmtap/2 master");
    assert_eq!(master.expose().to_vec(), get("master"));
    let c2s = derive_key(&th2, &[master.expose(), &get("strong")], b"wasmtap/2 c2s sealed");
    let mut finished = frames(&get("finished")).remove(0);
    let header = finished.header_bytes();
    Aead::new(&c2s).open(&[0; 12], &header, &mut finished.payload).expect("opens under c2s_sealed");
    assert_eq!(finished.payload, th2);
}
