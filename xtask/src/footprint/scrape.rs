//! A once-a-second scraper of node_exporter's `/metrics`, as Prometheus
//! would, counting the samples (non-comment lines) it receives.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Samples received so far.
#[derive(Debug, Clone, Default)]
pub struct Scraper(Arc<AtomicU64>);

impl Scraper {
    /// Samples received so far.
    pub fn values(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Scrapes `addr` once a second, for as long as the process runs.
pub fn every_second(addr: SocketAddr) -> Scraper {
    let scraper = Scraper::default();
    let count = scraper.0.clone();
    std::thread::spawn(move || {
        let mut next = Instant::now();
        loop {
            if let Ok(n) = scrape(addr) {
                count.fetch_add(n, Ordering::Relaxed);
            }
            next += Duration::from_secs(1);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    scraper
}

fn scrape(addr: SocketAddr) -> std::io::Result<u64> {
    // HTTP/1.0: the body comes whole, never chunked.
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    let text = String::from_utf8_lossy(&body);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count() as u64)
}
