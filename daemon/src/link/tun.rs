//! A link's TUN side: the device and routes it owns for its whole life, and the status it
//! reports. The supervisor hands the bridge a fresh channel after each reconnect.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::TunConfig;
use crate::tun::{Routes, TunBridge, TunDevice};

#[derive(Debug)]
pub struct LinkTun {
    pub bridge: Arc<TunBridge>,
    pub routes: tokio::sync::Mutex<Routes>,
    pub addresses: Vec<String>,
}

/// Creates the device, addresses it and adds the routes. `server` is the SSH server's
/// address, kept outside a full tunnel.
pub async fn setup(cfg: &TunConfig, server: Option<IpAddr>) -> Result<LinkTun, String> {
    let addresses: Vec<_> = cfg.local.iter().chain(cfg.local6.iter()).copied().collect();
    let device = TunDevice::create(cfg.name.as_deref(), &addresses, cfg.mtu)?;
    let prefixes = crate::tun::expand_routes(&cfg.routes, cfg.local6.is_some())?;
    let routes = Routes::add(&prefixes, device.index, server).await?;
    tracing::info!(device = %device.name, routes = ?routes.description, "TUN device up");
    let addresses = device.addresses.iter().map(ToString::to_string).collect();
    Ok(LinkTun {
        bridge: Arc::new(TunBridge::start(device)),
        routes: tokio::sync::Mutex::new(routes),
        addresses,
    })
}

impl LinkTun {
    /// Removes the routes and the device.
    pub async fn teardown(&self) {
        self.routes.lock().await.remove_all().await;
        self.bridge.stop();
    }
}
