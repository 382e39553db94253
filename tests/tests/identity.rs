//! Identity end to end: the agent pins the proxy's identity and refuses an
//! impostor holding the project key; proxies sharing the identity file are
//! accepted; an agent name belongs to the identity that first proved
//! itself under it until `ctl forget`; control requests are routed by
//! project and name.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;
use wasmtap_tests::{Agent, Proxy, new_key, wait};

const TOKEN: &str = "test-token-0123456789";

fn http() -> String {
    format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n")
}

fn rows(proxy: &Proxy, collector: &str) -> anyhow::Result<Vec<Value>> {
    proxy.query(&["--collector", collector])
}

fn wait_rows(proxy: &Proxy, collector: &str, n: usize, what: &str) -> anyhow::Result<()> {
    wait::until(Duration::from_secs(30), what, || {
        Ok((rows(proxy, collector)?.len() >= n).then_some(()))
    })
}

/// The latest value of an `agent` self-observation field stored by `proxy`.
fn agent_counter(proxy: &Proxy, field: &str) -> anyhow::Result<Option<f64>> {
    Ok(proxy
        .query(&["--collector", "agent", "--field", field])?
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .next_back())
}

#[test]
fn an_impostor_with_the_project_key_is_refused_and_a_shared_identity_is_not() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let key = new_key("shop")?;
    let genuine_dir = dir.path().join("genuine");
    let genuine = Proxy::start(&genuine_dir, &[("shop", &key)])?;
    let listen = genuine.addr.to_string();
    let agent_dir = dir.path().join("agent");
    let agent = Agent::start(&agent_dir, "web-01", genuine.addr.port(), &key, &["testing/ticker"])?;
    wait_rows(&genuine, "ticker", 3, "ticks at the genuine proxy")?;
    let pinned = std::fs::read_to_string(agent_dir.join("data/proxy.identity"))?;
    let genuine_id = genuine.identity()?;
    assert_eq!(pinned.trim(), genuine_id, "the first proxy's identity is pinned");
    genuine.kill()?;

    // Same address, same project key, another identity.
    let impostor = Proxy::start_at(&dir.path().join("impostor"), &listen, &[("shop", &key)], "")?;
    let impostor_id = impostor.identity()?;
    wait::until(Duration::from_secs(30), "the agent to refuse the impostor", || {
        let log = agent.log_text();
        Ok((log.contains("identity") && log.contains(&impostor_id) && log.contains(&genuine_id))
            .then_some(()))
    })?;
    assert!(rows(&impostor, "ticker")?.is_empty(), "the impostor received data");
    assert!(!impostor.log_text().contains("agent connected"), "{}", impostor.log_text());
    impostor.kill()?;

    // A proxy with the genuine identity file (a second machine of the same
    // deployment) is accepted, and everything spooled meanwhile arrives.
    let twin_dir = dir.path().join("twin");
    Proxy::share_identity(&genuine_dir, &twin_dir)?;
    let twin = Proxy::start_at(&twin_dir, &listen, &[("shop", &key)], "")?;
    wait::until(Duration::from_secs(30), "the refusal counted in the agent's metrics", || {
        Ok(agent_counter(&twin, "identity_refusals")?.filter(|n| *n >= 1.0))
    })?;
    wait_rows(&twin, "ticker", 3, "ticks at the twin")?;
    Ok(())
}

#[test]
fn a_name_belongs_to_its_identity_until_forgotten_and_requests_route_by_project()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (shop, bank) = (new_key("shop")?, new_key("bank")?);
    // The first line of `extra` still belongs to the last [[projects]] entry (bank).
    let extra = format!("max_sessions = 1\n{}", http());
    let proxy =
        Proxy::start_with(&dir.path().join("proxy"), &[("shop", &shop), ("bank", &bank)], &extra)?;
    let port = proxy.addr.port();
    let first =
        Agent::start(&dir.path().join("first"), "web-01", port, &shop, &["testing/ticker"])?;
    wait_rows(&proxy, "ticker", 2, "the first web-01's ticks")?;

    // Another host with the project key claims the name.
    let second = Agent::start(&dir.path().join("second"), "web-01", port, &shop, &["load"])?;
    wait::until(Duration::from_secs(30), "the proxy to refuse the second identity", || {
        let log = proxy.log_text();
        Ok((log.contains("identity refused") && log.contains("web-01")).then_some(()))
    })?;
    wait::until(Duration::from_secs(30), "the second agent to report the refusal", || {
        Ok(second.log_text().contains("refused this agent's identity").then_some(()))
    })?;
    // Refused after a completed handshake, it backs off (max_backoff 2 s)
    // instead of reconnecting as fast as the proxy answers (about ten
    // times a second before).
    let refusals = |a: &Agent| a.log_text().matches("refused this agent's identity").count();
    let before = refusals(&second);
    std::thread::sleep(Duration::from_secs(4));
    let during = refusals(&second) - before;
    assert!(during <= 12, "{during} refusals in 4 s:\n{}", second.log_text());
    assert!(rows(&proxy, "load")?.is_empty(), "a refused agent's data was stored");
    let bindings = proxy.ctl(&["bindings", "--project", "shop"])?;
    assert!(bindings.ok, "{}", bindings.stderr);
    assert_eq!(bindings.json.as_array().map(Vec::len), Some(1), "{}", bindings.json);

    // The operator releases the name: the next identity to prove itself gets it.
    first.stop()?;
    let forgot = proxy.ctl(&["forget", "--project", "shop", "web-01"])?;
    assert!(forgot.ok, "{}", forgot.stderr);
    wait_rows(&proxy, "load", 1, "the second agent's data after forget")?;
    let again = proxy.ctl(&["forget", "--project", "shop", "nobody"])?;
    assert!(!again.ok && again.stderr.contains("no binding"), "{}", again.stderr);

    // The same name in another project is another agent.
    let _bank_agent = Agent::start(&dir.path().join("bank"), "web-01", port, &bank, &[])?;
    wait::until(Duration::from_secs(30), "web-01 connected in both projects", || {
        let agents = proxy.ctl(&["agents"])?.json;
        let projects: Vec<&str> = agents
            .as_array()
            .map(|l| l.iter().filter_map(|a| a["project"].as_str()).collect())
            .unwrap_or_default();
        Ok((projects.contains(&"shop") && projects.contains(&"bank")).then_some(()))
    })?;
    let ambiguous = proxy.ctl(&["request", "web-01", "info"])?;
    assert!(
        !ambiguous.ok && ambiguous.stderr.contains("several projects (bank, shop)"),
        "{}",
        ambiguous.stderr
    );
    for project in ["bank", "shop"] {
        let answer = proxy.ctl(&["request", "--project", project, "web-01", "info"])?;
        assert!(answer.ok, "{}", answer.stderr);
        assert_eq!(answer.json["ok"]["project"], project, "{}", answer.json);
    }

    // bank may hold one session: a second agent of it is refused, and says why.
    let crowded = Agent::start(&dir.path().join("bank-2"), "db-01", port, &bank, &[])?;
    wait::until(Duration::from_secs(30), "the session cap to refuse db-01", || {
        Ok((proxy.log_text().contains("project at its session cap")
            && crowded.log_text().contains("project at its session cap"))
        .then_some(()))
    })
    .with_context(|| format!("proxy:\n{}\nagent:\n{}", proxy.log_text(), crowded.log_text()))?;
    drop(second);
    Ok(())
}

/// Reads one frame from a blocking stream.
fn read_frame(
    stream: &mut std::net::TcpStream,
    decoder: &mut wasmtap_protocol::frame::FrameDecoder,
) -> anyhow::Result<wasmtap_protocol::frame::Frame> {
    use std::io::Read as _;
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

/// A recorded hello, replayed 300 times: the first copy was answered, no
/// replay gets a ServerHello (each costs the proxy no key exchange).
#[test]
fn replayed_hellos_get_no_server_hello() -> anyhow::Result<()> {
    use std::io::Write as _;
    use wasmtap_protocol::access_key::AccessKey;
    use wasmtap_protocol::close::{Close, CloseCode};
    use wasmtap_protocol::frame::{FrameDecoder, FrameKind};
    use wasmtap_protocol::handshake::ClientHandshake;
    use wasmtap_protocol::identity::StaticKey;

    let dir = tempfile::tempdir()?;
    let key_text = new_key("shop")?;
    // Generous per-network limits, so that every replay reaches the handshake.
    let limits =
        "[limits]\nhandshakes_per_source = 100000\nmax_unauthenticated_per_source = 1000\n";
    let proxy = Proxy::start_with(&dir.path().join("proxy"), &[("shop", &key_text)], limits)?;
    let key: AccessKey = key_text.parse()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis();
    let (_, hello) = ClientHandshake::start(
        &key,
        &StaticKey::generate(&mut rand::rng()),
        "recorded",
        u64::try_from(now)?,
        &mut rand::rng(),
    )?;
    let answer = |hello: &[u8]| -> anyhow::Result<wasmtap_protocol::frame::Frame> {
        let mut s = std::net::TcpStream::connect(proxy.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(hello)?;
        read_frame(&mut s, &mut FrameDecoder::default())
    };
    assert_eq!(answer(&hello)?.kind, FrameKind::ServerHello, "the original is answered");
    let mut server_hellos = 0;
    for i in 0..300 {
        let f = answer(&hello).with_context(|| format!("replay {i}"))?;
        match f.kind {
            FrameKind::ServerHello => server_hellos += 1,
            FrameKind::Close => assert_eq!(Close::decode(&f.payload)?.code, CloseCode::Refused),
            other => anyhow::bail!("replay {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(server_hellos, 0);
    assert!(proxy.log_text().contains("replayed hello"), "{}", proxy.log_text());
    Ok(())
}
