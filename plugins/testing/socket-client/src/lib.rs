//! Test collector `socket-client`: opens a TCP connection in `collect`, so the
//! component imports `wasi:sockets`. The agent must refuse to load it,
//! saying why; it never runs.

use std::net::TcpStream;

use wasmtap_collector::bindings::wasmtap::collector::types::Number;
use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct Sockets;

impl Guest for Sockets {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("connected", "", "1 if a TCP connection to 127.0.0.1:9 was made");
        s.into_descriptor("socket-client", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let connected = TcpStream::connect(("127.0.0.1", 9)).is_ok();
        Ok(vec![Sample {
            labels: vec![],
            numbers: vec![Number { field: 0, value: f64::from(u8::from(connected)) }],
            texts: vec![],
        }])
    }
}

wasmtap_collector::export!(Sockets);
