use super::*;
use crate::frame::{Frame, FrameDecoder, FrameKind};
use crate::secret::Key256;

fn pair(suite: SimpleSuite) -> (SimpleState, SimpleState) {
    (SimpleState::new(suite, Key256::new([5; 32])), SimpleState::new(suite, Key256::new([5; 32])))
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
fn suite_bytes_round_trip_and_unknown_ones_are_refused() {
    for suite in SimpleSuite::ALL {
        assert_eq!(SimpleSuite::from_byte(suite.to_byte()), Some(suite));
    }
    assert_eq!(SimpleSuite::from_byte(0), None);
    assert_eq!(SimpleSuite::from_byte(3), None);
}

#[test]
fn frames_verify_at_the_checkpoint() {
    for suite in SimpleSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        for round in 0..3u64 {
            let mut wire = Vec::new();
            tx.seal_into(&payload(&[round, 1, 2]), &mut wire);
            tx.seal_into(&payload(&[round * 1000]), &mut wire);
            for f in frames(&wire) {
                rx.open(f).expect("held");
            }
            let cp = tx.checkpoint();
            assert_eq!((cp.epoch, cp.tags.len()), (round, 2));
            let got = rx.verify(&cp).expect("verified").to_vec();
            assert_eq!(got, vec![payload(&[round, 1, 2]), payload(&[round * 1000])], "{suite}");
        }
    }
}

#[test]
fn an_empty_checkpoint_verifies() {
    for suite in SimpleSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        assert_eq!(rx.verify(&tx.checkpoint()), Ok(&[][..]));
    }
}

#[test]
fn ciphertext_hides_the_numbers_and_never_repeats() {
    for suite in SimpleSuite::ALL {
        let (mut tx, _) = pair(suite);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut wire = Vec::new();
            tx.seal_into(&payload(&[42, 42, 42, 42]), &mut wire);
            assert_ne!(&wire[6..], &[42, 42, 42, 42], "{suite}: plaintext on the wire");
            assert!(seen.insert(wire[6..].to_vec()), "{suite}: keystream reused");
            if seen.len() % 7 == 0 {
                tx.checkpoint();
            }
        }
    }
}

#[test]
fn suites_differ_on_the_wire() {
    let mut wires = Vec::new();
    for suite in SimpleSuite::ALL {
        let (mut tx, _) = pair(suite);
        let mut wire = Vec::new();
        tx.seal_into(&payload(&[1, 2, 3]), &mut wire);
        wires.push((wire, tx.checkpoint()));
    }
    assert_ne!(wires[0], wires[1]);
    // A receiver of one suite refuses the other suite's frames.
    let (_, mut rx) = pair(SimpleSuite::ChaCha20Poly1305);
    for f in frames(&wires[0].0) {
        rx.open(f).expect("held");
    }
    assert_eq!(rx.verify(&wires[0].1), Err(SimpleError::CheckpointMismatch));
}

#[test]
fn every_bit_flip_fails_the_checkpoint() {
    for suite in SimpleSuite::ALL {
        let mut wire = Vec::new();
        let (mut tx, _) = pair(suite);
        tx.seal_into(&payload(&[1, 2, 3, 300]), &mut wire);
        let cp = tx.checkpoint();
        for i in 0..wire.len() * 8 {
            let mut bad = wire.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let (_, mut rx) = pair(suite);
            let mut d = FrameDecoder::default();
            d.push(&bad);
            // A flipped header may make the frame invalid, incomplete or of
            // another kind: refused before the simple path (the session
            // takes only `Simple` frames there).
            if let Ok(Some(f)) = d.next_frame()
                && f.kind == FrameKind::Simple
            {
                rx.open(f).expect("held");
                assert_eq!(rx.verify(&cp), Err(SimpleError::CheckpointMismatch), "bit {i}");
            }
        }
        // So does every flipped bit of a tag.
        for i in 0..16 * 8 {
            let mut bad = cp.clone();
            bad.tags[0][i / 8] ^= 1 << (i % 8);
            let (_, mut rx) = pair(suite);
            rx.open(frames(&wire)[0].clone()).expect("held");
            assert_eq!(rx.verify(&bad), Err(SimpleError::CheckpointMismatch), "tag bit {i}");
        }
    }
}

#[test]
fn replayed_dropped_or_reordered_frames_fail() {
    for suite in SimpleSuite::ALL {
        let (mut tx, _) = pair(suite);
        let mut wire = Vec::new();
        tx.seal_into(&payload(&[1]), &mut wire);
        tx.seal_into(&payload(&[2]), &mut wire);
        let cp = tx.checkpoint();
        let f = frames(&wire);
        for order in [vec![0, 0], vec![1, 0], vec![0], vec![0, 1, 1]] {
            let (_, mut rx) = pair(suite);
            for i in order.iter() {
                rx.open(f[*i].clone()).expect("held");
            }
            assert_eq!(rx.verify(&cp), Err(SimpleError::CheckpointMismatch), "{order:?}");
        }
        // A checkpoint from another epoch fails too, and so do tags swapped
        // along with their frames.
        let (_, mut rx) = pair(suite);
        rx.open(f[0].clone()).expect("held");
        rx.open(f[1].clone()).expect("held");
        let mut wrong = cp.clone();
        wrong.epoch += 1;
        assert_eq!(rx.verify(&wrong), Err(SimpleError::CheckpointMismatch));
        let (_, mut rx) = pair(suite);
        rx.open(f[1].clone()).expect("held");
        rx.open(f[0].clone()).expect("held");
        let swapped = Checkpoint { epoch: 0, tags: vec![cp.tags[1], cp.tags[0]] };
        assert_eq!(rx.verify(&swapped), Err(SimpleError::CheckpointMismatch));
    }
}

#[test]
fn a_frame_replayed_into_the_next_epoch_fails() {
    for suite in SimpleSuite::ALL {
        let (mut tx, mut rx) = pair(suite);
        let mut first = Vec::new();
        tx.seal_into(&payload(&[9]), &mut first);
        rx.open(frames(&first)[0].clone()).expect("held");
        rx.verify(&tx.checkpoint()).expect("verified");
        let mut second = Vec::new();
        tx.seal_into(&payload(&[9]), &mut second);
        let cp = tx.checkpoint();
        // The attacker resends the first frame with the second one's tag.
        rx.open(frames(&first)[0].clone()).expect("held");
        assert_eq!(rx.verify(&cp), Err(SimpleError::CheckpointMismatch));
    }
}

#[test]
fn pending_bytes_are_capped() {
    let (_, mut rx) = pair(SimpleSuite::Aegis128L);
    let big = Frame { kind: FrameKind::Simple, payload: vec![0; (MAX_PENDING_BYTES / 2) as usize] };
    rx.open(big.clone()).expect("first half");
    rx.open(big.clone()).expect("second half");
    assert_eq!(
        rx.open(Frame { kind: FrameKind::Simple, payload: vec![0] }),
        Err(SimpleError::TooMuchPending)
    );
}

#[test]
fn pending_frames_are_capped() {
    let (_, mut rx) = pair(SimpleSuite::ChaCha20Poly1305);
    let one = Frame { kind: FrameKind::Simple, payload: vec![1] };
    for _ in 0..MAX_PENDING_FRAMES {
        rx.open(one.clone()).expect("held");
    }
    assert_eq!(rx.open(one), Err(SimpleError::TooMuchPending));
}
