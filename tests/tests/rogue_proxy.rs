//! A proxy that holds the project key and the pinned identity, but lies:
//! it acknowledges a batch the agent never sent (`u64::MAX`), which would
//! make an agent that believed it drop its whole spool. The agent refuses
//! the acknowledgement, closes, counts it, and loses nothing: the genuine
//! proxy later receives every tick.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::time::Duration;

use anyhow::Context as _;
use wasmtap_protocol::access_key::AccessKey;
use wasmtap_protocol::close::{Close, CloseCode};
use wasmtap_protocol::frame::{Frame, FrameDecoder, FrameKind};
use wasmtap_protocol::handshake::{ReplayGuard, ServerHandshake};
use wasmtap_protocol::identity::StaticKey;
use wasmtap_protocol::message::{self, Ack};
use wasmtap_tests::{Agent, Proxy, new_key, wait};

fn read_frame(stream: &mut TcpStream, decoder: &mut FrameDecoder) -> anyhow::Result<Frame> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = decoder.next_frame()? {
            return Ok(f);
        }
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(n > 0, "connection closed");
        decoder.push(&buf[..n]);
    }
}

/// Accepts one agent, waits for its first batch, acknowledges `u64::MAX`
/// and returns the close the agent answers with.
fn lying_proxy(
    listener: &TcpListener,
    key: &AccessKey,
    identity: &StaticKey,
) -> anyhow::Result<Close> {
    let (mut s, _) = listener.accept()?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut d = FrameDecoder::default();
    let keys: HashMap<_, _> = [(key.project().clone(), key.clone())].into();
    let now = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis(),
    )?;
    let hello = read_frame(&mut s, &mut d)?;
    let read = ServerHandshake::read_hello(hello, &keys, &mut ReplayGuard::default(), now)?;
    let (pending, answer) = read.respond(identity, now, &mut rand::rng())?;
    s.write_all(&answer)?;
    let mut session = pending.receive_finished(read_frame(&mut s, &mut d)?)?.session;
    let mut lied = false;
    loop {
        let f = read_frame(&mut s, &mut d)?;
        match f.kind {
            FrameKind::Simple => session.open_simple(f)?,
            FrameKind::Close => return Ok(Close::decode(&session.open(f)?)?),
            kind => {
                session.open(f)?;
                if kind == FrameKind::Sealed && !lied {
                    let ack = message::encode(&Ack { seq: u64::MAX });
                    s.write_all(&session.seal(FrameKind::Ack, &ack)?)?;
                    lied = true;
                }
            }
        }
    }
}

fn ticks(proxy: &Proxy) -> anyhow::Result<Vec<u64>> {
    let mut v: Vec<u64> = proxy
        .query(&["--collector", "ticker"])?
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .map(|n| n as u64)
        .collect();
    v.sort_unstable();
    Ok(v)
}

#[test]
fn an_acknowledgement_beyond_what_was_sent_is_refused_and_nothing_is_lost() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key_text = new_key("shop")?;
    let key: AccessKey = key_text.parse()?;
    let identity = StaticKey::generate(&mut rand::rng());
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let agent = Agent::start(
        &dir.path().join("agent"),
        "web-01",
        addr.port(),
        &key_text,
        &["testing/ticker"],
    )?;
    let close = lying_proxy(&listener, &key, &identity).context("the lying proxy")?;
    drop(listener);
    assert_eq!(close.code, CloseCode::ProtocolError, "{close}");
    assert!(close.message.contains("acknowledged batch"), "{close}");
    wait::until(Duration::from_secs(10), "the agent to log the refusal", || {
        Ok(agent.log_text().contains("acknowledgement refused").then_some(()))
    })?;

    // The genuine proxy of the same deployment (same identity file).
    let proxy_dir = dir.path().join("proxy");
    std::fs::create_dir_all(proxy_dir.join("store"))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(Proxy::identity_file(&proxy_dir))?
        .write_all(identity.to_file_text().as_bytes())?;
    let proxy = Proxy::start_at(&proxy_dir, &addr.to_string(), &[("shop", &key_text)], "")?;
    let got = wait::until(Duration::from_secs(30), "ticks at the genuine proxy", || {
        let t = ticks(&proxy)?;
        Ok((t.len() >= 5).then_some(t))
    })?;
    let top = got.last().copied().unwrap_or(0);
    assert_eq!(got, (1..=top).collect::<Vec<_>>(), "every tick from the first arrives once");
    wait::until(Duration::from_secs(30), "the refusal counted in the agent's metrics", || {
        let n = proxy
            .query(&["--collector", "agent", "--field", "acks_refused"])?
            .iter()
            .filter_map(|r| r["value"].as_f64())
            .fold(0.0, f64::max);
        Ok((n >= 1.0).then_some(()))
    })?;
    Ok(())
}
