//! A simple client trust policy for embedding and tests: host keys checked against a
//! known_hosts file or a pinned fingerprint. Links use `link::LinkTrust`, which adds
//! trust-on-first-use and explains refusals.

use std::path::Path;

use sshvpn_proto::HostKey;
use sshvpn_proto::keys::{HostCertStatus, HostKeyStatus, KnownHosts};

use crate::driver::Policy;

/// How a client decides whether the server's host key is the right one.
#[derive(Debug, Clone)]
pub enum HostKeyTrust {
    /// known_hosts entries for `host:port`.
    KnownHosts {
        known_hosts: KnownHosts,
        host: String,
        port: u16,
    },
    /// A pinned "SHA256:…" fingerprint.
    Fingerprint(String),
}

/// The outcome of the last host key check, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    Trusted,
    Unknown {
        fingerprint: String,
    },
    Changed {
        fingerprint: String,
        expected: String,
        line: usize,
    },
    Revoked {
        fingerprint: String,
        line: usize,
    },
    Mismatch {
        fingerprint: String,
        expected: String,
    },
    /// A host certificate whose CA is trusted for the host (or revoked) failed a check.
    CertificateRefused {
        fingerprint: String,
        line: Option<usize>,
        reason: String,
    },
}

/// Seconds since the epoch, for certificate validity.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl HostKeyTrust {
    pub fn from_known_hosts_file(
        path: &Path,
        host: &str,
        port: u16,
    ) -> Result<Self, sshvpn_proto::keys::KeyError> {
        let (known_hosts, _bad_lines) = KnownHosts::read_file(path)?;
        Ok(Self::KnownHosts {
            known_hosts,
            host: host.to_owned(),
            port,
        })
    }

    pub fn check(&self, key: &HostKey) -> HostKeyVerdict {
        let fingerprint = key.fingerprint();
        if let (
            Some(cert),
            HostKeyTrust::KnownHosts {
                known_hosts,
                host,
                port,
            },
        ) = (key.certificate(), self)
        {
            match known_hosts.check_host_certificate(host, *port, cert, unix_now()) {
                HostCertStatus::Trusted { .. } => return HostKeyVerdict::Trusted,
                HostCertStatus::Refused { line, reason } => {
                    return HostKeyVerdict::CertificateRefused {
                        fingerprint,
                        line,
                        reason: reason.to_string(),
                    };
                }
                // As OpenSSH: no CA for this host, so check the certified key as a plain key.
                HostCertStatus::NoAuthority => {}
            }
        }
        match self {
            HostKeyTrust::Fingerprint(expected) => {
                if *expected == fingerprint {
                    HostKeyVerdict::Trusted
                } else {
                    HostKeyVerdict::Mismatch {
                        fingerprint,
                        expected: expected.clone(),
                    }
                }
            }
            HostKeyTrust::KnownHosts {
                known_hosts,
                host,
                port,
            } => match known_hosts.check(host, *port, &key.to_ssh_key()) {
                HostKeyStatus::Trusted { .. } => HostKeyVerdict::Trusted,
                HostKeyStatus::Unknown => HostKeyVerdict::Unknown { fingerprint },
                HostKeyStatus::Changed {
                    line,
                    expected_fingerprint,
                } => HostKeyVerdict::Changed {
                    fingerprint,
                    expected: expected_fingerprint,
                    line,
                },
                HostKeyStatus::Revoked { line } => HostKeyVerdict::Revoked { fingerprint, line },
            },
        }
    }
}

/// A client's policy: host key trust only.
#[derive(Debug)]
pub struct ClientPolicy {
    pub trust: HostKeyTrust,
    /// The verdict on the last key seen, kept so the caller can explain a refusal.
    pub last: std::sync::Arc<std::sync::Mutex<Option<HostKeyVerdict>>>,
}

impl ClientPolicy {
    pub fn new(trust: HostKeyTrust) -> Self {
        Self {
            trust,
            last: Default::default(),
        }
    }
}

impl Policy for ClientPolicy {
    fn verify_host_key(&mut self, key: &HostKey) -> bool {
        let verdict = self.trust.check(key);
        let ok = verdict == HostKeyVerdict::Trusted;
        if !ok {
            tracing::warn!(?verdict, "host key refused");
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(verdict);
        }
        ok
    }
}
