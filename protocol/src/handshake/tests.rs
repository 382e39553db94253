use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::access_key::{AccessKey, ProjectId};
use crate::close::CloseCode;
use crate::crypto::{Aead, sha256};
use crate::frame::{Frame, FrameDecoder};
use crate::session::SessionError;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn key(project: &str, seed: u64) -> AccessKey {
    AccessKey::generate(ProjectId::new(project).expect("valid"), &mut rng(seed))
}

fn store(keys: &[&AccessKey]) -> HashMap<ProjectId, AccessKey> {
    keys.iter().map(|k| (k.project().clone(), (*k).clone())).collect()
}

fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    d.next_frame().expect("valid").expect("complete")
}

struct Run {
    client_hello: Vec<u8>,
    server_hello: Vec<u8>,
    client: ClientEstablished,
    server: ServerEstablished,
}

fn run(agent_key: &AccessKey, proxy_keys: &HashMap<ProjectId, AccessKey>, seed: u64) -> Run {
    let mut r = rng(seed);
    let (expect, client_hello) =
        ClientHandshake::start(agent_key, "web-01", 1_000, &mut r).expect("hello");
    let (pending, server_hello) =
        ServerHandshake::receive_hello(frame(&client_hello), proxy_keys, 2_000, &mut r)
            .expect("server accepts");
    let client = expect.receive(frame(&server_hello)).expect("client accepts");
    let server = pending.receive_finished(frame(&client.finished)).expect("confirmed");
    Run { client_hello, server_hello, client, server }
}

#[test]
fn happy_path_exchanges_data_both_ways() {
    let k = key("shop", 1);
    let mut run = run(&k, &store(&[&k]), 2);
    assert_eq!(run.server.agent, "web-01");
    assert_eq!(run.server.project.as_str(), "shop");
    assert_eq!(run.server.client_time_ms, 1_000);
    assert_eq!(run.client.server_time_ms, 2_000);
    // The simple path works too, verified at the checkpoint.
    let mut w = crate::simple::NumericWriter::new();
    w.u64(42).f64(0.5);
    let numbers = w.finish();
    let mut wire = Vec::new();
    run.client.session.seal_simple(&numbers, &mut wire);
    run.server.session.open_simple(frame(&wire)).expect("held");
    let cp = run.client.session.simple_checkpoint();
    assert_eq!(run.server.session.verify_simple(&cp), Ok(vec![numbers]));
    assert_eq!(run.client.session.id(), run.server.session.id());
    let up = run.client.session.seal(FrameKind::Sealed, b"cpu").expect("seal");
    assert_eq!(run.server.session.open(frame(&up)), Ok(b"cpu".to_vec()));
    let down = run.server.session.seal(FrameKind::Ack, b"ok").expect("seal");
    assert_eq!(run.client.session.open(frame(&down)), Ok(b"ok".to_vec()));
}

#[test]
fn wrong_key_is_refused_at_both_ends() {
    let agent = key("shop", 1);
    let proxy = key("shop", 99);
    let mut r = rng(3);
    let (expect, hello) = ClientHandshake::start(&agent, "web-01", 0, &mut r).expect("hello");
    let err = ServerHandshake::receive_hello(frame(&hello), &store(&[&proxy]), 0, &mut r)
        .expect_err("refused");
    assert_eq!(err, HandshakeError::BadCredentials("shop".into()));
    assert_eq!(err.close_code(), CloseCode::BadCredentials);
    // What the proxy sends back, and how the agent reports it.
    let mut body = Vec::new();
    Close::new(err.close_code(), err.to_string()).encode(&mut body);
    let close = Frame { kind: FrameKind::Close, payload: body };
    match expect.receive(close) {
        Err(HandshakeError::Refused(c)) => assert_eq!(c.code, CloseCode::BadCredentials),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unknown_project_is_refused() {
    let agent = key("shop", 1);
    let other = key("bank", 1);
    let mut r = rng(3);
    let (_, hello) = ClientHandshake::start(&agent, "web-01", 0, &mut r).expect("hello");
    let err = ServerHandshake::receive_hello(frame(&hello), &store(&[&other]), 0, &mut r)
        .expect_err("refused");
    assert_eq!(err, HandshakeError::UnknownProject("shop".into()));
}

#[test]
fn agent_refuses_a_proxy_with_another_key() {
    let agent = key("shop", 1);
    let impostor = key("shop", 2);
    let mut r = rng(4);
    let (expect, hello) = ClientHandshake::start(&agent, "web-01", 0, &mut r).expect("hello");
    // The impostor can't even read the hello; forge a ServerHello of the right shape.
    let (_, forged) = {
        let (_, h2) = ClientHandshake::start(&impostor, "web-01", 0, &mut r).expect("hello");
        ServerHandshake::receive_hello(frame(&h2), &store(&[&impostor]), 0, &mut r)
            .expect("accepts its own")
    };
    drop(hello);
    assert_eq!(expect.receive(frame(&forged)).err(), Some(HandshakeError::ServerNotAuthenticated));
}

#[test]
fn replayed_hello_yields_no_usable_session() {
    let k = key("shop", 1);
    let keys = store(&[&k]);
    let original = run(&k, &keys, 5);
    // The attacker replays the recorded hello and finished to a proxy.
    let mut r = rng(6);
    let (pending, _answer) =
        ServerHandshake::receive_hello(frame(&original.client_hello), &keys, 0, &mut r)
            .expect("hello itself authenticates");
    let err = pending.receive_finished(frame(&original.client.finished)).expect_err("refused");
    assert_eq!(err, HandshakeError::ConfirmationFailed);
}

#[test]
fn every_tampered_byte_is_refused() {
    let k = key("shop", 1);
    let keys = store(&[&k]);
    let mut r = rng(7);
    let (_, hello) = ClientHandshake::start(&k, "web-01", 0, &mut r).expect("hello");
    for i in crate::frame::HEADER_LEN..hello.len() {
        let mut bad = hello.clone();
        bad[i] ^= 0x01;
        assert!(
            ServerHandshake::receive_hello(frame(&bad), &keys, 0, &mut rng(8)).is_err(),
            "hello byte {i}"
        );
    }
    // Deterministic generators rebuild the same exchange for every flipped byte,
    // since each attempt consumes the client's state.
    let exchange = || {
        let (e, h) = ClientHandshake::start(&k, "web-01", 0, &mut rng(9)).expect("hello");
        let (_, answer) =
            ServerHandshake::receive_hello(frame(&h), &keys, 0, &mut rng(10)).expect("accepted");
        (e, answer)
    };
    let (e, answer) = exchange();
    assert!(e.receive(frame(&answer)).is_ok(), "the untampered answer is accepted");
    for i in crate::frame::HEADER_LEN..answer.len() {
        let (e, mut bad) = exchange();
        bad[i] ^= 0x80;
        assert!(e.receive(frame(&bad)).is_err(), "server hello byte {i}");
    }
}

#[test]
fn tampered_finished_is_refused() {
    let k = key("shop", 1);
    let keys = store(&[&k]);
    let mut r = rng(11);
    let (expect, hello) = ClientHandshake::start(&k, "web-01", 0, &mut r).expect("hello");
    let (pending, answer) =
        ServerHandshake::receive_hello(frame(&hello), &keys, 0, &mut r).expect("accepted");
    let client = expect.receive(frame(&answer)).expect("accepted");
    let mut bad = client.finished.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        pending.receive_finished(frame(&bad)).err(),
        Some(HandshakeError::ConfirmationFailed)
    );
}

/// An attacker records a whole session, later steals the access key, and
/// tries every key it can derive. None opens the session keys or the data.
#[test]
fn recorded_session_stays_secret_after_the_key_leaks() {
    let k = key("shop", 1);
    let mut run = run(&k, &store(&[&k]), 12);
    let data = run.client.session.seal(FrameKind::Sealed, b"secret label").expect("seal");

    // The leaked key does open the hello: the leak is real.
    let hello = frame(&run.client_hello);
    let mut rd = crate::codec::Reader::new(&hello.payload);
    let project = rd.short_str().expect("project").to_owned();
    let client_random: [u8; 32] = rd.array().expect("random");
    let clear_len = hello.payload.len() - rd.remaining();
    let mut body = rd.rest().to_vec();
    let aad = [&hello.header_bytes()[..], &hello.payload[..clear_len]].concat();
    Aead::new(&hello_key(k.secret(), &client_random, &project))
        .open(&ZERO_NONCE, &aad, &mut body)
        .expect("attacker reads the hello");
    let client_share: [u8; 32] = body[..32].try_into().expect("share");

    // Without an ephemeral private key, the attacker guesses the DH input.
    let answer = frame(&run.server_hello);
    let server_share: [u8; 32] = answer.payload[..32].try_into().expect("share");
    let server_random: [u8; 32] = answer.payload[32..64].try_into().expect("random");
    let th1 = sha256(&[&run.client_hello, &server_share, &server_random]);
    let aad = [&answer.header_bytes()[..], &server_share, &server_random].concat();
    let guesses: Vec<[u8; 32]> = vec![
        [0; 32],
        client_share,
        server_share,
        *k.secret().expose(),
        crate::crypto::x25519_agree(k.secret().expose(), &server_share)
            .expect("ok")
            .expose()
            .to_owned(),
        crate::crypto::x25519_agree(k.secret().expose(), &client_share)
            .expect("ok")
            .expose()
            .to_owned(),
    ];
    for dh in guesses {
        let mut body = answer.payload[64..].to_vec();
        let k_hs = handshake_key(k.secret(), &dh, &th1);
        assert!(Aead::new(&k_hs).open(&ZERO_NONCE, &aad, &mut body).is_err());
    }
    // Keys derived from the secret alone don't open data either.
    let th2 = sha256(&[&run.client_hello, &run.server_hello]);
    let data = frame(&data);
    for candidate in [k.secret().clone(), hello_key(k.secret(), &client_random, &project)] {
        let keys = TrafficKeys::derive(&candidate, &candidate, &th2);
        let mut s = keys.into_session(run.server.session.id(), Role::Server);
        // Skip past the finished frame's counter.
        let _ = s.open(frame(&run.client.finished));
        assert!(matches!(s.open(data.clone()), Err(SessionError::Auth { .. })));
    }
    // The genuine endpoint still reads it, so the frame was valid.
    assert_eq!(run.server.session.open(data), Ok(b"secret label".to_vec()));
}

#[test]
fn no_two_sessions_share_keys_or_nonces() {
    let k = key("shop", 1);
    let keys = store(&[&k]);
    let mut seen_ids = std::collections::HashSet::new();
    let mut seen_frames = std::collections::HashSet::new();
    let mut seen_simple = std::collections::HashSet::new();
    for seed in 0..20 {
        let mut run = run(&k, &keys, 100 + seed);
        assert!(seen_ids.insert(run.server.session.id()));
        let mut w = crate::simple::NumericWriter::new();
        w.u64(7);
        let mut wire = Vec::new();
        run.client.session.seal_simple(&w.finish(), &mut wire);
        assert!(seen_simple.insert(wire), "simple keystream shared between sessions");
        // The same plaintext at the same counter gives distinct ciphertext in
        // every session: keys (and so key/nonce pairs) are never shared.
        let f = run.client.session.seal(FrameKind::Sealed, &[0; 32]).expect("seal");
        assert!(seen_frames.insert(f));
    }
}

#[test]
fn split_delivery_of_handshake_frames() {
    let k = key("shop", 1);
    let mut r = rng(13);
    let (_, hello) = ClientHandshake::start(&k, "web-01", 0, &mut r).expect("hello");
    for cut in 0..=hello.len() {
        let mut d = FrameDecoder::default();
        d.push(&hello[..cut]);
        let first = d.next_frame().expect("never invalid");
        d.push(&hello[cut..]);
        let f = first.or_else(|| d.next_frame().expect("never invalid")).expect("complete");
        assert!(ServerHandshake::receive_hello(f, &store(&[&k]), 0, &mut rng(14)).is_ok());
    }
}

#[test]
fn agent_name_is_checked() {
    let k = key("shop", 1);
    let mut r = rng(1);
    assert_eq!(ClientHandshake::start(&k, "", 0, &mut r).err(), Some(HandshakeError::BadAgentName));
    assert!(ClientHandshake::start(&k, &"a".repeat(256), 0, &mut r).is_err());
}
