//! The client half of RFC 4252: request the service, probe with "none" (§5.2) to learn the
//! methods, then sign with each identity in turn (§7) until one is accepted.

use super::{METHOD_NONE, METHOD_PUBLICKEY, SERVICE_CONNECTION, SERVICE_USERAUTH, signed_data};
use crate::error::Error;
use crate::transport::Tx;
use crate::transport::hostkey::{ED25519, Ed25519Key};
use crate::wire::{MsgType, Reader, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    AwaitServiceAccept,
    AwaitMethods,
    AwaitPublicKeyResult,
    Done,
}

/// What an auth message changed, for the connection to report.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientAuthEvent {
    None,
    Banner(String),
    /// A method succeeded partially (§5.1); more are needed.
    PartialSuccess,
    Success,
}

#[derive(Debug)]
pub struct ClientAuth {
    user: String,
    identities: Vec<Ed25519Key>,
    next_identity: usize,
    step: Step,
}

impl ClientAuth {
    pub fn new(user: String, identities: Vec<Ed25519Key>) -> Self {
        Self {
            user,
            identities,
            next_identity: 0,
            step: Step::AwaitServiceAccept,
        }
    }

    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// After the first key exchange: ask for the user authentication service (RFC 4253 §10).
    pub fn start(&mut self, tx: &mut Tx) {
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::SERVICE_REQUEST.0)
                .string(SERVICE_USERAUTH);
        });
    }

    pub fn on_message(
        &mut self,
        payload: &[u8],
        tx: &mut Tx,
        session_id: &[u8],
    ) -> Result<ClientAuthEvent, Error> {
        let msg = MsgType(payload.first().copied().unwrap_or(0));
        let mut r = Reader::new(payload.get(1..).unwrap_or_default());
        match (&self.step, msg) {
            (Step::AwaitServiceAccept, MsgType::SERVICE_ACCEPT) => {
                if r.string()? != SERVICE_USERAUTH.as_bytes() {
                    return Err(Error::ServiceNotAvailable(SERVICE_USERAUTH.into()));
                }
                let user = self.user.clone();
                tx.send(|b| {
                    Writer::new(b)
                        .u8(MsgType::USERAUTH_REQUEST.0)
                        .string(&user)
                        .string(SERVICE_CONNECTION)
                        .string(METHOD_NONE);
                });
                self.step = Step::AwaitMethods;
                Ok(ClientAuthEvent::None)
            }
            (Step::AwaitMethods | Step::AwaitPublicKeyResult, MsgType::USERAUTH_BANNER) => {
                // RFC 4252 §5.4; the text is the server's, shown to the user as is.
                let text = String::from_utf8_lossy(r.string()?)
                    .chars()
                    .take(4096)
                    .collect();
                Ok(ClientAuthEvent::Banner(text))
            }
            (Step::AwaitMethods | Step::AwaitPublicKeyResult, MsgType::USERAUTH_FAILURE) => {
                let methods = r.name_list("authentications that can continue")?;
                let partial = r.bool()?;
                if methods.contains(METHOD_PUBLICKEY) && self.sign_next(tx, session_id) {
                    return Ok(if partial {
                        ClientAuthEvent::PartialSuccess
                    } else {
                        ClientAuthEvent::None
                    });
                }
                Err(Error::AuthFailed {
                    methods: methods.0.to_owned(),
                })
            }
            (Step::AwaitMethods | Step::AwaitPublicKeyResult, MsgType::USERAUTH_SUCCESS) => {
                self.step = Step::Done;
                Ok(ClientAuthEvent::Success)
            }
            (Step::Done, m) if m.is_userauth() => Ok(ClientAuthEvent::None),
            (_, msg) => Err(Error::Unexpected {
                msg,
                state: "during user authentication",
            }),
        }
    }

    /// Sends a signed publickey request with the next identity; false when none remain.
    fn sign_next(&mut self, tx: &mut Tx, session_id: &[u8]) -> bool {
        let Some(key) = self.identities.get(self.next_identity) else {
            return false;
        };
        self.next_identity += 1;
        let blob = key.public().blob();
        let data = signed_data(session_id, &self.user, ED25519, &blob);
        let signature = key.sign_blob(&data);
        let user = &self.user;
        tx.send(|b| {
            let mut w = Writer::new(b);
            w.u8(MsgType::USERAUTH_REQUEST.0)
                .string(user)
                .string(SERVICE_CONNECTION)
                .string(METHOD_PUBLICKEY);
            w.bool(true)
                .string(ED25519)
                .string(&blob)
                .string(&signature);
        });
        self.step = Step::AwaitPublicKeyResult;
        true
    }
}
