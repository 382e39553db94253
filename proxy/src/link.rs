//! One established agent session: a thin driver around the sans-IO
//! [`ProxyConn`]. It moves bytes between the socket and the connection,
//! hands each decoded batch to the store, acknowledges batches in arrival
//! order once the store has answered (reading goes on meanwhile, up to
//! [`MAX_INFLIGHT`](crate::inflight::MAX_INFLIGHT) batches), and relays
//! control requests from the admin API by request id. It asks the agent
//! to `describe` its collectors when the session starts and when a batch
//! has a field not described yet (looking every 10 s and asking once a
//! minute at most), and keeps the answer in the proxy's
//! [`Descriptors`](crate::descriptors).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::close::CloseCode;
use wasmtap_protocol::conn::{ConnError as Protocol, ProxyConfig, ProxyConn, ProxyEvent};
use wasmtap_protocol::frame::FrameDecoder;
use wasmtap_protocol::handshake::ServerEstablished;
use wasmtap_protocol::identity::Identity;
use wasmtap_protocol::message::ControlRequest;

use crate::inflight::{Inflight, Settled};
use crate::server::{ConnError, Hub};
use crate::sessions::{AgentInfo, Pending, Registration};
use crate::store::{Appended, StoredBatch};

/// How long a session waits, at shutdown, for its batches on their way to
/// the disk so that it can acknowledge them.
pub(crate) const SHUTDOWN_SETTLE: Duration = Duration::from_secs(5);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// The control command that asks an agent for its collectors' fields.
pub(crate) const DESCRIBE: &str = "describe";
/// Least time between two `describe` requests of a session.
const DESCRIBE_AGAIN: Duration = Duration::from_secs(60);
/// Least time between two looks for undescribed fields in a session's batches.
const LOOK_AGAIN: Duration = Duration::from_secs(10);

/// One established session.
pub(crate) struct Link<'a> {
    stream: TcpStream,
    /// Boxed: its key schedules are kilobytes, and async functions taking
    /// the link hold it twice (argument and local) in their state.
    conn: Box<ProxyConn>,
    /// Control requests sent and not yet answered, by id.
    waiting: HashMap<u64, oneshot::Sender<Result<String, String>>>,
    /// Batches submitted to the store and not yet acknowledged.
    inflight: Inflight,
    /// Under `[cluster]`: keeps this session's batches in order in the stream.
    order: crate::cluster::Order,
    hub: &'a Hub,
    project: ProjectId,
    agent: String,
    peer: SocketAddr,
    registration: Registration,
    requests: mpsc::Receiver<Pending>,
    /// Fields (collector, field) of this project known to be described.
    described: HashSet<(Arc<str>, Arc<str>)>,
    /// When `describe` was last asked.
    asked: Option<Instant>,
    /// When a batch was last looked at for undescribed fields.
    looked: Option<Instant>,
    /// The agent answered `describe` with an error (it predates it).
    refused: Arc<AtomicBool>,
}

impl<'a> Link<'a> {
    /// Starts the registered session (a plain function, so that nothing of
    /// the handshake's result stays in the session task's state).
    pub(crate) fn open(
        stream: TcpStream,
        decoder: FrameDecoder,
        est: ServerEstablished,
        peer: SocketAddr,
        hub: &'a Hub,
        registration: Registration,
        requests: mpsc::Receiver<Pending>,
    ) -> Self {
        let ServerEstablished { session, project, agent, agent_identity, .. } = est;
        tracing::info!(%peer, %project, %agent, identity = %agent_identity, session = session.id(), "agent connected");
        let limits = &hub.config.limits;
        let config = ProxyConfig {
            idle_timeout: limits.idle_timeout,
            dictionary_bytes: limits.session_memory_bytes,
            max_skew_ms: u64::try_from(limits.max_clock_skew.as_millis()).unwrap_or(u64::MAX),
            ..ProxyConfig::default()
        };
        let conn = ProxyConn::new(session, decoder, config, Instant::now().into_std());
        Link {
            stream,
            conn: Box::new(conn),
            waiting: HashMap::new(),
            inflight: Inflight::default(),
            order: crate::cluster::Order::default(),
            hub,
            project,
            agent,
            peer,
            registration,
            requests,
            described: HashSet::new(),
            asked: None,
            looked: None,
            refused: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Asks the agent to describe its collectors; the answer goes to the
    /// proxy's descriptors when it comes.
    fn describe(&mut self) -> Result<(), ConnError> {
        let id = self.hub.sessions.next_request_id();
        let request = ControlRequest { id, command: DESCRIBE.to_owned(), args: Vec::new() };
        self.conn.send_request(&request)?;
        let (reply, answer) = oneshot::channel();
        self.waiting.insert(id, reply);
        self.asked = Some(Instant::now());
        let descriptors = self.hub.descriptors.clone();
        let (project, agent, refused) =
            (self.project.clone(), self.agent.clone(), self.refused.clone());
        tokio::spawn(async move {
            match answer.await {
                Ok(Ok(json)) => {
                    // It may write the descriptions file: off the async workers.
                    let p = project.clone();
                    let taken =
                        tokio::task::spawn_blocking(move || descriptors.update(p.as_str(), &json))
                            .await;
                    if let Ok(Err(e)) = taken {
                        tracing::warn!(%project, %agent, error = %e, "agent's description of its collectors not taken");
                    }
                }
                // An agent that predates the command; other errors (busy,
                // shutting down, the session ending) are asked again later.
                Ok(Err(message)) if message.starts_with("unknown command") => {
                    refused.store(true, Ordering::Relaxed);
                    tracing::info!(%project, %agent, answer = %message, "agent does not describe its collectors; its series are named from their kind unless another agent of the project described them");
                }
                Ok(Err(message)) => {
                    tracing::debug!(%project, %agent, answer = %message, "no description of the collectors this time");
                }
                Err(_) => {}
            }
        });
        Ok(())
    }

    /// Whether `batch` has a field not described yet (a collector
    /// hot-loaded, or a new version of one), and it is time to ask again.
    /// Batches are looked at every [`LOOK_AGAIN`] at most.
    fn needs_describing(&mut self, batch: &wasmtap_protocol::message::Batch) -> bool {
        if self.refused.load(Ordering::Relaxed)
            || self.asked.is_some_and(|t| t.elapsed() < DESCRIBE_AGAIN)
            || self.looked.is_some_and(|t| t.elapsed() < LOOK_AGAIN)
        {
            return false;
        }
        self.looked = Some(Instant::now());
        let project = self.project.as_str();
        let mut unknown = false;
        for s in &batch.samples {
            for (field, _) in &s.values {
                let key = (s.collector.clone(), field.clone());
                if self.described.contains(&key) {
                    continue;
                }
                if self.hub.descriptors.field(project, &s.collector, field).is_some() {
                    self.described.insert(key);
                } else {
                    unknown = true;
                }
            }
        }
        unknown
    }

    /// Runs the session to its end, then settles what is still open.
    pub(crate) async fn serve(
        mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ConnError> {
        let result = self.run(&mut shutdown).await;
        match &result {
            // The connection queued its own close, or the agent closed.
            Ok(()) | Err(ConnError::Session(_) | ConnError::Eof) => {}
            Err(e @ ConnError::Store(_)) => self.conn.close(CloseCode::Overloaded, &e.to_string()),
            Err(e) => self.conn.close(CloseCode::ProtocolError, &e.to_string()),
        }
        // Whatever the connection queued last (a close saying why) goes out.
        let _ = self.flush().await;
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err("the session ended before the agent answered".into()));
        }
        // Batches already submitted are stored even though no ack can
        // follow (a resend will be a duplicate); the sinks read them from
        // the store.
        self.inflight.drain().await;
        match result {
            Err(ConnError::Session(Protocol::PeerClosed(close))) => {
                tracing::info!(peer = %self.peer, agent = %self.agent, reason = %close, "agent closed the session");
                Ok(())
            }
            other => other,
        }
    }

    async fn run(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), ConnError> {
        let mut settled = Vec::new();
        self.describe()?;
        self.flush().await?;
        loop {
            let reading = !self.inflight.is_full();
            let deadline = self.conn.poll_timeout().map(Instant::from_std);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                r = self.stream.readable(), if reading => {
                    r?;
                    self.read()?;
                }
                () = self.inflight.settled(&mut settled) => self.acknowledge(&mut settled)?,
                Some(pending) = self.requests.recv() => {
                    self.conn.send_request(&pending.request)?;
                    self.waiting.insert(pending.request.id, pending.reply);
                }
                () = tokio::time::sleep_until(deadline.unwrap_or(far)) => {
                    self.conn.handle_timeout(Instant::now().into_std())?;
                }
                _ = shutdown.changed() => {
                    // Acknowledge what is already on its way to the disk
                    // before saying goodbye, so that it is not resent.
                    let settle = async {
                        while !self.inflight.is_empty() {
                            self.inflight.settled(&mut settled).await;
                            self.acknowledge(&mut settled)?;
                            self.flush().await?;
                        }
                        Ok::<(), ConnError>(())
                    };
                    let _ = tokio::time::timeout(SHUTDOWN_SETTLE, settle).await;
                    self.conn.close(CloseCode::Shutdown, "proxy shutting down");
                    return Ok(());
                }
            }
            self.flush().await?;
        }
    }

    /// Reads what the socket holds and feeds it to the connection. The
    /// buffer lives only for the read: an idle session holds none.
    fn read(&mut self) -> Result<(), ConnError> {
        let mut buf = [0u8; READ_CHUNK];
        let n = match self.stream.try_read(&mut buf) {
            Ok(0) => return Err(ConnError::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let now = crate::now_ms();
        self.conn.handle_input(&buf[..n], Instant::now().into_std(), now)?;
        self.registration.update(|i| i.last_seen_ms = now);
        while let Some(event) = self.conn.poll_event() {
            match event {
                ProxyEvent::Batch(batch) => {
                    if self.needs_describing(&batch) {
                        self.describe()?;
                    }
                    self.submit(batch);
                }
                ProxyEvent::Response(resp) => match self.waiting.remove(&resp.id) {
                    Some(reply) => {
                        let _ = reply.send(resp.result);
                    }
                    None => {
                        tracing::warn!(peer = %self.peer, agent = %self.agent, id = resp.id, "response to no outstanding request; ignored")
                    }
                },
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if let Some(bytes) = self.conn.poll_transmit() {
            self.stream.write_all(&bytes).await?;
        }
        Ok(())
    }

    /// Hands a batch to the store, or to the cluster under `[cluster]`;
    /// [`Link::acknowledge`] follows its answer.
    fn submit(&mut self, batch: wasmtap_protocol::message::Batch) {
        let record = Arc::new(StoredBatch {
            agent: self.agent.clone(),
            session: self.conn.id(),
            received_ms: crate::now_ms(),
            batch,
        });
        let receipt = match &self.hub.cluster {
            Some(cluster) => cluster.submit(&self.project, record.clone(), &mut self.order),
            None => self.hub.store.submit(&self.project, record.clone()),
        };
        self.inflight.push(record, receipt);
    }

    /// Acknowledges batches the store has answered (the sinks read them
    /// from the store). A store failure ends the session with that batch
    /// and the ones after it unacknowledged: the agent resends them.
    fn acknowledge(&mut self, settled: &mut Vec<Settled>) -> Result<(), ConnError> {
        let (mut batches, mut samples) = (0, 0);
        let mut failure: Option<ConnError> = None;
        let now = Instant::now().into_std();
        for s in settled.drain(..) {
            let seq = s.record.batch.seq;
            match s.result {
                Err(e) => {
                    failure.get_or_insert(e.into());
                }
                Ok(Appended::Stored) => {
                    samples += s.record.batch.samples.len() as u64;
                }
                Ok(Appended::Duplicate) => {
                    tracing::debug!(agent = %self.agent, seq, "duplicate batch acknowledged, not stored again");
                }
            }
            if failure.is_none() {
                batches += 1;
                if !self.conn.acknowledge(seq, now)? {
                    failure = Some(ConnError::Refused(format!("batch {seq} settled out of order")));
                }
            }
        }
        self.registration.update(|i| {
            i.batches += batches;
            i.samples += samples;
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// How the admin API shows a session established at `now` (ms).
pub(crate) fn info(
    project: &ProjectId,
    agent: &str,
    identity: &Identity,
    peer: SocketAddr,
    session: u64,
    now: u64,
) -> AgentInfo {
    AgentInfo {
        project: project.to_string(),
        agent: agent.to_owned(),
        identity: identity.to_text(),
        peer,
        session: format!("{session:016x}"),
        connected_ms: now,
        batches: 0,
        samples: 0,
        last_seen_ms: now,
        proxy: None,
    }
}
