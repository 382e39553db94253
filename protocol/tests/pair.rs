//! An in-memory agent/proxy pair over a simulated link and a simulated
//! clock. The agent's byte stream is recorded once, then replayed to fresh
//! proxies with faults: split at every byte boundary, truncated at every
//! byte, frames reordered, every bit flipped. The proxy must never accept a
//! plaintext or a number the agent did not send, in an order it did not send.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind, HEADER_LEN};
use wasmtap_protocol::handshake::{
    ClientHandshake, ExpectClientFinished, ReplayGuard, ServerHandshake,
};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::message::{self, Ping, Pong};
use wasmtap_protocol::session::Session;
use wasmtap_protocol::simple::{Checkpoint, NumericPayload, NumericWriter};

/// A simulated clock: every step advances it by 7 ms.
struct Clock(u64);

impl Clock {
    fn tick(&mut self) -> u64 {
        self.0 += 7;
        self.0
    }
}

fn key() -> AccessKey {
    AccessKey::generate(ProjectId::new("shop").expect("valid"), &mut StdRng::seed_from_u64(1))
}

fn agent_key() -> StaticKey {
    StaticKey::generate(&mut StdRng::seed_from_u64(3))
}

fn proxy_key() -> StaticKey {
    StaticKey::generate(&mut StdRng::seed_from_u64(4))
}

fn keys() -> HashMap<ProjectId, AccessKey> {
    let k = key();
    [(k.project().clone(), k)].into()
}

/// What the proxy accepted, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Sealed(Vec<u8>),
    Numbers(Vec<NumericPayload>),
}

fn numbers(values: &[u64]) -> NumericPayload {
    let mut w = NumericWriter::new();
    for &v in values {
        w.u64(v);
    }
    w.finish()
}

/// Runs the agent once against a live proxy and records its byte stream,
/// frame by frame (with each frame's start), plus what the proxy accepted.
struct Recording {
    c2s: Vec<u8>,
    frame_starts: Vec<usize>,
    expected: Vec<Event>,
}

const PROXY_SEED: u64 = 42;
/// The proxy's simulated clock when the hello arrives, in the recording and every replay.
const PROXY_NOW: u64 = 2_000_000;

fn record() -> Recording {
    let mut clock = Clock(PROXY_NOW - 1_000);
    let mut agent_rng = StdRng::seed_from_u64(7);
    let (expect, hello) =
        ClientHandshake::start(&key(), &agent_key(), "web-01", clock.tick(), &mut agent_rng)
            .expect("hello");
    let mut d = FrameDecoder::default();
    d.push(&hello);
    let read = ServerHandshake::read_hello(
        d.next_frame().expect("valid").expect("whole"),
        &keys(),
        &mut ReplayGuard::default(),
        PROXY_NOW,
    )
    .expect("accepted");
    let (_, answer) = read
        .respond(&proxy_key(), PROXY_NOW, &mut StdRng::seed_from_u64(PROXY_SEED))
        .expect("answer");
    d.push(&answer);
    let established = expect
        .receive(d.next_frame().expect("valid").expect("whole"), Some(&proxy_key().identity()))
        .expect("accepted");
    let mut session = established.session;

    let mut c2s = Vec::new();
    let mut frame_starts = Vec::new();
    let mut push = |c2s: &mut Vec<u8>, bytes: &[u8]| {
        frame_starts.push(c2s.len());
        c2s.extend_from_slice(bytes);
    };
    push(&mut c2s, &hello);
    push(&mut c2s, &established.finished);
    let mut expected = Vec::new();
    for round in 0..3u64 {
        let body = format!("batch {round}").into_bytes();
        push(&mut c2s, &session.seal(FrameKind::Sealed, &body).expect("seal"));
        expected.push(Event::Sealed(body));
        let payloads = vec![numbers(&[round, 1, 2, 3]), numbers(&[round * 1000, 7])];
        for p in &payloads {
            let mut out = Vec::new();
            session.seal_simple(p, &mut out);
            push(&mut c2s, &out);
        }
        let cp = session.simple_checkpoint();
        let body = message::encode(&cp);
        push(&mut c2s, &session.seal(FrameKind::Sealed, &body).expect("seal"));
        expected.push(Event::Sealed(body));
        expected.push(Event::Numbers(payloads));
        let ping = message::encode(&Ping { t1_ms: clock.tick() });
        push(&mut c2s, &session.seal(FrameKind::Ping, &ping).expect("seal"));
        expected.push(Event::Sealed(ping));
    }
    Recording { c2s, frame_starts, expected }
}

/// A fresh proxy fed `chunks` of the agent's stream. Returns what it accepted
/// and whether it stopped on an error.
fn replay<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Event>, bool) {
    enum State {
        Hello,
        Finished(Box<ExpectClientFinished>),
        Up(Box<Session>),
    }
    let mut rng = StdRng::seed_from_u64(PROXY_SEED);
    let mut guard = ReplayGuard::default();
    let proxy = proxy_key();
    let mut state = State::Hello;
    let mut decoder = FrameDecoder::default();
    let mut accepted = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        loop {
            let frame: Frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return (accepted, true),
            };
            state = match state {
                State::Hello => {
                    let answered =
                        ServerHandshake::read_hello(frame, &keys(), &mut guard, PROXY_NOW)
                            .and_then(|read| read.respond(&proxy, PROXY_NOW, &mut rng));
                    match answered {
                        Ok((pending, _answer)) => State::Finished(Box::new(pending)),
                        Err(_) => return (accepted, true),
                    }
                }
                State::Finished(pending) => match pending.receive_finished(frame) {
                    Ok(est) => State::Up(Box::new(est.session)),
                    Err(_) => return (accepted, true),
                },
                State::Up(mut session) => {
                    if frame.kind == FrameKind::Simple {
                        if session.open_simple(frame).is_err() {
                            return (accepted, true);
                        }
                    } else {
                        let Ok(body) = session.open(frame) else { return (accepted, true) };
                        // A sealed body that is a checkpoint releases the numbers it covers.
                        let cp = message::decode::<Checkpoint>(&body).ok();
                        accepted.push(Event::Sealed(body));
                        if let Some(cp) = cp {
                            match session.verify_simple(&cp) {
                                Ok(n) => accepted.push(Event::Numbers(n.to_vec())),
                                Err(_) => return (accepted, true),
                            }
                        }
                    }
                    State::Up(session)
                }
            };
        }
    }
    (accepted, false)
}

fn is_prefix(got: &[Event], of: &[Event]) -> bool {
    got.len() <= of.len() && got.iter().zip(of).all(|(a, b)| a == b)
}

#[test]
fn a_clean_stream_is_accepted_whole() {
    let r = record();
    assert_eq!(replay([r.c2s.as_slice()]), (r.expected, false));
}

#[test]
fn every_split_point_and_chunk_size_gives_the_same_result() {
    let r = record();
    for cut in 0..=r.c2s.len() {
        assert_eq!(
            replay([&r.c2s[..cut], &r.c2s[cut..]]),
            (r.expected.clone(), false),
            "cut at {cut}"
        );
    }
    for size in 1..=9 {
        assert_eq!(replay(r.c2s.chunks(size)), (r.expected.clone(), false), "chunks of {size}");
    }
}

#[test]
fn truncation_at_any_byte_is_incomplete_never_invalid() {
    let r = record();
    for cut in 0..r.c2s.len() {
        let (got, failed) = replay([&r.c2s[..cut]]);
        assert!(!failed, "truncation at {cut} was treated as invalid");
        assert!(is_prefix(&got, &r.expected), "truncation at {cut} accepted something else");
        assert!(got.len() < r.expected.len(), "truncation at {cut} accepted everything");
    }
}

#[test]
fn reordered_frames_are_never_accepted_out_of_order() {
    let r = record();
    let frames: Vec<&[u8]> = r
        .frame_starts
        .iter()
        .zip(r.frame_starts.iter().skip(1).chain([&r.c2s.len()]))
        .map(|(&a, &b)| &r.c2s[a..b])
        .collect();
    for i in 0..frames.len() - 1 {
        if frames[i] == frames[i + 1] {
            continue;
        }
        let mut swapped = frames.clone();
        swapped.swap(i, i + 1);
        let (got, _) = replay(swapped.iter().copied());
        assert!(is_prefix(&got, &r.expected), "swap at {i} accepted something out of order");
        // Sealed and simple frames are separate streams and numbers are
        // released only at their checkpoint: swapping a simple frame with a
        // sealed neighbour is either harmless (the same data is accepted, in
        // the same order) or caught at the checkpoint. Within one path, every
        // swap is caught.
        let simple = |f: &[u8]| f[1] == FrameKind::Simple as u8;
        if simple(frames[i]) == simple(frames[i + 1]) {
            assert!(got.len() < r.expected.len(), "swap at {i} went unnoticed");
        }
    }
}

#[test]
fn no_bit_flip_anywhere_is_accepted() {
    let r = record();
    for bit in 0..r.c2s.len() * 8 {
        let mut bad = r.c2s.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let (got, _) = replay([bad.as_slice()]);
        assert!(is_prefix(&got, &r.expected), "flip of bit {bit} accepted altered data");
        assert!(got.len() < r.expected.len(), "flip of bit {bit} went unnoticed");
    }
}

#[test]
fn simulated_clocks_give_exact_time_sync() {
    // The agent is 10 s behind the proxy; 15 ms each way; 2 ms in the proxy.
    let (t1, proxy_skew, one_way) = (50_000u64, 10_000u64, 15u64);
    let t2 = t1 + proxy_skew + one_way;
    let pong = Pong { t1_ms: t1, t2_ms: t2, t3_ms: t2 + 2 };
    let t4 = t1 + one_way * 2 + 2;
    assert_eq!(pong.time_sync(t4), (30, 10_000));
    // The header length is what the decoder trusts: it must stay authenticated.
    assert_eq!(HEADER_LEN, 6);
}
