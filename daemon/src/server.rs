//! The server end: accepts SSH clients (stock `ssh` or another sshvpnd), one driver per
//! connection, with sshd's protections against scanners (a cap on unauthenticated
//! connections, a login grace time) and the per-key permissions of authorized_keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use sshvpn_proto::{Connection, Ed25519Key, ServerConfig};
use tokio::net::TcpListener;

use crate::config::ServerSection;
use crate::driver;
use crate::forward::serve_incoming;
use crate::policy::{AuthorizedKeys, ServerPolicy, TrustedUserCaKeys};
use crate::tun::server::TunPool;

/// Unauthenticated connections allowed at once by default (sshd's MaxStartups).
pub const MAX_STARTUPS: usize = 64;
/// Unauthenticated connections allowed at once from one address by default (sshd's
/// PerSourceMaxStartups). Without it, one scanner holding `MAX_STARTUPS` silent connections
/// locks every user out for the login grace time.
pub const MAX_STARTUPS_PER_SOURCE: usize = 10;

/// The unauthenticated connections in progress, in total and per source address.
#[derive(Debug)]
struct Startups {
    max: usize,
    max_per_source: usize,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One unauthenticated connection's place in [`Startups`], given back on drop.
#[derive(Debug)]
struct StartupSlot {
    startups: Arc<Mutex<Startups>>,
    source: IpAddr,
}

impl Startups {
    /// A slot for a new connection from `source`, or `None` when either limit is reached.
    fn admit(this: &Arc<Mutex<Startups>>, source: IpAddr) -> Option<StartupSlot> {
        let mut s = this.lock().unwrap_or_else(PoisonError::into_inner);
        let from_source = s.by_source.get(&source).copied().unwrap_or(0);
        if s.total >= s.max || from_source >= s.max_per_source {
            return None;
        }
        s.total += 1;
        s.by_source.insert(source, from_source + 1);
        Some(StartupSlot {
            startups: this.clone(),
            source,
        })
    }
}

impl Drop for StartupSlot {
    fn drop(&mut self) {
        let mut s = self.startups.lock().unwrap_or_else(PoisonError::into_inner);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.by_source.remove(&self.source);
            }
        }
    }
}

/// Connections closed for the startup limits, summed into one warning per
/// [`REFUSALS_EVERY`] (a flood would otherwise write one line per connection).
#[derive(Debug, Default)]
struct Refusals {
    count: u64,
    since: Option<Instant>,
}

const REFUSALS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Refusals {
    fn note(&mut self, peer: std::net::SocketAddr) {
        self.count += 1;
        let now = Instant::now();
        if self
            .since
            .is_none_or(|t| now.duration_since(t) >= REFUSALS_EVERY)
        {
            tracing::warn!(
                refused = self.count,
                latest = %peer,
                "too many unauthenticated connections (max_startups, max_startups_per_source); closing new ones"
            );
            self.count = 0;
            self.since = Some(now);
        }
    }
}

/// Limits on connections that have not authenticated yet.
#[derive(Debug, Clone, Copy)]
pub struct StartupLimits {
    pub max: usize,
    pub max_per_source: usize,
}

impl Default for StartupLimits {
    fn default() -> Self {
        StartupLimits {
            max: MAX_STARTUPS,
            max_per_source: MAX_STARTUPS_PER_SOURCE,
        }
    }
}

/// Accepts connections on `listener` until the task is dropped. A connection over the
/// startup limits is closed at once, before anything is read from it.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    keys: AuthorizedKeys,
    user_cas: Option<TrustedUserCaKeys>,
    limits: StartupLimits,
    tun_pool: Option<Arc<TunPool>>,
) {
    let startups = Arc::new(Mutex::new(Startups {
        max: limits.max,
        max_per_source: limits.max_per_source,
        total: 0,
        by_source: HashMap::new(),
    }));
    let mut refused = Refusals::default();
    loop {
        let (socket, peer) = crate::accept_tcp(&listener, "server").await;
        let Some(permit) = Startups::admit(&startups, peer.ip()) else {
            tracing::debug!(%peer, "too many unauthenticated connections; dropping");
            refused.note(peer);
            continue;
        };
        let config = config.clone();
        let mut policy = ServerPolicy::new(keys.clone(), Some(peer.ip()));
        policy.trusted_user_ca_keys = user_cas.clone();
        let grant = policy.grant.clone();
        let tun_pool = tun_pool.clone();
        let span = tracing::info_span!("client", %peer);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let conn = match Connection::server(config, Instant::now()) {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::error!(%e, "cannot start connection");
                        return;
                    }
                };
                let (handle, incoming, task) = driver::spawn(socket, conn, Box::new(policy));
                let auth = handle.clone();
                tokio::spawn(async move {
                    let _ = auth.authenticated().await;
                    drop(permit);
                });
                let serve = tokio::spawn(serve_incoming(handle, incoming, grant, tun_pool));
                let result = task.await;
                // Dropping serve_incoming drops its remote-forward listeners, which stops them
                // (see `ForwardListener`): the ports are free for the client's next connection.
                serve.abort();
                match result {
                    Ok(Err(e)) => tracing::info!(reason = %e, "client connection ended"),
                    _ => tracing::info!("client connection ended"),
                }
            },
            span,
        ));
    }
}

/// Loads the configured host key, generating an ed25519 key (mode 0600) on first start.
pub fn load_or_generate_host_key(path: &Path) -> Result<Ed25519Key, String> {
    if path.exists() {
        let key =
            sshvpn_proto::keys::load_private_key_file(path, None).map_err(|e| e.to_string())?;
        return Ed25519Key::from_ssh_key(&key).map_err(|e| format!("{}: {e}", path.display()));
    }
    let mut seed = [0u8; 32];
    getrandom_fill(&mut seed)?;
    let key = Ed25519Key::from_seed(&seed);
    let keypair = sshvpn_proto::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let private = sshvpn_proto::ssh_key::PrivateKey::new(
        sshvpn_proto::ssh_key::private::KeypairData::Ed25519(keypair),
        "sshvpnd",
    )
    .map_err(|e| e.to_string())?;
    let text = private
        .to_openssh(sshvpn_proto::ssh_key::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    write_private(path, text.as_bytes())?;
    let public = private
        .public_key()
        .to_openssh()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::write(with_suffix(path, ".pub"), format!("{public}\n"));
    tracing::info!(path = %path.display(), fingerprint = %key.fingerprint(), "generated host key");
    Ok(key)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create host key {}: {e}", path.display()))?;
    f.write_all(data)
        .map_err(|e| format!("cannot write host key {}: {e}", path.display()))
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), String> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))
}

/// Starts the configured server: binds every listen address (an error names the address).
pub async fn start(
    section: &ServerSection,
    state_dir: &Path,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let default_key = state_dir.join("ssh_host_ed25519_key");
    let paths: Vec<PathBuf> = if section.host_keys.is_empty() {
        vec![default_key]
    } else {
        section.host_keys.clone()
    };
    // The first key is the one we present (sshvpn serves ssh-ed25519 only).
    let first = paths.first().ok_or("no host key configured")?;
    let host_key = load_or_generate_host_key(first)?;
    let mut config = ServerConfig::new(host_key);
    config.login_grace = section.login_grace.0;
    config.max_auth_tries = section.max_auth_tries;
    let keys = AuthorizedKeys::File(section.authorized_keys.clone());
    let user_cas = section
        .trusted_user_ca_keys
        .clone()
        .map(TrustedUserCaKeys::File);
    let tun_pool = match &section.tun_pool {
        Some(p) => Some(TunPool::new(*p)?),
        None => None,
    };
    let mut tasks = Vec::new();
    for addr in &section.listen {
        let listener = crate::listen_tcp(addr.0)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", addr.0))?;
        tracing::info!(listen = %addr.0, "server listening");
        tasks.push(tokio::spawn(serve(
            listener,
            config.clone(),
            keys.clone(),
            user_cas.clone(),
            StartupLimits {
                max: section.max_startups,
                max_per_source: section.max_startups_per_source,
            },
            tun_pool.clone(),
        )));
    }
    Ok(tasks)
}
