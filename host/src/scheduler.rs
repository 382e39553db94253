//! Runs each collector on its own interval. Calls into wasm run on tokio's
//! blocking pool, never on the threads that drive the network session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use wasmtap_protocol::message::Sample;

use crate::clock::now_ms;
use crate::runtime::{Collector, Runtime};

/// Spawns the task that calls `collector` every `interval` until `shutdown` flips.
pub fn spawn(
    rt: Arc<Runtime>,
    collector: Collector,
    interval: Duration,
    out: mpsc::Sender<Vec<Sample>>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let name = collector.schema().name.clone();
    let collector = Arc::new(Mutex::new(collector));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => break,
            }
            let (rt, c) = (rt.clone(), collector.clone());
            let result = tokio::task::spawn_blocking(move || {
                let mut c = c.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                c.collect(&rt, now_ms())
            })
            .await;
            match result {
                Ok(Ok(out_)) => {
                    if out_.undeclared + out_.wrong_kind > 0 {
                        tracing::warn!(
                            collector = %name,
                            undeclared = out_.undeclared,
                            wrong_kind = out_.wrong_kind,
                            "dropped values that do not match the declared fields"
                        );
                    }
                    if !out_.samples.is_empty() && out.send(out_.samples).await.is_err() {
                        break;
                    }
                }
                Ok(Err(e)) => tracing::warn!(collector = %name, error = %e, "collect failed"),
                Err(e) => tracing::error!(collector = %name, error = %e, "collect task failed"),
            }
        }
        tracing::debug!(collector = %name, "collector stopped");
    })
}
