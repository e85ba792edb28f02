//! A link's local listeners: SOCKS ports and local forwards (`ssh -L`, TCP or Unix socket).
//! Bound once when the link starts and kept through transport outages; each connection takes
//! the link's current connection, waiting up to `OUTAGE_WAIT` for one.

use std::net::SocketAddr;

use sshvpn_proto::ChannelKind;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use super::status::ForwardStatus;
use super::{ForwardState, LinkRef, OUTAGE_WAIT};
use crate::config::{Endpoint, ForwardConfig, LinkConfig, SocksConfig};
use crate::driver::{OpenError, splice};
use crate::socks::{self, SocksAuth};

/// Connections one SOCKS listener serves at once.
const MAX_SOCKS_CONNECTIONS: usize = 4096;

/// One local listener: a SOCKS port or a local forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    Socks(SocksConfig),
    Local(ForwardConfig),
}

impl Listener {
    pub fn listen(&self) -> String {
        match self {
            Listener::Socks(s) => s.listen.0.to_string(),
            Listener::Local(f) => f.listen.to_string(),
        }
    }

    pub fn status(&self) -> ForwardStatus {
        match self {
            Listener::Socks(s) => ForwardStatus::socks(s),
            Listener::Local(f) => ForwardStatus::local(f),
        }
    }

    /// Binds the listener; its connections use the link's current connection.
    pub async fn bind(&self, link: LinkRef) -> Result<JoinHandle<()>, String> {
        match self {
            Listener::Socks(s) => bind_socks(s, link).await,
            Listener::Local(f) => bind_forward(f, link).await,
        }
    }
}

/// Every listener the configuration names, in status order.
pub fn configured(config: &LinkConfig) -> Vec<Listener> {
    config
        .socks
        .iter()
        .cloned()
        .map(Listener::Socks)
        .chain(config.forward.iter().cloned().map(Listener::Local))
        .collect()
}

/// The state a bind attempt leaves in the status.
pub fn state_of(result: &Result<JoinHandle<()>, String>) -> ForwardState {
    match result {
        Ok(_) => ForwardState::Active,
        Err(e) => {
            tracing::error!(error = %e, "listener not started");
            ForwardState::Failed(e.clone())
        }
    }
}

async fn bind_socks(config: &SocksConfig, link: LinkRef) -> Result<JoinHandle<()>, String> {
    let listener = crate::listen_tcp(config.listen.0)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen.0))?;
    let auth = match (&config.username, &config.password) {
        (Some(u), Some(p)) => Some(SocksAuth {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    };
    tracing::info!(listen = %config.listen.0, "SOCKS listening");
    Ok(tokio::spawn(socks::serve(
        listener,
        auth,
        MAX_SOCKS_CONNECTIONS,
        move |req, peer| {
            let link = link.clone();
            async move {
                let handle = link.get(OUTAGE_WAIT).await.ok_or(OpenError::Closed)?;
                handle.open(direct_tcpip(req.host, req.port, peer)).await
            }
        },
    )))
}

async fn bind_forward(config: &ForwardConfig, link: LinkRef) -> Result<JoinHandle<()>, String> {
    let target = config.connect.clone();
    match &config.listen {
        Endpoint::Tcp(addr) => {
            let listener = crate::listen_tcp(*addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            tracing::info!(listen = %addr, connect = %target, "local forward listening");
            Ok(tokio::spawn(async move {
                loop {
                    let (tcp, peer) = crate::accept_tcp(&listener, "local forward").await;
                    let _ = tcp.set_nodelay(true);
                    let (link, target) = (link.clone(), target.clone());
                    tokio::spawn(async move {
                        let Some(handle) = link.get(OUTAGE_WAIT).await else {
                            return;
                        };
                        match handle
                            .open(direct_tcpip(target.host, target.port, peer))
                            .await
                        {
                            Ok(stream) => splice(stream, tcp).await,
                            Err(e) => {
                                tracing::warn!(%peer, %e, "local forward: channel open failed")
                            }
                        }
                    });
                }
            }))
        }
        Endpoint::Unix(path) => {
            // A stale socket from a previous run would make bind fail.
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            tracing::info!(listen = %path.display(), connect = %target, "local forward listening");
            Ok(tokio::spawn(async move {
                loop {
                    let sock = match listener.accept().await {
                        Ok((sock, _)) => sock,
                        Err(error) => {
                            crate::pause_after_accept_error("local forward", &error).await;
                            continue;
                        }
                    };
                    let (link, target) = (link.clone(), target.clone());
                    tokio::spawn(async move {
                        let Some(handle) = link.get(OUTAGE_WAIT).await else {
                            return;
                        };
                        let origin = SocketAddr::from(([127, 0, 0, 1], 0));
                        match handle
                            .open(direct_tcpip(target.host, target.port, origin))
                            .await
                        {
                            Ok(stream) => splice(stream, sock).await,
                            Err(e) => tracing::warn!(%e, "local forward: channel open failed"),
                        }
                    });
                }
            }))
        }
    }
}

fn direct_tcpip(host: String, port: u16, peer: SocketAddr) -> ChannelKind {
    ChannelKind::DirectTcpip {
        host,
        port: u32::from(port),
        originator: peer.ip().to_string(),
        originator_port: u32::from(peer.port()),
    }
}
