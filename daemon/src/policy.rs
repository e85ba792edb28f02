//! Trust decisions for the server end: user keys checked against authorized_keys, read fresh
//! at each attempt as sshd does, with `%u` for per-user files. The options of the line that
//! authorized the key (the key that signed) are kept for the connection, so every later
//! request is checked against them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sshvpn_proto::PublicKey;
use sshvpn_proto::keys::{AuthorizedKey, KeyOptions, authorized_keys};

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

/// What the connection's user may do, fixed at authentication.
pub type Grant = Arc<Mutex<Option<KeyOptions>>>;

/// A server connection's policy. One per connection: it knows the peer's address (for
/// `from=`) and records the options of the key that logged in.
#[derive(Debug)]
pub struct ServerPolicy {
    pub keys: AuthorizedKeys,
    pub peer: Option<IpAddr>,
    pub grant: Grant,
}

impl ServerPolicy {
    pub fn new(keys: AuthorizedKeys, peer: Option<IpAddr>) -> Self {
        Self {
            keys,
            peer,
            grant: Grant::default(),
        }
    }
}

impl Policy for ServerPolicy {
    fn verify_host_key(&mut self, _key: &sshvpn_proto::HostKey) -> bool {
        false
    }

    fn authorize_key(&mut self, user: &str, key: &PublicKey, signed: bool) -> bool {
        let keys = match self.keys.load(user) {
            Ok(keys) => keys,
            Err(error) => {
                tracing::info!(user, %error, "no authorized keys");
                return false;
            }
        };
        let ssh_key = key.to_ssh_key();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        // sshd takes the first line for the key whose restrictions the client satisfies.
        let line = keys.iter().filter(|k| k.matches(&ssh_key)).find(|k| {
            let from_ok = match (k.options.from(), self.peer) {
                (None, _) => true,
                (Some(_), Some(addr)) => k.options.from_allows(addr, None),
                (Some(_), None) => false,
            };
            from_ok && !k.options.is_expired(now, 0)
        });
        let ok = line.is_some();
        tracing::info!(user, key = %key.fingerprint(), signed, accepted = ok, "publickey");
        if let (true, Some(line), Ok(mut grant)) = (signed, line, self.grant.lock()) {
            *grant = Some(line.options.clone());
        }
        ok
    }
}
