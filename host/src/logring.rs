//! The agent's recent log lines, kept in memory for the `logs` control
//! request: a `tracing` layer that formats each event into a bounded ring.
//! Only what the agent logs is kept, and the agent never logs secrets.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept.
pub const CAPACITY: usize = 1_000;
/// Longest line kept; longer ones are cut.
pub const MAX_LINE: usize = 2_048;

/// A bounded ring of formatted log lines; clones share the ring.
#[derive(Debug, Clone, Default)]
pub struct LogRing(Arc<Mutex<VecDeque<String>>>);

impl LogRing {
    /// The newest `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().skip(ring.len().saturating_sub(n)).cloned().collect()
    }

    fn push(&self, mut line: String) {
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let mut ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(line);
    }
}

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LogRing {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut line = Line::default();
        event.record(&mut line);
        let meta = event.metadata();
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        self.push(format!(
            "{now} {:>5} {}: {}{}",
            meta.level(),
            meta.target(),
            line.message,
            line.fields
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn keeps_the_newest_lines_with_their_fields() {
        let ring = LogRing::default();
        let subscriber = tracing_subscriber::registry().with(ring.clone());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..CAPACITY + 5 {
                tracing::info!(n = i, who = "x", "line {i}");
            }
            tracing::warn!(long = %"é".repeat(MAX_LINE), "cut");
        });
        let tail = ring.tail(3);
        assert_eq!(tail.len(), 3);
        assert!(
            tail[0].contains("line 1003")
                && tail[0].contains("n=1003")
                && tail[0].contains("who=\"x\""),
            "{tail:?}"
        );
        assert!(tail[2].contains("WARN") && tail[2].len() <= MAX_LINE, "{}", tail[2].len());
        assert_eq!(ring.tail(usize::MAX).len(), CAPACITY);
    }
}
