//! Routes into the tunnel, added through netlink and removed again when the link goes away.
//!
//! A full tunnel ("default") is the two halves 0.0.0.0/1 and 128.0.0.0/1 (and ::/1, 8000::/1
//! when the device has an IPv6 address), which win over the real default route without
//! replacing it. Before adding them, a host route to the SSH server pinned to its current
//! path keeps the link's own transport out of the tunnel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::device::Cidr;

/// The routes one link added; removed in reverse order by `remove_all`.
#[derive(Debug, Default)]
pub struct Routes {
    added: Vec<RouteMessage>,
    pub description: Vec<String>,
}

fn connect() -> Result<Handle, String> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Expands the configured route list: prefixes as written, "default" as the halves.
pub fn expand(routes: &[String], has_v6: bool) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    for r in routes {
        if r == "default" {
            out.push(Cidr {
                addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                prefix: 1,
            });
            out.push(Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(128, 0, 0, 0)),
                prefix: 1,
            });
            if has_v6 {
                out.push(Cidr {
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    prefix: 1,
                });
                out.push(Cidr {
                    addr: IpAddr::V6(Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0)),
                    prefix: 1,
                });
            }
        } else {
            out.push(r.parse()?);
        }
    }
    Ok(out)
}

fn route_message(dest: Cidr, oif: Option<u32>, gateway: Option<IpAddr>) -> RouteMessage {
    match (dest.network(), gateway) {
        (IpAddr::V4(net), gw) => {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(net, dest.prefix);
            if let Some(i) = oif {
                b = b.output_interface(i);
            }
            if let Some(IpAddr::V4(g)) = gw {
                b = b.gateway(g);
            }
            b.build()
        }
        (IpAddr::V6(net), gw) => {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(net, dest.prefix);
            if let Some(i) = oif {
                b = b.output_interface(i);
            }
            if let Some(IpAddr::V6(g)) = gw {
                b = b.gateway(g);
            }
            b.build()
        }
    }
}

/// The kernel's current path to `dest`: (gateway, output interface).
async fn path_to(handle: &Handle, dest: IpAddr) -> Result<(Option<IpAddr>, Option<u32>), String> {
    let query = route_message(
        Cidr {
            addr: dest,
            prefix: if dest.is_ipv4() { 32 } else { 128 },
        },
        None,
        None,
    );
    let mut replies = handle.route().get(query).execute();
    let Some(msg) = replies
        .try_next()
        .await
        .map_err(|e| format!("netlink route lookup for {dest}: {e}"))?
    else {
        return Err(format!("no route to the SSH server {dest}"));
    };
    let mut gateway = None;
    let mut oif = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(IpAddr::V4(*g)),
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some(IpAddr::V6(*g)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Ok((gateway, oif))
}

impl Routes {
    /// Adds `routes` through the device `oif`. With a full tunnel, first pins the route to
    /// `server` to the path it has now.
    pub async fn add(routes: &[Cidr], oif: u32, server: Option<IpAddr>) -> Result<Routes, String> {
        let handle = connect()?;
        let mut me = Routes::default();
        let full = routes.iter().any(|r| r.prefix <= 1);
        if let (true, Some(server)) = (full, server) {
            let (gateway, via) = path_to(&handle, server).await?;
            if via != Some(oif) {
                let host = Cidr {
                    addr: server,
                    prefix: if server.is_ipv4() { 32 } else { 128 },
                };
                let msg = route_message(host, via, gateway);
                handle
                    .route()
                    .add(msg.clone())
                    .replace()
                    .execute()
                    .await
                    .map_err(|e| format!("cannot pin the route to {server}: {e}"))?;
                me.description.push(format!(
                    "{host} via {}",
                    gateway.map_or("link".into(), |g| g.to_string())
                ));
                me.added.push(msg);
            }
        }
        for r in routes {
            let msg = route_message(*r, Some(oif), None);
            if let Err(e) = handle.route().add(msg.clone()).replace().execute().await {
                me.remove_all().await;
                return Err(format!("cannot add route {r}: {e}"));
            }
            me.description.push(r.to_string());
            me.added.push(msg);
        }
        Ok(me)
    }

    /// Removes every route this link added (best effort; the device's own routes go with it).
    pub async fn remove_all(&mut self) {
        let Ok(handle) = connect() else { return };
        while let Some(msg) = self.added.pop() {
            let _ = handle.route().del(msg).execute().await;
        }
        self.description.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_expands_to_halves() {
        let v4 = expand(&["default".into()], false).unwrap();
        assert_eq!(
            v4.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["0.0.0.0/1", "128.0.0.0/1"]
        );
        let both = expand(&["default".into(), "10.10.0.0/16".into()], true).unwrap();
        assert_eq!(both.len(), 5);
        assert!(expand(&["nonsense".into()], false).is_err());
    }
}
