//! Creating and addressing the TUN device.

use std::net::IpAddr;

use tun_rs::{AsyncDevice, DeviceBuilder};

pub use crate::config::Cidr;

/// A configured, up TUN device.
pub struct TunDevice {
    pub device: AsyncDevice,
    pub name: String,
    pub index: u32,
    pub mtu: u16,
    pub addresses: Vec<Cidr>,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .field("addresses", &self.addresses)
            .finish()
    }
}

impl TunDevice {
    /// Creates the device (named `name`, or the kernel's choice), sets its addresses and MTU
    /// and brings it up. Needs CAP_NET_ADMIN.
    pub fn create(name: Option<&str>, addresses: &[Cidr], mtu: u16) -> Result<TunDevice, String> {
        // Offload (IFF_VNET_HDR with TSO and checksum offload): the kernel hands us TCP
        // super-packets of up to 64 KiB in one read, which the bridge splits, and takes
        // coalesced ones in one write, so neither end's TCP stack works per MTU-sized packet.
        let mut builder = DeviceBuilder::new()
            .mtu(mtu)
            .packet_information(false)
            .offload(true);
        if let Some(n) = name {
            builder = builder.name(n);
        }
        for c in addresses {
            builder = match c.addr {
                IpAddr::V4(a) => builder.ipv4(a, c.prefix, None),
                IpAddr::V6(a) => builder.ipv6(a, c.prefix),
            };
        }
        let device = builder.build_async().map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (needs root or CAP_NET_ADMIN)"
            } else {
                ""
            };
            format!("cannot create TUN device: {e}{hint}")
        })?;
        let name = device
            .name()
            .map_err(|e| format!("TUN device has no name: {e}"))?;
        let index = device
            .if_index()
            .map_err(|e| format!("TUN device {name} has no index: {e}"))?;
        Ok(TunDevice {
            device,
            name,
            index,
            mtu,
            addresses: addresses.to_vec(),
        })
    }
}
