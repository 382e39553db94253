//! The epoch ticker: advances the engine's epoch every [`EPOCH_TICK`] while
//! at least one guest call is in flight, and sleeps without waking while
//! none is. Each tick lets a running guest yield to the async executor (so
//! its call's wall-clock deadline can fire) and traps it once that deadline
//! has passed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use wasmtime::{Engine, EngineWeak};

use super::EPOCH_TICK;

/// Starts and stops the ticker thread with the calls in flight.
#[derive(Debug)]
pub struct Ticker {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    ticks: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    stop: bool,
    /// The thread is waiting for a call (read by tests).
    parked: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps the ticker running while it lives: one per guest call.
#[derive(Debug)]
#[must_use = "the epoch only advances while the guard lives"]
pub struct CallGuard {
    shared: Arc<Shared>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

impl Ticker {
    /// Starts the ticker thread for `engine`; it ends when the ticker is
    /// dropped or the engine is gone.
    pub fn start(engine: &Engine) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let (thread_shared, weak) = (shared.clone(), engine.weak());
        std::thread::Builder::new()
            .name("wasmtap-epoch".into())
            .spawn(move || run(&thread_shared, &weak))?;
        Ok(Self { shared })
    }

    /// Marks a guest call in flight until the guard is dropped.
    pub fn call(&self) -> CallGuard {
        let mut s = self.shared.lock();
        s.in_flight += 1;
        if s.in_flight == 1 {
            self.shared.wake.notify_one();
        }
        CallGuard { shared: self.shared.clone() }
    }

    /// Epoch increments so far.
    pub fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared, engine: &EngineWeak) {
    loop {
        {
            let mut s = shared.lock();
            while s.in_flight == 0 && !s.stop {
                s.parked = true;
                s = shared.wake.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.parked = false;
            if s.stop {
                return;
            }
        }
        std::thread::sleep(EPOCH_TICK);
        match engine.upgrade() {
            Some(e) => e.increment_epoch(),
            None => return,
        }
        shared.ticks.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn ticks_only_while_a_call_is_in_flight() {
        let engine = Engine::default();
        let ticker = Ticker::start(&engine).expect("ticker");
        std::thread::sleep(EPOCH_TICK * 4);
        assert_eq!(ticker.ticks(), 0, "an idle ticker must not wake");

        let guard = ticker.call();
        wait_for("two ticks", || ticker.ticks() >= 2);
        drop(guard);
        // The tick under way may complete; then the thread waits for a call.
        wait_for("the ticker to park", || ticker.shared.lock().parked);
        let idle = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * 4);
        assert_eq!(ticker.ticks(), idle, "no ticks once every call has ended");
    }
}
