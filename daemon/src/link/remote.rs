//! The client side of remote forwards (`ssh -R`): the server opens `forwarded-tcpip` channels
//! for connections on the ports it listens on for us, and we connect them to the configured
//! local targets. Anything else the server tries to open is refused.

use std::sync::{Arc, Mutex};

use sshvpn_proto::{ChannelKind, OpenFailure};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::{HostPort, LinkConfig, RemoteForwardConfig};
use crate::driver::{Incoming, splice};

/// Where each remote forward's connections go. Shared by the supervisor (which adds and
/// removes entries at runtime) and the task serving the server's channel opens. Entries are
/// in the order of the link's `remote_forward` list, and are named by their index in it (two
/// forwards may both be configured on `host:0`).
#[derive(Debug, Default)]
pub struct RemoteForwards {
    entries: Mutex<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    config: RemoteForwardConfig,
    /// The port the server listens on: the configured one, or the one it chose when asked
    /// for port 0 (RFC 4254 §7.1), which changes with every connection.
    port: u16,
}

impl Entry {
    fn new(config: &RemoteForwardConfig) -> Self {
        Self {
            config: config.clone(),
            port: config.listen.port,
        }
    }
}

impl RemoteForwards {
    pub fn new(config: &LinkConfig) -> Self {
        Self {
            entries: Mutex::new(config.remote_forward.iter().map(Entry::new).collect()),
        }
    }

    pub fn add(&self, rf: &RemoteForwardConfig) {
        if let Ok(mut e) = self.entries.lock() {
            e.push(Entry::new(rf));
        }
    }

    pub fn remove(&self, i: usize) {
        if let Ok(mut e) = self.entries.lock()
            && i < e.len()
        {
            e.remove(i);
        }
    }

    /// Records the port the server listens on for forward `i`: the one it chose, for a
    /// forward on port 0; the configured one again while it has not chosen.
    pub fn set_port(&self, i: usize, port: Option<u16>) {
        if let Ok(mut e) = self.entries.lock()
            && let Some(f) = e.get_mut(i)
        {
            f.port = port.unwrap_or(f.config.listen.port);
        }
    }

    /// The port the server listens on for forward `i`.
    pub fn port(&self, i: usize) -> Option<u16> {
        self.entries.lock().ok()?.get(i).map(|f| f.port)
    }

    /// The target for a connection the server accepted on `address:port`: an exact match
    /// first, else any forward on that port (the server may report the address differently).
    fn target(&self, address: &str, port: u32) -> Option<HostPort> {
        let entries = self.entries.lock().ok()?;
        let by_port: Vec<&Entry> = entries
            .iter()
            .filter(|f| u32::from(f.port) == port)
            .collect();
        by_port
            .iter()
            .find(|f| f.config.listen.host == address)
            .or(by_port.first())
            .map(|f| f.config.connect.clone())
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
                let Some(target) = forwards.target(address, *port) else {
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
