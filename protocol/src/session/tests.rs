use super::*;
use crate::simple::NumericWriter;

fn pair() -> (Session, Session) {
    pair_with(SimpleSuite::Aegis128L)
}

fn pair_with(suite: SimpleSuite) -> (Session, Session) {
    let mut server = Session::with_keys(suite, [2, 12], [1, 11]);
    server.role = Role::Server;
    (Session::with_keys(suite, [1, 11], [2, 12]), server)
}

fn frame(bytes: &[u8]) -> Frame {
    let mut d = crate::frame::FrameDecoder::default();
    d.push(bytes);
    d.next_frame().expect("valid").expect("complete")
}

fn numbers(v: u64) -> NumericPayload {
    let mut w = NumericWriter::new();
    w.u64(v);
    w.finish()
}

#[test]
fn round_trip_both_ways() {
    let (mut c, mut s) = pair();
    let f = c.seal(FrameKind::Sealed, b"up").expect("seals");
    assert_eq!(s.open(frame(&f)), Ok(b"up".to_vec()));
    let f = s.seal(FrameKind::Ack, b"down").expect("seals");
    assert_eq!(c.open(frame(&f)), Ok(b"down".to_vec()));
}

#[test]
fn the_first_failure_ends_the_session() {
    let (mut c, mut s) = pair();
    let f1 = c.seal(FrameKind::Sealed, b"one").expect("seals");
    let f2 = c.seal(FrameKind::Sealed, b"two").expect("seals");
    // Reordered: fails, and so does everything after, genuine or not.
    assert_eq!(s.open(frame(&f2)), Err(SessionError::Auth));
    assert_eq!(s.open(frame(&f1)), Err(SessionError::Auth));
    let f3 = c.seal(FrameKind::Sealed, b"three").expect("seals");
    assert_eq!(s.open(frame(&f3)), Err(SessionError::Auth));
}

#[test]
fn replay_fails() {
    let (mut c, mut s) = pair();
    let f1 = c.seal(FrameKind::Sealed, b"one").expect("seals");
    assert_eq!(s.open(frame(&f1)), Ok(b"one".to_vec()));
    assert_eq!(s.open(frame(&f1)), Err(SessionError::Auth));
}

#[test]
fn header_is_authenticated() {
    let (mut c, mut s) = pair();
    let mut f = frame(&c.seal(FrameKind::Sealed, b"x").expect("seals"));
    f.kind = FrameKind::Ping;
    assert_eq!(s.open(f), Err(SessionError::Auth));
}

#[test]
fn the_same_plaintext_never_seals_the_same_way() {
    // Nonce reuse would show as identical ciphertexts of identical plaintexts.
    let (mut c, mut s) = pair();
    let mut seen = std::collections::HashSet::new();
    for round in 0..6 {
        for _ in 0..4 {
            let f = c.seal(FrameKind::Sealed, b"same").expect("seals");
            assert!(seen.insert(f.clone()), "ciphertext repeated: nonce reused");
            assert_eq!(s.open(frame(&f)), Ok(b"same".to_vec()));
        }
        if round % 2 == 0 {
            // Across a key update the counter restarts: the key must change.
            let mut out = Vec::new();
            c.update_keys(&mut out).expect("update");
            assert_eq!(s.open(frame(&out)), Ok(Vec::new()));
            assert_eq!(c.send_counter(), 0);
        }
    }
}

#[test]
fn key_updates_move_both_paths_and_old_keys_stop_working() {
    for suite in SimpleSuite::ALL {
        key_updates_move_both_paths(suite);
    }
}

fn key_updates_move_both_paths(suite: SimpleSuite) {
    let (mut c, mut s) = pair_with(suite);
    let before = c.seal(FrameKind::Sealed, b"old").expect("seals");
    let mut update = Vec::new();
    c.update_keys(&mut update).expect("update");
    let after = c.seal(FrameKind::Sealed, b"new").expect("seals");
    let mut simple = Vec::new();
    c.seal_simple(&numbers(5), &mut simple);
    let cp = c.simple_checkpoint();

    assert_eq!(s.open(frame(&before)), Ok(b"old".to_vec()));
    assert_eq!(s.open(frame(&update)), Ok(Vec::new()));
    assert_eq!(s.open(frame(&after)), Ok(b"new".to_vec()));
    s.open_simple(frame(&simple)).expect("held");
    assert_eq!(s.verify_simple(&cp), Ok(&[numbers(5)][..]));
}

#[test]
fn keys_change_only_between_simple_epochs() {
    let (mut c, mut s) = pair();
    let mut out = Vec::new();
    c.seal_simple(&numbers(1), &mut out);
    assert_eq!(c.update_keys(&mut Vec::new()), Err(SessionError::UpdateInEpoch));
    // A sender that updates anyway (a hostile one) is refused by the receiver.
    let mut rogue = Session::with_keys(SimpleSuite::Aegis128L, [1, 11], [2, 12]);
    let mut f = Vec::new();
    rogue.seal_simple(&numbers(1), &mut f);
    rogue.send.simple = SimpleState::new(SimpleSuite::Aegis128L, Key256::new([11; 32]));
    rogue.seal_into(FrameKind::KeyUpdate, &[], &mut f).expect("seals");
    let mut d = crate::frame::FrameDecoder::default();
    d.push(&f);
    s.open_simple(d.next_frame().expect("ok").expect("frame")).expect("held");
    let update = d.next_frame().expect("ok").expect("frame");
    assert_eq!(s.open(update), Err(SessionError::UpdateInEpoch));
}

#[test]
fn rekey_is_due_by_time_and_by_bytes() {
    let (mut c, _) = pair();
    let t0 = Instant::now();
    assert!(!c.rekey_due(t0));
    assert!(!c.rekey_due(t0 + REKEY_AFTER - Duration::from_secs(1)));
    assert!(c.rekey_due(t0 + REKEY_AFTER));
    c.update_keys(&mut Vec::new()).expect("update");
    assert!(!c.rekey_due(t0 + REKEY_AFTER));
    c.send.bytes = REKEY_BYTES;
    assert!(c.rekey_due(t0 + REKEY_AFTER));
}

#[test]
fn a_peer_that_never_updates_is_refused() {
    let (mut c, mut s) = pair();
    s.recv.bytes = MAX_BYTES_PER_KEY + 1;
    let f = c.seal(FrameKind::Sealed, b"x").expect("seals");
    assert_eq!(s.open(frame(&f)), Err(SessionError::KeyWornOut));
}

#[test]
fn empty_simple_frames_are_refused() {
    let (_, mut s) = pair();
    let f = Frame { kind: FrameKind::Simple, payload: Vec::new() };
    assert_eq!(s.open_simple(f), Err(SessionError::Simple(SimpleError::Empty)));
    let (mut c, _) = pair();
    let mut out = Vec::new();
    c.seal_simple(&NumericPayload::default(), &mut out);
    assert!(out.is_empty(), "an empty payload sends no frame");
}

#[test]
fn simple_kind_is_not_sealed_here() {
    let (mut c, _) = pair();
    assert_eq!(c.seal(FrameKind::Simple, b"1"), Err(SessionError::NotSealed(FrameKind::Simple)));
}

#[test]
fn sealed_frames_open_in_place() {
    let (mut c, mut s) = pair();
    let mut f = frame(&c.seal(FrameKind::Sealed, b"in place").expect("seals"));
    s.open_in_place(&mut f).expect("opens");
    assert_eq!(f.payload, b"in place");
    let mut f = frame(&c.seal(FrameKind::Sealed, b"again").expect("seals"));
    f.payload[0] ^= 1;
    assert_eq!(s.open_in_place(&mut f), Err(SessionError::Auth));
}

#[test]
fn simple_frames_of_many_batches_round_trip_under_both_suites() {
    for suite in SimpleSuite::ALL {
        let (mut c, mut s) = pair_with(suite);
        assert_eq!(c.simple_suite(), suite);
        for batch in 0..4u64 {
            let mut wire = Vec::new();
            for v in 0..batch {
                c.seal_simple(&numbers(v), &mut wire);
            }
            let cp = c.simple_checkpoint();
            let mut d = crate::frame::FrameDecoder::default();
            d.push(&wire);
            while let Some(f) = d.next_frame().expect("valid") {
                s.open_simple(f).expect("held");
            }
            let expected: Vec<_> = (0..batch).map(numbers).collect();
            assert_eq!(s.verify_simple(&cp), Ok(&expected[..]), "{suite}");
        }
    }
}
