//! Property tests of the record scanner: whatever happens to a log of
//! records, every byte is accounted for (intact record, damaged span or
//! torn tail, in order), and damage to one record never costs another.

use proptest::prelude::*;
use proptest::sample::Index;
use wasmtap_protocol::record::{self, Damage, SYNC};

const MAX: u32 = 1 << 16;

/// Payloads that hold no sync marker (a payload holding a whole record
/// could pass for one when its own record is damaged; see the module docs).
fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 2..12)
        .prop_filter("no marker inside", |ps| {
            ps.iter().all(|p| !p.windows(SYNC.len()).any(|w| w == SYNC))
        })
}

fn log(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for p in payloads {
        starts.push(bytes.len());
        record::encode(p, &mut bytes);
    }
    starts.push(bytes.len());
    (bytes, starts)
}

struct Read {
    records: Vec<(usize, Vec<u8>)>,
    damaged: Vec<Damage>,
    valid_len: usize,
    gave_up: bool,
}

fn read(bytes: &[u8]) -> Read {
    let mut r = record::scan(bytes, MAX);
    let records = r.by_ref().map(|(o, p)| (o, p.to_vec())).collect();
    Read { records, damaged: r.damaged().to_vec(), valid_len: r.valid_len(), gave_up: r.gave_up() }
}

/// Records and damaged spans tile `[0, valid_len)` in order.
fn accounts_for_every_byte(bytes: &[u8], r: &Read) -> Result<(), TestCaseError> {
    let mut pieces: Vec<(usize, usize)> = r.damaged.iter().map(|d| (d.offset, d.len)).collect();
    let mut scan = record::scan(bytes, MAX);
    let mut ends = Vec::new();
    while let Some((offset, _)) = scan.next() {
        ends.push((offset, scan.valid_len() - offset));
    }
    pieces.extend(ends);
    pieces.sort_unstable();
    let mut at = 0;
    for (offset, len) in pieces {
        prop_assert_eq!(offset, at, "a gap or overlap at {}", at);
        prop_assert!(len > 0);
        at = offset + len;
    }
    prop_assert_eq!(at, r.valid_len);
    prop_assert!(r.valid_len <= bytes.len());
    Ok(())
}

proptest! {
    #[test]
    fn intact_logs_read_back_exactly(ps in payloads()) {
        let (bytes, starts) = log(&ps);
        let r = read(&bytes);
        let expected: Vec<(usize, Vec<u8>)> = starts.iter().copied().zip(ps.iter().cloned()).collect();
        prop_assert_eq!(r.records, expected);
        prop_assert!(r.damaged.is_empty());
        prop_assert_eq!(r.valid_len, bytes.len());
    }

    #[test]
    fn damage_inside_one_record_costs_only_that_record(
        ps in payloads(),
        which in any::<Index>(),
        at in any::<Index>(),
        noise in prop::collection::vec(any::<u8>(), 1..24),
    ) {
        let (mut bytes, starts) = log(&ps);
        // Any record but the last (damage there is a torn tail).
        let k = which.index(ps.len() - 1);
        let (start, end) = (starts[k], starts[k + 1]);
        let from = start + at.index(end - start);
        let to = (from + noise.len()).min(end);
        let mut changed = false;
        for (b, n) in bytes[from..to].iter_mut().zip(&noise) {
            changed |= *n != 0;
            *b ^= n;
        }
        prop_assume!(changed);
        let r = read(&bytes);
        let mut expected: Vec<(usize, Vec<u8>)> =
            starts.iter().copied().zip(ps.iter().cloned()).collect();
        expected.remove(k);
        prop_assert_eq!(&r.records, &expected);
        prop_assert_eq!(&r.damaged, &vec![Damage { offset: start, len: end - start }]);
        prop_assert_eq!(r.valid_len, bytes.len());
        accounts_for_every_byte(&bytes, &r)?;
    }

    #[test]
    fn a_cut_anywhere_keeps_every_whole_record_before_it(ps in payloads(), cut in any::<Index>()) {
        let (bytes, starts) = log(&ps);
        let cut = cut.index(bytes.len() + 1);
        let r = read(&bytes[..cut]);
        let whole = starts.iter().skip(1).take_while(|end| **end <= cut).count();
        prop_assert_eq!(r.records.len(), whole);
        prop_assert!(r.damaged.is_empty(), "a torn tail is not damage");
        prop_assert_eq!(r.valid_len, starts[whole]);
    }

    #[test]
    fn garbage_spliced_between_records_is_one_span(
        ps in payloads(),
        which in any::<Index>(),
        garbage in prop::collection::vec(any::<u8>(), 1..300),
    ) {
        prop_assume!(!garbage.windows(SYNC.len()).any(|w| w == SYNC));
        let (bytes, starts) = log(&ps);
        let k = which.index(ps.len());
        let mut spliced = bytes[..starts[k]].to_vec();
        spliced.extend_from_slice(&garbage);
        spliced.extend_from_slice(&bytes[starts[k]..]);
        let r = read(&spliced);
        let payloads: Vec<Vec<u8>> = r.records.iter().map(|(_, p)| p.clone()).collect();
        prop_assert_eq!(&payloads, &ps);
        prop_assert_eq!(&r.damaged, &vec![Damage { offset: starts[k], len: garbage.len() }]);
        accounts_for_every_byte(&spliced, &r)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_are_accounted_for(
        ps in payloads(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..40),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let (mut bytes, _) = log(&ps);
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.extend_from_slice(&tail);
        let r = read(&bytes);
        prop_assert!(!r.gave_up, "small inputs stay within the search budget");
        accounts_for_every_byte(&bytes, &r)?;
        for (_, p) in &r.records {
            prop_assert!(p.len() <= MAX as usize);
        }
    }
}
