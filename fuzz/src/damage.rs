//! Damage to a segment of records, for the recovery targets: flips,
//! overwrites, insertions and cuts, applied to the bytes while each
//! record's [`Span`] follows where it now lies and whether it was touched.

use arbitrary::Arbitrary;

/// One piece of damage; positions wrap around the segment's length.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// XOR one byte with `mask`.
    Flip { at: u16, mask: u8 },
    /// Replace up to 64 bytes from `at`.
    Overwrite { at: u16, bytes: Vec<u8> },
    /// Insert up to 64 bytes at `at`.
    Insert { at: u16, bytes: Vec<u8> },
    /// Cut everything from `at` on.
    Cut { at: u16 },
}

/// A record's span in the current bytes, whether damage touched it, and
/// whether a cut removed every byte of it (leaving no trace).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// Untouched by any damage.
    pub alive: bool,
    /// Wholly cut away.
    pub gone: bool,
}

impl Span {
    /// An untouched record at `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end, alive: true, gone: false }
    }
}

/// Applies `ops` to `bytes`; `span` gives each record's [`Span`].
pub fn apply<R>(
    bytes: &mut Vec<u8>,
    records: &mut [R],
    span: impl Fn(&mut R) -> &mut Span,
    ops: impl IntoIterator<Item = Op>,
) {
    let touch = |records: &mut [R], i: usize| {
        for r in records.iter_mut().map(&span).filter(|s| s.start <= i && i < s.end) {
            r.alive = false;
        }
    };
    for op in ops {
        match op {
            Op::Flip { at, mask } if !bytes.is_empty() && mask != 0 => {
                let i = usize::from(at) % bytes.len();
                bytes[i] ^= mask;
                touch(records, i);
            }
            Op::Overwrite { at, bytes: with } if !bytes.is_empty() => {
                let i = usize::from(at) % bytes.len();
                for (j, b) in with.into_iter().take(64).enumerate() {
                    if let Some(old) = bytes.get_mut(i + j).filter(|old| **old != b) {
                        *old = b;
                        touch(records, i + j);
                    }
                }
            }
            Op::Insert { at, bytes: with } => {
                let with: Vec<u8> = with.into_iter().take(64).collect();
                let i = usize::from(at) % (bytes.len() + 1);
                for s in records.iter_mut().map(&span) {
                    if s.start < i && i < s.end {
                        s.alive = false;
                    }
                    if s.start >= i {
                        s.start += with.len();
                    }
                    if s.end > i {
                        s.end += with.len();
                    }
                }
                bytes.splice(i..i, with);
            }
            Op::Cut { at } => {
                let i = usize::from(at) % (bytes.len() + 1);
                bytes.truncate(i);
                for s in records.iter_mut().map(&span).filter(|s| s.end > i) {
                    s.alive = false;
                    s.gone |= s.start >= i;
                }
            }
            _ => {}
        }
    }
}
