//! A link: one configured SSH connection that the daemon keeps up for as long as it runs.
//!
//! The supervisor owns the reconnect loop (exponential backoff with jitter between
//! `reconnect_min` and `reconnect_max`; dead peers found by keepalive probes) and publishes
//! the current connection's [`Handle`] through a watch channel. Listeners (SOCKS, local
//! forwards) are bound once and outlive transport outages: they read the current handle and
//! wait, bounded, while there is none. Remote forwards are re-requested after each reconnect.

mod listeners;
mod remote;
mod status;
mod trust;
mod tun;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sshvpn_proto::keys::load_private_key_file;
use sshvpn_proto::{ChannelKind, ClientConfig, Ed25519Key, GlobalRequest, Identity, TunMode};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{HostPort, LinkConfig, RemoteForwardConfig, TunConfig};
use crate::driver::Handle;
pub use listeners::Listener;
use sshvpn_proto::connection::tun::TUN_ADDRESS_REQUEST;
use sshvpn_proto::wire::Reader;
pub use status::{ForwardState, LinkPhase, LinkStatus, TunStatus};
pub use trust::LinkTrust;
pub use tun::LinkTun;

/// How long a connection arriving during an outage waits for the link.
pub const OUTAGE_WAIT: Duration = Duration::from_secs(10);
/// TCP connect plus handshake and authentication must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The current connection of a link, as listeners see it.
#[derive(Debug, Clone)]
pub struct LinkRef {
    current: watch::Receiver<Option<Handle>>,
}

impl LinkRef {
    /// The link's connection, waiting up to `wait` for one during an outage.
    pub async fn get(&self, wait: Duration) -> Option<Handle> {
        let mut rx = self.current.clone();
        let found = tokio::time::timeout(wait, async {
            loop {
                if let Some(h) = rx.borrow_and_update().clone() {
                    return Some(h);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
        found.await.ok().flatten()
    }
}

/// Commands to a link's supervisor.
#[derive(Debug)]
pub enum LinkCmd {
    /// Connect now (also: retry now while backing off).
    Up,
    /// Disconnect and stay down until `Up`.
    Down,
    /// Add a remote forward; requested now if the link is up, and after every reconnect.
    AddRemote(RemoteForwardConfig, oneshot::Sender<Result<(), String>>),
    /// Cancel the remote forward listening on this address.
    RemoveRemote(HostPort, oneshot::Sender<Result<(), String>>),
}

/// A running link: its supervisor task and the ways to reach it.
///
/// The supervisor writes the connection-related parts of the status; the `Link` itself writes
/// only the listener entries, which it owns (listeners are bound and unbound here).
#[derive(Debug)]
pub struct Link {
    pub name: String,
    pub config: LinkConfig,
    pub status: watch::Receiver<LinkStatus>,
    pub link_ref: LinkRef,
    status_tx: watch::Sender<LinkStatus>,
    cmds: mpsc::Sender<LinkCmd>,
    task: tokio::task::JoinHandle<()>,
    /// The TUN device, routes and bridge, once set up (at start, or when the server assigns
    /// the address).
    pub tun: TunSlot,
    /// Bound listeners, in the order of `status.listeners`; `None` where binding failed.
    listeners: Vec<(Listener, Option<tokio::task::JoinHandle<()>>)>,
}

impl Link {
    /// Binds the link's listeners and starts its supervisor. `state_dir` holds learned host
    /// keys for trust-on-first-use.
    pub async fn start(config: LinkConfig, state_dir: std::path::PathBuf) -> Link {
        let name = config.name().to_owned();
        let (status_tx, status_rx) = watch::channel(LinkStatus::new(&config));
        let (current_tx, current_rx) = watch::channel(None);
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        let link_ref = LinkRef {
            current: current_rx,
        };
        let span = tracing::info_span!("link", link = %name);
        let mut bound = Vec::new();
        for (i, listener) in listeners::configured(&config).into_iter().enumerate() {
            let result =
                tracing::Instrument::instrument(listener.bind(link_ref.clone()), span.clone())
                    .await;
            let state = listeners::state_of(&result);
            status_tx.send_modify(|s| {
                if let Some(l) = s.listeners.get_mut(i) {
                    l.state = state;
                }
            });
            bound.push((listener, result.ok()));
        }
        let tun = TunSlot::default();
        // With a configured address the device comes up now and outlives every outage;
        // without one it waits for the server's assignment on the first connection.
        if let Some(t) = config
            .tun
            .as_ref()
            .map(|t| t.get_ref())
            .filter(|t| t.local.is_some() || t.local6.is_some())
        {
            let server = resolve(&config.host, config.port).await;
            let result = tracing::Instrument::instrument(tun::setup(t, server), span.clone()).await;
            install_tun(&tun, &status_tx, result).await;
        } else if config.tun.is_some() {
            status_tx.send_modify(|s| {
                s.tun = Some(TunStatus {
                    error: Some("waiting for the server to assign an address".into()),
                    ..TunStatus::default()
                })
            });
        }
        let supervisor = Supervisor {
            tun: tun.clone(),
            config: config.clone(),
            state_dir,
            status: status_tx.clone(),
            current: current_tx,
            cmds: cmd_rx,
            enabled: config.enabled,
            attempt: 0,
            remote: Arc::new(remote::RemoteForwards::new(&config)),
        };
        let task = tokio::spawn(tracing::Instrument::instrument(supervisor.run(), span));
        Link {
            name,
            config,
            status: status_rx,
            link_ref,
            status_tx,
            cmds: cmd_tx,
            task,
            listeners: bound,
            tun,
        }
    }

    pub async fn command(&self, cmd: LinkCmd) {
        let _ = self.cmds.send(cmd).await;
    }

    /// Adds a SOCKS port or a local forward now (not written to the configuration file).
    pub async fn add_listener(&mut self, listener: Listener) -> Result<(), String> {
        if self
            .listeners
            .iter()
            .any(|(l, _)| l.listen() == listener.listen())
        {
            return Err(format!(
                "{} is in use by this link already",
                listener.listen()
            ));
        }
        let task = listener.bind(self.link_ref.clone()).await?;
        let mut st = listener.status();
        st.state = ForwardState::Active;
        self.status_tx.send_modify(|s| s.listeners.push(st));
        self.listeners.push((listener, Some(task)));
        Ok(())
    }

    /// Adds a remote forward now; the supervisor asks the server for it when connected.
    pub async fn add_remote(&self, rf: RemoteForwardConfig) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(LinkCmd::AddRemote(rf, tx))
            .await
            .map_err(|_| "the link has stopped".to_owned())?;
        rx.await.map_err(|_| "the link has stopped".to_owned())?
    }

    /// Removes the local listener or remote forward that listens on `listen`.
    pub async fn remove_forward(&mut self, listen: &str) -> Result<(), String> {
        if let Some(i) = self
            .listeners
            .iter()
            .position(|(l, _)| l.listen() == listen)
        {
            let (_, task) = self.listeners.remove(i);
            if let Some(task) = task {
                task.abort();
            }
            self.status_tx.send_modify(|s| {
                if i < s.listeners.len() {
                    s.listeners.remove(i);
                }
            });
            return Ok(());
        }
        let hp: HostPort = listen.parse()?;
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(LinkCmd::RemoveRemote(hp, tx))
            .await
            .map_err(|_| "the link has stopped".to_owned())?;
        rx.await.map_err(|_| "the link has stopped".to_owned())?
    }

    /// Stops the supervisor, closing the connection with a DISCONNECT.
    pub async fn shutdown(self) {
        let current = self.link_ref.current.borrow().clone();
        if let Some(handle) = current {
            handle
                .disconnect("sshvpnd: link removed or daemon stopping")
                .await;
        }
        self.task.abort();
        for (_, task) in &self.listeners {
            if let Some(task) = task {
                task.abort();
            }
        }
        let _ = self.task.await;
        let installed = self.tun.lock().ok().and_then(|mut t| t.take());
        if let Some(tun) = installed {
            tun.teardown().await;
        }
    }

    /// The connection, if the link is up now.
    pub fn handle(&self) -> Option<Handle> {
        self.link_ref.current.borrow().clone()
    }
}

struct Supervisor {
    config: LinkConfig,
    state_dir: std::path::PathBuf,
    status: watch::Sender<LinkStatus>,
    current: watch::Sender<Option<Handle>>,
    cmds: mpsc::Receiver<LinkCmd>,
    enabled: bool,
    attempt: u32,
    remote: Arc<remote::RemoteForwards>,
    tun: TunSlot,
}

/// Why one connection attempt or connection ended.
enum Ended {
    /// Retry with backoff.
    Retry(String),
    /// Do not retry until told to (host key refused, unusable identity).
    Stop(String),
    /// The operator asked for the link to go down.
    Down,
}

impl Supervisor {
    async fn run(mut self) {
        loop {
            if !self.enabled {
                // A failed link stays "failed" (with its reason) until told to come up.
                if self.status.borrow().phase != LinkPhase::Failed {
                    self.set_phase(LinkPhase::Down);
                }
                match self.next_control(None).await {
                    Some(LinkCmd::Up) => self.enabled = true,
                    Some(_) => continue,
                    None => return,
                }
            }
            let ended = self.connect_and_serve().await;
            let _ = self.current.send(None);
            // Remote forwards die with the connection; they are asked for again on reconnect.
            self.status.send_modify(|s| {
                s.remote_forwards
                    .iter_mut()
                    .for_each(|f| f.state = ForwardState::Pending)
            });
            match ended {
                Ended::Down => {
                    tracing::info!("link down on request");
                    self.enabled = false;
                    self.attempt = 0;
                }
                Ended::Stop(error) => {
                    tracing::error!(%error, "link stopped; fix the cause, then `sshvpnctl up`");
                    self.status.send_modify(|s| s.last_error = Some(error));
                    self.set_phase(LinkPhase::Failed);
                    self.enabled = false;
                }
                Ended::Retry(error) => {
                    let delay = self.backoff();
                    tracing::warn!(%error, retry_in = ?delay, "link lost");
                    let until = SystemTime::now() + delay;
                    self.status.send_modify(|s| {
                        s.last_error = Some(error);
                        s.next_retry = Some(until);
                    });
                    self.set_phase(LinkPhase::BackingOff);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        cmd = self.next_control(None) => match cmd {
                            Some(LinkCmd::Up) => self.attempt = 0,
                            Some(_) => self.enabled = false,
                            None => return,
                        },
                    }
                    self.status.send_modify(|s| s.next_retry = None);
                }
            }
        }
    }

    /// Exponential backoff with jitter: the n-th retry waits between half and all of
    /// min(reconnect_max, reconnect_min × 2^n), so many links do not retry in lockstep.
    fn backoff(&mut self) -> Duration {
        let min = self.config.reconnect_min.0.max(Duration::from_millis(10));
        let max = self.config.reconnect_max.0.max(min);
        let exp = min.saturating_mul(1u32 << self.attempt.min(20)).min(max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = 0.5 + 0.5 * random_fraction();
        exp.mul_f64(jitter).max(min.min(exp))
    }

    fn set_phase(&self, phase: LinkPhase) {
        set_phase(&self.status, phase);
    }

    /// The client settings for one attempt, and the agent socket if keys come from ssh-agent.
    async fn client_config(&self) -> Result<(ClientConfig, Option<std::path::PathBuf>), String> {
        let mut identities = Vec::new();
        let mut agent = None;
        if let Some(path) = &self.config.identity {
            let path = expand_home(path);
            let passphrase = match &self.config.identity_passphrase_file {
                Some(p) => Some(
                    std::fs::read_to_string(expand_home(p))
                        .map_err(|e| {
                            format!("cannot read identity_passphrase_file {}: {e}", p.display())
                        })?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                None => None,
            };
            let key = load_private_key_file(&path, passphrase.as_deref().map(str::as_bytes))
                .map_err(|e| e.to_string())?;
            let key =
                Ed25519Key::from_ssh_key(&key).map_err(|e| format!("{}: {e}", path.display()))?;
            // OpenSSH's convention: the certificate is `<identity>-cert.pub` beside the key.
            // It is tried first, then the plain key, as ssh does.
            let cert_path = match &self.config.certificate {
                Some(p) => Some(expand_home(p)),
                None => {
                    let mut p = path.clone().into_os_string();
                    p.push("-cert.pub");
                    Some(std::path::PathBuf::from(p)).filter(|p| p.exists())
                }
            };
            if let Some(cert_path) = cert_path {
                let cert = sshvpn_proto::ssh_key::Certificate::read_file(&cert_path)
                    .map_err(|e| format!("certificate {}: {e}", cert_path.display()))?;
                let certified = Identity::certified(key.clone(), &cert)
                    .map_err(|e| format!("certificate {}: {e}", cert_path.display()))?;
                identities.push(certified);
            }
            identities.push(Identity::Local(key));
        } else {
            let socket = std::env::var_os("SSH_AUTH_SOCK")
                .map(std::path::PathBuf::from)
                .ok_or("no identity: set `identity` to an OpenSSH ed25519 key file, or run with SSH_AUTH_SOCK pointing at an ssh-agent")?;
            let keys = crate::agent::list_ed25519(&socket).await?;
            if keys.is_empty() {
                return Err(format!(
                    "the ssh-agent at {} holds no ed25519 keys",
                    socket.display()
                ));
            }
            identities.extend(keys.into_iter().map(Identity::External));
            agent = Some(socket);
        }
        let mut config = ClientConfig::new(self.config.user.clone(), Vec::new());
        config.identities = identities;
        if let Some(ciphers) = &self.config.ciphers {
            config.transport.preferences.ciphers = ciphers
                .iter()
                .filter_map(|c| sshvpn_proto::transport::cipher::CipherAlg::from_name(c.get_ref()))
                .collect();
        }
        if let Some(kex) = &self.config.kex {
            config.transport.preferences.kex = kex
                .iter()
                .filter_map(|k| sshvpn_proto::transport::kex::KexAlg::from_name(k.get_ref()))
                .collect();
        }
        config.keepalive = Some(self.config.keepalive.0);
        config.keepalive_max = self.config.keepalive_max;
        if let Some(limit) = self.config.rekey_limit {
            config.transport.rekey_bytes = limit.0;
        }
        Ok((config, agent))
    }

    async fn connect_and_serve(&mut self) -> Ended {
        self.set_phase(LinkPhase::Connecting);
        let (client_config, agent) = match self.client_config().await {
            Ok(c) => c,
            // An unreachable agent may come back; a broken key file will not fix itself.
            Err(e) if e.contains("ssh-agent") => return Ended::Retry(e),
            Err(e) => return Ended::Stop(e),
        };
        let mut trust = LinkTrust::new(&self.config, &self.state_dir);
        trust.agent = agent;
        let verdict = trust.last_refusal();
        let addr = format!("{}:{}", bracket(&self.config.host), self.config.port);
        let status = self.status.clone();
        let connecting = async {
            let (handle, incoming, task) = crate::connect(&addr, client_config, Box::new(trust))
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            set_phase(&status, LinkPhase::Authenticating);
            handle.authenticated().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((handle, incoming, task))
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting) => r,
            cmd = self.next_control(None) => return match cmd {
                Some(LinkCmd::Up) => Ended::Retry("restarted on request".into()),
                _ => Ended::Down,
            },
        };
        let (handle, incoming, mut task) = match outcome {
            Err(_) => {
                return Ended::Retry(format!(
                    "no answer from {addr} within {HANDSHAKE_TIMEOUT:?}"
                ));
            }
            Ok(Err(e)) => {
                return match verdict.lock().ok().and_then(|v| v.clone()) {
                    Some(refusal) => Ended::Stop(refusal),
                    None => Ended::Retry(e),
                };
            }
            Ok(Ok(parts)) => parts,
        };
        self.attempt = 0;
        let info = handle.info().await.unwrap_or_default();
        let fingerprint = handle.host_key_fingerprint().await;
        tracing::info!(server = %addr, cipher = info.cipher.as_deref().unwrap_or(""), "link up");
        self.status.send_modify(|s| {
            s.server_host_key = fingerprint;
            s.last_error = None;
        });
        let _ = self.current.send(Some(handle.clone()));
        let serving = tokio::spawn(remote::serve(self.remote.clone(), incoming));
        self.request_remote_forwards(&handle).await;
        let tun_ended = self.open_tun(&handle).await;
        // "up" once the remote forwards and the tunnel have their answers, so status never
        // shows a half-set-up link as up.
        self.set_phase(LinkPhase::Up);
        let ended = tokio::select! {
            r = &mut task => match r {
                Ok(Err(e)) => Ended::Retry(e.to_string()),
                _ => Ended::Retry("connection ended".into()),
            },
            // The tunnel is what an always-on link is for: without its channel, connect again
            // (which opens a new one) rather than stay up with a dead tunnel.
            () = async {
                match tun_ended {
                    Some(ended) => drop(ended.await),
                    None => std::future::pending().await,
                }
            } => {
                handle.disconnect("the tunnel channel ended").await;
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut task).await;
                Ended::Retry("the server ended the tunnel channel".into())
            }
            cmd = self.next_control(Some(&handle)) => {
                handle.disconnect(match cmd { Some(LinkCmd::Up) => "restarting", _ => "link taken down" }).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut task).await;
                match cmd { Some(LinkCmd::Up) => Ended::Retry("restarted on request".into()), _ => Ended::Down }
            }
        };
        serving.abort();
        task.abort();
        if let Some(t) = self.tun.lock().ok().and_then(|t| t.clone()) {
            t.bridge.detach();
            self.status.send_modify(|s| {
                if let Some(ts) = s.tun.as_mut() {
                    ts.channel_open = false;
                }
            });
        }
        ended
    }

    /// Opens the tun channel (point-to-point) and hands it to the bridge. Without a
    /// configured address, the server's assignment ("tun-address@sshvpn") sets the device up
    /// first, or re-addresses it when the server hands out a different one.
    /// Returns what completes when the channel ends, once it is open.
    async fn open_tun(&self, handle: &Handle) -> Option<oneshot::Receiver<()>> {
        let cfg = self.config.tun.as_ref().map(|t| t.get_ref().clone())?;
        let kind = ChannelKind::Tun {
            mode: TunMode::PointToPoint,
            unit: cfg.remote_unit,
        };
        let result = match handle.open(kind).await {
            Err(e) => Err(format!("the server refused the tunnel: {e}")),
            Ok(mut stream) => {
                let assigned = cfg.local.is_none() && cfg.local6.is_none();
                let ready = if assigned {
                    self.apply_assignment(&cfg, &mut stream).await
                } else {
                    Ok(())
                };
                match (ready, self.tun.lock().ok().and_then(|t| t.clone())) {
                    (Ok(()), Some(t)) => Ok(t.bridge.attach(stream)),
                    (Ok(()), None) => Err("the TUN device is not set up (see the log)".into()),
                    (Err(e), _) => Err(e),
                }
            }
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "tunnel not up");
        }
        let (ended, error) = match result {
            Ok(ended) => (Some(ended), None),
            Err(e) => (None, Some(e)),
        };
        self.status.send_modify(|s| {
            if let Some(ts) = s.tun.as_mut() {
                ts.channel_open = ended.is_some();
                ts.error = error;
            }
        });
        ended
    }

    async fn apply_assignment(
        &self,
        cfg: &TunConfig,
        stream: &mut crate::driver::ChannelStream,
    ) -> Result<(), String> {
        let assignment = tokio::time::timeout(ASSIGNMENT_TIMEOUT, async {
            loop {
                match stream.reader.recv().await {
                    crate::driver::Inbound::Request { request, data } if request == TUN_ADDRESS_REQUEST => {
                        let mut r = Reader::new(&data);
                        let addr = r.utf8("tun address").ok()?.parse::<crate::config::Cidr>().ok()?;
                        return Some(addr);
                    }
                    crate::driver::Inbound::Request { .. } => continue,
                    _ => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
        .ok_or("the server assigned no tunnel address (is it sshvpnd with tun_pool? otherwise set [link.tun] local)")?;
        let current = self.tun.lock().ok().and_then(|t| t.clone());
        if current
            .as_ref()
            .is_some_and(|t| t.addresses == [assignment.to_string()])
        {
            return Ok(());
        }
        if let Some(old) = current {
            old.teardown().await;
        }
        let mut with_address = cfg.clone();
        if assignment.addr.is_ipv4() {
            with_address.local = Some(assignment);
        } else {
            with_address.local6 = Some(assignment);
        }
        tracing::info!(address = %assignment, "the server assigned the tunnel address");
        let server = resolve(&self.config.host, self.config.port).await;
        install_tun(
            &self.tun,
            &self.status,
            tun::setup(&with_address, server).await,
        )
        .await;
        Ok(())
    }

    /// Waits for an Up or Down command, applying forward changes as they come (and, when
    /// connected, asking the server for them at once).
    async fn next_control(&mut self, handle: Option<&Handle>) -> Option<LinkCmd> {
        loop {
            match self.cmds.recv().await? {
                LinkCmd::AddRemote(rf, reply) => {
                    // Port 0 asks the server for a port of its choosing, each time a new one
                    // (as `ssh -R 0:… -R 0:…`), so it is never a duplicate.
                    if rf.listen.port != 0
                        && self
                            .config
                            .remote_forward
                            .iter()
                            .any(|f| f.listen == rf.listen)
                    {
                        let _ = reply.send(Err(format!(
                            "a remote forward on {} exists already",
                            rf.listen
                        )));
                        continue;
                    }
                    self.remote.add(&rf);
                    self.status.send_modify(|s| {
                        s.remote_forwards.push(status::ForwardStatus::remote(&rf))
                    });
                    self.config.remote_forward.push(rf);
                    let result = match handle {
                        Some(h) => {
                            self.request_remote_forward(h, self.config.remote_forward.len() - 1)
                                .await
                        }
                        None => Ok(()),
                    };
                    let _ = reply.send(result);
                }
                LinkCmd::RemoveRemote(listen, reply) => {
                    // Named as configured, or (for port 0) by the port the server chose.
                    let forwards = &self.config.remote_forward;
                    let Some(i) = forwards
                        .iter()
                        .position(|f| f.listen == listen)
                        .or_else(|| {
                            forwards.iter().enumerate().position(|(i, f)| {
                                f.listen.host == listen.host
                                    && self.remote.port(i) == Some(listen.port)
                            })
                        })
                    else {
                        let _ = reply.send(Err(format!("no remote forward on {listen}")));
                        continue;
                    };
                    // The server knows the forward by the port it listens on (RFC 4254 §7.1).
                    let port = self.remote.port(i).unwrap_or(listen.port);
                    let configured = self.config.remote_forward.remove(i).listen;
                    self.remote.remove(i);
                    self.status.send_modify(|s| {
                        if i < s.remote_forwards.len() {
                            s.remote_forwards.remove(i);
                        }
                    });
                    if let Some(h) = handle {
                        let cancel = GlobalRequest::CancelTcpipForward {
                            address: configured.host.clone(),
                            port: u32::from(port),
                        };
                        let _ = h.global_request(cancel).await;
                    }
                    let _ = reply.send(Ok(()));
                }
                cmd => return Some(cmd),
            }
        }
    }

    async fn request_remote_forwards(&self, handle: &Handle) {
        for i in 0..self.config.remote_forward.len() {
            let _ = self.request_remote_forward(handle, i).await;
        }
    }

    async fn request_remote_forward(&self, handle: &Handle, i: usize) -> Result<(), String> {
        let Some(rf) = self.config.remote_forward.get(i) else {
            return Ok(());
        };
        let request = GlobalRequest::TcpipForward {
            address: rf.listen.host.clone(),
            port: u32::from(rf.listen.port),
        };
        let mut listening = rf.listen.clone();
        // Port 0: whatever the server chose on the connection before is gone with it.
        self.remote.set_port(i, None);
        let state = match handle.global_request(request).await {
            Ok(chosen) => {
                // Port 0: the server chose one, and says which (RFC 4254 §7.1).
                if rf.listen.port == 0
                    && let Some(port) = chosen.and_then(|p| u16::try_from(p).ok())
                {
                    self.remote.set_port(i, Some(port));
                    listening.port = port;
                    tracing::info!(forward = %rf.listen, %listening, connect = %rf.connect,
                        "the server chose the port of a remote forward");
                }
                ForwardState::Active
            }
            Err(_) => {
                ForwardState::Failed(format!("the server refused to listen on {}", rf.listen))
            }
        };
        if let ForwardState::Failed(why) = &state {
            tracing::warn!(forward = %rf.listen, %why, "remote forward not set up");
        }
        let result = match &state {
            ForwardState::Failed(why) => Err(why.clone()),
            _ => Ok(()),
        };
        self.status.send_modify(|s| {
            if let Some(f) = s.remote_forwards.get_mut(i) {
                f.listen = listening.to_string();
                f.state = state;
            }
        });
        result
    }
}

impl Handle {
    /// The server's host key fingerprint, once known.
    pub async fn host_key_fingerprint(&self) -> Option<String> {
        self.info().await.ok().and_then(|i| i.host_key)
    }
}

fn set_phase(status: &watch::Sender<LinkStatus>, phase: LinkPhase) {
    status.send_modify(|s| {
        if s.phase != phase {
            s.phase = phase;
            s.since = SystemTime::now();
        }
    });
}

/// Where a link's TUN side lives once set up; shared by the link and its supervisor.
pub type TunSlot = Arc<std::sync::Mutex<Option<Arc<LinkTun>>>>;

/// How long a link waits for the server's tunnel address after opening the channel.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts a freshly set-up TUN side in place and reports it (or the error) in the status.
async fn install_tun(
    slot: &TunSlot,
    status: &watch::Sender<LinkStatus>,
    result: Result<LinkTun, String>,
) {
    match result {
        Ok(lt) => {
            let routes = lt.routes.lock().await.description.clone();
            let (name, addresses) = (lt.bridge.name.clone(), lt.addresses.clone());
            if let Ok(mut s) = slot.lock() {
                *s = Some(Arc::new(lt));
            }
            status.send_modify(|s| {
                s.tun = Some(TunStatus {
                    device: Some(name),
                    addresses,
                    routes,
                    ..TunStatus::default()
                });
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "TUN not set up");
            status.send_modify(|s| {
                s.tun = Some(TunStatus {
                    error: Some(e),
                    ..TunStatus::default()
                })
            });
        }
    }
}

/// The server's address, for keeping it out of a full tunnel (first resolved address).
async fn resolve(host: &str, port: u16) -> Option<std::net::IpAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .ok()?
        .next()
        .map(|a| a.ip())
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `~/` at the start of a path means the home directory, as in OpenSSH's files.
pub fn expand_home(path: &std::path::Path) -> std::path::PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => std::path::PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// Uniform in [0, 1); only for jitter, so std's randomly keyed hasher is plenty.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
