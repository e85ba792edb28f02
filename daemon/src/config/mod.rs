//! The configuration file (TOML; the contract is `shared/DESIGN.md`, "Configuration
//! contract"). Owns parsing and validation; every error names the file, the line and the key.
//! It must not start anything: `sshvpnd --check-config` runs exactly this and nothing more.

mod error;
mod values;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use error::ConfigError;
pub use values::{ByteCount, Cidr, Endpoint, HostPort, Interval, ListenAddr};

/// The smallest `rekey_limit` accepted.
const MIN_REKEY_LIMIT: u64 = 1 << 20;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub daemon: DaemonSection,
    pub server: Option<ServerSection>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Default: /run/sshvpn/control.sock as root, $XDG_RUNTIME_DIR/sshvpn/control.sock otherwise.
    pub control_socket: Option<PathBuf>,
    /// Default: /var/lib/sshvpn as root, $XDG_STATE_HOME/sshvpn (~/.local/state/sshvpn) otherwise.
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Vec<ListenAddr>,
    /// Generated (ed25519) on first start when missing.
    #[serde(default)]
    pub host_keys: Vec<PathBuf>,
    /// `%u` is replaced by the user name, as in OpenSSH's AuthorizedKeysFile.
    pub authorized_keys: String,
    /// CA public keys (one per line) whose user certificates may log in as a user named
    /// among the certificate's principals, as OpenSSH's TrustedUserCAKeys.
    pub trusted_user_ca_keys: Option<PathBuf>,
    /// Addresses for tunnel clients; its first host is the server's own ("10.77.0.0/24").
    pub tun_pool: Option<Cidr>,
    #[serde(default = "defaults::login_grace")]
    pub login_grace: Interval,
    #[serde(default = "defaults::max_startups")]
    pub max_startups: usize,
    #[serde(default = "defaults::max_startups_per_source")]
    pub max_startups_per_source: usize,
    #[serde(default = "defaults::max_auth_tries")]
    pub max_auth_tries: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    pub name: Spanned<String>,
    pub host: String,
    #[serde(default = "defaults::port")]
    pub port: u16,
    pub user: String,
    /// An OpenSSH private key file; omitted: keys from ssh-agent (`SSH_AUTH_SOCK`).
    pub identity: Option<PathBuf>,
    /// A file holding the identity's passphrase (first line).
    pub identity_passphrase_file: Option<PathBuf>,
    /// An OpenSSH user certificate for the identity; default `<identity>-cert.pub` when
    /// that file exists (OpenSSH's convention).
    pub certificate: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    /// A pinned "SHA256:…" fingerprint, instead of or besides known_hosts.
    pub host_key: Option<String>,
    /// Accept and record an unknown host key on first connection.
    #[serde(default)]
    pub trust_on_first_use: bool,
    pub ciphers: Option<Vec<Spanned<String>>>,
    pub kex: Option<Vec<Spanned<String>>>,
    #[serde(default = "defaults::keepalive")]
    pub keepalive: Interval,
    #[serde(default = "defaults::keepalive_max")]
    pub keepalive_max: u32,
    #[serde(default = "defaults::reconnect_min")]
    pub reconnect_min: Interval,
    #[serde(default = "defaults::reconnect_max")]
    pub reconnect_max: Interval,
    /// Re-key after this much data either way (RFC 4253 §9; OpenSSH's `RekeyLimit`);
    /// default 1G.
    pub rekey_limit: Option<ByteCount>,
    /// Whether the link starts up with the daemon (`sshvpnctl up` starts it otherwise).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    #[serde(default)]
    pub socks: Vec<SocksConfig>,
    #[serde(default)]
    pub forward: Vec<ForwardConfig>,
    #[serde(default)]
    pub remote_forward: Vec<RemoteForwardConfig>,
    pub tun: Option<Spanned<TunConfig>>,
}

/// `[link.tun]`: a layer-3 VPN over a `tun@openssh.com` channel (point-to-point mode).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunConfig {
    /// This end's address on the tunnel, with its prefix ("10.77.0.2/24"). Omitted (with
    /// `local6`): the sshvpnd server assigns one from its `tun_pool`.
    pub local: Option<Cidr>,
    /// An IPv6 address for the tunnel as well ("fd77::2/64").
    pub local6: Option<Cidr>,
    /// Prefixes to route into the tunnel; "default" is a full tunnel.
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default = "defaults::mtu")]
    pub mtu: u16,
    /// Device name; default: the kernel's choice (tunN).
    pub name: Option<String>,
    /// The server's tun unit to ask for (as `ssh -w local:remote`); default "any".
    pub remote_unit: Option<u32>,
    /// Per-link DNS servers and search domains: accepted by the parser so that setting them
    /// is an explicit error rather than silently ignored (not supported yet).
    pub dns: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocksConfig {
    pub listen: ListenAddr,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// `ssh -L`: `listen` here, `connect` as seen from the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    pub listen: Endpoint,
    pub connect: HostPort,
}

/// `ssh -R`: `listen` on the server, `connect` as seen from here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteForwardConfig {
    pub listen: HostPort,
    pub connect: HostPort,
}

mod defaults {
    use super::Interval;
    use std::time::Duration;
    pub fn port() -> u16 {
        22
    }
    pub fn yes() -> bool {
        true
    }
    pub fn keepalive() -> Interval {
        Interval(Duration::from_secs(15))
    }
    pub fn keepalive_max() -> u32 {
        3
    }
    pub fn reconnect_min() -> Interval {
        Interval(Duration::from_secs(1))
    }
    pub fn reconnect_max() -> Interval {
        Interval(Duration::from_secs(60))
    }
    pub fn login_grace() -> Interval {
        Interval(Duration::from_secs(30))
    }
    pub fn max_startups() -> usize {
        64
    }
    pub fn max_startups_per_source() -> usize {
        crate::server::MAX_STARTUPS_PER_SOURCE
    }
    pub fn max_auth_tries() -> u32 {
        6
    }
    pub fn mtu() -> u16 {
        1400
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.to_owned(),
            error: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `file` is used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, text, file))?;
        config.validate(text, file)?;
        Ok(config)
    }

    fn validate(&self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let at = |span: std::ops::Range<usize>, key: &str, message: String| {
            ConfigError::at(text, file, span, key, message)
        };
        let mut names = HashSet::new();
        for link in &self.links {
            let name = link.name.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(at(
                    link.name.span(),
                    "link.name",
                    format!("{name:?} is not a valid link name (letters, digits, '-', '_', '.')"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(at(
                    link.name.span(),
                    "link.name",
                    format!("a link named {name:?} is defined twice"),
                ));
            }
            if link.known_hosts.is_none() && link.host_key.is_none() && !link.trust_on_first_use {
                // Verified by default: without a source of trust the link could never connect.
                return Err(at(
                    link.name.span(),
                    "link.known_hosts",
                    format!(
                        "link {name:?} has no way to verify the server: set known_hosts, host_key (\"SHA256:…\") or trust_on_first_use = true"
                    ),
                ));
            }
            if let Some(fp) = link
                .host_key
                .as_ref()
                .filter(|fp| !fp.starts_with("SHA256:"))
            {
                return Err(at(
                    link.name.span(),
                    "link.host_key",
                    format!(
                        "{fp:?} is not a \"SHA256:…\" fingerprint (as `ssh-keygen -lf` prints)"
                    ),
                ));
            }
            for c in link.ciphers.iter().flatten() {
                if sshvpn_proto::transport::cipher::CipherAlg::from_name(c.get_ref()).is_none() {
                    return Err(at(
                        c.span(),
                        "link.ciphers",
                        format!(
                            "unknown cipher {:?}; supported: chacha20-poly1305@openssh.com, aes256-gcm@openssh.com, aes128-gcm@openssh.com",
                            c.get_ref()
                        ),
                    ));
                }
            }
            for k in link.kex.iter().flatten() {
                if sshvpn_proto::transport::kex::KexAlg::from_name(k.get_ref()).is_none() {
                    return Err(at(
                        k.span(),
                        "link.kex",
                        format!(
                            "unknown key exchange {:?}; supported: {}",
                            k.get_ref(),
                            sshvpn_proto::transport::kex::KexAlg::ALL
                                .map(|k| k.name())
                                .join(", ")
                        ),
                    ));
                }
            }
            if link.reconnect_min.0 > link.reconnect_max.0 {
                return Err(at(
                    link.name.span(),
                    "link.reconnect_min",
                    "reconnect_min is longer than reconnect_max".into(),
                ));
            }
            if link.rekey_limit.is_some_and(|l| l.0 < MIN_REKEY_LIMIT) {
                return Err(at(
                    link.name.span(),
                    "link.rekey_limit",
                    "rekey_limit must be at least 1M (a key exchange per few packets would stall the link)".into(),
                ));
            }
            if link.keepalive_max == 0 {
                return Err(at(
                    link.name.span(),
                    "link.keepalive_max",
                    "keepalive_max must be at least 1".into(),
                ));
            }
            for s in &link.socks {
                if s.username.is_some() != s.password.is_some() {
                    return Err(at(
                        link.name.span(),
                        "link.socks",
                        "set both username and password, or neither".into(),
                    ));
                }
            }
            if let Some(tun) = &link.tun {
                let at_tun = |m: String| at(tun.span(), "link.tun", m);
                let t = tun.get_ref();
                if t.local.is_some_and(|c| !c.addr.is_ipv4())
                    || t.local6.is_some_and(|c| c.addr.is_ipv4())
                {
                    return Err(at_tun(
                        "`local` takes an IPv4 address and `local6` an IPv6 one".into(),
                    ));
                }
                if t.dns.is_some() || t.dns_search.is_some() {
                    return Err(at_tun(
                        "per-link DNS (dns, dns_search) is not supported by this build: configure the resolver yourself (README, TUN)".into(),
                    ));
                }
                if !(576..=65535).contains(&t.mtu) {
                    return Err(at_tun(format!("mtu {} is out of range (576-65535)", t.mtu)));
                }
                for r in &t.routes {
                    if r != "default" {
                        r.parse::<Cidr>()
                            .map_err(|e| at_tun(format!("route: {e}")))?;
                    }
                }
            }
        }
        Ok(())
    }

    pub fn link(&self, name: &str) -> Option<&LinkConfig> {
        self.links.iter().find(|l| l.name.get_ref() == name)
    }
}

impl LinkConfig {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }
}

#[cfg(test)]
mod tests;
