//! The proxy's side of the handshake. An arbitrary `ClientHello` payload, or
//! an arbitrary body sealed under the project's real hello key behind an
//! arbitrary ephemeral share (so the body parser behind the AEAD is
//! reached), goes into `ServerHandshake::read_hello`; an accepted hello is
//! answered, and arbitrary bytes go in as the `ClientFinished`.
//!
//! Checks: a raw payload is never accepted (it would be a forgery); a sealed
//! body is accepted exactly when it is well-formed, with the name and
//! identity it holds; an answer is refused only for a low-order share; an
//! arbitrary finished never completes the handshake.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::frame::{Frame, FrameKind};
use wasmtap_protocol::handshake::{HandshakeError, ReplayGuard, ServerHandshake};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol_fuzz::{
    NOW_MS, contributory, frame, hello_body_is_acceptable, rng, sealed_hello, store,
};

fuzz_target!(|data: &[u8]| {
    wasmtap_protocol_fuzz::check_hand_built();
    let _ = run(data);
});

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let keys = store();
    let sealed: bool = u.arbitrary()?;
    let seed: u64 = u.arbitrary()?;
    let (hello, opened) = if sealed {
        let e_a: [u8; 32] = u.arbitrary()?;
        let body: Vec<u8> = u.arbitrary()?;
        (frame(&sealed_hello(&e_a, body.clone())), Some((e_a, body)))
    } else {
        let payload: Vec<u8> = u.arbitrary()?;
        (Frame { kind: FrameKind::ClientHello, payload }, None)
    };

    let result = ServerHandshake::read_hello(hello, &keys, &mut ReplayGuard::default(), NOW_MS);
    let Some((e_a, body)) = opened else {
        assert!(result.is_err(), "a forged hello was accepted");
        return Ok(());
    };
    let acceptable = hello_body_is_acceptable(&body);
    let read = match result {
        Ok(read) => {
            assert!(acceptable, "malformed hello body accepted: {body:02x?}");
            read
        }
        Err(e) => {
            assert!(!acceptable, "well-formed hello body refused: {e}");
            assert!(
                matches!(
                    e,
                    HandshakeError::Decode(_)
                        | HandshakeError::BadAgentName
                        | HandshakeError::UnknownSuite(_)
                ),
                "{e:?}"
            );
            return Ok(());
        }
    };
    let name_len = usize::from(body[0]);
    assert_eq!(read.agent().as_bytes(), &body[1..=name_len]);
    let identity: [u8; 32] = body[1 + name_len..][..32].try_into().expect("32 bytes");
    assert_eq!(read.agent_identity().as_bytes(), &identity);
    assert_eq!(read.suite().to_byte(), body[1 + name_len + 32]);

    let mut r = rng(seed);
    let proxy = StaticKey::generate(&mut r);
    let answered = read.respond(&proxy, NOW_MS, &mut r);
    let pending = match answered {
        Ok((pending, answer)) => {
            assert!(contributory(&e_a) && contributory(&identity), "low-order share answered");
            assert_eq!(frame(&answer).kind, FrameKind::ServerHello);
            pending
        }
        Err(e) => {
            assert!(!(contributory(&e_a) && contributory(&identity)), "answer refused: {e}");
            assert!(matches!(e, HandshakeError::LowOrderShare(_)), "{e:?}");
            return Ok(());
        }
    };

    let kind = if u.ratio(1, 4)? {
        *u.choose(&wasmtap_protocol_fuzz::ALL_KINDS)?
    } else {
        FrameKind::ClientFinished
    };
    let payload = u.take_rest().to_vec();
    let finished = pending.receive_finished(Frame { kind, payload });
    assert!(finished.is_err(), "a forged finished completed the handshake");
    Ok(())
}
