//! Admission before authentication: a global cap on connections that have
//! not completed the handshake, a cap and a token bucket of new connections
//! per source network (an IPv4 /24 or an IPv6 /64, since one host commands
//! a whole such block as easily as one address), and eviction: when the
//! global table is full, the oldest unauthenticated connection is dropped
//! to admit the new one, so idle sockets cannot lock reconnecting agents out.
//! Its counters appear on `/metrics` ([`Gate::render`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::Limits;
use crate::exposition::{self, Kind};

/// Sources tracked before idle ones are forgotten.
const SWEEP_AT: usize = 4_096;

/// The network a connection counts against: the /24 of an IPv4 address,
/// the /64 of an IPv6 one (an IPv4-mapped IPv6 address counts as IPv4).
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network(IpAddr::V4(v4)),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::from(s)
            }
        },
    }
}

#[derive(Debug)]
struct Source {
    unauthenticated: usize,
    tokens: f64,
    refilled: Instant,
}

#[derive(Debug)]
struct State {
    /// Unauthenticated connections by admission order, with their network
    /// and the signal that drops them.
    open: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    next: u64,
    sources: HashMap<IpAddr, Source>,
    counts: Counts,
}

/// What the gate did so far, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Connections dropped unauthenticated to admit newer ones.
    pub evicted: u64,
    /// Connections refused: their network had its share mid-handshake.
    pub refused_source: u64,
    /// Connections refused: their network opened connections too fast.
    pub refused_rate: u64,
    /// Connections dropped for sending no first frame in time.
    pub first_frame_timeouts: u64,
    /// Connections dropped for not completing the handshake in time.
    pub handshake_timeouts: u64,
}

impl Counts {
    /// Connections refused so far, for every reason.
    pub fn refused(&self) -> u64 {
        self.refused_source + self.refused_rate
    }

    /// Connections dropped so far for missing either deadline.
    pub fn timeouts(&self) -> u64 {
        self.first_frame_timeouts + self.handshake_timeouts
    }
}

/// Which deadline an unauthenticated connection missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// `first_frame_timeout`: no hello.
    FirstFrame,
    /// `handshake_timeout`: the handshake did not complete.
    Handshake,
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Deadline::FirstFrame => "first frame",
            Deadline::Handshake => "handshake",
        })
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Too many connections from this network are mid-handshake.
    #[error("too many unauthenticated connections from this network")]
    Source,
    /// This network opens connections too fast.
    #[error("connection rate from this network over the limit")]
    Rate,
}

/// The admission gate, shared by the accept loop.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    state: Arc<Mutex<State>>,
}

/// A connection's place in the unauthenticated table; released on drop
/// (after the handshake, or when the connection ends before it).
#[derive(Debug)]
pub struct Ticket {
    gate: Gate,
    id: u64,
    /// Notified when the gate drops this connection to admit a newer one.
    pub evicted: Arc<Notify>,
}

impl Gate {
    /// A gate enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        let state = State {
            open: BTreeMap::new(),
            next: 0,
            sources: HashMap::new(),
            counts: Counts::default(),
        };
        Self { limits, state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `source` at `now`, or says why not.
    pub fn admit(&self, source: IpAddr, now: Instant) -> Result<Ticket, Refused> {
        let net = network(source);
        let mut s = self.lock();
        if s.sources.len() >= SWEEP_AT {
            // A bucket refills its burst (twice the rate) in two seconds; an
            // idle source whose bucket is full is the same as a new one.
            s.sources.retain(|_, src| {
                src.unauthenticated > 0 || now.duration_since(src.refilled).as_secs_f64() < 2.0
            });
        }
        let rate = f64::from(self.limits.handshakes_per_source);
        let src = s.sources.entry(net).or_insert(Source {
            unauthenticated: 0,
            tokens: 2.0 * rate,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(src.refilled).as_secs_f64();
        src.tokens = (src.tokens + elapsed * rate).min(2.0 * rate);
        src.refilled = now;
        if src.unauthenticated >= self.limits.max_unauthenticated_per_source {
            s.counts.refused_source += 1;
            return Err(Refused::Source);
        }
        if src.tokens < 1.0 {
            s.counts.refused_rate += 1;
            return Err(Refused::Rate);
        }
        src.tokens -= 1.0;
        src.unauthenticated += 1;
        while s.open.len() >= self.limits.max_unauthenticated {
            let Some((_, (old_net, signal))) = s.open.pop_first() else { break };
            if let Some(src) = s.sources.get_mut(&old_net) {
                src.unauthenticated -= 1;
            }
            s.counts.evicted += 1;
            signal.notify_one();
        }
        let id = s.next;
        s.next += 1;
        let evicted = Arc::new(Notify::new());
        s.open.insert(id, (net, evicted.clone()));
        Ok(Ticket { gate: self.clone(), id, evicted })
    }

    /// Connections mid-handshake now.
    pub fn unauthenticated(&self) -> usize {
        self.lock().open.len()
    }

    /// Everything the gate counted so far.
    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// The `wasmtap_proxy_unauthenticated_*` families.
    pub fn render(&self, out: &mut exposition::Exposition) {
        let (open, c) = {
            let s = self.lock();
            (s.open.len(), s.counts)
        };
        let name = "wasmtap_proxy_unauthenticated_connections";
        let help = "Connections admitted that have not completed the handshake.";
        exposition::family(out, name, help, Kind::Gauge);
        exposition::sample(out, name, &[], open as f64, None);
        let name = "wasmtap_proxy_unauthenticated_max";
        let help = "How many unauthenticated connections are admitted at once (max_unauthenticated); when full, the oldest is dropped for a new one.";
        exposition::family(out, name, help, Kind::Gauge);
        exposition::sample(out, name, &[], self.limits.max_unauthenticated as f64, None);
        let name = "wasmtap_proxy_unauthenticated_evicted_total";
        let help =
            "Unauthenticated connections dropped to admit a newer one because the table was full.";
        exposition::family(out, name, help, Kind::Counter);
        exposition::sample(out, name, &[], c.evicted as f64, None);
        let refused = [("network_share", c.refused_source), ("network_rate", c.refused_rate)];
        labelled_counter(
            out,
            "wasmtap_proxy_unauthenticated_refused_total",
            "Connections refused before the handshake, by reason (network_share: max_unauthenticated_per_source reached; network_rate: handshakes_per_source exceeded).",
            "reason",
            &refused,
        );
        let timeouts =
            [("first_frame", c.first_frame_timeouts), ("handshake", c.handshake_timeouts)];
        labelled_counter(
            out,
            "wasmtap_proxy_unauthenticated_timeouts_total",
            "Unauthenticated connections dropped for missing a deadline (first_frame_timeout, handshake_timeout).",
            "deadline",
            &timeouts,
        );
    }
}

/// A counter family with one sample per value of `label`.
fn labelled_counter(
    out: &mut exposition::Exposition,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    exposition::family(out, name, help, Kind::Counter);
    for (value, n) in values {
        let labels = [(label.to_owned(), (*value).to_owned())];
        exposition::sample(out, name, &labels, *n as f64, None);
    }
}

impl Ticket {
    /// Counts this connection as dropped for missing `deadline`.
    pub fn timed_out(&self, deadline: Deadline) {
        let mut s = self.gate.lock();
        match deadline {
            Deadline::FirstFrame => s.counts.first_frame_timeouts += 1,
            Deadline::Handshake => s.counts.handshake_timeouts += 1,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        // An evicted ticket was already taken out of the counts.
        if let Some((net, _)) = s.open.remove(&self.id)
            && let Some(src) = s.sources.get_mut(&net)
        {
            src.unauthenticated -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn gate() -> Gate {
        Gate::new(Limits {
            max_unauthenticated: 5,
            max_unauthenticated_per_source: 3,
            handshakes_per_source: 2,
            ..Limits::default()
        })
    }

    #[test]
    fn networks_not_addresses_share_a_quota() {
        assert_eq!(network([10, 1, 2, 3].into()), IpAddr::from([10, 1, 2, 0]));
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().expect("ip");
        assert_eq!(network(v6), "2001:db8:1:2::".parse::<IpAddr>().expect("ip"));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(network(mapped), IpAddr::from([10, 1, 2, 0]));
        let g = gate();
        let t0 = Instant::now();
        let held: Vec<Ticket> =
            (1..=3u8).map(|i| g.admit([10, 0, 0, i].into(), t0).expect("within share")).collect();
        assert_eq!(g.admit([10, 0, 0, 99].into(), t0).err(), Some(Refused::Source));
        drop(held);
        assert_eq!(g.unauthenticated(), 0);
    }

    #[test]
    fn a_full_table_drops_the_oldest_not_the_newest() {
        let g = gate();
        let t0 = Instant::now();
        let held: Vec<Ticket> =
            (0..5u8).map(|i| g.admit([10, i, 0, 1].into(), t0).expect("room")).collect();
        let newest = g.admit([10, 9, 0, 1].into(), t0).expect("admitted by eviction");
        assert_eq!((g.unauthenticated(), g.counts().evicted), (5, 1));
        // The oldest was told to go; dropping it later changes no count.
        let mut oldest = held.into_iter();
        let first = oldest.next().expect("first");
        let signal = first.evicted.clone();
        let notified = signal.notified();
        tokio::pin!(notified);
        assert!(futures_ready(notified.as_mut()), "the oldest connection is signalled");
        drop(first);
        assert_eq!(g.unauthenticated(), 5);
        drop(oldest);
        drop(newest);
        assert_eq!(g.unauthenticated(), 0);
        // Its network's quota was given back too.
        let later = t0 + Duration::from_secs(5);
        let again: Vec<Ticket> =
            (0..3).map(|_| g.admit([10, 0, 0, 1].into(), later).expect("quota back")).collect();
        assert_eq!(again.len(), 3);
    }

    #[test]
    fn refusals_evictions_and_timeouts_are_counted_on_metrics() {
        let g = gate();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let held: Vec<Ticket> = (0..3).map(|_| g.admit(a, t0).expect("share")).collect();
        assert_eq!(g.admit(a, t0).err(), Some(Refused::Source));
        drop(held);
        let oldest = g.admit(a, t0).expect("last of the burst");
        assert_eq!(g.admit(a, t0).err(), Some(Refused::Rate));
        // Four more fill the table; the fifth evicts the oldest.
        let others: Vec<Ticket> =
            (1..=5u8).map(|i| g.admit([10, i, 0, 1].into(), t0).expect("room")).collect();
        others[0].timed_out(Deadline::FirstFrame);
        others[1].timed_out(Deadline::Handshake);
        others[2].timed_out(Deadline::Handshake);
        let c = g.counts();
        assert_eq!(
            c,
            Counts {
                evicted: 1,
                refused_source: 1,
                refused_rate: 1,
                first_frame_timeouts: 1,
                handshake_timeouts: 2,
            }
        );
        assert_eq!((c.refused(), c.timeouts()), (2, 3));
        let mut text = crate::exposition::Exposition::new(crate::exposition::Format::Prometheus);
        g.render(&mut text);
        let text = text.finish();
        for line in [
            "# TYPE wasmtap_proxy_unauthenticated_connections gauge\n",
            "\nwasmtap_proxy_unauthenticated_connections 5.0\n",
            "\nwasmtap_proxy_unauthenticated_max 5.0\n",
            "# TYPE wasmtap_proxy_unauthenticated_evicted_total counter\n",
            "\nwasmtap_proxy_unauthenticated_evicted_total 1.0\n",
            "\nwasmtap_proxy_unauthenticated_refused_total{reason=\"network_share\"} 1.0\n",
            "\nwasmtap_proxy_unauthenticated_refused_total{reason=\"network_rate\"} 1.0\n",
            "\nwasmtap_proxy_unauthenticated_timeouts_total{deadline=\"first_frame\"} 1.0\n",
            "\nwasmtap_proxy_unauthenticated_timeouts_total{deadline=\"handshake\"} 2.0\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        drop((oldest, others));
        let mut text = crate::exposition::Exposition::new(crate::exposition::Format::Prometheus);
        g.render(&mut text);
        let text = text.finish();
        assert!(text.contains("\nwasmtap_proxy_unauthenticated_connections 0.0\n"), "{text}");
    }

    /// Whether a future is ready on its first poll.
    fn futures_ready<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        f.poll(&mut cx).is_ready()
    }

    #[test]
    fn the_rate_refills_over_time() {
        let g = gate();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..4 {
            drop(g.admit(a, t0).expect("burst"));
        }
        assert_eq!(g.admit([10, 0, 0, 2].into(), t0).err(), Some(Refused::Rate));
        drop(g.admit(a, t0 + Duration::from_millis(600)).expect("refilled"));
    }
}
