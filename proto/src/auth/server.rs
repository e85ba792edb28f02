//! The server half of RFC 4252. A signed publickey request is verified here first; only then
//! is the application asked whether that key (the one that signed) may log in as the user.
//! A query without a signature (§7, "PK_OK") is answered but never authenticates.
//!
//! An OpenSSH user certificate ("ssh-ed25519-cert-v01@openssh.com", PROTOCOL.certkeys) is
//! verified the same way — the signature must be by the certified key — and handed to the
//! application with the question. Whether its CA is trusted, and everything else the
//! certificate says, is the application's decision (`keys::certificate`).

use super::{METHOD_PUBLICKEY, SERVICE_CONNECTION, SERVICE_USERAUTH, signed_data};
use crate::error::Error;
use crate::transport::Tx;
use crate::transport::hostkey::{ED25519, ED25519_CERT, PublicKey};
use crate::wire::{MsgType, Reader, Writer};

/// Longest user name we accept; longer requests fail without further work.
const MAX_USER_LEN: usize = 256;

/// A decision the application must make (see `Event::AuthorizeKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQuestion {
    pub user: String,
    /// The key that signed (for a certificate: the certified key).
    pub key: PublicKey,
    /// The certificate the key came in, not yet checked against any CA.
    pub certificate: Option<Box<ssh_key::Certificate>>,
    /// True when the request carried a valid signature by `key`: accepting authenticates.
    pub signed: bool,
}

/// A question waiting for its answer, with what PK_OK must echo (RFC 4252 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    question: KeyQuestion,
    alg: &'static str,
    blob: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    AwaitServiceRequest,
    AwaitRequest,
    Asking(Box<Pending>),
    Done { user: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum ServerAuthEvent {
    None,
    Ask(Box<KeyQuestion>),
    Success { user: String },
}

#[derive(Debug)]
pub struct ServerAuth {
    step: Step,
    failures: u32,
    max_failures: u32,
}

impl ServerAuth {
    pub fn new(max_failures: u32) -> Self {
        Self {
            step: Step::AwaitServiceRequest,
            failures: 0,
            max_failures,
        }
    }

    pub fn user(&self) -> Option<&str> {
        match &self.step {
            Step::Done { user } => Some(user),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.step, Step::Done { .. })
    }

    pub fn on_message(
        &mut self,
        payload: &[u8],
        tx: &mut Tx,
        session_id: &[u8],
    ) -> Result<ServerAuthEvent, Error> {
        let msg = MsgType(payload.first().copied().unwrap_or(0));
        let mut r = Reader::new(payload.get(1..).unwrap_or_default());
        match (&self.step, msg) {
            (Step::AwaitServiceRequest, MsgType::SERVICE_REQUEST) => {
                let service = r.string()?;
                if service != SERVICE_USERAUTH.as_bytes() {
                    return Err(Error::ServiceNotAvailable(
                        String::from_utf8_lossy(service).chars().take(64).collect(),
                    ));
                }
                tx.send(|b| {
                    Writer::new(b)
                        .u8(MsgType::SERVICE_ACCEPT.0)
                        .string(SERVICE_USERAUTH);
                });
                self.step = Step::AwaitRequest;
                Ok(ServerAuthEvent::None)
            }
            (Step::AwaitRequest, MsgType::USERAUTH_REQUEST) => {
                self.on_request(&mut r, tx, session_id)
            }
            // RFC 4252 §5.1: requests after success are silently ignored.
            (Step::Done { .. }, MsgType::USERAUTH_REQUEST) => Ok(ServerAuthEvent::None),
            (_, msg) => Err(Error::Unexpected {
                msg,
                state: "during user authentication",
            }),
        }
    }

    fn on_request(
        &mut self,
        r: &mut Reader<'_>,
        tx: &mut Tx,
        session_id: &[u8],
    ) -> Result<ServerAuthEvent, Error> {
        let user = r.string()?;
        let service = r.string()?;
        let method = r.string()?;
        if service != SERVICE_CONNECTION.as_bytes() {
            return Err(Error::ServiceNotAvailable(
                String::from_utf8_lossy(service).chars().take(64).collect(),
            ));
        }
        let Ok(user) = std::str::from_utf8(user) else {
            return self.fail(tx, false);
        };
        if user.len() > MAX_USER_LEN || method != METHOD_PUBLICKEY.as_bytes() {
            // "none" probes and unsupported methods: list what we support (§5.2). A "none"
            // probe is not counted as a failed attempt, as in OpenSSH.
            return self.fail(tx, method != b"none");
        }
        let signed = r.bool()?;
        let alg = r.string()?;
        let blob = r.string()?;
        let (alg, key, certificate) = if alg == ED25519.as_bytes() {
            let Ok(key) = PublicKey::from_blob(blob) else {
                return self.fail(tx, true);
            };
            (ED25519, key, None)
        } else if alg == ED25519_CERT.as_bytes() {
            let Some((key, cert)) = certified_ed25519(blob) else {
                return self.fail(tx, true);
            };
            (ED25519_CERT, key, Some(Box::new(cert)))
        } else {
            return self.fail(tx, true);
        };
        if signed {
            let signature = r.string()?;
            r.finish("USERAUTH_REQUEST")?;
            let data = signed_data(session_id, user, alg, blob);
            if key.verify_blob(&data, signature).is_err() {
                return self.fail(tx, true);
            }
        } else {
            r.finish("USERAUTH_REQUEST")?;
        }
        let question = KeyQuestion {
            user: user.to_owned(),
            key,
            certificate,
            signed,
        };
        self.step = Step::Asking(Box::new(Pending {
            question: question.clone(),
            alg,
            blob: blob.to_vec(),
        }));
        Ok(ServerAuthEvent::Ask(Box::new(question)))
    }

    /// The application's answer to the pending `KeyQuestion`.
    pub fn answer(&mut self, accept: bool, tx: &mut Tx) -> Result<ServerAuthEvent, Error> {
        let Step::Asking(pending) = std::mem::replace(&mut self.step, Step::AwaitRequest) else {
            return Ok(ServerAuthEvent::None);
        };
        let Pending {
            question: q,
            alg,
            blob,
        } = *pending;
        if !accept {
            return self.fail(tx, q.signed);
        }
        if q.signed {
            tx.send(|b| b.push(MsgType::USERAUTH_SUCCESS.0));
            self.step = Step::Done {
                user: q.user.clone(),
            };
            return Ok(ServerAuthEvent::Success { user: q.user });
        }
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::USERAUTH_PK_OK.0)
                .string(alg)
                .string(&blob);
        });
        Ok(ServerAuthEvent::None)
    }

    fn fail(&mut self, tx: &mut Tx, counts: bool) -> Result<ServerAuthEvent, Error> {
        if counts {
            self.failures += 1;
            if self.failures >= self.max_failures {
                return Err(Error::TooManyAuthFailures);
            }
        }
        self.step = Step::AwaitRequest;
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::USERAUTH_FAILURE.0)
                .name_list(&[METHOD_PUBLICKEY])
                .bool(false);
        });
        Ok(ServerAuthEvent::None)
    }
}

/// A certificate blob whose certified key is ed25519: the key and the certificate.
fn certified_ed25519(blob: &[u8]) -> Option<(PublicKey, ssh_key::Certificate)> {
    let cert = crate::keys::certificate::parse(blob).ok()?;
    let key =
        PublicKey::from_ssh_key(&ssh_key::PublicKey::new(cert.public_key().clone(), "")).ok()?;
    Some((key, cert))
}
