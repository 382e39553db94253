//! The proxy's side of the handshake.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use super::{HandshakeError, TrafficKeys, ZERO_NONCE, handshake_key, hello_key};
use crate::access_key::{AccessKey, ProjectId};
use crate::codec::Reader;
use crate::crypto::{Aead, EphemeralKey, TAG_LEN, sha256};
use crate::frame::{Frame, FrameKind, payload_len};
use crate::secret::Key256;
use crate::session::{Role, Session};

/// Where the proxy looks up a project's secret.
pub trait ProjectKeys {
    /// The secret of `project`, if this proxy serves it.
    fn secret(&self, project: &str) -> Option<&Key256>;
}

impl ProjectKeys for HashMap<ProjectId, AccessKey> {
    fn secret(&self, project: &str) -> Option<&Key256> {
        let id = ProjectId::new(project).ok()?;
        self.get(&id).map(AccessKey::secret)
    }
}

/// Entry point of the proxy's handshake.
#[derive(Debug)]
pub struct ServerHandshake;

/// Waiting for the agent's `ClientFinished`.
#[derive(Debug)]
pub struct ExpectClientFinished {
    session: Session,
    th2: [u8; 32],
    project: ProjectId,
    agent: String,
    client_time_ms: u64,
}

/// The proxy's result: an authenticated session and who is on the other end.
#[derive(Debug)]
pub struct ServerEstablished {
    /// The sealed session.
    pub session: Session,
    /// The agent's project.
    pub project: ProjectId,
    /// The agent's name, as it sent it.
    pub agent: String,
    /// The agent's wall clock when it said hello, ms since the epoch.
    pub client_time_ms: u64,
}

impl ServerHandshake {
    /// Processes a `ClientHello`: authenticates it, issues fresh session keys
    /// and returns the `ServerHello` frame to send.
    pub fn receive_hello(
        frame: Frame,
        keys: &impl ProjectKeys,
        now_ms: u64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<(ExpectClientFinished, Vec<u8>), HandshakeError> {
        if frame.kind != FrameKind::ClientHello {
            return Err(HandshakeError::UnexpectedFrame {
                expected: FrameKind::ClientHello,
                got: frame.kind,
            });
        }
        let client_hello = frame.to_bytes();
        let mut r = Reader::new(&frame.payload);
        let project_name = r.short_str()?;
        let client_random: [u8; 32] = r.array()?;
        let clear_len = frame.payload.len() - r.remaining();
        let mut body = r.rest().to_vec();

        let project = ProjectId::new(project_name)
            .map_err(|_| HandshakeError::UnknownProject(project_name.escape_debug().to_string()))?;
        let secret = keys
            .secret(project.as_str())
            .ok_or_else(|| HandshakeError::UnknownProject(project.to_string()))?;
        let aad = [&frame.header_bytes()[..], &frame.payload[..clear_len]].concat();
        Aead::new(&hello_key(secret, &client_random, project.as_str()))
            .open(&ZERO_NONCE, &aad, &mut body)
            .map_err(|_| HandshakeError::BadCredentials(project.to_string()))?;

        let mut r = Reader::new(&body);
        let client_share: [u8; 32] = r.array()?;
        let client_time_ms = r.u64()?;
        let agent = r.short_str()?.to_owned();
        r.finish()?;
        if agent.is_empty() {
            return Err(HandshakeError::BadAgentName);
        }

        let ephemeral = EphemeralKey::generate(rng);
        let server_share = ephemeral.public();
        let mut server_random = [0u8; 32];
        rng.fill_bytes(&mut server_random);
        let session_id = rng.next_u64();
        let strong = Key256::random(rng);
        let simple_key = Key256::random(rng);

        let th1 = sha256(&[&client_hello, &server_share, &server_random]);
        let dh = ephemeral.agree(&client_share)?;
        let k_hs = handshake_key(secret, dh.expose(), &th1);

        let mut sealed = zeroize::Zeroizing::new(Vec::with_capacity(8 + 32 + 32 + 8 + TAG_LEN));
        sealed.extend_from_slice(&session_id.to_be_bytes());
        sealed.extend_from_slice(strong.expose());
        sealed.extend_from_slice(simple_key.expose());
        sealed.extend_from_slice(&now_ms.to_be_bytes());
        let total = 64 + payload_len(&sealed) + TAG_LEN as u32;
        let header = Frame::header(FrameKind::ServerHello, total);
        let aad = [&header[..], &server_share, &server_random].concat();
        let mut body = std::mem::take(&mut *sealed);
        Aead::new(&k_hs).seal(&ZERO_NONCE, &aad, &mut body);

        let mut payload = Vec::with_capacity(total as usize);
        payload.extend_from_slice(&server_share);
        payload.extend_from_slice(&server_random);
        payload.extend_from_slice(&body);
        let server_hello = Frame { kind: FrameKind::ServerHello, payload }.to_bytes();

        let th2 = sha256(&[&client_hello, &server_hello]);
        let session =
            TrafficKeys::derive(&strong, &simple_key, &th2).into_session(session_id, Role::Server);
        let state = ExpectClientFinished { session, th2, project, agent, client_time_ms };
        Ok((state, server_hello))
    }
}

impl ExpectClientFinished {
    /// The project the agent claims (authenticated by its hello).
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// The agent name from the hello.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// Checks the agent's key confirmation; only then is the session usable.
    pub fn receive_finished(mut self, frame: Frame) -> Result<ServerEstablished, HandshakeError> {
        if frame.kind != FrameKind::ClientFinished {
            return Err(HandshakeError::UnexpectedFrame {
                expected: FrameKind::ClientFinished,
                got: frame.kind,
            });
        }
        let confirm = self.session.open(frame).map_err(|_| HandshakeError::ConfirmationFailed)?;
        if !bool::from(confirm.ct_eq(&self.th2)) {
            return Err(HandshakeError::ConfirmationFailed);
        }
        Ok(ServerEstablished {
            session: self.session,
            project: self.project,
            agent: self.agent,
            client_time_ms: self.client_time_ms,
        })
    }
}
