//! Arbitrary bytes, fed to a `FrameDecoder` in arbitrary chunks, with an
//! arbitrary payload limit. Checks that every byte is accounted for: decoded
//! frames re-encode to exactly the bytes they came from, an error names what
//! is wrong with the next header, and what is left buffered is an incomplete
//! but so far valid frame.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::frame::{
    DEFAULT_MAX_PAYLOAD, FrameDecoder, FrameError, FrameKind, HEADER_LEN, VERSION,
};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let max = *u.choose(&[0u32, 1, 16, 300, 4096, DEFAULT_MAX_PAYLOAD])?;
    let chunks: Vec<u8> = u.arbitrary()?;
    let stream = u.take_rest();

    let mut d = FrameDecoder::new(max);
    let mut consumed = Vec::new();
    let mut error = None;
    let mut pos = 0;
    let mut sizes = chunks.iter().map(|&c| usize::from(c)).chain(std::iter::repeat(usize::MAX));
    'feed: while pos < stream.len() {
        let end = pos.saturating_add(sizes.next().unwrap_or(usize::MAX)).min(stream.len());
        d.push(&stream[pos..end]);
        pos = end;
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.payload.len() <= max as usize);
                    f.encode(&mut consumed);
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(&consumed[..], &stream[..consumed.len()]);
    let rest = &stream[consumed.len()..];
    match error {
        None => {
            assert_eq!(d.buffered(), rest.len());
            if let Some(&v) = rest.first() {
                assert_eq!(v, VERSION);
            }
            if rest.len() >= HEADER_LEN {
                let len = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
                assert!(FrameKind::from_u8(rest[1]).is_some());
                assert!(len <= max);
                assert!(rest.len() < HEADER_LEN + len as usize);
            }
        }
        Some(FrameError::BadVersion(v)) => {
            assert_eq!(Some(&v), rest.first());
            assert_ne!(v, VERSION);
        }
        Some(FrameError::UnknownKind(k)) => {
            assert_eq!(Some(&k), rest.get(1));
            assert!(FrameKind::from_u8(k).is_none());
        }
        Some(FrameError::TooLarge { len, max: m }) => {
            assert_eq!(m, max);
            assert!(len > max);
            assert_eq!(&len.to_be_bytes()[..], &rest[2..HEADER_LEN]);
        }
        Some(other) => panic!("unexpected error {other:?}"),
    }
    Ok(())
}
