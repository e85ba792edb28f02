//! What a link reports about itself: its phase, since when, its server and the state of each
//! listener and remote forward. Written by the supervisor only; read by the control socket.

use std::time::SystemTime;

use crate::config::{ForwardConfig, LinkConfig, RemoteForwardConfig, SocksConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPhase {
    Connecting,
    Authenticating,
    Up,
    /// Waiting before the next attempt (`next_retry`).
    BackingOff,
    /// Taken down by the operator, or not enabled.
    Down,
    /// Stopped after an error retrying cannot fix (host key refused, unusable identity).
    Failed,
}

impl LinkPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPhase::Connecting => "connecting",
            LinkPhase::Authenticating => "authenticating",
            LinkPhase::Up => "up",
            LinkPhase::BackingOff => "backing-off",
            LinkPhase::Down => "down",
            LinkPhase::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardState {
    /// Not set up yet (the link is not up, or the request is in flight).
    Pending,
    /// Listening locally, or granted by the server.
    Active,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardStatus {
    pub kind: &'static str,
    pub listen: String,
    pub connect: String,
    pub state: ForwardState,
}

impl ForwardStatus {
    pub fn socks(s: &SocksConfig) -> Self {
        Self {
            kind: "socks",
            listen: s.listen.0.to_string(),
            connect: "*".into(),
            state: ForwardState::Pending,
        }
    }

    pub fn local(f: &ForwardConfig) -> Self {
        Self {
            kind: "local",
            listen: f.listen.to_string(),
            connect: f.connect.to_string(),
            state: ForwardState::Pending,
        }
    }

    pub fn remote(f: &RemoteForwardConfig) -> Self {
        Self {
            kind: "remote",
            listen: f.listen.to_string(),
            connect: f.connect.to_string(),
            state: ForwardState::Pending,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub name: String,
    pub phase: LinkPhase,
    pub since: SystemTime,
    /// "host:port".
    pub server: String,
    pub server_host_key: Option<String>,
    pub last_error: Option<String>,
    pub next_retry: Option<SystemTime>,
    pub listeners: Vec<ForwardStatus>,
    pub remote_forwards: Vec<ForwardStatus>,
    pub tun: Option<TunStatus>,
}

/// The TUN side of a link; counters are read live from the bridge.
#[derive(Debug, Clone, Default)]
pub struct TunStatus {
    pub device: Option<String>,
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
    /// Whether a tun channel is open now.
    pub channel_open: bool,
    pub error: Option<String>,
}

impl LinkStatus {
    pub fn new(config: &LinkConfig) -> Self {
        let mut listeners: Vec<ForwardStatus> =
            config.socks.iter().map(ForwardStatus::socks).collect();
        listeners.extend(config.forward.iter().map(ForwardStatus::local));
        let remote_forwards = config
            .remote_forward
            .iter()
            .map(ForwardStatus::remote)
            .collect();
        Self {
            name: config.name().to_owned(),
            phase: LinkPhase::Connecting,
            since: SystemTime::now(),
            server: format!("{}:{}", config.host, config.port),
            server_host_key: None,
            last_error: None,
            next_retry: None,
            listeners,
            remote_forwards,
            tun: config.tun.as_ref().map(|_| TunStatus::default()),
        }
    }
}
