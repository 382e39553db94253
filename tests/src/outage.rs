//! A TCP forwarder that can be taken down and brought back on the same
//! port, for backend outages: while it is down, connections to its port
//! are refused and the ones it carried are cut.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use anyhow::Context as _;

/// A running forwarder from [`Forward::addr`] to a target; down when dropped.
#[derive(Debug)]
pub struct Forward {
    /// Where clients connect.
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

impl Forward {
    /// Forwards 127.0.0.1:0 to `target`.
    pub fn start(target: SocketAddr) -> anyhow::Result<Self> {
        Self::start_at("127.0.0.1:0".parse()?, target)
    }

    /// Forwards `addr` (a port used before, say) to `target`.
    pub fn start_at(addr: SocketAddr, target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (stop, conns) = (stopping.clone(), open.clone());
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let clones = (client.try_clone(), server.try_clone(), client.try_clone());
                let (Ok(c2), Ok(s2), Ok(kept)) = clones else { continue };
                conns.lock().unwrap_or_else(PoisonError::into_inner).push(kept);
                std::thread::spawn(move || pump(client, server));
                std::thread::spawn(move || pump(s2, c2));
            }
        });
        Ok(Self { addr, stopping, open, acceptor: Some(acceptor) })
    }

    /// Takes the forwarder down: the port refuses connections and every
    /// forwarded connection is cut. [`Forward::start_at`] brings it back.
    pub fn stop(mut self) -> SocketAddr {
        self.shut();
        self.addr
    }

    fn shut(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the blocked accept, which then sees the flag and returns,
        // closing the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for c in self.open.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.shut();
    }
}
