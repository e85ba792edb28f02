//! The client half of RFC 4252: request the service, probe with "none" (§5.2) to learn the
//! methods, then try each identity in turn (§7). A local key signs at once. A key held
//! elsewhere (ssh-agent) is first offered without a signature, and only once the server
//! answers PK_OK is the holder asked to sign: the caller gets a `SignRequest` and resumes
//! with `signature`. A local key with an OpenSSH user certificate authenticates as
//! "ssh-ed25519-cert-v01@openssh.com" with the certificate as its public key blob
//! (PROTOCOL.certkeys); the signature is the key's own "ssh-ed25519" signature.

use super::{METHOD_NONE, METHOD_PUBLICKEY, SERVICE_CONNECTION, SERVICE_USERAUTH, signed_data};
use crate::error::Error;
use crate::transport::Tx;
use crate::transport::hostkey::{ED25519, ED25519_CERT, Ed25519Key, KeyBlobError, PublicKey};
use crate::wire::{MsgType, Reader, Writer};

/// A key to authenticate with.
#[derive(Debug, Clone)]
pub enum Identity {
    /// The private key is here.
    Local(Ed25519Key),
    /// Only the public key is here; signatures come from elsewhere (ssh-agent).
    External(PublicKey),
    /// The private key is here, presented with a certificate a CA issued for it.
    Certified {
        key: Ed25519Key,
        /// The certificate blob, sent as the public key.
        certificate: Vec<u8>,
    },
}

impl Identity {
    /// `key` with its OpenSSH certificate (`id_ed25519-cert.pub`). The certificate must
    /// certify this very key, so a mismatched pair fails here and not at the server.
    pub fn certified(
        key: Ed25519Key,
        certificate: &ssh_key::Certificate,
    ) -> Result<Self, KeyBlobError> {
        let certified = PublicKey::from_ssh_key(&ssh_key::PublicKey::new(
            certificate.public_key().clone(),
            "",
        ))?;
        if certified != key.public() {
            return Err(KeyBlobError::CertificateKeyMismatch);
        }
        let blob = ssh_key::encoding::Encode::encode_vec(certificate)
            .map_err(|_| KeyBlobError::CertificateKeyMismatch)?;
        Ok(Identity::Certified {
            key,
            certificate: blob,
        })
    }
}

impl From<Ed25519Key> for Identity {
    fn from(key: Ed25519Key) -> Self {
        Identity::Local(key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    AwaitServiceAccept,
    AwaitMethods,
    /// An external key was offered without a signature.
    AwaitPkOk,
    /// The external key was accepted; waiting for its holder's signature.
    AwaitSignature,
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
    /// Sign `data` with `key` and call `ClientAuth::signature`.
    SignRequest {
        key: PublicKey,
        data: Vec<u8>,
    },
    Success,
}

#[derive(Debug)]
pub struct ClientAuth {
    user: String,
    identities: Vec<Identity>,
    next_identity: usize,
    step: Step,
}

impl ClientAuth {
    pub fn new(user: String, identities: Vec<Identity>) -> Self {
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
        let waiting = matches!(
            self.step,
            Step::AwaitMethods | Step::AwaitPkOk | Step::AwaitPublicKeyResult
        );
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
            (_, MsgType::USERAUTH_BANNER) if waiting => {
                // RFC 4252 §5.4; the text is the server's, shown to the user as is.
                let text = String::from_utf8_lossy(r.string()?)
                    .chars()
                    .take(4096)
                    .collect();
                Ok(ClientAuthEvent::Banner(text))
            }
            (Step::AwaitPkOk, MsgType::USERAUTH_PK_OK) => {
                let Some(Identity::External(key)) = self
                    .identities
                    .get(self.next_identity.wrapping_sub(1))
                    .cloned()
                else {
                    return Err(Error::Unexpected {
                        msg,
                        state: "without an offered key",
                    });
                };
                self.step = Step::AwaitSignature;
                let data = signed_data(session_id, &self.user, ED25519, &key.blob());
                Ok(ClientAuthEvent::SignRequest { key, data })
            }
            (_, MsgType::USERAUTH_FAILURE) if waiting => {
                let methods = r.name_list("authentications that can continue")?;
                let partial = r.bool()?;
                if methods.contains(METHOD_PUBLICKEY) && self.try_next(tx, session_id) {
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
            (_, MsgType::USERAUTH_SUCCESS) if waiting => {
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

    /// The signature for the pending `SignRequest`, or `None` when the holder declined: then
    /// the next identity is tried.
    pub fn signature(
        &mut self,
        signature: Option<Vec<u8>>,
        tx: &mut Tx,
        session_id: &[u8],
    ) -> Result<(), Error> {
        if self.step != Step::AwaitSignature {
            return Ok(());
        }
        let Some(Identity::External(key)) = self
            .identities
            .get(self.next_identity.wrapping_sub(1))
            .cloned()
        else {
            return Ok(());
        };
        match signature {
            Some(sig) => {
                self.send_signed(tx, ED25519, &key.blob(), &sig);
                Ok(())
            }
            None if self.try_next(tx, session_id) => Ok(()),
            None => Err(Error::AuthFailed {
                methods: METHOD_PUBLICKEY.into(),
            }),
        }
    }

    /// Tries the next identity; false when none remain.
    fn try_next(&mut self, tx: &mut Tx, session_id: &[u8]) -> bool {
        let Some(identity) = self.identities.get(self.next_identity).cloned() else {
            return false;
        };
        self.next_identity += 1;
        match identity {
            Identity::Local(key) => {
                let blob = key.public().blob();
                let signature = key.sign_blob(&signed_data(session_id, &self.user, ED25519, &blob));
                self.send_signed(tx, ED25519, &blob, &signature);
            }
            Identity::Certified { key, certificate } => {
                let data = signed_data(session_id, &self.user, ED25519_CERT, &certificate);
                let signature = key.sign_blob(&data);
                self.send_signed(tx, ED25519_CERT, &certificate, &signature);
            }
            Identity::External(key) => {
                self.send_publickey(tx, ED25519, &key.blob(), None);
                self.step = Step::AwaitPkOk;
            }
        }
        true
    }

    fn send_signed(&mut self, tx: &mut Tx, alg: &str, blob: &[u8], signature: &[u8]) {
        self.send_publickey(tx, alg, blob, Some(signature));
        self.step = Step::AwaitPublicKeyResult;
    }

    /// RFC 4252 §7: a publickey request, signed, or without a signature to ask whether the
    /// key would be accepted.
    fn send_publickey(&self, tx: &mut Tx, alg: &str, blob: &[u8], signature: Option<&[u8]>) {
        let user = &self.user;
        tx.send(|b| {
            let mut w = Writer::new(b);
            w.u8(MsgType::USERAUTH_REQUEST.0)
                .string(user)
                .string(SERVICE_CONNECTION)
                .string(METHOD_PUBLICKEY);
            w.bool(signature.is_some()).string(alg).string(blob);
            if let Some(sig) = signature {
                w.string(sig);
            }
        });
    }
}
