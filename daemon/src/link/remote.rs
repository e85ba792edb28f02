//! The client side of remote forwards (`ssh -R`): the server opens `forwarded-tcpip` channels
//! for connections on the ports it listens on for us, and we connect them to the configured
//! local targets. Anything else the server tries to open is refused.

use std::sync::Arc;

use sshvpn_proto::{ChannelKind, OpenFailure};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::{HostPort, LinkConfig};
use crate::driver::{Incoming, splice};

#[derive(Debug)]
pub struct RemoteForwards {
    /// (address the server listens on, port, where to connect).
    entries: Vec<(String, u16, HostPort)>,
}

impl RemoteForwards {
    pub fn new(config: &LinkConfig) -> Self {
        Self {
            entries: config
                .remote_forward
                .iter()
                .map(|f| (f.listen.host.clone(), f.listen.port, f.connect.clone()))
                .collect(),
        }
    }

    fn target(&self, address: &str, port: u32) -> Option<&HostPort> {
        let by_port: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, p, _)| u32::from(*p) == port)
            .collect();
        by_port
            .iter()
            .find(|(a, _, _)| a == address)
            .or(by_port.first())
            .map(|(_, _, t)| t)
    }
}

pub async fn serve(forwards: Arc<RemoteForwards>, mut incoming: mpsc::Receiver<Incoming>) {
    while let Some(item) = incoming.recv().await {
        match item {
            Incoming::Channel(ch) => {
                let ChannelKind::ForwardedTcpip { address, port, .. } = &ch.kind else {
                    ch.reject(
                        OpenFailure::ADMINISTRATIVELY_PROHIBITED,
                        "not accepted by this client",
                    )
                    .await;
                    continue;
                };
                let Some(target) = forwards.target(address, *port).cloned() else {
                    ch.reject(
                        OpenFailure::ADMINISTRATIVELY_PROHIBITED,
                        "no such remote forward",
                    )
                    .await;
                    continue;
                };
                tokio::spawn(async move {
                    match TcpStream::connect((target.host.as_str(), target.port)).await {
                        Ok(tcp) => {
                            let _ = tcp.set_nodelay(true);
                            if let Ok(stream) = ch.accept().await {
                                splice(stream, tcp).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%target, %e, "remote forward: local target unreachable");
                            ch.reject(OpenFailure::CONNECT_FAILED, &e.to_string()).await;
                        }
                    }
                });
            }
            Incoming::GlobalRequest(req) => req.reply(Err(())).await,
        }
    }
}
