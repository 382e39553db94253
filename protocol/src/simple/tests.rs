use super::*;
use crate::frame::FrameDecoder;

fn pair() -> (SimpleState, SimpleState) {
    (SimpleState::new(Key256::new([5; 32])), SimpleState::new(Key256::new([5; 32])))
}

fn payload(values: &[u64]) -> NumericPayload {
    let mut w = NumericWriter::new();
    for &v in values {
        w.u64(v);
    }
    w.finish()
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().expect("valid")).collect()
}

#[test]
fn numbers_round_trip() {
    let mut w = NumericWriter::new();
    w.u64(0).u64(127).u64(128).u64(u64::MAX).i64(-1).i64(i64::MIN).i64(63).f64(0.25).f64(f64::NAN);
    let p = w.finish();
    let mut r = p.reader();
    assert_eq!(r.u64(), Ok(0));
    assert_eq!(r.u64(), Ok(127));
    assert_eq!(r.u64(), Ok(128));
    assert_eq!(r.u64(), Ok(u64::MAX));
    assert_eq!(r.i64(), Ok(-1));
    assert_eq!(r.i64(), Ok(i64::MIN));
    assert_eq!(r.i64(), Ok(63));
    assert_eq!(r.f64(), Ok(0.25));
    assert!(r.f64().is_ok_and(f64::is_nan));
    assert!(r.is_done());
    assert_eq!(r.u64(), Err(NumericError));
}

#[test]
fn small_numbers_are_one_byte() {
    assert_eq!(payload(&[0, 1, 127]).len(), 3);
    let mut w = NumericWriter::new();
    w.i64(-64).i64(63);
    assert_eq!(w.len(), 2);
}

#[test]
fn overlong_varints_are_refused() {
    let p = NumericPayload { bytes: vec![0xff; 11] };
    assert_eq!(p.reader().u64(), Err(NumericError));
    let p = NumericPayload { bytes: [vec![0xff; 9], vec![0x02]].concat() };
    assert_eq!(p.reader().u64(), Err(NumericError));
}

#[test]
fn frames_verify_at_the_checkpoint() {
    let (mut tx, mut rx) = pair();
    for round in 0..3u64 {
        let mut wire = Vec::new();
        tx.seal_into(&payload(&[round, 1, 2]), &mut wire);
        tx.seal_into(&payload(&[round * 1000]), &mut wire);
        for f in frames(&wire) {
            rx.open(f).expect("held");
        }
        let cp = tx.checkpoint();
        assert_eq!(cp.frames, 2);
        let got = rx.verify(&cp).expect("verified");
        assert_eq!(got, vec![payload(&[round, 1, 2]), payload(&[round * 1000])]);
    }
}

#[test]
fn ciphertext_hides_the_numbers_and_never_repeats() {
    let (mut tx, _) = pair();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let mut wire = Vec::new();
        tx.seal_into(&payload(&[42, 42, 42, 42]), &mut wire);
        assert!(seen.insert(wire[6..].to_vec()), "keystream reused");
        if seen.len() % 7 == 0 {
            tx.checkpoint();
        }
    }
}

#[test]
fn every_bit_flip_fails_the_checkpoint() {
    let mut wire = Vec::new();
    let (mut tx, _) = pair();
    tx.seal_into(&payload(&[1, 2, 3, 300]), &mut wire);
    let cp = tx.checkpoint();
    for i in 0..wire.len() * 8 {
        let mut bad = wire.clone();
        bad[i / 8] ^= 1 << (i % 8);
        let (_, mut rx) = pair();
        let mut d = FrameDecoder::default();
        d.push(&bad);
        // A flipped header may make the frame invalid or incomplete: refused too.
        if let Ok(Some(f)) = d.next_frame() {
            rx.open(f).expect("held");
            assert_eq!(rx.verify(&cp), Err(SimpleError::CheckpointMismatch), "bit {i}");
        }
    }
}

#[test]
fn replayed_dropped_or_reordered_frames_fail() {
    let (mut tx, _) = pair();
    let mut wire = Vec::new();
    tx.seal_into(&payload(&[1]), &mut wire);
    tx.seal_into(&payload(&[2]), &mut wire);
    let cp = tx.checkpoint();
    let f = frames(&wire);
    for order in [vec![0, 0], vec![1, 0], vec![0], vec![0, 1, 1]] {
        let (_, mut rx) = pair();
        for i in order.iter() {
            rx.open(f[*i].clone()).expect("held");
        }
        assert_eq!(rx.verify(&cp), Err(SimpleError::CheckpointMismatch), "{order:?}");
    }
    // A checkpoint from another epoch fails too.
    let (_, mut rx) = pair();
    rx.open(f[0].clone()).expect("held");
    rx.open(f[1].clone()).expect("held");
    let mut wrong = cp;
    wrong.epoch += 1;
    assert_eq!(rx.verify(&wrong), Err(SimpleError::CheckpointMismatch));
}

#[test]
fn pending_bytes_are_capped() {
    let (_, mut rx) = pair();
    let big = Frame { kind: FrameKind::Simple, payload: vec![0; (MAX_PENDING_BYTES / 2) as usize] };
    rx.open(big.clone()).expect("first half");
    rx.open(big.clone()).expect("second half");
    assert_eq!(
        rx.open(Frame { kind: FrameKind::Simple, payload: vec![0] }),
        Err(SimpleError::TooMuchPending)
    );
}
