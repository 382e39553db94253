//! Admission before authentication: a global cap on connections that have
//! not completed the handshake, a per-source-address cap, and a token
//! bucket of new connections per source address. Whoever floods the
//! listener with junk or slow connections exhausts only their own share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::config::Limits;

/// Sources tracked before idle ones are forgotten.
const SWEEP_AT: usize = 4_096;

#[derive(Debug)]
struct Source {
    unauthenticated: usize,
    tokens: f64,
    refilled: Instant,
}

#[derive(Debug)]
struct State {
    unauthenticated: usize,
    sources: HashMap<IpAddr, Source>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Too many connections from everywhere are mid-handshake.
    #[error("too many unauthenticated connections")]
    Global,
    /// Too many connections from this address are mid-handshake.
    #[error("too many unauthenticated connections from this address")]
    Source,
    /// This address opens connections too fast.
    #[error("connection rate from this address over the limit")]
    Rate,
}

/// The admission gate, shared by the accept loop.
#[derive(Debug, Clone)]
pub struct Gate {
    limits: Limits,
    state: Arc<Mutex<State>>,
}

/// A connection's place in the unauthenticated count; released on drop
/// (after the handshake, or when the connection ends before it).
#[derive(Debug)]
pub struct Ticket {
    gate: Gate,
    source: IpAddr,
}

impl Gate {
    /// A gate enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        let state = State { unauthenticated: 0, sources: HashMap::new() };
        Self { limits, state: Arc::new(Mutex::new(state)) }
    }

    /// Admits a new connection from `source` at `now`, or says why not.
    pub fn admit(&self, source: IpAddr, now: Instant) -> Result<Ticket, Refused> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.sources.len() >= SWEEP_AT {
            // A bucket refills its burst (twice the rate) in two seconds; an
            // idle source whose bucket is full is the same as a new one.
            s.sources.retain(|_, src| {
                src.unauthenticated > 0 || now.duration_since(src.refilled).as_secs_f64() < 2.0
            });
        }
        if s.unauthenticated >= self.limits.max_unauthenticated {
            return Err(Refused::Global);
        }
        let rate = f64::from(self.limits.handshakes_per_source);
        let src = s.sources.entry(source).or_insert(Source {
            unauthenticated: 0,
            tokens: 2.0 * rate,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(src.refilled).as_secs_f64();
        src.tokens = (src.tokens + elapsed * rate).min(2.0 * rate);
        src.refilled = now;
        if src.unauthenticated >= self.limits.max_unauthenticated_per_source {
            return Err(Refused::Source);
        }
        if src.tokens < 1.0 {
            return Err(Refused::Rate);
        }
        src.tokens -= 1.0;
        src.unauthenticated += 1;
        s.unauthenticated += 1;
        Ok(Ticket { gate: self.clone(), source })
    }

    /// Connections mid-handshake now.
    pub fn unauthenticated(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).unauthenticated
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.gate.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.unauthenticated -= 1;
        if let Some(src) = s.sources.get_mut(&self.source) {
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
    fn each_source_has_its_share() {
        let g = gate();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let held: Vec<Ticket> = (0..3).map(|_| g.admit(a, t0).expect("within share")).collect();
        assert_eq!(g.admit(a, t0).err(), Some(Refused::Source));
        let other = [g.admit(b, t0).expect("b is not a"), g.admit(b, t0).expect("b again")];
        assert_eq!(g.admit([10, 0, 0, 3].into(), t0).err(), Some(Refused::Global));
        drop(held);
        drop(other);
        assert_eq!(g.unauthenticated(), 0);
    }

    #[test]
    fn the_rate_refills_over_time() {
        let g = gate();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        // A burst of twice the rate, then nothing until tokens come back.
        for _ in 0..4 {
            drop(g.admit(a, t0).expect("burst"));
        }
        assert_eq!(g.admit(a, t0).err(), Some(Refused::Rate));
        drop(g.admit(a, t0 + Duration::from_millis(600)).expect("refilled"));
    }
}
