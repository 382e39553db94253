//! Counting relays on loopback: every byte between a sender and its server
//! passes through one, so the bytes each tool puts on the wire are counted
//! the same way (payload only: TCP and UDP headers are not counted for
//! anyone).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes a relay carried so far, both directions.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Bytes so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, counter: Counter) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counter.add(n);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A TCP relay to `target`; returns its address and byte counter.
pub fn tcp(target: SocketAddr) -> anyhow::Result<(SocketAddr, Counter)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let counter = Counter::default();
    let c = counter.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(target) else { continue };
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
            let (up, down) = (c.clone(), c.clone());
            std::thread::spawn(move || pump(client, server, up));
            std::thread::spawn(move || pump(s2, c2, down));
        }
    });
    Ok((addr, counter))
}

/// A one-way UDP relay to `target` (collectd's network plugin only sends).
pub fn udp(target: SocketAddr) -> anyhow::Result<(SocketAddr, Counter)> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let addr = socket.local_addr()?;
    let out = UdpSocket::bind("127.0.0.1:0")?;
    let counter = Counter::default();
    let c = counter.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65_536];
        while let Ok(n) = socket.recv(&mut buf) {
            c.add(n);
            let _ = out.send_to(&buf[..n], target);
        }
    });
    Ok((addr, counter))
}
