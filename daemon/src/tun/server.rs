//! The server end of the VPN: each client's `tun@openssh.com` channel gets its own
//! point-to-point TUN device, with the server's address (the pool's first host) on our side
//! and an address leased from `tun_pool` as the peer. The kernel routes between clients and
//! the server's own networks; packets whose source is not the client's lease are dropped.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use sshvpn_proto::OpenFailure;
use sshvpn_proto::connection::tun::TUN_ADDRESS_REQUEST;
use sshvpn_proto::wire::Writer;
use tun_rs::DeviceBuilder;

use super::bridge::{SourceFilter, TunBridge};
use super::device::{Cidr, TunDevice};
use crate::driver::IncomingChannel;

/// MTU of server-side devices; OpenSSH clients read at most 16 KiB per packet, and 1500
/// leaves room for the SSH transport's own headers on common links.
const SERVER_MTU: u16 = 1500;

/// The addresses handed to tunnel clients.
#[derive(Debug)]
pub struct TunPool {
    net: Cidr,
    gateway: Ipv4Addr,
    leased: Mutex<BTreeSet<Ipv4Addr>>,
}

/// One client's address; returned to the pool on drop.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<TunPool>,
    pub addr: Ipv4Addr,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut l) = self.pool.leased.lock() {
            l.remove(&self.addr);
        }
    }
}

impl TunPool {
    /// `net` is the pool ("10.77.0.0/24"); its first host is the server's own address.
    pub fn new(net: Cidr) -> Result<Arc<TunPool>, String> {
        let (IpAddr::V4(_), true) = (net.addr, net.prefix <= 30) else {
            return Err(format!(
                "tun_pool {net} must be an IPv4 network of at least 4 addresses"
            ));
        };
        let IpAddr::V4(base) = net.network() else {
            return Err(format!("tun_pool {net}"));
        };
        let gateway = Ipv4Addr::from(u32::from(base) + 1);
        Ok(Arc::new(TunPool {
            net,
            gateway,
            leased: Mutex::new(BTreeSet::new()),
        }))
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The lowest free address, skipping the network, gateway and broadcast addresses.
    pub fn lease(self: &Arc<Self>) -> Option<Lease> {
        let IpAddr::V4(base) = self.net.network() else {
            return None;
        };
        let size = 1u32.checked_shl(32 - u32::from(self.net.prefix))?;
        let mut leased = self.leased.lock().ok()?;
        let addr = (2..size - 1)
            .map(|i| Ipv4Addr::from(u32::from(base) + i))
            .find(|a| !leased.contains(a))?;
        leased.insert(addr);
        Some(Lease {
            pool: self.clone(),
            addr,
        })
    }
}

/// Serves one client's tun channel until it closes: checks the key's `tunnel=` option,
/// leases an address, creates the device and bridges it with anti-spoofing.
pub async fn serve_channel(
    ch: IncomingChannel,
    pool: Arc<TunPool>,
    requested_unit: Option<u32>,
    allowed: bool,
) {
    if !allowed {
        tracing::info!(unit = ?requested_unit, "tun channel refused by authorized_keys options");
        ch.reject(
            OpenFailure::ADMINISTRATIVELY_PROHIBITED,
            "tunnel not permitted for this key",
        )
        .await;
        return;
    }
    let Some(lease) = pool.lease() else {
        ch.reject(OpenFailure::RESOURCE_SHORTAGE, "tun_pool exhausted")
            .await;
        return;
    };
    let device = match create_peer_device(pool.gateway(), lease.addr) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the server-side TUN device");
            ch.reject(
                OpenFailure::CONNECT_FAILED,
                "server cannot create a tunnel device",
            )
            .await;
            return;
        }
    };
    let name = device.name.clone();
    let Ok(mut stream) = ch.accept().await else {
        return;
    };
    // Tell an sshvpnd client which address it got; OpenSSH clients ignore this request.
    let mut assignment = Vec::new();
    let client = Cidr {
        addr: IpAddr::V4(lease.addr),
        prefix: pool.net.prefix,
    };
    Writer::new(&mut assignment)
        .string(client.to_string())
        .string(pool.gateway().to_string());
    stream.writer.request(TUN_ADDRESS_REQUEST, assignment).await;
    tracing::info!(device = %name, client = %lease.addr, gateway = %pool.gateway(), "tunnel up");
    let bridge = TunBridge::start_filtered(
        device,
        SourceFilter {
            allowed: vec![IpAddr::V4(lease.addr)],
        },
    );
    let done = bridge.attach(stream);
    let _ = done.await;
    let spoofed = super::TunCounters::get(&bridge.counters.dropped_spoofed);
    tracing::info!(device = %name, client = %lease.addr, spoofed_dropped = spoofed, "tunnel closed");
    bridge.stop();
    drop(lease);
}

fn create_peer_device(local: Ipv4Addr, peer: Ipv4Addr) -> Result<TunDevice, String> {
    // Offload, as on the client side (see `TunDevice::create`): the bridge reads super-packets
    // and writes coalesced ones, so the server's TCP stack does not work per MTU-sized packet.
    let device = DeviceBuilder::new()
        .mtu(SERVER_MTU)
        .packet_information(false)
        .offload(true)
        .ipv4(local, 32u8, Some(peer))
        .build_async()
        .map_err(|e| format!("cannot create TUN device: {e}"))?;
    let name = device.name().map_err(|e| e.to_string())?;
    let index = device.if_index().map_err(|e| e.to_string())?;
    Ok(TunDevice {
        device,
        name,
        index,
        mtu: SERVER_MTU,
        addresses: vec![Cidr {
            addr: IpAddr::V4(local),
            prefix: 32,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_leases_lowest_free_and_reuses_returned_addresses() {
        let pool = TunPool::new("10.77.0.0/29".parse().unwrap()).unwrap();
        assert_eq!(pool.gateway(), Ipv4Addr::new(10, 77, 0, 1));
        let a = pool.lease().unwrap();
        let b = pool.lease().unwrap();
        assert_eq!(
            (a.addr, b.addr),
            (Ipv4Addr::new(10, 77, 0, 2), Ipv4Addr::new(10, 77, 0, 3))
        );
        drop(a);
        assert_eq!(pool.lease().unwrap().addr, Ipv4Addr::new(10, 77, 0, 2));
        let rest: Vec<_> = std::iter::from_fn(|| pool.lease()).collect();
        assert_eq!(rest.len(), 4, "/29: .2-.6 usable, minus .3 still held");
        assert!(TunPool::new("10.0.0.0/31".parse().unwrap()).is_err());
    }
}
