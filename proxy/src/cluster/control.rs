//! Control requests and the agents list across the proxies of a cluster,
//! by NATS request/reply.
//!
//! Every proxy answers two subjects:
//! - `<stream>.ctl.agents`: the agents connected to it (each proxy
//!   answers; the asker gathers the answers for [`GATHER`]);
//! - `<stream>.ctl.request.<name>`: a control request for an agent
//!   connected to proxy `<name>`, answered with the agent's answer.
//!
//! A request for an agent this proxy does not hold goes to the proxy
//! holding its most recent session.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Cluster;
use crate::sessions::{AgentInfo, RequestError, Sessions, newest_session};

/// How long the agents list waits for the proxies' answers.
pub const GATHER: Duration = Duration::from_millis(500);
/// Added to a forwarded request's deadline for the way there and back.
const MARGIN: Duration = Duration::from_secs(2);

/// One proxy's answer to `<stream>.ctl.agents`.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    proxy: String,
    agents: Vec<AgentInfo>,
}

/// A control request forwarded to the proxy holding the agent.
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    project: Option<String>,
    agent: String,
    command: String,
    args: Vec<String>,
    timeout_ms: u64,
}

/// What the holding proxy answers.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// The agent's answer: a result or its error message.
    Agent(Result<String, String>),
    /// No answer from the agent.
    Refused(RequestError),
}

fn agents_subject(cluster: &Cluster) -> String {
    format!("{}.ctl.agents", cluster.config().stream)
}

fn request_subject(cluster: &Cluster, proxy: &str) -> String {
    format!("{}.ctl.request.{proxy}", cluster.config().stream)
}

/// Answers the other proxies' requests until `shutdown` flips; resubscribes
/// after a failure.
pub async fn serve(cluster: Cluster, sessions: Arc<Sessions>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            r = answer(&cluster, &sessions) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cluster control requests: subscription failed; retrying");
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn answer(cluster: &Cluster, sessions: &Arc<Sessions>) -> Result<(), String> {
    let client = cluster.client();
    let mut agents = client.subscribe(agents_subject(cluster)).await.map_err(|e| e.to_string())?;
    let own = request_subject(cluster, &cluster.config().name);
    let mut requests = client.subscribe(own).await.map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            m = agents.next() => {
                let m = m.ok_or("the agents subscription ended")?;
                let Some(reply) = m.reply else { continue };
                let held = Held { proxy: cluster.config().name.clone(), agents: sessions.agents() };
                let body = serde_json::to_vec(&held).map_err(|e| e.to_string())?;
                client.publish(reply, body.into()).await.map_err(|e| e.to_string())?;
            }
            m = requests.next() => {
                let m = m.ok_or("the requests subscription ended")?;
                let Some(reply) = m.reply else { continue };
                let Ok(f) = serde_json::from_slice::<Forwarded>(&m.payload) else {
                    tracing::warn!("a malformed cluster control request; ignored");
                    continue;
                };
                // Answered in its own task: a slow agent holds up no other request.
                let (client, sessions) = (client.clone(), sessions.clone());
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(f.timeout_ms);
                    let answer = match sessions.request(f.project.as_deref(), &f.agent, &f.command, f.args, timeout).await {
                        Ok(r) => Answer::Agent(r),
                        Err(e) => Answer::Refused(e),
                    };
                    if let Ok(body) = serde_json::to_vec(&answer) {
                        let _ = client.publish(reply, body.into()).await;
                    }
                });
            }
        }
    }
}

/// The agents connected to every proxy of the cluster that answers within
/// [`GATHER`], each with the proxy's name.
pub async fn agents(cluster: &Cluster) -> Result<Vec<AgentInfo>, String> {
    let client = cluster.client();
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
    client
        .publish_with_reply(agents_subject(cluster), inbox, Vec::new().into())
        .await
        .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + GATHER;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, answers.next()).await {
        if let Ok(held) = serde_json::from_slice::<Held>(&m.payload) {
            all.extend(
                held.agents.into_iter().map(|a| AgentInfo { proxy: Some(held.proxy.clone()), ..a }),
            );
        }
    }
    all.sort_by(|a, b| (&a.project, &a.agent, &a.proxy).cmp(&(&b.project, &b.agent, &b.proxy)));
    Ok(all)
}

/// Sends a control request to the agent wherever in the cluster its most
/// recent session is; like [`Sessions::request`].
pub async fn request(
    cluster: &Cluster,
    sessions: &Sessions,
    project: Option<&str>,
    agent: &str,
    command: &str,
    args: Vec<String>,
    timeout: Duration,
) -> Result<Result<String, String>, RequestError> {
    match sessions.request(project, agent, command, args.clone(), timeout).await {
        Err(RequestError::NotConnected(_)) => {}
        done => return done,
    }
    let not_connected = || RequestError::NotConnected(agent.to_owned());
    let everywhere = agents(cluster).await.map_err(|_| not_connected())?;
    let holders = everywhere.iter().map(|a| (a, a.proxy.clone()));
    let holder = newest_session(holders, project, agent)?.ok_or_else(not_connected)?;
    let forwarded = Forwarded {
        project: project.map(str::to_owned),
        agent: agent.to_owned(),
        command: command.to_owned(),
        args,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let body = serde_json::to_vec(&forwarded).map_err(|_| not_connected())?;
    let request = async_nats::Request::new().payload(body.into()).timeout(Some(timeout + MARGIN));
    let reply =
        cluster.client().send_request(request_subject(cluster, &holder), request).await.map_err(
            |e| match e.kind() {
                async_nats::RequestErrorKind::TimedOut => {
                    RequestError::Timeout { agent: agent.to_owned(), timeout }
                }
                _ => RequestError::SessionEnded(agent.to_owned()),
            },
        )?;
    match serde_json::from_slice::<Answer>(&reply.payload) {
        Ok(Answer::Agent(r)) => Ok(r),
        Ok(Answer::Refused(e)) => Err(e),
        Err(_) => Err(RequestError::SessionEnded(agent.to_owned())),
    }
}
