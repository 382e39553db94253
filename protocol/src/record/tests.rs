use super::*;

/// Records holding `payloads`, and where each starts.
fn log(payloads: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for p in payloads {
        starts.push(bytes.len());
        encode(p, &mut bytes);
    }
    (bytes, starts)
}

/// A record in the format written before the sync marker.
fn legacy(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn read(bytes: &[u8], max: u32) -> (Vec<Vec<u8>>, Vec<Damage>, usize) {
    let mut r = scan(bytes, max);
    let payloads = r.by_ref().map(|(_, p)| p.to_vec()).collect();
    (payloads, r.damaged().to_vec(), r.valid_len())
}

const PAYLOADS: [&[u8]; 4] = [b"one", b"two two", b"three three three", b"four"];

#[test]
fn reads_back_what_was_written() {
    let (bytes, starts) = log(&PAYLOADS);
    let r: Vec<_> = scan(&bytes, 100).map(|(o, p)| (o, p.to_vec())).collect();
    let expected: Vec<_> = starts.iter().zip(PAYLOADS).map(|(o, p)| (*o, p.to_vec())).collect();
    assert_eq!(r, expected);
    assert_eq!(read(&bytes, 100).2, bytes.len());
    assert_eq!(bytes.len(), PAYLOADS.iter().map(|p| p.len() + OVERHEAD).sum::<usize>());
}

#[test]
fn appended_in_place_is_the_same_record() {
    let mut direct = b"prefix".to_vec();
    encode(b"payload", &mut direct);
    let mut in_place = b"prefix".to_vec();
    append_with(&mut in_place, |out| out.extend_from_slice(b"payload"));
    assert_eq!(in_place, direct);
    let mut empty = Vec::new();
    append_with(&mut empty, |_| {});
    assert_eq!(
        read(&empty, 10).0,
        [Vec::<u8>::new()],
        "the marker makes an empty payload a record"
    );
}

#[test]
fn a_torn_tail_ends_the_records_without_damage() {
    let (bytes, starts) = log(&PAYLOADS);
    for cut in starts[3]..bytes.len() {
        let (payloads, damaged, valid) = read(&bytes[..cut], 100);
        assert_eq!(payloads.len(), 3, "cut at {cut}");
        assert!(damaged.is_empty(), "a torn tail is not damage: cut at {cut}");
        assert_eq!(valid, starts[3]);
    }
}

#[test]
fn a_flipped_byte_in_the_middle_costs_only_its_record() {
    let (bytes, starts) = log(&PAYLOADS);
    // Every byte of the second record: length, checksum, marker, payload.
    for i in starts[1]..starts[2] {
        for bit in [0x01, 0x80] {
            let mut damaged = bytes.clone();
            damaged[i] ^= bit;
            let (payloads, damage, valid) = read(&damaged, 100);
            assert_eq!(payloads, [PAYLOADS[0], PAYLOADS[2], PAYLOADS[3]], "byte {i} bit {bit}");
            assert_eq!(damage, [Damage { offset: starts[1], len: starts[2] - starts[1] }]);
            assert_eq!(valid, bytes.len());
        }
    }
}

#[test]
fn an_implausible_length_is_resynchronised_on_the_next_marker() {
    let (mut bytes, starts) = log(&PAYLOADS);
    bytes[starts[1] + 3] = 0xff; // a length of gigabytes
    let (payloads, damage, _) = read(&bytes, 100);
    assert_eq!(payloads, [PAYLOADS[0], PAYLOADS[2], PAYLOADS[3]]);
    assert_eq!(damage, [Damage { offset: starts[1], len: starts[2] - starts[1] }]);
    // A plausible but wrong length that happens to point past the next
    // record: the nearer intact record still wins.
    let (mut bytes, starts) = log(&PAYLOADS);
    let wrong = u32::try_from(starts[3] - starts[1] - HEADER).expect("small");
    bytes[starts[1]..starts[1] + 4].copy_from_slice(&wrong.to_le_bytes());
    let (payloads, damage, _) = read(&bytes, 100);
    assert_eq!(payloads, [PAYLOADS[0], PAYLOADS[2], PAYLOADS[3]]);
    assert_eq!(damage, [Damage { offset: starts[1], len: starts[2] - starts[1] }]);
}

#[test]
fn garbage_between_records_is_one_damaged_span() {
    let (bytes, starts) = log(&PAYLOADS);
    let garbage = [0xab; 37];
    let mut spliced = bytes[..starts[2]].to_vec();
    spliced.extend_from_slice(&garbage);
    spliced.extend_from_slice(&bytes[starts[2]..]);
    let (payloads, damage, valid) = read(&spliced, 100);
    assert_eq!(payloads, PAYLOADS);
    assert_eq!(damage, [Damage { offset: starts[2], len: garbage.len() }]);
    assert_eq!(valid, spliced.len());
    // Damage at the very start too.
    let mut front = garbage.to_vec();
    front.extend_from_slice(&bytes);
    let (payloads, damage, _) = read(&front, 100);
    assert_eq!(payloads, PAYLOADS);
    assert_eq!(damage, [Damage { offset: 0, len: garbage.len() }]);
}

#[test]
fn zeros_are_a_torn_tail_not_records() {
    let (mut bytes, _) = log(&PAYLOADS[..2]);
    let good = bytes.len();
    bytes.extend_from_slice(&[0; 64]);
    let (payloads, damage, valid) = read(&bytes, 100);
    assert_eq!(payloads.len(), 2);
    assert!(damage.is_empty());
    assert_eq!(valid, good, "a zero-filled tail is cut, not read as empty records");
    assert_eq!(read(&[0; 8], u32::MAX).0.len(), 0);
    assert_eq!(read(&[0xff; 8], u32::MAX).0.len(), 0);
}

#[test]
fn over_the_limit_is_damage() {
    let (bytes, _) = log(&PAYLOADS);
    // Only the record over the limit is lost.
    let (payloads, damage, _) = read(&bytes, u32::try_from(SYNC.len() + 8).expect("small"));
    assert_eq!(payloads, [PAYLOADS[0], PAYLOADS[1], PAYLOADS[3]]);
    assert_eq!(damage.len(), 1);
}

#[test]
fn records_of_the_first_format_are_read_and_skipped_by_their_length() {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for p in PAYLOADS {
        starts.push(bytes.len());
        legacy(p, &mut bytes);
    }
    assert_eq!(read(&bytes, 100).0, PAYLOADS);
    // Without a marker, damage in a payload is skipped by its intact length.
    let mut damaged = bytes.clone();
    damaged[starts[1] + HEADER + 2] ^= 0x10;
    let (payloads, damage, _) = read(&damaged, 100);
    assert_eq!(payloads, [PAYLOADS[0], PAYLOADS[2], PAYLOADS[3]]);
    assert_eq!(damage, [Damage { offset: starts[1], len: starts[2] - starts[1] }]);
    // New records after old ones (an upgraded writer appending).
    encode(b"five", &mut bytes);
    assert_eq!(read(&bytes, 100).0.last().map(Vec::as_slice), Some(&b"five"[..]));
}

#[test]
fn crafted_input_cannot_make_the_search_quadratic() {
    // Markers every 12 bytes, each behind a length that reaches the end,
    // none with a valid checksum: without a budget each would hash the rest.
    let mut bytes = vec![0xee; 16];
    while bytes.len() < 2 << 20 {
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0xee; 4]);
        bytes.extend_from_slice(&SYNC);
    }
    let n = bytes.len();
    for (i, chunk) in bytes[16..].chunks_exact_mut(12).enumerate() {
        let len = u32::try_from(n - 16 - i * 12 - HEADER).expect("small");
        chunk[..4].copy_from_slice(&len.to_le_bytes());
    }
    let mut r = scan(&bytes, u32::MAX);
    assert_eq!(r.by_ref().count(), 0);
    assert!(r.gave_up(), "the search stops at its budget");
    assert_eq!(r.valid_len(), 0);
}
