//! The proxy's side of the handshake. An arbitrary `ClientHello` payload, or
//! an arbitrary body sealed under the project's real hello key (so the body
//! parser behind the AEAD is reached), goes into
//! `ServerHandshake::receive_hello`; when it is accepted, arbitrary bytes go
//! in as the `ClientFinished`.
//!
//! Checks: a raw payload is never accepted (it would be a forgery); a sealed
//! body is accepted exactly when it is well-formed; an arbitrary finished
//! never completes the handshake.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::frame::{Frame, FrameKind};
use wasmtap_protocol::handshake::{HandshakeError, ServerHandshake};
use wasmtap_protocol_fuzz::{frame, hello_body_is_acceptable, rng, sealed_hello, store};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let keys = store();
    let sealed: bool = u.arbitrary()?;
    let seed: u64 = u.arbitrary()?;
    let (hello, body) = if sealed {
        let client_random: [u8; 32] = u.arbitrary()?;
        let body: Vec<u8> = u.arbitrary()?;
        (frame(&sealed_hello(&client_random, body.clone())), Some(body))
    } else {
        let payload: Vec<u8> = u.arbitrary()?;
        (Frame { kind: FrameKind::ClientHello, payload }, None)
    };

    let result = ServerHandshake::receive_hello(hello, &keys, 0, &mut rng(seed));
    let Some(body) = body else {
        assert!(result.is_err(), "a forged hello was accepted");
        return Ok(());
    };
    let acceptable = hello_body_is_acceptable(&body);
    let (pending, answer) = match result {
        Ok(accepted) => {
            assert!(acceptable, "malformed hello body accepted: {body:02x?}");
            accepted
        }
        Err(e) => {
            assert!(!acceptable, "well-formed hello body refused: {e}");
            assert!(
                matches!(
                    e,
                    HandshakeError::Decode(_)
                        | HandshakeError::LowOrderShare(_)
                        | HandshakeError::BadAgentName
                ),
                "{e:?}"
            );
            return Ok(());
        }
    };
    assert_eq!(frame(&answer).kind, FrameKind::ServerHello);
    assert_eq!(pending.agent().len(), usize::from(body[40]));

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
