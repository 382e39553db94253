//! The proxy's side of the handshake.

use std::collections::HashMap;

use subtle::ConstantTimeEq;

use super::{HandshakeError, Master, ReplayGuard, ZERO_NONCE, hello_key, identity_key, server_key};
use crate::access_key::{AccessKey, KeyId, ProjectId};
use crate::codec::Reader;
use crate::crypto::{Aead, EphemeralKey, TAG_LEN, sha256};
use crate::frame::{Frame, FrameKind};
use crate::identity::{Identity, StaticKey};
use crate::secret::Key256;
use crate::session::{Role, Session};
use crate::simple::SimpleSuite;

/// Where the proxy looks up a project's secrets.
pub trait ProjectKeys {
    /// The secret of `project`'s access key `key_id`, if this proxy has it.
    fn secret(&self, project: &str, key_id: KeyId) -> Option<&Key256>;
    /// Whether this proxy serves `project` at all (for its own logs only).
    fn serves(&self, project: &str) -> bool;
}

impl ProjectKeys for HashMap<ProjectId, AccessKey> {
    fn secret(&self, project: &str, key_id: KeyId) -> Option<&Key256> {
        let id = ProjectId::new(project).ok()?;
        self.get(&id).filter(|k| k.key_id() == key_id).map(AccessKey::secret)
    }

    fn serves(&self, project: &str) -> bool {
        ProjectId::new(project).is_ok_and(|id| self.contains_key(&id))
    }
}

/// Entry point of the proxy's handshake.
#[derive(Debug)]
pub struct ServerHandshake;

/// A fresh, authentic ClientHello: who the agent says it is. The proxy
/// checks the name against its records, then answers with [`ReceivedHello::respond`].
#[derive(Debug)]
pub struct ReceivedHello {
    psk: Key256,
    project: ProjectId,
    key_id: KeyId,
    agent: String,
    pub(super) agent_identity: Identity,
    suite: SimpleSuite,
    client_time_ms: u64,
    e_a: [u8; 32],
    client_hello: Vec<u8>,
}

/// Waiting for the agent's `ClientFinished`.
#[derive(Debug)]
pub struct ExpectClientFinished {
    session: Session,
    th2: [u8; 32],
    hello: ReceivedHello,
}

/// The proxy's result: an authenticated session and who is on the other end.
#[derive(Debug)]
pub struct ServerEstablished {
    /// The sealed session.
    pub session: Session,
    /// The agent's project.
    pub project: ProjectId,
    /// The access key it used.
    pub key_id: KeyId,
    /// The agent's name, as it sent it.
    pub agent: String,
    /// The identity the agent proved it holds.
    pub agent_identity: Identity,
    /// The agent's wall clock when it said hello, ms since the epoch.
    pub client_time_ms: u64,
}

/// Bytes of a hello's clear part after the project name.
const CLEAR_TAIL: usize = 4 + 8 + 32;

impl ServerHandshake {
    /// Reads a `ClientHello` at wall-clock time `now_ms`: refuses it if its
    /// time is outside the guard's window or it was seen before (no
    /// cryptography spent), then authenticates it under the project's key
    /// and remembers it.
    pub fn read_hello(
        frame: Frame,
        keys: &impl ProjectKeys,
        guard: &mut ReplayGuard,
        now_ms: u64,
    ) -> Result<ReceivedHello, HandshakeError> {
        if frame.kind != FrameKind::ClientHello {
            return Err(HandshakeError::UnexpectedFrame {
                expected: FrameKind::ClientHello,
                got: frame.kind,
            });
        }
        let header = frame.header_bytes();
        let mut r = Reader::new(&frame.payload);
        let project_name = r.short_str()?;
        let key_id = KeyId(u32::from_be_bytes(r.array()?));
        let client_time_ms = r.u64()?;
        let e_a: [u8; 32] = r.array()?;
        let clear_len = 1 + project_name.len() + CLEAR_TAIL;
        let mut body = r.rest().to_vec();
        guard.check(&e_a, client_time_ms, now_ms)?;

        let project = ProjectId::new(project_name)
            .map_err(|_| HandshakeError::UnknownProject(project_name.escape_debug().to_string()));
        let secret = project.as_ref().ok().and_then(|p| keys.secret(p.as_str(), key_id));
        // Unknown projects and keys cost the same work as a wrong key, so
        // that timing does not tell a stranger which projects exist.
        let throwaway = Key256::new([0; 32]);
        let aad = [&header[..], &frame.payload[..clear_len]].concat();
        let opened =
            Aead::new(&hello_key(secret.unwrap_or(&throwaway), &e_a, project_name, key_id)).open(
                &ZERO_NONCE,
                &aad,
                &mut body,
            );
        let project = project?;
        let Some(psk) = secret else {
            return Err(if keys.serves(project.as_str()) {
                HandshakeError::UnknownKey { project: project.to_string(), key_id }
            } else {
                HandshakeError::UnknownProject(project.to_string())
            });
        };
        opened.map_err(|_| HandshakeError::BadCredentials(project.to_string()))?;

        let mut r = Reader::new(&body);
        let agent = r.short_str()?.to_owned();
        let agent_identity = Identity::from_bytes(r.array()?);
        let [suite] = r.array()?;
        r.finish()?;
        if agent.is_empty() {
            return Err(HandshakeError::BadAgentName);
        }
        let suite = SimpleSuite::from_byte(suite).ok_or(HandshakeError::UnknownSuite(suite))?;
        guard.remember(e_a, now_ms);
        Ok(ReceivedHello {
            psk: psk.clone(),
            project,
            key_id,
            agent,
            agent_identity,
            suite,
            client_time_ms,
            e_a,
            client_hello: frame.to_bytes(),
        })
    }
}

impl ReceivedHello {
    /// The project the agent authenticated for.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// The agent's name.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The identity the agent claims (proved by `ClientFinished`).
    pub fn agent_identity(&self) -> Identity {
        self.agent_identity
    }

    /// The access key it used.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The simple-path suite the agent chose.
    pub fn suite(&self) -> SimpleSuite {
        self.suite
    }

    /// Answers with fresh session keys under this proxy's `identity`,
    /// returning the `ServerHello` frame to send.
    pub fn respond(
        self,
        identity: &StaticKey,
        now_ms: u64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<(ExpectClientFinished, Vec<u8>), HandshakeError> {
        let ephemeral = EphemeralKey::generate(rng);
        let e_p = ephemeral.public();
        let session_id = rng.next_u64();
        let strong = Key256::random(rng);
        let simple = Key256::random(rng);

        let ee = ephemeral.agree(&self.e_a)?;
        let es = identity.agree(&self.e_a)?;
        let se = ephemeral.agree(self.agent_identity.as_bytes())?;
        let h2 = sha256(&[&self.client_hello, &e_p]);

        const TOTAL: usize = 32 + (32 + TAG_LEN) + (8 + 32 + 32 + 8 + TAG_LEN);
        let header = Frame::header(FrameKind::ServerHello, TOTAL as u32);
        let mut payload = Vec::with_capacity(TOTAL);
        payload.extend_from_slice(&e_p);
        let mut id_box = identity.identity().as_bytes().to_vec();
        let aad = [&header[..], &e_p].concat();
        Aead::new(&identity_key(&self.psk, &h2, ee.expose())).seal(&ZERO_NONCE, &aad, &mut id_box);
        payload.extend_from_slice(&id_box);

        let mut keys_box = zeroize::Zeroizing::new(Vec::with_capacity(80 + TAG_LEN));
        keys_box.extend_from_slice(&session_id.to_be_bytes());
        keys_box.extend_from_slice(strong.expose());
        keys_box.extend_from_slice(simple.expose());
        keys_box.extend_from_slice(&now_ms.to_be_bytes());
        let aad = [&header[..], &payload].concat();
        let mut sealed = std::mem::take(&mut *keys_box);
        Aead::new(&server_key(&self.psk, &h2, ee.expose(), es.expose())).seal(
            &ZERO_NONCE,
            &aad,
            &mut sealed,
        );
        payload.extend_from_slice(&sealed);
        let server_hello = Frame { kind: FrameKind::ServerHello, payload }.to_bytes();

        let th2 = sha256(&[&self.client_hello, &server_hello]);
        let master = Master::derive(&self.psk, &th2, [ee.expose(), es.expose(), se.expose()]);
        let session =
            master.into_session(&th2, (&strong, &simple), self.suite, session_id, Role::Server);
        Ok((ExpectClientFinished { session, th2, hello: self }, server_hello))
    }
}

impl ExpectClientFinished {
    /// The project the agent authenticated for.
    pub fn project(&self) -> &ProjectId {
        &self.hello.project
    }

    /// The agent name from the hello.
    pub fn agent(&self) -> &str {
        &self.hello.agent
    }

    /// Checks the agent's key confirmation, which proves it holds its
    /// identity key; only then is the session usable.
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
        let h = self.hello;
        Ok(ServerEstablished {
            session: self.session,
            project: h.project,
            key_id: h.key_id,
            agent: h.agent,
            agent_identity: h.agent_identity,
            client_time_ms: h.client_time_ms,
        })
    }
}
