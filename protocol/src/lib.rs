//! # wasmtap-protocol
//!
//! The wire protocol between a wasmtap agent and its proxy, as a sans-IO
//! library: no sockets, no async runtime, no clock reads. Callers feed it
//! bytes and the current time and send what it returns.
//!
//! ## Module map
//! - [`access_key`]: project access keys (`wtap1_<project>_<secret>`), checksummed.
//! - [`secret`]: key material that zeroizes on drop and prints as `[redacted]`.
//! - [`crypto`]: AES-256-GCM, HKDF-SHA256, X25519 and SHA-256 behind one function each.
//! - [`frame`]: length-prefixed, versioned frames and an incremental decoder.
//! - [`codec`]: byte readers and writers for the fixed handshake layouts.
//! - [`handshake`]: the three-message key exchange as typed state machines.
//! - [`session`]: sealed frames after the handshake: counters, rekeying, auth-failure limits.
//! - [`simple`]: the cheap cipher for numeric payloads, verified by sealed checkpoints.
//! - [`close`]: close frames and their reason codes.
//! - [`compact`]: batches as a per-session series dictionary plus delta-encoded numbers.
//! - [`message`]: the application messages carried inside sealed frames.
//! - [`record`]: checksummed records for the append-only files on either side.
//!
//! ## Example
//! ```
//! use std::collections::HashMap;
//! use wasmtap_protocol::access_key::{AccessKey, ProjectId};
//! use wasmtap_protocol::frame::{FrameDecoder, FrameKind};
//! use wasmtap_protocol::handshake::{ClientHandshake, ServerHandshake};
//!
//! let mut rng = rand::rng();
//! let key = AccessKey::generate(ProjectId::new("shop").unwrap(), &mut rng);
//! let keys: HashMap<_, _> = [(key.project().clone(), key.clone())].into();
//! let mut wire = FrameDecoder::default();
//!
//! let (agent, hello) = ClientHandshake::start(&key, "web-01", 0, &mut rng).unwrap();
//! wire.push(&hello);
//! let hello = wire.next_frame().unwrap().unwrap();
//! let (proxy, answer) = ServerHandshake::receive_hello(hello, &keys, 0, &mut rng).unwrap();
//! wire.push(&answer);
//! let mut agent = agent.receive(wire.next_frame().unwrap().unwrap()).unwrap();
//! wire.push(&agent.finished);
//! let mut proxy = proxy.receive_finished(wire.next_frame().unwrap().unwrap()).unwrap();
//!
//! let frame = agent.session.seal(FrameKind::Sealed, b"load 0.42").unwrap();
//! wire.push(&frame);
//! let plain = proxy.session.open(wire.next_frame().unwrap().unwrap()).unwrap();
//! assert_eq!(plain, b"load 0.42");
//! ```

#![forbid(unsafe_code)]

pub mod access_key;
pub mod close;
pub mod codec;
pub mod compact;
pub mod crypto;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod record;
pub mod secret;
pub mod session;
pub mod simple;

pub use access_key::{AccessKey, ProjectId};
pub use frame::{Frame, FrameDecoder, FrameKind};
