//! The agent's own counters: what the uplink and the spool did, read by the
//! self-observation collector and the `info` control request.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters shared between the uplink, the batcher and their observers.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Connection attempts (TCP connect and handshake).
    pub connect_attempts: AtomicU64,
    /// Sessions established.
    pub sessions: AtomicU64,
    /// Sessions lost or refused.
    pub session_failures: AtomicU64,
    /// Batches sent (resends included).
    pub batches_sent: AtomicU64,
    /// Batches resent after a lost session.
    pub batches_resent: AtomicU64,
    /// Batches acknowledged.
    pub batches_acked: AtomicU64,
    /// Bytes of sealed frames sent.
    pub bytes_sealed: AtomicU64,
    /// Bytes of simple-path frames sent.
    pub bytes_simple: AtomicU64,
    /// Numeric values sent on the simple path.
    pub numbers_sent: AtomicU64,
    /// Samples waiting in memory to be batched.
    pub queued_samples: AtomicU64,
    /// Samples lost before reaching the spool (spool write failures).
    pub lost_samples: AtomicU64,
    /// Control requests answered.
    pub control_requests: AtomicU64,
    /// Sessions refused over identity: a proxy proving another identity
    /// than the pinned one, or a proxy refusing this agent's identity.
    pub identity_refusals: AtomicU64,
    /// Acknowledgements refused (beyond what this agent sent).
    pub acks_refused: AtomicU64,
    /// Latest round-trip time to the proxy, ms (-1: none yet).
    pub rtt_ms: AtomicI64,
    /// Latest proxy clock offset, ms (positive: the proxy is ahead).
    pub clock_offset_ms: AtomicI64,
    /// The proxy of the current session, if any.
    pub proxy: std::sync::Mutex<Option<String>>,
}

impl AgentStats {
    /// Fresh counters.
    pub fn new() -> Self {
        let s = Self::default();
        s.rtt_ms.store(-1, Ordering::Relaxed);
        s
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The current proxy's address.
    pub fn proxy(&self) -> Option<String> {
        self.proxy.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Sets the current proxy's address.
    pub fn set_proxy(&self, addr: Option<String>) {
        *self.proxy.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = addr;
    }
}
