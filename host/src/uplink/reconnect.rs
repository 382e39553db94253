//! The reconnect policy: fail over at once while some proxy has not failed
//! recently; once every proxy has, wait with exponential backoff and full
//! jitter (capped) before each attempt. Only a session that lasted
//! [`STABLE_SESSION`] resets it: a proxy that completes the handshake and
//! then refuses the agent (an identity bound to another host, a second
//! session of one agent) is retried ever more slowly, not ten times a
//! second.

use std::time::Duration;

use tokio::time::Instant;

use super::proxies::Proxies;
use crate::backoff::Backoff;

/// How long a session must have lasted for its end to count as a fresh
/// start rather than one more failure.
pub const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Where to connect next, and when.
#[derive(Debug, Clone)]
pub struct Reconnect {
    proxies: Proxies,
    backoff: Backoff,
}

impl Reconnect {
    /// For `proxies`, backing off from `base` up to `cap`.
    pub fn new(proxies: Proxies, base: Duration, cap: Duration) -> Self {
        Self { proxies, backoff: Backoff::new(base, cap) }
    }

    /// The proxy to try next, and how long to wait before trying it.
    pub fn next(&mut self, now: Instant, rng: &mut impl rand::Rng) -> (usize, Duration) {
        let delay = if self.proxies.any_healthy(now) {
            Duration::ZERO
        } else {
            self.backoff.next_delay(rng)
        };
        (self.proxies.pick(now + delay, rng), delay)
    }

    /// The address of proxy `i`.
    pub fn addr(&self, i: usize) -> &str {
        self.proxies.addr(i)
    }

    /// Connecting to proxy `i` failed, or its session was lost.
    pub fn failed(&mut self, i: usize, now: Instant) {
        self.proxies.failed(i, now);
    }

    /// Proxy `i` completed a handshake: it is tried first again, but the
    /// backoff only starts over once the session has proved stable.
    pub fn connected(&mut self, i: usize) {
        self.proxies.succeeded(i);
    }

    /// A session that had lasted `lasted` ended; one of [`STABLE_SESSION`]
    /// or more resets the backoff.
    pub fn ended(&mut self, lasted: Duration) {
        if lasted >= STABLE_SESSION {
            self.backoff.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Drives the policy against proxies that always fail, sleeping for
    /// real on tokio's paused clock; returns (proxy, delay, clock) per attempt.
    async fn attempts(r: &mut Reconnect, n: usize) -> Vec<(usize, Duration, Instant)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut out = Vec::new();
        for _ in 0..n {
            let (i, delay) = r.next(Instant::now(), &mut rng);
            tokio::time::sleep(delay).await;
            out.push((i, delay, Instant::now()));
            r.failed(i, Instant::now());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_at_once_then_backs_off_with_jitter_up_to_the_cap() {
        let cap = Duration::from_secs(30);
        let hosts = ["10.0.3.1".to_owned(), "10.0.3.2".to_owned()];
        let mut r = Reconnect::new(Proxies::new(&hosts, 6600), Duration::from_millis(200), cap);
        let start = Instant::now();
        let log = attempts(&mut r, 40).await;

        // The first failure moves straight to the other proxy.
        assert_eq!(log[0].1, Duration::ZERO);
        assert_eq!(log[1].1, Duration::ZERO);
        assert_ne!(log[0].0, log[1].0);
        // Then every attempt waits, never longer than the cap, and the waits
        // are jittered rather than fixed.
        let waits: Vec<Duration> = log[2..].iter().map(|a| a.1).collect();
        assert!(waits.iter().all(|w| *w <= cap));
        let distinct: std::collections::BTreeSet<Duration> = waits.iter().copied().collect();
        assert!(distinct.len() > waits.len() / 2, "{waits:?}");
        // The ceiling doubles: late waits are longer than early ones.
        let early: Duration = waits[..4].iter().sum();
        let late: Duration = waits[waits.len() - 4..].iter().sum();
        assert!(late > early * 4, "early {early:?} late {late:?}");
        // On the paused clock, time moved by the waits (timers round up to
        // the millisecond).
        let total: Duration = log.iter().map(|a| a.1).sum();
        let elapsed = log.last().map_or(Duration::ZERO, |a| a.2 - start);
        assert!(
            elapsed >= total && elapsed - total <= Duration::from_millis(40),
            "{elapsed:?} vs {total:?}"
        );
        // Both proxies keep being tried.
        assert!(log[20..].iter().any(|a| a.0 == 0) && log[20..].iter().any(|a| a.0 == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_refused_right_after_the_handshake_keep_backing_off() {
        let hosts = ["a".to_owned()];
        let cap = Duration::from_secs(30);
        let mut r = Reconnect::new(Proxies::new(&hosts, 6600), Duration::from_millis(200), cap);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let start = Instant::now();
        for _ in 0..20 {
            let (i, delay) = r.next(Instant::now(), &mut rng);
            tokio::time::sleep(delay).await;
            // The handshake completes, then the proxy refuses at once.
            r.connected(i);
            r.ended(Duration::from_millis(2));
            r.failed(i, Instant::now());
        }
        // Twenty refusals take minutes, not two seconds.
        assert!(Instant::now() - start > Duration::from_secs(60), "{:?}", Instant::now() - start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stable_session_resets_the_backoff() {
        let hosts = ["a".to_owned()];
        let mut r = Reconnect::new(
            Proxies::new(&hosts, 6600),
            Duration::from_millis(200),
            Duration::from_secs(30),
        );
        let log = attempts(&mut r, 12).await;
        assert!(log.iter().skip(8).any(|a| a.1 > Duration::from_secs(5)), "{log:?}");
        r.connected(0);
        let (_, delay) = r.next(Instant::now(), &mut rand::rng());
        assert_eq!(delay, Duration::ZERO, "a proxy that just worked is tried at once");
        r.ended(STABLE_SESSION);
        r.failed(0, Instant::now());
        let (_, delay) = r.next(Instant::now(), &mut rand::rng());
        assert!(delay <= Duration::from_millis(200), "backoff starts over: {delay:?}");
    }
}
