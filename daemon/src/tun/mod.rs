//! The layer-3 VPN: a TUN device per link, bridged to a `tun@openssh.com` channel.
//!
//! The device, its addresses and its routes belong to the link and outlive transport
//! outages: while the link is down, packets read from the device are dropped and counted, and
//! traffic resumes by itself when a new channel is handed over. Nothing here shells out:
//! the device is configured through `tun-rs` (ioctls) and routes through netlink.

mod bridge;
mod device;
mod routes;
pub mod server;

pub use bridge::{SourceFilter, TunBridge, TunCounters};
pub use device::{Cidr, TunDevice};
pub use routes::{Routes, expand as expand_routes};
