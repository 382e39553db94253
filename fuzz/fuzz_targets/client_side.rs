//! The agent's side of the handshake: arbitrary `ServerHello` and `Close`
//! frames (and frames of other kinds) into `ExpectServerHello::receive`,
//! including `ServerHello`s with an arbitrary body sealed under the real
//! handshake key, so the parser behind the AEAD is reached.
//!
//! Checks: a `Close` is reported as a refusal (or a decode error) and
//! nothing else; an unauthenticated answer is never accepted; a low-order
//! server share is refused as such; a sealed body is accepted exactly when it
//! has the 80-byte layout, and then its fields are what the agent reports.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::close::Close;
use wasmtap_protocol::crypto::x25519_agree;
use wasmtap_protocol::frame::{Frame, FrameKind};
use wasmtap_protocol::handshake::{ClientHandshake, HandshakeError};
use wasmtap_protocol_fuzz::{
    ALL_KINDS, BASEPOINT, ConstRng, LOW_ORDER_POINTS, frame, project_key, sealed_server_hello,
};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let b: u8 = u.arbitrary()?;
    let (expect, hello) =
        ClientHandshake::start(&project_key(), "web-01", 0, &mut ConstRng(b)).expect("hello");
    match u.int_in_range(0..=3u8)? {
        // A frame of any kind with an arbitrary payload.
        0 | 1 => {
            let kind = if u.arbitrary()? { *u.choose(&ALL_KINDS)? } else { FrameKind::Close };
            let payload = u.take_rest().to_vec();
            let result = expect.receive(Frame { kind, payload: payload.clone() });
            match kind {
                FrameKind::Close => {
                    let expected = match Close::decode(&payload) {
                        Ok(c) => HandshakeError::Refused(c),
                        Err(e) => HandshakeError::Decode(e),
                    };
                    assert_eq!(result.err(), Some(expected));
                }
                FrameKind::ServerHello => assert!(result.is_err(), "forged answer accepted"),
                got => assert_eq!(
                    result.err(),
                    Some(HandshakeError::UnexpectedFrame { expected: FrameKind::ServerHello, got })
                ),
            }
        }
        // A low-order server share.
        2 => {
            let point = *u.choose(&LOW_ORDER_POINTS)?;
            let rest = u.take_rest();
            let payload = [point.as_slice(), rest].concat();
            let result = expect.receive(Frame { kind: FrameKind::ServerHello, payload });
            if rest.len() >= 32 {
                assert!(matches!(result, Err(HandshakeError::LowOrderShare(_))), "{result:?}");
            } else {
                assert!(matches!(result, Err(HandshakeError::Decode(_))), "{result:?}");
            }
        }
        // A correctly sealed answer with an arbitrary body.
        _ => {
            let server_secret: [u8; 32] = u.arbitrary()?;
            let server_random: [u8; 32] = u.arbitrary()?;
            let body = u.take_rest().to_vec();
            let client_public = *x25519_agree(&[b; 32], &BASEPOINT).expect("ok").expose();
            let answer = sealed_server_hello(
                &hello,
                &client_public,
                &server_secret,
                &server_random,
                body.clone(),
            );
            match expect.receive(answer) {
                Ok(c) => {
                    assert_eq!(body.len(), 80, "accepted a body of the wrong length");
                    let id = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
                    let time = u64::from_be_bytes(body[72..].try_into().expect("8 bytes"));
                    assert_eq!(c.session.id(), id);
                    assert_eq!(c.server_time_ms, time);
                    assert_eq!(frame(&c.finished).kind, FrameKind::ClientFinished);
                }
                Err(e) => {
                    assert_ne!(body.len(), 80, "well-formed body refused: {e}");
                    assert!(matches!(e, HandshakeError::Decode(_)), "{e:?}");
                }
            }
        }
    }
    Ok(())
}
