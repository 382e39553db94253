//! A collector's log lines, whether written through the `log` import or to
//! stdout/stderr, go to the agent's `tracing` output tagged with the
//! collector's name, under one rate limit per collector: at most
//! [`LOG_LINES_PER_SECOND`] lines a second, each cut to [`MAX_LOG_LINE`]
//! bytes, with a count of what was dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Log lines a collector may write per second before lines are dropped.
pub const LOG_LINES_PER_SECOND: u32 = 20;
/// Longest log line kept, in bytes; longer lines are cut.
pub const MAX_LOG_LINE: usize = 1024;

/// Severity of a collector's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// One collector's log sink and rate limit, shared by the `log` import and
/// its stdout and stderr.
#[derive(Debug, Clone)]
pub struct CollectorLog {
    inner: Arc<Mutex<Budget>>,
}

#[derive(Debug)]
struct Budget {
    collector: String,
    window: Instant,
    used: u32,
    dropped: u64,
}

impl Budget {
    /// Whether a line may be written now; returns lines dropped since the last allowed one.
    fn take(&mut self) -> Option<u64> {
        if self.window.elapsed().as_secs() >= 1 {
            self.window = Instant::now();
            self.used = 0;
        }
        if self.used >= LOG_LINES_PER_SECOND {
            self.dropped += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.dropped))
    }
}

/// `message` cut to [`MAX_LOG_LINE`] bytes on a character boundary.
pub fn truncate(message: &str) -> &str {
    if message.len() <= MAX_LOG_LINE {
        return message;
    }
    let mut end = MAX_LOG_LINE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl CollectorLog {
    /// A log for collector `name`.
    pub fn new(name: &str) -> Self {
        let budget =
            Budget { collector: name.to_owned(), window: Instant::now(), used: 0, dropped: 0 };
        Self { inner: Arc::new(Mutex::new(budget)) }
    }

    /// Renames the collector (its real name is known after `describe`).
    pub fn rename(&self, name: &str) {
        self.lock().collector = name.to_owned();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes one line if the rate limit allows. Returns whether it was written.
    pub fn line(&self, level: Level, message: &str) -> bool {
        let (collector, dropped) = {
            let mut b = self.lock();
            match b.take() {
                Some(d) => (b.collector.clone(), d),
                None => return false,
            }
        };
        let collector = collector.as_str();
        let msg = truncate(message.trim_end());
        if dropped > 0 {
            tracing::warn!(collector, dropped, "collector log lines dropped by the rate limit");
        }
        match level {
            Level::Trace => tracing::trace!(collector, "{msg}"),
            Level::Debug => tracing::debug!(collector, "{msg}"),
            Level::Info => tracing::info!(collector, "{msg}"),
            Level::Warn => tracing::warn!(collector, "{msg}"),
            Level::Error => tracing::error!(collector, "{msg}"),
        }
        true
    }

    /// A stream for the guest's stdout (`Info`) or stderr (`Warn`).
    pub fn pipe(&self, level: Level) -> LogPipe {
        LogPipe { log: self.clone(), level, partial: Arc::new(Mutex::new(Vec::new())) }
    }
}

/// A WASI output stream that turns bytes into log lines. It never fails and
/// never blocks: what the rate limit refuses is dropped and counted.
#[derive(Debug, Clone)]
pub struct LogPipe {
    log: CollectorLog,
    level: Level,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LogPipe {
    fn feed(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            // Keep at most one line's worth of an unfinished line.
            let room = MAX_LOG_LINE.saturating_sub(partial.len());
            partial.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.ends_with(b"\n") {
                let line = String::from_utf8_lossy(&partial).into_owned();
                partial.clear();
                self.log.line(self.level, &line);
            }
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.feed(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.feed(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_limits_lines_per_second() {
        let log = CollectorLog::new("t");
        let written = (0..LOG_LINES_PER_SECOND + 5).filter(|_| log.line(Level::Info, "x")).count();
        assert_eq!(written, LOG_LINES_PER_SECOND as usize);
        log.lock().window -= std::time::Duration::from_secs(1);
        assert!(log.line(Level::Info, "again"));
        assert_eq!(log.lock().dropped, 0, "the dropped count is reported with the next line");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_LOG_LINE);
        let t = truncate(&s);
        assert!(t.len() <= MAX_LOG_LINE);
        assert!(t.chars().all(|c| c == 'é'));
    }

    #[test]
    fn pipe_splits_lines_and_bounds_partial_ones() {
        let log = CollectorLog::new("t");
        let pipe = log.pipe(Level::Info);
        pipe.feed(b"one\ntw");
        pipe.feed(b"o\n");
        assert_eq!(log.lock().used, 2);
        pipe.feed(&vec![b'x'; 10 * MAX_LOG_LINE]);
        assert_eq!(pipe.partial.lock().expect("lock").len(), MAX_LOG_LINE);
        pipe.feed(b"\n");
        assert!(pipe.partial.lock().expect("lock").is_empty());
        assert_eq!(log.lock().used, 3);
    }
}
