//! The agent's side of the handshake.

use super::{HandshakeError, MAX_AGENT_NAME, TrafficKeys, ZERO_NONCE, handshake_key, hello_key};
use crate::access_key::AccessKey;
use crate::close::Close;
use crate::codec::{Reader, put_short_str};
use crate::crypto::{Aead, EphemeralKey, sha256};
use crate::frame::{Frame, FrameKind, payload_len};
use crate::secret::Key256;
use crate::session::{Role, Session};

/// Entry point of the agent's handshake.
#[derive(Debug)]
pub struct ClientHandshake;

/// Waiting for the proxy's `ServerHello`.
#[derive(Debug)]
pub struct ExpectServerHello {
    secret: Key256,
    ephemeral: EphemeralKey,
    client_hello: Vec<u8>,
}

/// The agent's result: a session plus what the proxy told it.
#[derive(Debug)]
pub struct ClientEstablished {
    /// The sealed session.
    pub session: Session,
    /// The `ClientFinished` frame to send before any data.
    pub finished: Vec<u8>,
    /// The proxy's wall clock at the time it answered, ms since the epoch.
    pub server_time_ms: u64,
}

impl ClientHandshake {
    /// Builds the `ClientHello` frame for `key` and `agent_name` at `now_ms`.
    pub fn start(
        key: &AccessKey,
        agent_name: &str,
        now_ms: u64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<(ExpectServerHello, Vec<u8>), HandshakeError> {
        if agent_name.is_empty() || agent_name.len() > MAX_AGENT_NAME {
            return Err(HandshakeError::BadAgentName);
        }
        let ephemeral = EphemeralKey::generate(rng);
        let mut client_random = [0u8; 32];
        rng.fill_bytes(&mut client_random);
        let project = key.project().as_str();

        let mut clear = Vec::new();
        put_short_str(&mut clear, project);
        clear.extend_from_slice(&client_random);

        let mut body = Vec::new();
        body.extend_from_slice(&ephemeral.public());
        body.extend_from_slice(&now_ms.to_be_bytes());
        put_short_str(&mut body, agent_name);

        let total = payload_len(&clear) + payload_len(&body) + crate::crypto::TAG_LEN as u32;
        let header = Frame::header(FrameKind::ClientHello, total);
        let aad = [&header[..], &clear].concat();
        Aead::new(&hello_key(key.secret(), &client_random, project)).seal(
            &ZERO_NONCE,
            &aad,
            &mut body,
        );
        let mut payload = clear;
        payload.extend_from_slice(&body);
        let frame = Frame { kind: FrameKind::ClientHello, payload }.to_bytes();
        let state = ExpectServerHello {
            secret: key.secret().clone(),
            ephemeral,
            client_hello: frame.clone(),
        };
        Ok((state, frame))
    }
}

impl ExpectServerHello {
    /// Processes the proxy's answer: a `ServerHello`, or a `Close` saying why not.
    pub fn receive(self, frame: Frame) -> Result<ClientEstablished, HandshakeError> {
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
        let mut r = Reader::new(&frame.payload);
        let server_share: [u8; 32] = r.array()?;
        let server_random: [u8; 32] = r.array()?;
        let mut body = r.rest().to_vec();

        let th1 = sha256(&[&self.client_hello, &server_share, &server_random]);
        let dh = self.ephemeral.agree(&server_share)?;
        let k_hs = handshake_key(&self.secret, dh.expose(), &th1);
        let aad = [&frame.header_bytes()[..], &server_share, &server_random].concat();
        Aead::new(&k_hs)
            .open(&ZERO_NONCE, &aad, &mut body)
            .map_err(|_| HandshakeError::ServerNotAuthenticated)?;
        let body = zeroize::Zeroizing::new(body);

        let mut r = Reader::new(&body);
        let session_id = r.u64()?;
        let strong = Key256::new(r.array()?);
        let simple = Key256::new(r.array()?);
        let server_time_ms = r.u64()?;
        r.finish()?;

        let th2 = sha256(&[&self.client_hello, &server_hello]);
        let mut session =
            TrafficKeys::derive(&strong, &simple, &th2).into_session(session_id, Role::Client);
        let finished = session
            .seal(FrameKind::ClientFinished, &th2)
            .map_err(|_| HandshakeError::ConfirmationFailed)?;
        Ok(ClientEstablished { session, finished, server_time_ms })
    }
}
