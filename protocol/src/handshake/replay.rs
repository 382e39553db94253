//! Freshness of ClientHellos: a hello whose time is outside the allowed
//! skew is refused, and the ephemeral key of every hello accepted within
//! the window is remembered, so a replayed hello is refused before the
//! proxy spends a Diffie-Hellman on it.

use std::collections::{HashSet, VecDeque};

use super::HandshakeError;

/// Default allowed difference between agent and proxy clocks (±2 min).
pub const DEFAULT_MAX_SKEW_MS: u64 = 120_000;
/// Default number of hellos remembered. At the default skew a hello is
/// remembered for 4 min, so this allows about 4,000 handshakes a second.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;

/// The ephemeral keys of recently accepted hellos.
///
/// A hello is accepted only while its time is within `max_skew` of the
/// proxy's clock, so it can be replayed successfully only until
/// `hello time + max_skew ≤ accepted at + 2 × max_skew`: remembering each
/// key for twice the skew after it was seen is enough.
#[derive(Debug)]
pub struct ReplayGuard {
    max_skew_ms: u64,
    capacity: usize,
    seen: HashSet<[u8; 32]>,
    /// Keys in the order they were remembered, with when.
    order: VecDeque<(u64, [u8; 32])>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SKEW_MS, DEFAULT_REPLAY_CAPACITY)
    }
}

impl ReplayGuard {
    /// A guard allowing `max_skew_ms` either way and remembering at most `capacity` hellos.
    pub fn new(max_skew_ms: u64, capacity: usize) -> Self {
        Self { max_skew_ms, capacity, seen: HashSet::new(), order: VecDeque::new() }
    }

    /// The allowed clock difference, ms.
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// Hellos remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no hello is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Checks a hello's time and ephemeral key at `now_ms` (cheap: no
    /// cryptography). Expired keys are forgotten first.
    pub fn check(
        &mut self,
        ephemeral: &[u8; 32],
        hello_ms: u64,
        now_ms: u64,
    ) -> Result<(), HandshakeError> {
        self.expire(now_ms);
        let skew = i128::from(hello_ms) - i128::from(now_ms);
        if skew.unsigned_abs() > u128::from(self.max_skew_ms) {
            let skew_ms = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
            return Err(HandshakeError::Stale { skew_ms, allowed_ms: self.max_skew_ms });
        }
        if self.seen.contains(ephemeral) {
            return Err(HandshakeError::Replayed);
        }
        if self.order.len() >= self.capacity {
            return Err(HandshakeError::ReplayCacheFull);
        }
        Ok(())
    }

    /// Remembers an authenticated hello's ephemeral key.
    pub fn remember(&mut self, ephemeral: [u8; 32], now_ms: u64) {
        if self.seen.insert(ephemeral) {
            self.order.push_back((now_ms, ephemeral));
        }
    }

    fn expire(&mut self, now_ms: u64) {
        let keep = self.max_skew_ms.saturating_mul(2);
        while let Some(&(at, key)) = self.order.front() {
            if at.saturating_add(keep) > now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_hellos_name_the_skew() {
        let mut g = ReplayGuard::new(120_000, 10);
        let err = g.check(&[1; 32], 1_000_000 + 300_000, 1_000_000).expect_err("ahead");
        assert_eq!(err, HandshakeError::Stale { skew_ms: 300_000, allowed_ms: 120_000 });
        assert!(err.to_string().contains("300.0 s ahead of"), "{err}");
        let err = g.check(&[1; 32], 0, 1_000_000).expect_err("behind");
        assert!(err.to_string().contains("behind"), "{err}");
        assert_eq!(g.check(&[1; 32], 1_000_000 + 120_000, 1_000_000), Ok(()));
        assert!(g.check(&[1; 32], u64::MAX, 0).is_err());
    }

    #[test]
    fn a_key_is_refused_until_it_could_no_longer_be_fresh() {
        let mut g = ReplayGuard::new(100, 10);
        g.check(&[7; 32], 1_000, 1_000).expect("fresh");
        g.remember([7; 32], 1_000);
        assert_eq!(g.check(&[7; 32], 1_000, 1_050), Err(HandshakeError::Replayed));
        assert_eq!(g.check(&[7; 32], 1_100, 1_199), Err(HandshakeError::Replayed));
        // Forgotten once a hello of its time can only be stale.
        assert!(matches!(g.check(&[7; 32], 1_000, 1_200), Err(HandshakeError::Stale { .. })));
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn a_full_guard_refuses_rather_than_forgets() {
        let mut g = ReplayGuard::new(100, 2);
        g.remember([1; 32], 0);
        g.remember([2; 32], 0);
        assert_eq!(g.check(&[3; 32], 0, 0), Err(HandshakeError::ReplayCacheFull));
        assert_eq!(g.check(&[3; 32], 200, 200), Ok(()));
    }
}
