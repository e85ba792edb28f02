//! The running daemon: the configured links, the server end, and what `reload` changes.
//! Owns every link; nothing else starts or stops one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;

use crate::config::{Config, ForwardConfig, LinkConfig, RemoteForwardConfig, SocksConfig};
use crate::link::{Link, LinkCmd, LinkStatus, Listener};

#[derive(Debug)]
pub struct Daemon {
    pub config_path: PathBuf,
    config: Config,
    state_dir: PathBuf,
    links: BTreeMap<String, Link>,
    server: Vec<JoinHandle<()>>,
}

/// What a reload did, link by link.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: Vec<String>,
    pub restarted: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// Where state lives when the configuration does not say.
pub fn default_state_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/sshvpn");
    }
    match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(x), _) => PathBuf::from(x).join("sshvpn"),
        (None, Some(h)) => PathBuf::from(h).join(".local/state/sshvpn"),
        (None, None) => PathBuf::from("/tmp/sshvpn-state"),
    }
}

/// Where the control socket lives when the configuration does not say.
pub fn default_control_socket() -> PathBuf {
    if is_root() {
        return PathBuf::from("/run/sshvpn/control.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("sshvpn/control.sock"),
        None => PathBuf::from(format!("/tmp/sshvpn-{}/control.sock", uid())),
    }
}

pub fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is the process's uid, without unsafe libc calls.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn is_root() -> bool {
    uid() == 0
}

impl Daemon {
    /// Starts the server end (if configured) and every link.
    pub async fn start(config: Config, config_path: &Path) -> Result<Daemon, String> {
        let state_dir = config
            .daemon
            .state_dir
            .clone()
            .unwrap_or_else(default_state_dir);
        let server = match &config.server {
            Some(section) => crate::server::start(section, &state_dir).await?,
            None => Vec::new(),
        };
        let mut links = BTreeMap::new();
        for lc in &config.links {
            links.insert(
                lc.name().to_owned(),
                Link::start(lc.clone(), state_dir.clone()).await,
            );
        }
        Ok(Daemon {
            config_path: config_path.to_owned(),
            config,
            state_dir,
            links,
            server,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.get(name)
    }

    pub fn statuses(&self) -> Vec<LinkStatus> {
        self.links
            .values()
            .map(|l| l.status.borrow().clone())
            .collect()
    }

    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.values()
    }

    pub async fn command(&self, name: &str, cmd: LinkCmd) -> Result<(), String> {
        let link = self
            .links
            .get(name)
            .ok_or_else(|| format!("no link named {name:?}"))?;
        link.command(cmd).await;
        Ok(())
    }

    /// Adds a forward to a running link.
    pub async fn forward_add(
        &mut self,
        link: &str,
        kind: &str,
        listen: &str,
        connect: Option<&str>,
    ) -> Result<String, String> {
        let l = self
            .links
            .get_mut(link)
            .ok_or_else(|| format!("no link named {link:?}"))?;
        let need_connect =
            || connect.ok_or_else(|| format!("a {kind} forward needs a connect address"));
        match kind {
            "socks" => {
                let listen = listen.parse()?;
                l.add_listener(Listener::Socks(SocksConfig {
                    listen,
                    username: None,
                    password: None,
                }))
                .await?;
            }
            "local" => {
                let forward = ForwardConfig {
                    listen: listen.parse()?,
                    connect: need_connect()?.parse()?,
                };
                l.add_listener(Listener::Local(forward)).await?;
            }
            "remote" => {
                let forward = RemoteForwardConfig {
                    listen: listen.parse()?,
                    connect: need_connect()?.parse()?,
                };
                l.add_remote(forward).await?;
            }
            other => {
                return Err(format!(
                    "unknown forward kind {other:?} (socks, local or remote)"
                ));
            }
        }
        Ok(format!("link {link}: {kind} forward on {listen} added"))
    }

    pub async fn forward_remove(&mut self, link: &str, listen: &str) -> Result<String, String> {
        let l = self
            .links
            .get_mut(link)
            .ok_or_else(|| format!("no link named {link:?}"))?;
        l.remove_forward(listen).await?;
        Ok(format!("link {link}: forward on {listen} removed"))
    }

    /// Re-reads the configuration file. A broken file changes nothing. Unchanged links keep
    /// their connections; changed links restart; removed links close cleanly.
    pub async fn reload(&mut self) -> Result<ReloadSummary, String> {
        let new = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let mut summary = ReloadSummary::default();
        let wanted: BTreeMap<String, LinkConfig> = new
            .links
            .iter()
            .map(|l| (l.name().to_owned(), l.clone()))
            .collect();
        let names: Vec<String> = self.links.keys().cloned().collect();
        for name in names {
            match wanted.get(&name) {
                Some(lc)
                    if self
                        .links
                        .get(&name)
                        .is_some_and(|l| same_link(lc, &l.config)) =>
                {
                    summary.kept.push(name)
                }
                Some(lc) => {
                    if let Some(old) = self.links.remove(&name) {
                        old.shutdown().await;
                    }
                    self.links.insert(
                        name.clone(),
                        Link::start(lc.clone(), self.state_dir.clone()).await,
                    );
                    summary.restarted.push(name);
                }
                None => {
                    if let Some(old) = self.links.remove(&name) {
                        old.shutdown().await;
                    }
                    summary.removed.push(name);
                }
            }
        }
        for (name, lc) in wanted {
            if !self.links.contains_key(&name) {
                self.links
                    .insert(name.clone(), Link::start(lc, self.state_dir.clone()).await);
                summary.added.push(name);
            }
        }
        if server_changed(&self.config, &new) {
            tracing::warn!("[server] changes take effect after a restart");
        }
        self.config = new;
        Ok(summary)
    }

    /// Ordered shutdown: links first (each sends DISCONNECT), then the server.
    pub async fn shutdown(&mut self) {
        for (_, link) in std::mem::take(&mut self.links) {
            link.shutdown().await;
        }
        for task in self.server.drain(..) {
            task.abort();
        }
    }
}

/// Compares two link configurations by value (not by position in the file).
fn same_link(a: &LinkConfig, b: &LinkConfig) -> bool {
    format!("{:?}", strip(a)) == format!("{:?}", strip(b))
}

fn strip(l: &LinkConfig) -> LinkConfig {
    let mut l = l.clone();
    l.name = toml::Spanned::new(0..0, l.name.get_ref().clone());
    l.ciphers = l.ciphers.map(|v| {
        v.into_iter()
            .map(|c| toml::Spanned::new(0..0, c.into_inner()))
            .collect()
    });
    l.kex = l.kex.map(|v| {
        v.into_iter()
            .map(|c| toml::Spanned::new(0..0, c.into_inner()))
            .collect()
    });
    l.tun = l.tun.map(|t| toml::Spanned::new(0..0, t.into_inner()));
    l
}

fn server_changed(a: &Config, b: &Config) -> bool {
    format!("{:?}", a.server) != format!("{:?}", b.server)
}
