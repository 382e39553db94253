//! The agent's side of the handshake.

use super::{
    HandshakeError, MAX_AGENT_NAME, Master, ZERO_NONCE, hello_key, identity_key, server_key,
};
use crate::access_key::AccessKey;
use crate::close::Close;
use crate::codec::{Reader, put_short_str};
use crate::crypto::{Aead, EphemeralKey, TAG_LEN, sha256};
use crate::frame::{Frame, FrameKind, payload_len};
use crate::identity::{Identity, StaticKey};
use crate::secret::Key256;
use crate::session::{Role, Session};
use crate::simple::SimpleSuite;

/// Entry point of the agent's handshake.
#[derive(Debug)]
pub struct ClientHandshake;

/// Waiting for the proxy's `ServerHello`.
#[derive(Debug)]
pub struct ExpectServerHello {
    psk: Key256,
    agent: StaticKey,
    ephemeral: EphemeralKey,
    suite: SimpleSuite,
    client_hello: Vec<u8>,
}

/// The agent's result: a session plus what the proxy proved and told it.
#[derive(Debug)]
pub struct ClientEstablished {
    /// The sealed session.
    pub session: Session,
    /// The `ClientFinished` frame to send before any data.
    pub finished: Vec<u8>,
    /// The proxy's wall clock at the time it answered, ms since the epoch.
    pub server_time_ms: u64,
    /// The identity the proxy proved it holds.
    pub proxy: Identity,
}

impl ClientHandshake {
    /// Builds the `ClientHello` frame for `key`, this agent's identity
    /// `agent` and its name, at wall-clock time `now_ms`, asking for the
    /// simple-path suite that suits this CPU ([`SimpleSuite::for_this_cpu`]).
    pub fn start(
        key: &AccessKey,
        agent: &StaticKey,
        name: &str,
        now_ms: u64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<(ExpectServerHello, Vec<u8>), HandshakeError> {
        Self::start_with_suite(key, agent, name, SimpleSuite::for_this_cpu(), now_ms, rng)
    }

    /// [`ClientHandshake::start`] with the simple-path `suite` chosen by the caller.
    pub fn start_with_suite(
        key: &AccessKey,
        agent: &StaticKey,
        name: &str,
        suite: SimpleSuite,
        now_ms: u64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<(ExpectServerHello, Vec<u8>), HandshakeError> {
        if name.is_empty() || name.len() > MAX_AGENT_NAME {
            return Err(HandshakeError::BadAgentName);
        }
        let ephemeral = EphemeralKey::generate(rng);
        let e_a = ephemeral.public();
        let project = key.project().as_str();

        let mut clear = Vec::with_capacity(1 + project.len() + 44);
        put_short_str(&mut clear, project);
        clear.extend_from_slice(&key.key_id().0.to_be_bytes());
        clear.extend_from_slice(&now_ms.to_be_bytes());
        clear.extend_from_slice(&e_a);

        let mut body = Vec::with_capacity(1 + name.len() + 32 + 1 + TAG_LEN);
        put_short_str(&mut body, name);
        body.extend_from_slice(agent.identity().as_bytes());
        body.push(suite.to_byte());

        let total = payload_len(&clear) + payload_len(&body) + TAG_LEN as u32;
        let header = Frame::header(FrameKind::ClientHello, total);
        let aad = [&header[..], &clear].concat();
        Aead::new(&hello_key(key.secret(), &e_a, project, key.key_id())).seal(
            &ZERO_NONCE,
            &aad,
            &mut body,
        );
        let mut payload = clear;
        payload.extend_from_slice(&body);
        let frame = Frame { kind: FrameKind::ClientHello, payload }.to_bytes();
        let state = ExpectServerHello {
            psk: key.secret().clone(),
            agent: agent.clone(),
            ephemeral,
            suite,
            client_hello: frame.clone(),
        };
        Ok((state, frame))
    }
}

impl ExpectServerHello {
    /// Processes the proxy's answer: a `ServerHello`, or a `Close` saying
    /// why not. With `pinned`, a proxy proving any other identity is
    /// refused before anything more is sent or derived.
    pub fn receive(
        self,
        frame: Frame,
        pinned: Option<&Identity>,
    ) -> Result<ClientEstablished, HandshakeError> {
        match frame.kind {
            FrameKind::ServerHello => {}
            FrameKind::Close => {
                return Err(HandshakeError::Refused(Close::decode(&frame.payload)?));
            }
            got => {
                return Err(HandshakeError::UnexpectedFrame {
                    expected: FrameKind::ServerHello,
                    got,
                });
            }
        }
        let server_hello = frame.to_bytes();
        let header = frame.header_bytes();
        let mut r = Reader::new(&frame.payload);
        let e_p: [u8; 32] = r.array()?;
        let mut id_box = r.take(32 + TAG_LEN)?.to_vec();
        let mut keys_box = r.rest().to_vec();

        let h2 = sha256(&[&self.client_hello, &e_p]);
        let ee = self.ephemeral.agree(&e_p)?;
        let aad = [&header[..], &e_p].concat();
        Aead::new(&identity_key(&self.psk, &h2, ee.expose()))
            .open(&ZERO_NONCE, &aad, &mut id_box)
            .map_err(|_| HandshakeError::ServerNotAuthenticated)?;
        let presented = Identity::from_bytes(Reader::new(&id_box).array()?);
        if let Some(pinned) = pinned
            && *pinned != presented
        {
            return Err(HandshakeError::IdentityMismatch { pinned: *pinned, presented });
        }

        let es = self.ephemeral.agree(presented.as_bytes())?;
        let aad = [&header[..], &frame.payload[..32 + 32 + TAG_LEN]].concat();
        Aead::new(&server_key(&self.psk, &h2, ee.expose(), es.expose()))
            .open(&ZERO_NONCE, &aad, &mut keys_box)
            .map_err(|_| HandshakeError::ServerNotAuthenticated)?;
        let body = zeroize::Zeroizing::new(keys_box);
        let mut r = Reader::new(&body);
        let session_id = r.u64()?;
        let strong = Key256::new(r.array()?);
        let simple = Key256::new(r.array()?);
        let server_time_ms = r.u64()?;
        r.finish()?;

        let se = self.agent.agree(&e_p)?;
        let th2 = sha256(&[&self.client_hello, &server_hello]);
        let master = Master::derive(&self.psk, &th2, [ee.expose(), es.expose(), se.expose()]);
        let mut session =
            master.into_session(&th2, (&strong, &simple), self.suite, session_id, Role::Client);
        let finished = session
            .seal(FrameKind::ClientFinished, &th2)
            .map_err(|_| HandshakeError::ConfirmationFailed)?;
        Ok(ClientEstablished { session, finished, server_time_ms, proxy: presented })
    }
}
