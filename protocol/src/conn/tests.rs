use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::access_key::{AccessKey, ProjectId};
use crate::frame::{Frame, FrameDecoder};
use crate::handshake::{ClientHandshake, ReplayGuard, ServerHandshake};
use crate::identity::StaticKey;
use crate::message::{self, Ack, Batch, ControlRequest, ControlResponse, Sample, Value};
use crate::session::REKEY_AFTER;

const WALL: u64 = 1_800_000_000_000;

fn frame(bytes: &[u8]) -> Frame {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    d.next_frame().expect("valid").expect("complete")
}

/// An agent and a proxy connection with an established session, at `t0`.
fn pair(t0: Instant) -> (AgentConn, ProxyConn) {
    let mut rng = StdRng::seed_from_u64(1);
    let psk = AccessKey::generate(ProjectId::new("shop").expect("valid"), &mut rng);
    let (agent_key, proxy_key) = (StaticKey::generate(&mut rng), StaticKey::generate(&mut rng));
    let keys: HashMap<_, _> = [(psk.project().clone(), psk.clone())].into();
    let (expect, hello) =
        ClientHandshake::start(&psk, &agent_key, "web-01", WALL, &mut rng).expect("hello");
    let read = ServerHandshake::read_hello(frame(&hello), &keys, &mut ReplayGuard::default(), WALL)
        .expect("read");
    let (pending, answer) = read.respond(&proxy_key, WALL, &mut rng).expect("answer");
    let client = expect.receive(frame(&answer), None).expect("client");
    let server = pending.receive_finished(frame(&client.finished)).expect("server");
    (
        AgentConn::new(client.session, FrameDecoder::default(), AgentConfig::default(), t0),
        ProxyConn::new(server.session, FrameDecoder::default(), ProxyConfig::default(), t0),
    )
}

fn batch(seq: u64, v: f64) -> Batch {
    Batch {
        seq,
        samples: vec![Sample {
            collector: "load".into(),
            time_ms: WALL,
            labels: vec![("host".into(), "a".into())].into(),
            values: vec![("load1".into(), Value::Gauge(v)), ("os".into(), Value::Text("l".into()))],
        }],
    }
}

fn seq(n: u64) -> u64 {
    (WALL << 16) + n
}

/// Moves everything the agent queued to the proxy.
fn up(a: &mut AgentConn, p: &mut ProxyConn, now: Instant) -> Result<(), ConnError> {
    let bytes = a.poll_transmit().unwrap_or_default();
    p.handle_input(&bytes, now, WALL)
}

fn down(p: &mut ProxyConn, a: &mut AgentConn, now: Instant) -> Result<(), ConnError> {
    let bytes = p.poll_transmit().unwrap_or_default();
    a.handle_input(&bytes, now, WALL)
}

fn events<T>(mut poll: impl FnMut() -> Option<T>) -> Vec<T> {
    std::iter::from_fn(&mut poll).collect()
}

#[test]
fn batches_flow_and_acks_settle_them() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    for i in 0..3 {
        let sent = a.send_batch(&batch(seq(i), i as f64), t0).expect("send");
        assert_eq!(sent.numbers, 1);
        assert!(sent.simple_bytes > 0 && sent.sealed_bytes > 0);
    }
    assert_eq!(a.in_flight(), 3);
    up(&mut a, &mut p, t0).expect("proxy reads");
    let got = events(|| p.poll_event());
    assert_eq!(got.len(), 3);
    assert_eq!(got[1], ProxyEvent::Batch(batch(seq(1), 1.0)));
    // Out of order is refused; in order goes out.
    assert_eq!(p.acknowledge(seq(1), t0), Ok(false));
    for i in 0..3 {
        assert_eq!(p.acknowledge(seq(i), t0), Ok(true));
    }
    // The first acknowledgement goes out at once; the next two are held
    // for the ack interval, then go out as one cumulative Ack.
    down(&mut p, &mut a, t0).expect("agent reads");
    assert_eq!(events(|| a.poll_event()), vec![AgentEvent::Acked { seq: seq(0), batches: 1 }]);
    let due = t0 + ProxyConfig::default().ack_interval;
    assert_eq!(p.poll_timeout(), Some(due));
    p.handle_timeout(due).expect("interval passed");
    down(&mut p, &mut a, due).expect("agent reads");
    assert_eq!(events(|| a.poll_event()), vec![AgentEvent::Acked { seq: seq(2), batches: 2 }]);
    assert_eq!(a.in_flight(), 0);
    assert_eq!(p.poll_timeout(), Some(t0 + ProxyConfig::default().idle_timeout), "nothing held");
}

#[test]
fn held_acknowledgements_go_out_on_a_ping_a_full_hold_and_a_close() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    let acked = |p: &mut ProxyConn, a: &mut AgentConn| {
        down(p, a, t0).expect("agent reads");
        events(|| a.poll_event())
    };
    // An Ack went out just now: the next ones are held.
    a.send_batch(&batch(seq(0), 0.0), t0).expect("send");
    up(&mut a, &mut p, t0).expect("read");
    p.acknowledge(seq(0), t0).expect("ack");
    assert_eq!(acked(&mut p, &mut a).len(), 1);
    a.send_batch(&batch(seq(1), 0.0), t0).expect("send");
    up(&mut a, &mut p, t0).expect("read");
    p.acknowledge(seq(1), t0).expect("ack");
    assert!(acked(&mut p, &mut a).is_empty(), "held");
    // A draining agent pings at once; the ping releases what is held.
    a.drain(t0, t0 + Duration::from_secs(5));
    assert_eq!(a.poll_timeout(), Some(t0), "the drain asks for a ping now");
    a.handle_timeout(t0, WALL).expect("ping");
    up(&mut a, &mut p, t0).expect("read ping");
    let got = acked(&mut p, &mut a);
    assert!(got.contains(&AgentEvent::Acked { seq: seq(1), batches: 1 }), "{got:?}");
    assert!(got.contains(&AgentEvent::Drained { unacknowledged: 0 }), "{got:?}");

    // A full hold goes out without waiting.
    let (mut a, mut p) = pair(t0);
    let hold = ProxyConfig::default().ack_batches as u64;
    for i in 0..=hold {
        a.send_batch(&batch(seq(i), 0.0), t0).expect("send");
    }
    up(&mut a, &mut p, t0).expect("read");
    for i in 0..=hold {
        p.acknowledge(seq(i), t0).expect("ack");
    }
    let got = acked(&mut p, &mut a);
    assert_eq!(got.last(), Some(&AgentEvent::Acked { seq: seq(hold), batches: hold as usize }));

    // A close sends what is held before the Close frame.
    a.send_batch(&batch(seq(hold + 1), 0.0), t0).expect("send");
    up(&mut a, &mut p, t0).expect("read");
    p.acknowledge(seq(hold + 1), t0).expect("ack");
    p.close(CloseCode::Shutdown, "bye");
    let bytes = p.poll_transmit().expect("bytes");
    assert_eq!(kinds(&bytes), [FrameKind::Ack, FrameKind::Close]);
}

#[test]
fn the_window_bounds_batches_in_flight() {
    let t0 = Instant::now();
    let (mut a, _) = pair(t0);
    for i in 0..32 {
        assert!(a.can_send());
        a.send_batch(&batch(seq(i), 0.0), t0).expect("send");
    }
    assert!(!a.can_send());
}

/// A proxy (or anyone who could forge its frames) acknowledging a batch
/// the agent never sent would make it drop its spool: refused and closed.
#[test]
fn an_ack_beyond_what_was_sent_is_refused() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    a.send_batch(&batch(seq(0), 0.0), t0).expect("send");
    up(&mut a, &mut p, t0).expect("read");
    let mut rogue = Vec::new();
    p.session
        .seal_into(FrameKind::Ack, &message::encode(&Ack { seq: u64::MAX }), &mut rogue)
        .expect("seal");
    let err = a.handle_input(&rogue, t0, WALL).expect_err("refused");
    assert_eq!(err, ConnError::AckBeyondSent { ack: u64::MAX, highest: Some(seq(0)) });
    assert_eq!(a.in_flight(), 1, "nothing settled");
    assert!(events(|| a.poll_event()).is_empty());
    let close = a.poll_transmit().expect("a close goes out");
    assert!(p.handle_input(&close, t0, WALL).is_err_and(|e| matches!(
        e,
        ConnError::PeerClosed(ref c) if c.code == CloseCode::ProtocolError
    )));
}

#[test]
fn a_sequence_from_the_future_is_refused() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    let future = (WALL + 3_600_000) << 16;
    a.send_batch(&batch(future, 0.0), t0).expect("send");
    let err = up(&mut a, &mut p, t0).expect_err("refused");
    assert!(matches!(err, ConnError::SeqFromTheFuture { .. }), "{err:?}");
    assert!(p.poll_event().is_none(), "nothing to store");
    assert!(p.is_closed());
}

#[test]
fn pings_measure_the_clock_and_silence_ends_the_session() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    let ping_at = a.poll_timeout().expect("deadline");
    assert_eq!(ping_at, t0 + AgentConfig::default().ping_interval);
    a.handle_timeout(ping_at, WALL).expect("ping");
    up(&mut a, &mut p, ping_at).expect("pong");
    down(&mut p, &mut a, ping_at).expect("time sync");
    assert!(matches!(a.poll_event(), Some(AgentEvent::TimeSync { .. })));
    // The proxy goes quiet.
    let idle = ping_at + AgentConfig::default().idle_timeout;
    assert_eq!(a.handle_timeout(idle, WALL), Err(ConnError::Idle(45)));
    // The proxy's own idle deadline.
    let deadline = p.poll_timeout().expect("deadline");
    assert!(matches!(p.handle_timeout(deadline), Err(ConnError::Idle(_))));
}

#[test]
fn control_requests_and_responses_pair_by_id() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    let req = ControlRequest { id: 9, command: "info".into(), args: vec![] };
    p.send_request(&req).expect("send");
    down(&mut p, &mut a, t0).expect("read");
    assert_eq!(a.poll_event(), Some(AgentEvent::Request(req)));
    let resp = ControlResponse { id: 9, result: Ok("{}".into()) };
    a.send_response(&resp).expect("answer");
    up(&mut a, &mut p, t0).expect("read");
    assert_eq!(p.poll_event(), Some(ProxyEvent::Response(resp)));
}

#[test]
fn a_drain_closes_once_everything_is_acknowledged() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    a.send_batch(&batch(seq(0), 0.0), t0).expect("send");
    a.drain(t0, t0 + Duration::from_secs(5));
    assert!(!a.can_send());
    up(&mut a, &mut p, t0).expect("read");
    p.acknowledge(seq(0), t0).expect("ack");
    down(&mut p, &mut a, t0).expect("read ack");
    let got = events(|| a.poll_event());
    assert_eq!(got.last(), Some(&AgentEvent::Drained { unacknowledged: 0 }));
    assert!(a.is_closed());
    let err = up(&mut a, &mut p, t0).expect_err("agent's close");
    assert!(matches!(err, ConnError::PeerClosed(ref c) if c.code == CloseCode::Shutdown));
}

#[test]
fn a_drain_gives_up_at_its_deadline() {
    let t0 = Instant::now();
    let (mut a, _) = pair(t0);
    a.send_batch(&batch(seq(0), 0.0), t0).expect("send");
    let until = t0 + Duration::from_secs(5);
    a.drain(t0, until);
    assert_eq!(a.poll_timeout(), Some(t0), "a ping asks for held acknowledgements first");
    a.handle_timeout(t0, WALL).expect("ping");
    assert!(a.poll_timeout().is_some_and(|t| t > t0 && t <= until));
    a.handle_timeout(until, WALL).expect("deadline");
    assert_eq!(events(|| a.poll_event()), vec![AgentEvent::Drained { unacknowledged: 1 }]);
}

fn kinds(bytes: &[u8]) -> Vec<FrameKind> {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().expect("valid")).map(|f| f.kind).collect()
}

#[test]
fn keys_are_updated_after_an_hour_and_data_keeps_flowing() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    a.send_batch(&batch(seq(0), 1.0), t0).expect("send");
    up(&mut a, &mut p, t0).expect("read");
    p.acknowledge(seq(0), t0).expect("ack starts the proxy's key clock");
    down(&mut p, &mut a, t0).expect("read ack");
    let later = t0 + REKEY_AFTER;
    a.send_batch(&batch(seq(1), 2.0), later).expect("send and update");
    a.send_batch(&batch(seq(2), 3.0), later).expect("send under new keys");
    let bytes = a.poll_transmit().expect("bytes");
    assert_eq!(kinds(&bytes).iter().filter(|k| **k == FrameKind::KeyUpdate).count(), 1);
    p.handle_input(&bytes, later, WALL).expect("proxy follows the update");
    assert_eq!(events(|| p.poll_event()).len(), 3);
    p.acknowledge(seq(1), later).expect("ack, then the proxy's own update");
    p.acknowledge(seq(2), later).expect("held");
    let due = later + ProxyConfig::default().ack_interval;
    p.handle_timeout(due).expect("the held ack, under new keys");
    let bytes = p.poll_transmit().expect("bytes");
    assert_eq!(kinds(&bytes), [FrameKind::Ack, FrameKind::KeyUpdate, FrameKind::Ack]);
    a.handle_input(&bytes, due, WALL).expect("agent follows");
    assert_eq!(a.in_flight(), 0);
}

#[test]
fn an_injected_frame_ends_the_session_at_once() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    let junk = Frame { kind: FrameKind::Sealed, payload: vec![0; 40] }.to_bytes();
    let err = p.handle_input(&junk, t0, WALL).expect_err("refused");
    assert_eq!(err, ConnError::Session(crate::session::SessionError::Auth));
    // Genuine frames after it are refused too: the connection is over.
    a.send_batch(&batch(seq(0), 0.0), t0).expect("send");
    assert_eq!(up(&mut a, &mut p, t0), Err(ConnError::Closed));
    let close = p.poll_transmit().expect("close");
    let err = a.handle_input(&close, t0, WALL).expect_err("closed");
    assert!(matches!(err, ConnError::PeerClosed(ref c) if c.code == CloseCode::AuthFailure));
}

#[test]
fn empty_simple_frames_and_stray_kinds_are_refused() {
    let t0 = Instant::now();
    let (_, mut p) = pair(t0);
    let empty = Frame { kind: FrameKind::Simple, payload: vec![] }.to_bytes();
    assert!(matches!(p.handle_input(&empty, t0, WALL), Err(ConnError::Session(_))));
    let (mut a, mut p) = pair(t0);
    let mut stray = Vec::new();
    p.session
        .seal_into(
            FrameKind::Ping,
            &message::encode(&crate::message::Ping { t1_ms: 0 }),
            &mut stray,
        )
        .expect("seal");
    assert_eq!(a.handle_input(&stray, t0, WALL), Err(ConnError::Unexpected(FrameKind::Ping)));
}

/// A session that carries no batch, only pings, still updates its keys
/// on time, on both sides, and goes on working under the new ones.
#[test]
fn keys_are_updated_on_time_in_a_session_that_only_pings() {
    let t0 = Instant::now();
    let (mut a, mut p) = pair(t0);
    let end = t0 + REKEY_AFTER + Duration::from_secs(60);
    let (mut agent_updates, mut proxy_updates) = (0, 0);
    let mut now = t0;
    while now < end {
        let (at, pt) = (a.poll_timeout().expect("open"), p.poll_timeout().expect("open"));
        now = at.min(pt);
        if at <= now {
            a.handle_timeout(now, WALL).expect("agent deadline");
        }
        if pt <= now {
            p.handle_timeout(now).expect("proxy deadline");
        }
        let bytes = a.poll_transmit().unwrap_or_default();
        agent_updates += kinds(&bytes).iter().filter(|k| **k == FrameKind::KeyUpdate).count();
        p.handle_input(&bytes, now, WALL).expect("proxy reads");
        let bytes = p.poll_transmit().unwrap_or_default();
        proxy_updates += kinds(&bytes).iter().filter(|k| **k == FrameKind::KeyUpdate).count();
        a.handle_input(&bytes, now, WALL).expect("agent reads");
        while a.poll_event().is_some() {}
    }
    assert_eq!((agent_updates, proxy_updates), (1, 1), "each side updated once in the hour");
    // The next update is due an hour after this one.
    assert!(a.poll_timeout().is_some_and(|t| t < end + REKEY_AFTER));
    // Data, acknowledgements and pings go on under the new keys.
    a.send_batch(&batch(seq(0), 1.0), now).expect("send");
    up(&mut a, &mut p, now).expect("proxy reads the batch");
    assert_eq!(p.poll_event(), Some(ProxyEvent::Batch(batch(seq(0), 1.0))));
    p.acknowledge(seq(0), now).expect("ack");
    down(&mut p, &mut a, now).expect("agent reads the ack");
    assert_eq!(a.poll_event(), Some(AgentEvent::Acked { seq: seq(0), batches: 1 }));
}
