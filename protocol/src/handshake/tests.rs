use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::access_key::{AccessKey, ProjectId};
use crate::close::{Close, CloseCode};
use crate::crypto::{Aead, sha256, x25519_agree};
use crate::frame::{Frame, FrameDecoder, FrameKind};
use crate::identity::{Identity, StaticKey};
use crate::session::SessionError;

const NOW: u64 = 1_800_000_000_000;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn key(project: &str, seed: u64) -> AccessKey {
    AccessKey::generate(ProjectId::new(project).expect("valid"), &mut rng(seed))
}

fn static_key(seed: u64) -> StaticKey {
    StaticKey::generate(&mut rng(1_000 + seed))
}

fn store(keys: &[&AccessKey]) -> HashMap<ProjectId, AccessKey> {
    keys.iter().map(|k| (k.project().clone(), (*k).clone())).collect()
}

fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    d.next_frame().expect("valid").expect("complete")
}

fn guard() -> ReplayGuard {
    ReplayGuard::default()
}

struct Run {
    client_hello: Vec<u8>,
    server_hello: Vec<u8>,
    client: ClientEstablished,
    server: ServerEstablished,
}

struct Ends {
    psk: AccessKey,
    agent: StaticKey,
    proxy: StaticKey,
}

fn ends() -> Ends {
    Ends { psk: key("shop", 1), agent: static_key(1), proxy: static_key(2) }
}

fn run(e: &Ends, seed: u64) -> Run {
    let mut r = rng(seed);
    let (expect, client_hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut r).expect("hello");
    let hello =
        ServerHandshake::read_hello(frame(&client_hello), &store(&[&e.psk]), &mut guard(), NOW)
            .expect("server accepts");
    let (pending, server_hello) = hello.respond(&e.proxy, NOW + 1, &mut r).expect("answer");
    let client =
        expect.receive(frame(&server_hello), Some(&e.proxy.identity())).expect("client accepts");
    let server = pending.receive_finished(frame(&client.finished)).expect("confirmed");
    Run { client_hello, server_hello, client, server }
}

#[test]
fn happy_path_authenticates_both_ends_and_exchanges_data() {
    let e = ends();
    let mut run = run(&e, 2);
    assert_eq!(run.server.agent, "web-01");
    assert_eq!(run.server.project.as_str(), "shop");
    assert_eq!(run.server.agent_identity, e.agent.identity());
    assert_eq!(run.server.key_id, e.psk.key_id());
    assert_eq!(run.server.client_time_ms, NOW);
    assert_eq!(run.client.server_time_ms, NOW + 1);
    assert_eq!(run.client.proxy, e.proxy.identity());
    let mut w = crate::simple::NumericWriter::new();
    w.u64(42).f64(0.5);
    let numbers = w.finish();
    let mut wire = Vec::new();
    run.client.session.seal_simple(&numbers, &mut wire);
    run.server.session.open_simple(frame(&wire)).expect("held");
    let cp = run.client.session.simple_checkpoint();
    assert_eq!(run.server.session.verify_simple(&cp), Ok(&[numbers][..]));
    assert_eq!(run.client.session.id(), run.server.session.id());
    let up = run.client.session.seal(FrameKind::Sealed, b"cpu").expect("seal");
    assert_eq!(run.server.session.open(frame(&up)), Ok(b"cpu".to_vec()));
    let down = run.server.session.seal(FrameKind::Ack, b"ok").expect("seal");
    assert_eq!(run.client.session.open(frame(&down)), Ok(b"ok".to_vec()));
}

#[test]
fn first_contact_learns_the_proxy_identity() {
    let e = ends();
    let mut r = rng(3);
    let (expect, hello) =
        ClientHandshake::start(&e.psk, &e.agent, "a", NOW, &mut r).expect("hello");
    let hello = ServerHandshake::read_hello(frame(&hello), &store(&[&e.psk]), &mut guard(), NOW)
        .expect("accepted");
    let (_, answer) = hello.respond(&e.proxy, NOW, &mut r).expect("answer");
    let client = expect.receive(frame(&answer), None).expect("no pin: accepted");
    assert_eq!(client.proxy, e.proxy.identity());
}

/// Whoever holds the project key but not the proxy's identity key cannot
/// pose as the proxy: with a pin it is refused before the agent derives or
/// sends anything; pretending to hold the pinned identity fails too.
#[test]
fn an_impostor_proxy_with_the_project_key_is_refused() {
    let e = ends();
    let impostor = static_key(66);
    let mut r = rng(4);
    let (expect, hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut r).expect("hello");
    let read = ServerHandshake::read_hello(frame(&hello), &store(&[&e.psk]), &mut guard(), NOW)
        .expect("the impostor reads the hello: it has the project key");
    let (_, answer) = read.respond(&impostor, NOW, &mut r).expect("answers");
    let err = expect.receive(frame(&answer), Some(&e.proxy.identity())).expect_err("refused");
    assert_eq!(
        err,
        HandshakeError::IdentityMismatch {
            pinned: e.proxy.identity(),
            presented: impostor.identity()
        }
    );
    assert!(err.to_string().contains(&e.proxy.identity().to_text()));
    assert!(err.to_string().contains(&impostor.identity().to_text()));

    // Claiming the genuine identity without its private key: the impostor
    // seals the genuine public key in the identity box, but cannot compute `es`.
    let (expect, hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut rng(5)).expect("hello");
    let forged = forge_server_hello(&e, &hello, &impostor);
    assert_eq!(
        expect.receive(frame(&forged), Some(&e.proxy.identity())).err(),
        Some(HandshakeError::ServerNotAuthenticated)
    );
}

/// A ServerHello from someone with the project key and `own` static key
/// that names the genuine proxy's identity.
fn forge_server_hello(e: &Ends, client_hello: &[u8], own: &StaticKey) -> Vec<u8> {
    let hello = frame(client_hello);
    let e_a: [u8; 32] = hello.payload[1 + 4 + 4 + 8..1 + 4 + 4 + 8 + 32].try_into().expect("e_a");
    let eph = crate::crypto::EphemeralKey::generate(&mut rng(77));
    let e_p = eph.public();
    let ee = eph.agree(&e_a).expect("ee");
    let es_guess = own.agree(&e_a).expect("es with its own key");
    let h2 = sha256(&[client_hello, &e_p]);
    let header = Frame::header(FrameKind::ServerHello, 176);
    let mut id_box = e.proxy.identity().as_bytes().to_vec();
    Aead::new(&identity_key(e.psk.secret(), &h2, ee.expose())).seal(
        &ZERO_NONCE,
        &[&header[..], &e_p].concat(),
        &mut id_box,
    );
    let mut payload = e_p.to_vec();
    payload.extend_from_slice(&id_box);
    let mut keys = vec![0u8; 80];
    Aead::new(&server_key(e.psk.secret(), &h2, ee.expose(), es_guess.expose())).seal(
        &ZERO_NONCE,
        &[&header[..], &payload].concat(),
        &mut keys,
    );
    payload.extend_from_slice(&keys);
    Frame { kind: FrameKind::ServerHello, payload }.to_bytes()
}

/// Another agent of the project (it holds the project key) claims this
/// agent's name and public identity: without the private key it cannot
/// confirm, and the proxy learns that before anything is accepted.
#[test]
fn an_agent_cannot_prove_an_identity_it_does_not_hold() {
    let e = ends();
    let thief = static_key(9);
    let mut r = rng(6);
    // The thief builds a hello carrying the victim's public key…
    let (expect, hello) =
        ClientHandshake::start(&e.psk, &thief, "web-01", NOW, &mut r).expect("hello");
    let mut read = ServerHandshake::read_hello(frame(&hello), &store(&[&e.psk]), &mut guard(), NOW)
        .expect("authentic hello");
    read.agent_identity = e.agent.identity();
    let (pending, answer) = read.respond(&e.proxy, NOW, &mut r).expect("answer");
    // …and completes its side with its own key: the proxy refuses.
    let client = expect.receive(frame(&answer), None).expect("the thief accepts");
    assert_eq!(
        pending.receive_finished(frame(&client.finished)).err(),
        Some(HandshakeError::ConfirmationFailed)
    );
}

#[test]
fn credential_failures_look_alike_on_the_wire() {
    let e = ends();
    let wrong = key("shop", 99);
    let other_project = key("bank", 1);
    let mut r = rng(7);
    let (expect, hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut r).expect("hello");
    let mut errors = Vec::new();
    for keys in [store(&[&wrong]), store(&[&other_project])] {
        errors.push(
            ServerHandshake::read_hello(frame(&hello), &keys, &mut guard(), NOW)
                .expect_err("refused"),
        );
    }
    let mut g = guard();
    ServerHandshake::read_hello(frame(&hello), &store(&[&e.psk]), &mut g, NOW).expect("first");
    errors.push(
        ServerHandshake::read_hello(frame(&hello), &store(&[&e.psk]), &mut g, NOW)
            .expect_err("replay"),
    );
    assert_eq!(
        errors[..2],
        [
            HandshakeError::UnknownKey { project: "shop".into(), key_id: e.psk.key_id() },
            HandshakeError::UnknownProject("shop".into()),
        ]
    );
    assert_eq!(errors[2], HandshakeError::Replayed);
    let closes: Vec<Close> = errors.iter().map(HandshakeError::to_close).collect();
    assert!(closes.iter().all(|c| *c == closes[0]), "{closes:?}");
    assert_eq!(closes[0].code, CloseCode::Refused);
    // What the agent makes of it.
    let mut body = Vec::new();
    closes[0].encode(&mut body);
    match expect.receive(Frame { kind: FrameKind::Close, payload: body }, None) {
        Err(HandshakeError::Refused(c)) => assert_eq!(c.code, CloseCode::Refused),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_wrong_key_with_a_known_id_is_bad_credentials() {
    let e = ends();
    // Same project and key id (forged), other secret.
    let mut keys = HashMap::new();
    keys.insert(e.psk.project().clone(), e.psk.clone());
    let mut r = rng(8);
    let (_, mut hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut r).expect("hello");
    let last = hello.len() - 1;
    hello[last] ^= 1;
    assert_eq!(
        ServerHandshake::read_hello(frame(&hello), &keys, &mut guard(), NOW).err(),
        Some(HandshakeError::BadCredentials("shop".into()))
    );
}

#[test]
fn stale_and_replayed_hellos_are_refused_before_any_key_exchange() {
    let e = ends();
    let keys = store(&[&e.psk]);
    let mut g = guard();
    let (_, hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut rng(9)).expect("hello");
    let err = ServerHandshake::read_hello(frame(&hello), &keys, &mut g, NOW + 180_000)
        .expect_err("three minutes late");
    assert!(matches!(err, HandshakeError::Stale { skew_ms: -180_000, .. }), "{err:?}");
    assert_eq!(err.to_close().code, CloseCode::ClockSkew);
    assert!(err.to_close().message.contains("180.0 s behind"), "{}", err.to_close().message);
    ServerHandshake::read_hello(frame(&hello), &keys, &mut g, NOW).expect("fresh");
    for _ in 0..300 {
        assert_eq!(
            ServerHandshake::read_hello(frame(&hello), &keys, &mut g, NOW + 1).err(),
            Some(HandshakeError::Replayed)
        );
    }
}

#[test]
fn a_hello_replayed_elsewhere_yields_no_session() {
    let e = ends();
    let original = run(&e, 10);
    // Another proxy, or this one after a restart (a fresh guard: the memory
    // of hellos is not saved), answers the replayed hello once…
    let mut g = guard();
    let read =
        ServerHandshake::read_hello(frame(&original.client_hello), &store(&[&e.psk]), &mut g, NOW)
            .expect("the hello itself authenticates");
    let (pending, _) = read.respond(&e.proxy, NOW, &mut rng(11)).expect("answer");
    // …but the recorded finished does not confirm it…
    assert_eq!(
        pending.receive_finished(frame(&original.client.finished)).err(),
        Some(HandshakeError::ConfirmationFailed)
    );
    // …and it now remembers the hello.
    assert_eq!(
        ServerHandshake::read_hello(frame(&original.client_hello), &store(&[&e.psk]), &mut g, NOW)
            .err(),
        Some(HandshakeError::Replayed)
    );
}

#[test]
fn every_tampered_byte_is_refused() {
    let e = ends();
    let keys = store(&[&e.psk]);
    let start =
        || ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut rng(12)).expect("hello");
    let (_, hello) = start();
    for i in crate::frame::HEADER_LEN..hello.len() {
        let mut bad = hello.clone();
        bad[i] ^= 0x01;
        assert!(
            ServerHandshake::read_hello(frame(&bad), &keys, &mut guard(), NOW).is_err(),
            "hello byte {i}"
        );
    }
    let exchange = || {
        let (expect, h) = start();
        let read = ServerHandshake::read_hello(frame(&h), &keys, &mut guard(), NOW).expect("ok");
        let (_, answer) = read.respond(&e.proxy, NOW, &mut rng(13)).expect("answer");
        (expect, answer)
    };
    let (expect, answer) = exchange();
    assert!(expect.receive(frame(&answer), Some(&e.proxy.identity())).is_ok());
    for i in crate::frame::HEADER_LEN..answer.len() {
        let (expect, mut bad) = exchange();
        bad[i] ^= 0x80;
        assert!(expect.receive(frame(&bad), None).is_err(), "server hello byte {i}");
    }
}

#[test]
fn tampered_finished_is_refused() {
    let e = ends();
    let mut r = rng(14);
    let (expect, hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut r).expect("hello");
    let read = ServerHandshake::read_hello(frame(&hello), &store(&[&e.psk]), &mut guard(), NOW)
        .expect("ok");
    let (pending, answer) = read.respond(&e.proxy, NOW, &mut r).expect("answer");
    let client = expect.receive(frame(&answer), None).expect("accepted");
    let mut bad = client.finished.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        pending.receive_finished(frame(&bad)).err(),
        Some(HandshakeError::ConfirmationFailed)
    );
}

/// An attacker records a whole session, later steals the project key and
/// both static keys. Without an ephemeral private key it still cannot
/// derive the session's keys: `ee` is missing from every guess.
#[test]
fn recorded_session_stays_secret_after_every_long_term_key_leaks() {
    let e = ends();
    let mut run = run(&e, 15);
    let data = run.client.session.seal(FrameKind::Sealed, b"secret label").expect("seal");
    let hello = frame(&run.client_hello);
    let at = 1 + 4 + 4 + 8;
    let e_a: [u8; 32] = hello.payload[at..at + 32].try_into().expect("e_a");
    let e_p: [u8; 32] = frame(&run.server_hello).payload[..32].try_into().expect("e_p");
    let es = e.proxy.agree(&e_a).expect("es from the stolen proxy key");
    let se = e.agent.agree(&e_p).expect("se from the stolen agent key");
    let th2 = sha256(&[&run.client_hello, &run.server_hello]);
    let guesses = [
        [0u8; 32],
        e_a,
        e_p,
        *e.psk.secret().expose(),
        *x25519_agree(e.psk.secret().expose(), &e_p).expect("ok").expose(),
        *es.expose(),
        *se.expose(),
    ];
    let data = frame(&data);
    for ee in guesses {
        let master = Master::derive(e.psk.secret(), &th2, [&ee, es.expose(), se.expose()]);
        let zero = crate::secret::Key256::new([0; 32]);
        let suite = run.server.session.simple_suite();
        let id = run.server.session.id();
        let mut s = master.into_session(&th2, (&zero, &zero), suite, id, Role::Server);
        let _ = s.open(frame(&run.client.finished));
        assert_eq!(s.open(data.clone()), Err(SessionError::Auth));
    }
    assert_eq!(run.server.session.open(data), Ok(b"secret label".to_vec()));
}

#[test]
fn no_two_sessions_share_keys_or_nonces() {
    let e = ends();
    let mut seen_ids = std::collections::HashSet::new();
    let mut seen_frames = std::collections::HashSet::new();
    let mut seen_simple = std::collections::HashSet::new();
    for seed in 0..20 {
        let mut run = run(&e, 100 + seed);
        assert!(seen_ids.insert(run.server.session.id()));
        let mut w = crate::simple::NumericWriter::new();
        for _ in 0..32 {
            w.u64(7);
        }
        let mut wire = Vec::new();
        run.client.session.seal_simple(&w.finish(), &mut wire);
        let tags = run.client.session.simple_checkpoint().tags;
        assert!(seen_simple.insert((wire, tags)), "simple keystream shared between sessions");
        let f = run.client.session.seal(FrameKind::Sealed, &[0; 32]).expect("seal");
        assert!(seen_frames.insert(f));
    }
}

#[test]
fn split_delivery_of_handshake_frames() {
    let e = ends();
    let (_, hello) =
        ClientHandshake::start(&e.psk, &e.agent, "web-01", NOW, &mut rng(16)).expect("hello");
    for cut in 0..=hello.len() {
        let mut d = FrameDecoder::default();
        d.push(&hello[..cut]);
        let first = d.next_frame().expect("never invalid");
        d.push(&hello[cut..]);
        let f = first.or_else(|| d.next_frame().expect("never invalid")).expect("complete");
        assert!(ServerHandshake::read_hello(f, &store(&[&e.psk]), &mut guard(), NOW).is_ok());
    }
}

#[test]
fn agent_name_is_checked() {
    let e = ends();
    let mut r = rng(1);
    assert_eq!(
        ClientHandshake::start(&e.psk, &e.agent, "", NOW, &mut r).err(),
        Some(HandshakeError::BadAgentName)
    );
    assert!(ClientHandshake::start(&e.psk, &e.agent, &"a".repeat(256), NOW, &mut r).is_err());
}

#[test]
fn the_identity_box_hides_the_proxy_from_passive_observers() {
    let e = ends();
    let run = run(&e, 17);
    let id: Identity = e.proxy.identity();
    let wire = [&run.client_hello[..], &run.server_hello[..]].concat();
    assert!(!wire.windows(32).any(|w| w == id.as_bytes()), "proxy identity in clear");
    assert!(
        !wire.windows(32).any(|w| w == e.agent.identity().as_bytes()),
        "agent identity in clear"
    );
}
