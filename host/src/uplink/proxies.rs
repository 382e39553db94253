//! Which proxy to try next: a random one among those that have not failed
//! recently; when every proxy has, the one whose failure is oldest.

use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

/// How long a failed proxy is passed over while others are available.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(60);

/// The configured proxies and their recent failures.
#[derive(Debug, Clone)]
pub struct Proxies {
    addrs: Vec<String>,
    failed_at: Vec<Option<Instant>>,
}

impl Proxies {
    /// `hosts` (names or addresses), all on `port`.
    pub fn new(hosts: &[String], port: u16) -> Self {
        let addrs: Vec<String> = hosts
            .iter()
            .map(|h| if h.contains(':') { format!("[{h}]:{port}") } else { format!("{h}:{port}") })
            .collect();
        let failed_at = vec![None; addrs.len()];
        Self { addrs, failed_at }
    }

    /// The address of proxy `i`.
    pub fn addr(&self, i: usize) -> &str {
        &self.addrs[i]
    }

    /// How many proxies there are.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Whether the list is empty (a validated config never is).
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    fn healthy(&self, i: usize, now: Instant) -> bool {
        self.failed_at[i].is_none_or(|t| now.duration_since(t) >= FAILURE_MEMORY)
    }

    /// Whether some proxy has not failed recently.
    pub fn any_healthy(&self, now: Instant) -> bool {
        (0..self.len()).any(|i| self.healthy(i, now))
    }

    /// The proxy to try next.
    pub fn pick(&self, now: Instant, rng: &mut impl rand::Rng) -> usize {
        let healthy: Vec<usize> = (0..self.len()).filter(|i| self.healthy(*i, now)).collect();
        if !healthy.is_empty() {
            return healthy[rng.random_range(0..healthy.len())];
        }
        (0..self.len()).min_by_key(|i| self.failed_at[*i]).unwrap_or(0)
    }

    /// Proxy `i` failed (connect, handshake, or a lost session).
    pub fn failed(&mut self, i: usize, now: Instant) {
        self.failed_at[i] = Some(now);
    }

    /// Proxy `i` completed a handshake.
    pub fn succeeded(&mut self, i: usize) {
        self.failed_at[i] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn list(n: usize) -> Proxies {
        Proxies::new(&(0..n).map(|i| format!("h{i}")).collect::<Vec<_>>(), 6600)
    }

    #[test]
    fn addresses_carry_the_port_and_bracket_ipv6() {
        let p = Proxies::new(&["10.0.3.1".into(), "::1".into(), "proxy.example".into()], 6600);
        assert_eq!(
            [p.addr(0), p.addr(1), p.addr(2)],
            ["10.0.3.1:6600", "[::1]:6600", "proxy.example:6600"]
        );
    }

    #[test]
    fn failed_proxies_are_passed_over_until_they_are_all_failed() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut p = list(3);
        let t0 = Instant::now();
        p.failed(0, t0);
        p.failed(2, t0 + Duration::from_secs(1));
        for _ in 0..50 {
            assert_eq!(p.pick(t0 + Duration::from_secs(2), &mut rng), 1);
        }
        p.failed(1, t0 + Duration::from_secs(2));
        assert!(!p.any_healthy(t0 + Duration::from_secs(3)));
        // All failed: the oldest failure first.
        assert_eq!(p.pick(t0 + Duration::from_secs(3), &mut rng), 0);
        // Failures are forgotten after a while.
        let later = t0 + FAILURE_MEMORY + Duration::from_millis(500);
        assert!(p.any_healthy(later));
        assert_eq!(p.pick(later, &mut rng), 0);
        p.succeeded(1);
        assert!(p.any_healthy(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn picks_spread_over_healthy_proxies() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = list(4);
        let now = Instant::now();
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[p.pick(now, &mut rng)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
    }
}
