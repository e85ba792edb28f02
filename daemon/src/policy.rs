//! Trust decisions for the server end: user keys checked against authorized_keys, read fresh
//! at each attempt as sshd does, with `%u` for per-user files. The options of the line that
//! authorized the key (the key that signed) are kept for the connection, so every later
//! request is checked against them.
//!
//! OpenSSH user certificates are accepted from a CA listed in `trusted_user_ca_keys`
//! (sshd's `TrustedUserCAKeys`: a principal must be the user name) or on an authorized_keys
//! `cert-authority` line (a principal must be in its `principals=` list, or be the user name).
//! The certificate must pass `keys::certificate::check` (signature, user type, validity,
//! `source-address` against the peer, no other critical option), and its extensions narrow
//! the grant: without `permit-port-forwarding` there is no forwarding.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sshvpn_proto::PublicKey;
use sshvpn_proto::keys::certificate::{self, Requirements};
use sshvpn_proto::keys::{AuthorizedKey, KeyOptions, authorized_keys};
use sshvpn_proto::ssh_key::Certificate;
use sshvpn_proto::ssh_key::certificate::CertType;

use crate::driver::Policy;

/// Where authorized keys come from.
#[derive(Debug, Clone)]
pub enum AuthorizedKeys {
    /// A path; `%u` stands for the user name, `%%` for a percent sign.
    File(String),
    /// A fixed list (tests, embedding).
    List(Vec<AuthorizedKey>),
}

impl AuthorizedKeys {
    fn load(&self, user: &str) -> Result<Vec<AuthorizedKey>, String> {
        match self {
            AuthorizedKeys::List(keys) => Ok(keys.clone()),
            AuthorizedKeys::File(pattern) => {
                // A user name that could climb out of the directory never reaches the disk.
                if user.is_empty() || user.contains('/') || user.starts_with('.') {
                    return Err(format!("refusing user name {user:?}"));
                }
                let path = PathBuf::from(pattern.replace("%u", user).replace("%%", "%"));
                match authorized_keys::read_file(&path) {
                    Ok((keys, errors)) => {
                        for e in errors {
                            tracing::warn!(file = %path.display(), error = %e, "authorized_keys line ignored");
                        }
                        Ok(keys)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

/// CA keys trusted to sign user certificates for any user named among the principals
/// (sshd's `TrustedUserCAKeys`). The file holds one public key per line, as authorized_keys
/// without options; it is read at each attempt.
#[derive(Debug, Clone)]
pub enum TrustedUserCaKeys {
    File(PathBuf),
    List(Vec<sshvpn_proto::ssh_key::PublicKey>),
}

impl TrustedUserCaKeys {
    fn load(&self) -> Vec<sshvpn_proto::ssh_key::PublicKey> {
        match self {
            TrustedUserCaKeys::List(keys) => keys.clone(),
            TrustedUserCaKeys::File(path) => match authorized_keys::read_file(path) {
                Ok((keys, errors)) => {
                    for e in errors {
                        tracing::warn!(file = %path.display(), error = %e, "trusted_user_ca_keys line ignored");
                    }
                    keys.into_iter().map(|k| k.key).collect()
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read trusted_user_ca_keys");
                    Vec::new()
                }
            },
        }
    }
}

/// What the connection's user may do, fixed at authentication.
pub type Grant = Arc<Mutex<Option<KeyOptions>>>;

/// A server connection's policy. One per connection: it knows the peer's address (for
/// `from=`) and records the options of the key that logged in.
#[derive(Debug)]
pub struct ServerPolicy {
    pub keys: AuthorizedKeys,
    pub trusted_user_ca_keys: Option<TrustedUserCaKeys>,
    pub peer: Option<IpAddr>,
    pub grant: Grant,
}

impl ServerPolicy {
    pub fn new(keys: AuthorizedKeys, peer: Option<IpAddr>) -> Self {
        Self {
            keys,
            trusted_user_ca_keys: None,
            peer,
            grant: Grant::default(),
        }
    }

    /// A plain key: the first authorized_keys line for it whose restrictions the client
    /// satisfies (as sshd). `cert-authority` lines name CAs, not login keys.
    fn authorize_plain(
        &self,
        keys: &[AuthorizedKey],
        key: &PublicKey,
        now: i64,
    ) -> Option<KeyOptions> {
        let ssh_key = key.to_ssh_key();
        keys.iter()
            .filter(|k| k.matches(&ssh_key) && !k.options.is_cert_authority())
            .find(|k| self.line_admits(k, now))
            .map(|k| k.options.clone())
    }

    fn line_admits(&self, line: &AuthorizedKey, now: i64) -> bool {
        let from_ok = match (line.options.from(), self.peer) {
            (None, _) => true,
            (Some(_), Some(addr)) => line.options.from_allows(addr, None),
            (Some(_), None) => false,
        };
        from_ok && !line.options.is_expired(now, 0)
    }

    /// A user certificate: its CA must be trusted by `trusted_user_ca_keys` or a
    /// `cert-authority` line, and the certificate must pass every check for one of the
    /// principals that source allows.
    fn authorize_certificate(
        &self,
        user: &str,
        keys: &[AuthorizedKey],
        cert: &Certificate,
        now: i64,
    ) -> Option<KeyOptions> {
        let ca = cert.signature_key();
        let unix_now = u64::try_from(now).unwrap_or(0);
        let check = |principal: &str| {
            certificate::check(
                cert,
                &Requirements {
                    cert_type: CertType::User,
                    principal,
                    now: unix_now,
                    peer: self.peer,
                },
            )
        };
        let ca_fingerprint = certificate::ca_fingerprint(cert);
        let trusted = self
            .trusted_user_ca_keys
            .as_ref()
            .is_some_and(|cas| cas.load().iter().any(|k| k.key_data() == ca));
        if trusted {
            match check(user) {
                Ok(()) => {
                    let mut options = KeyOptions::default();
                    options.restrict_to_certificate(cert);
                    return Some(options);
                }
                Err(reason) => {
                    tracing::info!(user, ca = %ca_fingerprint, %reason, "certificate refused (trusted_user_ca_keys)");
                }
            }
        }
        for line in keys
            .iter()
            .filter(|k| k.options.is_cert_authority() && k.key.key_data() == ca)
        {
            if !self.line_admits(line, now) {
                continue;
            }
            let names: Vec<&str> = match line.options.principals() {
                Some(list) => list.iter().map(String::as_str).collect(),
                None => vec![user],
            };
            let mut last = None;
            for name in names {
                match check(name) {
                    Ok(()) => {
                        let mut options = line.options.clone();
                        options.restrict_to_certificate(cert);
                        return Some(options);
                    }
                    Err(reason) => last = Some(reason),
                }
            }
            if let Some(reason) = last {
                tracing::info!(user, ca = %ca_fingerprint, line = line.line, %reason, "certificate refused (cert-authority line)");
            }
        }
        if !trusted {
            tracing::info!(user, ca = %ca_fingerprint, "certificate from a CA that is not trusted");
        }
        None
    }
}

impl Policy for ServerPolicy {
    fn verify_host_key(&mut self, _key: &sshvpn_proto::HostKey) -> bool {
        false
    }

    fn authorize_key(
        &mut self,
        user: &str,
        key: &PublicKey,
        certificate: Option<&Certificate>,
        signed: bool,
    ) -> bool {
        let keys = match self.keys.load(user) {
            Ok(keys) => keys,
            // With trusted_user_ca_keys a user may have no authorized_keys file at all.
            Err(error) if certificate.is_some() && self.trusted_user_ca_keys.is_some() => {
                tracing::debug!(user, %error, "no authorized keys");
                Vec::new()
            }
            Err(error) => {
                tracing::info!(user, %error, "no authorized keys");
                return false;
            }
        };
        let now = i64::try_from(crate::trust::unix_now()).unwrap_or(i64::MAX);
        let options = match certificate {
            Some(cert) => self.authorize_certificate(user, &keys, cert, now),
            None => self.authorize_plain(&keys, key, now),
        };
        let ok = options.is_some();
        tracing::info!(user, key = %key.fingerprint(), certificate = certificate.is_some(), signed, accepted = ok, "publickey");
        if let (true, Some(options), Ok(mut grant)) = (signed, options, self.grant.lock()) {
            *grant = Some(options);
        }
        ok
    }
}
