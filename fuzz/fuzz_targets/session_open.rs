//! An established session (real handshake) receiving a fuzzer-chosen mix of
//! genuine frames (key updates among them) in and out of order, replays,
//! genuine frames with bytes changed, cut or added, and arbitrary bytes, all
//! through a `FrameDecoder` into `Session::open`.
//!
//! A model predicts every result: the frame opens exactly when it is,
//! byte for byte, the next genuine frame in sequence and no sealed frame
//! failed before; the first sealed frame that is not fails authentication,
//! and so does every sealed frame after it.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::frame::{FrameDecoder, FrameKind};
use wasmtap_protocol::session::{SessionError, is_sealed_kind};
use wasmtap_protocol_fuzz::{ALL_KINDS, handshake};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

const MAX_OPS: usize = 64;

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let seed: u8 = u.arbitrary()?;
    let downstream: bool = u.arbitrary()?;
    let (mut client, mut server) = handshake(u64::from(seed));
    let (tx, rx) = if downstream {
        (&mut server.session, &mut client.session)
    } else {
        (&mut client.session, &mut server.session)
    };
    // Key updates are sent with `update_keys`, which also moves the sender on.
    let sealed_kinds: Vec<FrameKind> = ALL_KINDS
        .iter()
        .copied()
        .filter(|&k| is_sealed_kind(k) && k != FrameKind::KeyUpdate)
        .collect();

    // Genuine frames in the order sealed, with their plaintexts.
    let mut sent: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    // The model of the receiver: the next genuine frame it accepts, and
    // whether a sealed frame failed.
    let mut next = 0usize;
    let mut failed = false;

    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let wire: Vec<u8> = match u.int_in_range(0..=5u8)? {
            0 => {
                let (bytes, plaintext) = if u.ratio(1, 8)? {
                    let mut bytes = Vec::new();
                    tx.update_keys(&mut bytes).expect("key update");
                    (bytes, Vec::new())
                } else {
                    let kind = *u.choose(&sealed_kinds)?;
                    let plaintext: Vec<u8> = u.arbitrary()?;
                    (tx.seal(kind, &plaintext).expect("seal"), plaintext)
                };
                sent.push((bytes, plaintext));
                continue;
            }
            // A genuine frame: the expected one, a replay or one sent later.
            1 | 2 => {
                if sent.is_empty() {
                    continue;
                }
                let i = if u.arbitrary()? {
                    next.min(sent.len() - 1)
                } else {
                    u.choose_index(sent.len())?
                };
                sent[i].0.clone()
            }
            // A genuine frame with some bytes changed.
            3 => {
                if sent.is_empty() {
                    continue;
                }
                let mut bytes = sent[u.choose_index(sent.len())?].0.clone();
                let at = u.choose_index(bytes.len())?;
                let x: u8 = u.int_in_range(1..=255)?;
                bytes[at] ^= x;
                bytes
            }
            // A genuine frame cut short or with bytes appended.
            4 => {
                if sent.is_empty() {
                    continue;
                }
                let mut bytes = sent[u.choose_index(sent.len())?].0.clone();
                if u.arbitrary()? {
                    bytes.truncate(u.choose_index(bytes.len())?);
                } else {
                    let extra: Vec<u8> = u.arbitrary()?;
                    bytes.extend_from_slice(&extra);
                }
                bytes
            }
            // Anything.
            _ => u.arbitrary()?,
        };

        let mut d = FrameDecoder::default();
        d.push(&wire);
        let Ok(Some(frame)) = d.next_frame() else {
            continue; // refused or incomplete: never reaches the session
        };
        let bytes = frame.to_bytes();
        let kind = frame.kind;
        let result = rx.open(frame);
        let expected = if !is_sealed_kind(kind) {
            Err(SessionError::NotSealed(kind))
        } else if !failed && sent.get(next).is_some_and(|(genuine, _)| *genuine == bytes) {
            next += 1;
            Ok(sent[next - 1].1.clone())
        } else {
            failed = true;
            Err(SessionError::Auth)
        };
        assert_eq!(result, expected, "frame {bytes:02x?}");
    }
    Ok(())
}
