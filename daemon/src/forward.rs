//! Serving the channel types a peer opens: `direct-tcpip` (connect out, as `sshd` does for
//! `ssh -L`/`-D`) and `tcpip-forward` (listen, and open `forwarded-tcpip` for each
//! connection, as `sshd` does for `ssh -R`).
//!
//! Every request is checked against the options of the authorized_keys line that let the user
//! in (`restrict`, `no-port-forwarding`, `permitopen`, `permitlisten`), as sshd does.

use std::collections::HashMap;
use std::sync::Arc;

use sshvpn_proto::{ChannelKind, GlobalRequest, OpenFailure, TunMode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::driver::{Handle, Incoming, splice};
use crate::policy::Grant;
use crate::tun::server::TunPool;

/// The accept loop of one granted `tcpip-forward`, stopped when this is dropped. Dropping a
/// tokio `JoinHandle` only detaches its task, which would keep the port bound after the
/// forward is cancelled or its connection has ended, and a later `ssh -R` for the same port
/// would be refused until the daemon restarts.
struct ForwardListener(JoinHandle<()>);

impl ForwardListener {
    /// Stops the accept loop and waits until its socket is closed: a client may ask for the
    /// same port again as soon as its cancel is answered.
    async fn close(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for ForwardListener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves what the peer asks of a connection until the connection ends.
pub async fn serve_incoming(
    handle: Handle,
    mut incoming: mpsc::Receiver<Incoming>,
    grant: Grant,
    tun_pool: Option<Arc<TunPool>>,
) {
    let options = || grant.lock().ok().and_then(|g| g.clone());
    // Keyed by the address as requested and the port actually bound: for a request for port
    // 0, RFC 4254 §7.1 has the server reply with the port it allocated, and the client
    // cancels with that port (as OpenSSH's ssh does, and sshd matches). Dropped with this
    // future, so the connection task aborting it stops every listener too.
    let mut listeners: HashMap<(String, u32), ForwardListener> = HashMap::new();
    while let Some(item) = incoming.recv().await {
        match item {
            Incoming::Channel(ch) => match ch.kind.clone() {
                ChannelKind::DirectTcpip { host, port, .. } => {
                    let allowed = options().is_some_and(|o| {
                        o.allows_port_forwarding()
                            && u16::try_from(port).is_ok_and(|p| o.permits_open(&host, p))
                    });
                    if !allowed {
                        tracing::info!(%host, port, "direct-tcpip refused by authorized_keys options");
                        ch.reject(
                            OpenFailure::ADMINISTRATIVELY_PROHIBITED,
                            "open refused by authorized_keys options",
                        )
                        .await;
                        continue;
                    }
                    tokio::spawn(async move {
                        let Ok(port) = u16::try_from(port) else {
                            ch.reject(OpenFailure::CONNECT_FAILED, "bad port").await;
                            return;
                        };
                        match TcpStream::connect((host.as_str(), port)).await {
                            Ok(tcp) => {
                                let _ = tcp.set_nodelay(true);
                                if let Ok(stream) = ch.accept().await {
                                    splice(stream, tcp).await;
                                }
                            }
                            Err(e) => ch.reject(OpenFailure::CONNECT_FAILED, &e.to_string()).await,
                        }
                    });
                }
                ChannelKind::Tun {
                    mode: TunMode::PointToPoint,
                    unit,
                } => match &tun_pool {
                    Some(pool) => {
                        let allowed = options().is_some_and(|o| o.allows_tunnel(unit));
                        tokio::spawn(crate::tun::server::serve_channel(
                            ch,
                            pool.clone(),
                            unit,
                            allowed,
                        ));
                    }
                    None => {
                        ch.reject(
                            OpenFailure::ADMINISTRATIVELY_PROHIBITED,
                            "tunnels are not enabled on this server (no tun_pool)",
                        )
                        .await
                    }
                },
                _ => {
                    ch.reject(
                        OpenFailure::ADMINISTRATIVELY_PROHIBITED,
                        "channel type not served",
                    )
                    .await
                }
            },
            Incoming::GlobalRequest(req) => match req.request.clone() {
                GlobalRequest::TcpipForward { address, port } => {
                    let allowed = options().is_some_and(|o| {
                        let host = (!address.is_empty()).then_some(address.as_str());
                        o.allows_port_forwarding()
                            && u16::try_from(port).is_ok_and(|p| o.permits_listen(host, p))
                    });
                    if !allowed {
                        tracing::info!(%address, port, "tcpip-forward refused by authorized_keys options");
                        req.reply(Err(())).await;
                        continue;
                    }
                    let bind = if address.is_empty() || address == "localhost" {
                        "127.0.0.1".to_owned()
                    } else {
                        address.clone()
                    };
                    let Ok(bind_port) = u16::try_from(port) else {
                        req.reply(Err(())).await;
                        continue;
                    };
                    match crate::listen_tcp((bind.as_str(), bind_port)).await {
                        Ok(listener) => {
                            let bound = listener
                                .local_addr()
                                .map(|a| u32::from(a.port()))
                                .unwrap_or(port);
                            let task = tokio::spawn(accept_loop(
                                listener,
                                handle.clone(),
                                address.clone(),
                                bound,
                            ));
                            listeners.insert((address, bound), ForwardListener(task));
                            req.reply(Ok((port == 0).then_some(bound))).await;
                        }
                        Err(_) => req.reply(Err(())).await,
                    }
                }
                GlobalRequest::CancelTcpipForward { address, port } => {
                    match listeners.remove(&(address, port)) {
                        Some(listener) => {
                            listener.close().await;
                            req.reply(Ok(None)).await;
                        }
                        None => req.reply(Err(())).await,
                    }
                }
            },
        }
    }
}

async fn accept_loop(listener: TcpListener, handle: Handle, address: String, port: u32) {
    loop {
        let (tcp, peer) = crate::accept_tcp(&listener, "remote forward").await;
        let _ = tcp.set_nodelay(true);
        let handle = handle.clone();
        let address = address.clone();
        tokio::spawn(async move {
            let kind = ChannelKind::ForwardedTcpip {
                address,
                port,
                originator: peer.ip().to_string(),
                originator_port: u32::from(peer.port()),
            };
            if let Ok(stream) = handle.open(kind).await {
                splice(stream, tcp).await;
            }
        });
    }
}

/// `ssh -L`: accepts on `listener` and carries each connection over a `direct-tcpip` channel
/// to `host:port` as seen from the server.
pub async fn local_forward(listener: TcpListener, handle: Handle, host: String, port: u16) {
    loop {
        let (tcp, peer) = crate::accept_tcp(&listener, "local forward").await;
        let _ = tcp.set_nodelay(true);
        let handle = handle.clone();
        let host = host.clone();
        tokio::spawn(async move {
            let kind = ChannelKind::DirectTcpip {
                host,
                port: u32::from(port),
                originator: peer.ip().to_string(),
                originator_port: u32::from(peer.port()),
            };
            match handle.open(kind).await {
                Ok(stream) => splice(stream, tcp).await,
                Err(e) => tracing::warn!(%peer, %e, "local forward: channel open failed"),
            }
        });
    }
}
