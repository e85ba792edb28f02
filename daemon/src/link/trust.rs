//! Host key trust for one link: a pinned fingerprint, known_hosts, or trust on first use when
//! the configuration asks for it. Verified by default; a refusal is recorded with the
//! fingerprint so the link can say exactly why it will not connect.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sshvpn_proto::HostKey;
use sshvpn_proto::keys::certificate::ca_fingerprint;
use sshvpn_proto::keys::{HostCertStatus, HostKeyStatus, KnownHosts};

use crate::config::LinkConfig;
use crate::driver::Policy;

#[derive(Debug)]
pub struct LinkTrust {
    host: String,
    port: u16,
    pinned: Option<String>,
    known_hosts_file: Option<PathBuf>,
    /// Where trust-on-first-use records a new key, when enabled.
    tofu_file: Option<PathBuf>,
    refusal: Arc<Mutex<Option<String>>>,
    /// The ssh-agent that holds this link's keys, when it has no identity file.
    pub agent: Option<PathBuf>,
}

impl LinkTrust {
    pub fn new(config: &LinkConfig, state_dir: &Path) -> Self {
        let known_hosts_file = config.known_hosts.as_deref().map(super::expand_home);
        let tofu_file = config.trust_on_first_use.then(|| {
            known_hosts_file
                .clone()
                .unwrap_or_else(|| state_dir.join("known_hosts"))
        });
        Self {
            host: config.host.clone(),
            port: config.port,
            pinned: config.host_key.clone(),
            known_hosts_file,
            tofu_file,
            refusal: Arc::default(),
            agent: None,
        }
    }

    /// The message for the last refused key, if any.
    pub fn last_refusal(&self) -> Arc<Mutex<Option<String>>> {
        self.refusal.clone()
    }

    fn decide(&self, key: &HostKey) -> Result<(), String> {
        let fingerprint = key.fingerprint();
        let server = format!("{}:{}", self.host, self.port);
        if let Some(pinned) = &self.pinned {
            return if *pinned == fingerprint {
                Ok(())
            } else {
                Err(format!(
                    "host key of {server} is {fingerprint}, but the configuration pins {pinned}"
                ))
            };
        }
        let files: Vec<&PathBuf> = self
            .known_hosts_file
            .iter()
            .chain(self.tofu_file.iter())
            .collect();
        let mut status = HostKeyStatus::Unknown;
        let mut files_read = Vec::new();
        for file in &files {
            match KnownHosts::read_file(file) {
                Ok((known, _)) => files_read.push(known),
                Err(_) if self.tofu_file.is_some() => {}
                Err(e) => return Err(format!("cannot read known_hosts: {e}")),
            }
        }
        if let Some(cert) = key.certificate() {
            let now = crate::trust::unix_now();
            for known in &files_read {
                match known.check_host_certificate(&self.host, self.port, cert, now) {
                    HostCertStatus::Trusted { .. } => return Ok(()),
                    HostCertStatus::Refused { line, reason } => {
                        let at = line
                            .map(|l| format!(" (known_hosts line {l})"))
                            .unwrap_or_default();
                        return Err(format!(
                            "host certificate of {server} (key {fingerprint}, CA {}) refused: {reason}{at}",
                            ca_fingerprint(cert)
                        ));
                    }
                    // As OpenSSH: no CA for this host, so the certified key is checked as a
                    // plain host key below.
                    HostCertStatus::NoAuthority => {}
                }
            }
        }
        for known in &files_read {
            status = known.check(&self.host, self.port, &key.to_ssh_key());
            if !matches!(status, HostKeyStatus::Unknown) {
                break;
            }
        }
        match status {
            HostKeyStatus::Trusted { .. } => Ok(()),
            HostKeyStatus::Revoked { line } => Err(format!("host key {fingerprint} of {server} is marked @revoked (known_hosts line {line})")),
            HostKeyStatus::Changed { line, expected_fingerprint } => Err(format!(
                "HOST KEY CHANGED for {server}: it is now {fingerprint}, known_hosts line {line} has {expected_fingerprint}. \
                 If the change is expected, remove that line; otherwise someone may be intercepting the connection"
            )),
            HostKeyStatus::Unknown => match &self.tofu_file {
                Some(file) => self.learn(file, key).map(|()| {
                    tracing::warn!(%fingerprint, file = %file.display(), "trusting host key on first use");
                }),
                None => Err(format!(
                    "host key {fingerprint} of {server} is not in known_hosts{}; verify it and add it (or pin it with host_key = \"{fingerprint}\")",
                    key.certificate().map(|c| format!(
                        ", and no @cert-authority line for this host names its certificate's CA {}",
                        ca_fingerprint(c)
                    )).unwrap_or_default()
                )),
            },
        }
    }

    fn learn(&self, file: &Path, key: &HostKey) -> Result<(), String> {
        let line = KnownHosts::entry_line(&self.host, self.port, &key.to_ssh_key(), None)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| format!("cannot record host key in {}: {e}", file.display()))?;
        writeln!(f, "{line}")
            .map_err(|e| format!("cannot record host key in {}: {e}", file.display()))
    }
}

impl Policy for LinkTrust {
    fn agent_socket(&self) -> Option<PathBuf> {
        self.agent.clone()
    }

    fn verify_host_key(&mut self, key: &HostKey) -> bool {
        match self.decide(key) {
            Ok(()) => true,
            Err(why) => {
                tracing::error!(%why, "host key refused");
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some(why);
                }
                false
            }
        }
    }
}
