//! # wasmtap-protocol
//!
//! The wire protocol between a wasmtap agent and its proxy, as a sans-IO
//! library: no sockets, no async runtime, no clock reads. Callers feed it
//! bytes and the current time and send what it returns.
//!
//! ## Module map
//! - [`access_key`]: project access keys (`wtap1_<project>_<secret>`), checksummed, with key ids.
//! - [`identity`]: long-term X25519 identities of proxies and agents (`wtapid1_…`).
//! - `keyfile` (feature `keyfile`): identity key files on disk, mode 0600.
//! - [`secret`]: key material that zeroizes on drop and prints as `[redacted]`.
//! - [`crypto`]: AES-256-GCM, HKDF-SHA256, X25519 and SHA-256 behind one function each.
//! - [`frame`]: length-prefixed, versioned frames and an incremental decoder.
//! - [`codec`]: byte readers and writers for the fixed handshake layouts.
//! - [`handshake`]: the three-message key exchange as typed state machines, with replay protection.
//! - [`session`]: sealed frames after the handshake: counters, key updates, failure handling.
//! - [`conn`]: each side's established connection as a sans-IO state machine.
//! - [`simple`]: the cheap cipher for numeric payloads, verified by sealed checkpoints.
//! - [`close`]: close frames and their reason codes.
//! - [`compact`]: batches as a per-session series dictionary plus delta-encoded numbers.
//! - [`decimal`]: exact decimal forms `m / 10^e` of numbers, shared with the proxy's store.
//! - [`message`]: the application messages carried inside sealed frames.
//! - [`fleet`]: the control commands and documents that deliver managed collectors.
//! - [`record`]: checksummed records for the append-only files on either side.
//!
//! ## Example
//! ```
//! use std::collections::HashMap;
//! use wasmtap_protocol::access_key::{AccessKey, ProjectId};
//! use wasmtap_protocol::frame::{FrameDecoder, FrameKind};
//! use wasmtap_protocol::handshake::{ClientHandshake, ReplayGuard, ServerHandshake};
//! use wasmtap_protocol::identity::StaticKey;
//!
//! let mut rng = rand::rng();
//! let key = AccessKey::generate(ProjectId::new("shop").unwrap(), &mut rng);
//! let keys: HashMap<_, _> = [(key.project().clone(), key.clone())].into();
//! let (agent_id, proxy_id) = (StaticKey::generate(&mut rng), StaticKey::generate(&mut rng));
//! let now_ms = 1_800_000_000_000;
//! let mut wire = FrameDecoder::default();
//!
//! let (agent, hello) = ClientHandshake::start(&key, &agent_id, "web-01", now_ms, &mut rng).unwrap();
//! wire.push(&hello);
//! let hello = wire.next_frame().unwrap().unwrap();
//! let mut replays = ReplayGuard::default();
//! let hello = ServerHandshake::read_hello(hello, &keys, &mut replays, now_ms).unwrap();
//! assert_eq!(hello.agent(), "web-01"); // the proxy checks the name's identity here
//! let (proxy, answer) = hello.respond(&proxy_id, now_ms, &mut rng).unwrap();
//! wire.push(&answer);
//! let pinned = proxy_id.identity();
//! let mut agent = agent.receive(wire.next_frame().unwrap().unwrap(), Some(&pinned)).unwrap();
//! wire.push(&agent.finished);
//! let mut proxy = proxy.receive_finished(wire.next_frame().unwrap().unwrap()).unwrap();
//! assert_eq!(proxy.agent_identity, agent_id.identity());
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
pub mod conn;
pub mod crypto;
pub mod decimal;
pub mod fleet;
pub mod frame;
pub mod handshake;
pub mod identity;
#[cfg(feature = "keyfile")]
pub mod keyfile;
pub mod message;
pub mod record;
pub mod secret;
pub mod session;
pub mod simple;

pub use access_key::{AccessKey, ProjectId};
pub use frame::{Frame, FrameDecoder, FrameKind};
