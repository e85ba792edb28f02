//! One key exchange, from KEXINIT to NEWKEYS (RFC 4253 §7, §8 as RFC 8731 specialises it),
//! for either role. Owns the ephemeral key, the exchange hash and the derived keys until the
//! transport installs them; drops (and so zeroizes) them afterwards.

use super::Role;
use super::Tx;
use super::cipher::{CipherAlg, OpeningKey, SealingKey};
use super::hostkey::{Ed25519Key, HostKey};
use super::kex::hash::{self, HashAlg, HashInputs, HashValue, SharedSecret};
use super::kex::method::ClientSecret;
use super::kex::{self, KexAlg, KexInit, Negotiated, Preferences};
use super::version::OUR_IDENT;
use crate::error::Error;
use crate::wire::{MsgType, Reader, Writer};

/// What the transport must do next after a kex message.
#[derive(Debug)]
pub enum KexOutcome {
    Continue,
    /// Client: the server proved possession of this host key; the verdict is up to the caller.
    VerifyHostKey(HostKey),
    /// Server: NEWKEYS has been sent; install the sealing key.
    SentNewKeys,
}

#[derive(Debug)]
enum Step {
    AwaitPeerKexInit,
    /// Our secrets and Q_C, which the exchange hash needs.
    ClientAwaitReply(ClientSecret, Vec<u8>),
    ServerAwaitInit,
    Keyed,
}

#[derive(Debug)]
pub struct Exchange {
    role: Role,
    initial: bool,
    our_kexinit: Vec<u8>,
    peer_kexinit: Option<Vec<u8>>,
    peer_ident: String,
    negotiated: Option<Negotiated>,
    step: Step,
    hash: Option<HashValue>,
    peer_host_key: Option<HostKey>,
    sealing: Option<SealingKey>,
    opening: Option<OpeningKey>,
    newkeys_sent: bool,
    newkeys_received: bool,
}

impl Exchange {
    /// Sends our KEXINIT and returns the exchange waiting for the peer's.
    pub fn start(
        role: Role,
        prefs: Preferences,
        initial: bool,
        cookie: [u8; 16],
        tx: &mut Tx,
        peer_ident: Option<String>,
    ) -> Self {
        let our_kexinit = kex::build_kexinit(&prefs, role == Role::Server, initial, cookie);
        tx.in_kex = true;
        tx.seal(|b| b.extend_from_slice(&our_kexinit));
        Self {
            role,
            initial,
            our_kexinit,
            peer_kexinit: None,
            peer_ident: peer_ident.unwrap_or_default(),
            negotiated: None,
            step: Step::AwaitPeerKexInit,
            hash: None,
            peer_host_key: None,
            sealing: None,
            opening: None,
            newkeys_sent: false,
            newkeys_received: false,
        }
    }

    pub fn peer_kexinit_seen(&self) -> bool {
        self.peer_kexinit.is_some()
    }

    /// Strict kex applies to the initial exchange when both sides offered it.
    pub fn strict(&self) -> bool {
        self.initial && self.negotiated.is_some_and(|n| n.strict)
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn peer_host_key(&self) -> Option<&HostKey> {
        self.peer_host_key.as_ref()
    }

    /// H, once the method's reply has been processed.
    pub fn exchange_hash(&self) -> Option<HashValue> {
        self.hash
    }

    pub fn newkeys_received(&self) -> bool {
        self.newkeys_received
    }

    /// The peer's KEXINIT: negotiate, and as client send our ephemeral key.
    pub fn on_kexinit(
        &mut self,
        payload: Vec<u8>,
        tx: &mut Tx,
        peer_ident: &str,
    ) -> Result<KexOutcome, Error> {
        if self.peer_kexinit.is_some() {
            return Err(Error::Unexpected {
                msg: MsgType::KEXINIT,
                state: "twice in one key exchange",
            });
        }
        self.peer_ident = peer_ident.to_owned();
        let ours = KexInit::parse(&self.our_kexinit)?;
        let theirs = KexInit::parse(&payload)?;
        let negotiated = kex::negotiate(self.role == Role::Server, &ours, &theirs)?;
        self.negotiated = Some(negotiated);
        self.peer_kexinit = Some(payload);
        match self.role {
            Role::Client => {
                let (secret, q_c) = negotiated.kex.client_start(&mut tx.rng);
                tx.seal(|b| {
                    Writer::new(b).u8(MsgType::KEX_ECDH_INIT.0).string(&q_c);
                });
                self.step = Step::ClientAwaitReply(secret, q_c);
            }
            Role::Server => self.step = Step::ServerAwaitInit,
        }
        Ok(KexOutcome::Continue)
    }

    /// A key-exchange-method message (30–49).
    pub fn on_message(
        &mut self,
        payload: &[u8],
        tx: &mut Tx,
        host_key: Option<&Ed25519Key>,
        session_id: Option<&HashValue>,
    ) -> Result<KexOutcome, Error> {
        let msg = MsgType(payload.first().copied().unwrap_or(0));
        let mut r = Reader::new(payload.get(1..).unwrap_or_default());
        match (std::mem::replace(&mut self.step, Step::Keyed), msg) {
            (Step::ClientAwaitReply(secret, client_public), MsgType::KEX_ECDH_REPLY) => {
                let host_key_blob = r.string()?;
                let server_public = r.string()?;
                let signature = r.string()?;
                r.finish("KEX_ECDH_REPLY")?;
                let Some(alg) = self.negotiated.map(|n| n.host_key) else {
                    return Err(Error::Unexpected {
                        msg,
                        state: "before algorithms were negotiated",
                    });
                };
                let key =
                    HostKey::from_blob(alg, host_key_blob).map_err(Error::HostKeySignature)?;
                let k = secret.finish(server_public)?;
                let h = self.hash_with(host_key_blob, &client_public, server_public, &k);
                self.hash = Some(h);
                key.verify(alg, h.as_bytes(), signature)
                    .map_err(Error::HostKeySignature)?;
                self.derive(&k, session_id);
                self.peer_host_key = Some(key.clone());
                Ok(KexOutcome::VerifyHostKey(key))
            }
            (Step::ServerAwaitInit, MsgType::KEX_ECDH_INIT) => {
                let client_public = r.string()?;
                r.finish("KEX_ECDH_INIT")?;
                let Some(host_key) = host_key else {
                    return Err(Error::Closed("server has no host key".into()));
                };
                let kex = self.negotiated.map_or(KexAlg::Curve25519Sha256, |n| n.kex);
                let (server_public, k) = kex.server_answer(&mut tx.rng, client_public)?;
                let blob = host_key.public().blob();
                let h = self.hash_with(&blob, client_public, &server_public, &k);
                self.hash = Some(h);
                let signature = host_key.sign_blob(h.as_bytes());
                tx.seal(|b| {
                    Writer::new(b)
                        .u8(MsgType::KEX_ECDH_REPLY.0)
                        .string(&blob)
                        .string(&server_public)
                        .string(&signature);
                });
                self.derive(&k, session_id);
                self.send_newkeys(tx)?;
                Ok(KexOutcome::SentNewKeys)
            }
            (_, msg) => Err(Error::Unexpected {
                msg,
                state: "at this point of the key exchange",
            }),
        }
    }

    fn hash_alg(&self) -> HashAlg {
        self.negotiated
            .map_or(HashAlg::Sha256, |n| n.kex.hash_alg())
    }

    fn hash_with(
        &self,
        host_key_blob: &[u8],
        client_public: &[u8],
        server_public: &[u8],
        k: &SharedSecret,
    ) -> HashValue {
        let ours = OUR_IDENT.as_bytes();
        let theirs = self.peer_ident.as_bytes();
        let peer_kexinit = self.peer_kexinit.as_deref().unwrap_or_default();
        let (client_ident, server_ident, client_kexinit, server_kexinit) = match self.role {
            Role::Client => (ours, theirs, &self.our_kexinit[..], peer_kexinit),
            Role::Server => (theirs, ours, peer_kexinit, &self.our_kexinit[..]),
        };
        hash::exchange_hash(
            self.hash_alg(),
            &HashInputs {
                client_ident,
                server_ident,
                client_kexinit,
                server_kexinit,
                host_key_blob,
                client_public,
                server_public,
            },
            k,
        )
    }

    /// RFC 4253 §7.2: IVs 'A'/'B', keys 'C'/'D' (client to server first). Integrity keys 'E'
    /// and 'F' are not derived: every cipher we negotiate is an AEAD.
    fn derive(&mut self, k: &SharedSecret, session_id: Option<&HashValue>) {
        let (Some(n), Some(h)) = (self.negotiated, self.hash) else {
            return;
        };
        let hash_alg = self.hash_alg();
        let sid = session_id.unwrap_or(&h).as_bytes();
        let h = h.as_bytes();
        let make = |alg: CipherAlg, iv: u8, key: u8| {
            let iv = hash::derive_key(hash_alg, k, h, iv, sid, alg.iv_len());
            let key = hash::derive_key(hash_alg, k, h, key, sid, alg.key_len());
            (key, iv)
        };
        let (c2s_key, c2s_iv) = make(n.cipher_c2s, b'A', b'C');
        let (s2c_key, s2c_iv) = make(n.cipher_s2c, b'B', b'D');
        match self.role {
            Role::Client => {
                self.sealing = Some(SealingKey::new(n.cipher_c2s, &c2s_key, &c2s_iv));
                self.opening = Some(OpeningKey::new(n.cipher_s2c, &s2c_key, &s2c_iv));
            }
            Role::Server => {
                self.sealing = Some(SealingKey::new(n.cipher_s2c, &s2c_key, &s2c_iv));
                self.opening = Some(OpeningKey::new(n.cipher_c2s, &c2s_key, &c2s_iv));
            }
        }
    }

    pub fn send_newkeys(&mut self, tx: &mut Tx) -> Result<(), Error> {
        if self.sealing.is_none() {
            return Err(Error::Unexpected {
                msg: MsgType::NEWKEYS,
                state: "before keys were derived",
            });
        }
        tx.seal(|b| b.push(MsgType::NEWKEYS.0));
        self.newkeys_sent = true;
        Ok(())
    }

    pub fn take_sealing_key(&mut self) -> Result<SealingKey, Error> {
        self.sealing.take().ok_or(Error::Unexpected {
            msg: MsgType::NEWKEYS,
            state: "before keys were derived",
        })
    }

    /// The peer's NEWKEYS: its opening key, and whether our NEWKEYS went out already.
    pub fn take_opening_key(&mut self) -> Result<(OpeningKey, bool), Error> {
        if self.newkeys_received {
            return Err(Error::Unexpected {
                msg: MsgType::NEWKEYS,
                state: "twice in one key exchange",
            });
        }
        let key = self.opening.take().ok_or(Error::Unexpected {
            msg: MsgType::NEWKEYS,
            state: "before keys were derived",
        })?;
        self.newkeys_received = true;
        Ok((key, self.newkeys_sent))
    }
}

/// RFC 8308 §3.1: server-sig-algs names the signature algorithms we accept for user auth.
pub fn build_ext_info(b: &mut Vec<u8>) {
    Writer::new(b)
        .u8(MsgType::EXT_INFO.0)
        .u32(1)
        .string("server-sig-algs")
        .string(super::hostkey::ED25519);
}

/// Parses SSH_MSG_EXT_INFO (RFC 8308 §2.3) and returns server-sig-algs, if present.
pub fn parse_ext_info(payload: &[u8]) -> Result<Vec<String>, Error> {
    let mut r = Reader::new(payload.get(1..).unwrap_or_default());
    let count = r.u32()?;
    let mut algs = Vec::new();
    for _ in 0..count {
        let name = r.string()?;
        let value = r.string()?;
        if name == b"server-sig-algs" {
            let text = String::from_utf8_lossy(value);
            algs = text.split(',').take(64).map(str::to_owned).collect();
        }
    }
    Ok(algs)
}
