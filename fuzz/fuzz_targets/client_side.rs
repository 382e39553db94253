//! The agent's side of the handshake: arbitrary `ServerHello` and `Close`
//! frames (and frames of other kinds) into `ExpectServerHello::receive`,
//! including `ServerHello`s sealed under the real key schedule by a proxy
//! whose keys the fuzzer picks, with an arbitrary session keys box, so the
//! parser behind the AEAD is reached; the proxy's identity is pinned or
//! not, rightly or wrongly.
//!
//! Checks: a `Close` is reported as a refusal (or a decode error) and
//! nothing else; an unauthenticated answer is never accepted; a low-order
//! proxy share is refused as such; a wrongly pinned identity is refused as
//! a mismatch; a sealed keys box is accepted exactly when it has the 80-byte
//! layout, and then its fields are what the agent reports.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::close::Close;
use wasmtap_protocol::frame::{Frame, FrameKind};
use wasmtap_protocol::handshake::{ClientHandshake, HandshakeError};
use wasmtap_protocol::identity::{Identity, StaticKey};
use wasmtap_protocol_fuzz::{
    ALL_KINDS, ConstRng, LOW_ORDER_POINTS, NOW_MS, frame, project_key, public_of,
    sealed_server_hello,
};

fuzz_target!(|data: &[u8]| {
    wasmtap_protocol_fuzz::check_hand_built();
    let _ = run(data);
});

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let b: u8 = u.arbitrary()?;
    // With a constant generator the agent's ephemeral secret is [b; 32].
    let agent = StaticKey::generate(&mut ConstRng(b));
    let (expect, hello) =
        ClientHandshake::start(&project_key(), &agent, "web-01", NOW_MS, &mut ConstRng(b))
            .expect("hello");
    match u.int_in_range(0..=3u8)? {
        // A frame of any kind with an arbitrary payload.
        0 | 1 => {
            let kind = if u.arbitrary()? { *u.choose(&ALL_KINDS)? } else { FrameKind::Close };
            let payload = u.take_rest().to_vec();
            let result = expect.receive(Frame { kind, payload: payload.clone() }, None);
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
        // A low-order proxy share.
        2 => {
            let point = *u.choose(&LOW_ORDER_POINTS)?;
            let rest = u.take_rest();
            let payload = [point.as_slice(), rest].concat();
            let result = expect.receive(Frame { kind: FrameKind::ServerHello, payload }, None);
            // The identity box (32 bytes and a tag) is read before any exchange.
            if rest.len() >= 48 {
                assert!(matches!(result, Err(HandshakeError::LowOrderShare(_))), "{result:?}");
            } else {
                assert!(matches!(result, Err(HandshakeError::Decode(_))), "{result:?}");
            }
        }
        // A correctly sealed answer with an arbitrary keys box.
        _ => {
            let ephemeral: [u8; 32] = u.arbitrary()?;
            let identity: [u8; 32] = u.arbitrary()?;
            let pin: u8 = u.int_in_range(0..=2)?;
            let body = u.take_rest().to_vec();
            let e_a = public_of(&[b; 32]);
            let answer = sealed_server_hello(&hello, &e_a, &ephemeral, &identity, body.clone());
            let proxy = Identity::from_bytes(public_of(&identity));
            let wrong = Identity::from_bytes(public_of(&[identity[0] ^ 1; 32]));
            let pinned = match pin {
                0 => None,
                1 => Some(proxy),
                _ => Some(wrong).filter(|w| *w != proxy),
            };
            match expect.receive(answer, pinned.as_ref()) {
                Ok(c) => {
                    assert_eq!(body.len(), 80, "accepted a keys box of the wrong length");
                    assert!(pinned.is_none_or(|p| p == proxy), "accepted a mismatched identity");
                    let id = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
                    let time = u64::from_be_bytes(body[72..].try_into().expect("8 bytes"));
                    assert_eq!(c.session.id(), id);
                    assert_eq!(c.server_time_ms, time);
                    assert_eq!(c.proxy, proxy);
                    assert_eq!(frame(&c.finished).kind, FrameKind::ClientFinished);
                }
                Err(HandshakeError::IdentityMismatch { .. }) => {
                    assert!(pinned.is_some_and(|p| p != proxy), "right identity refused");
                }
                Err(e) => {
                    assert!(pinned.is_none_or(|p| p == proxy), "mismatch not reported: {e}");
                    assert_ne!(body.len(), 80, "well-formed keys box refused: {e}");
                    assert!(matches!(e, HandshakeError::Decode(_)), "{e:?}");
                }
            }
        }
    }
    Ok(())
}
