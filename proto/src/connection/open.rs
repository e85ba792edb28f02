//! Channel types and their type-specific open data: `direct-tcpip` and `forwarded-tcpip`
//! (RFC 4254 §7.2), `tun@openssh.com` (OpenSSH PROTOCOL §2.3), and `session` (§6.1), which
//! is recognised only so it can be refused precisely.

use crate::wire::{Reader, WireError, Writer};

/// OpenSSH's "any unit" value for `tun@openssh.com` (SSH_TUNID_ANY).
pub const TUN_UNIT_ANY: u32 = 0x7fff_ffff;

/// `tun@openssh.com` tunnel mode (OpenSSH PROTOCOL §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunMode {
    /// Layer 3: each packet is preceded by a 4-byte address family.
    PointToPoint,
    /// Layer 2: Ethernet frames.
    Ethernet,
}

impl TunMode {
    fn code(self) -> u32 {
        match self {
            TunMode::PointToPoint => 1,
            TunMode::Ethernet => 2,
        }
    }
}

/// What a channel carries, with its open parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// RFC 4254 §7.2: the client asks the server to connect to `host:port`.
    DirectTcpip {
        host: String,
        port: u32,
        originator: String,
        originator_port: u32,
    },
    /// RFC 4254 §7.2: the server hands the client a connection that arrived on a remote
    /// forward bound to `address:port`.
    ForwardedTcpip {
        address: String,
        port: u32,
        originator: String,
        originator_port: u32,
    },
    /// OpenSSH PROTOCOL §2.3; `unit` is `None` for "any".
    Tun { mode: TunMode, unit: Option<u32> },
    /// RFC 4254 §6.1. Never accepted by sshvpn's server, but a distinct kind so it can be
    /// refused with "administratively prohibited" rather than "unknown type".
    Session,
}

impl ChannelKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::DirectTcpip { .. } => "direct-tcpip",
            ChannelKind::ForwardedTcpip { .. } => "forwarded-tcpip",
            ChannelKind::Tun { .. } => "tun@openssh.com",
            ChannelKind::Session => "session",
        }
    }

    /// Appends the type-specific part of SSH_MSG_CHANNEL_OPEN.
    pub fn encode(&self, w: &mut Writer<'_>) {
        match self {
            ChannelKind::DirectTcpip {
                host,
                port,
                originator,
                originator_port,
            }
            | ChannelKind::ForwardedTcpip {
                address: host,
                port,
                originator,
                originator_port,
            } => {
                w.string(host)
                    .u32(*port)
                    .string(originator)
                    .u32(*originator_port);
            }
            ChannelKind::Tun { mode, unit } => {
                w.u32(mode.code()).u32(unit.unwrap_or(TUN_UNIT_ANY));
            }
            ChannelKind::Session => {}
        }
    }

    /// Parses the type-specific part; `Ok(None)` for a type we do not know.
    pub fn decode(type_name: &[u8], r: &mut Reader<'_>) -> Result<Option<Self>, WireError> {
        // Host names and addresses: a DNS name is at most 253 bytes. A channel keeps these for
        // its life, so a peer must not make them large.
        let text = |r: &mut Reader<'_>, field| {
            let s = r.utf8(field)?;
            if s.len() > MAX_ADDRESS_LEN {
                return Err(WireError::Invalid {
                    field,
                    why: "longer than 1024 bytes",
                });
            }
            Ok(s.to_owned())
        };
        let kind = match type_name {
            b"direct-tcpip" => ChannelKind::DirectTcpip {
                host: text(r, "host to connect")?,
                port: r.u32()?,
                originator: text(r, "originator IP address")?,
                originator_port: r.u32()?,
            },
            b"forwarded-tcpip" => ChannelKind::ForwardedTcpip {
                address: text(r, "address that was connected")?,
                port: r.u32()?,
                originator: text(r, "originator IP address")?,
                originator_port: r.u32()?,
            },
            b"tun@openssh.com" => {
                let mode = match r.u32()? {
                    1 => TunMode::PointToPoint,
                    2 => TunMode::Ethernet,
                    _ => {
                        return Err(WireError::Invalid {
                            field: "tunnel mode",
                            why: "not 1 or 2",
                        });
                    }
                };
                let unit = r.u32()?;
                ChannelKind::Tun {
                    mode,
                    unit: (unit != TUN_UNIT_ANY).then_some(unit),
                }
            }
            b"session" => ChannelKind::Session,
            _ => return Ok(None),
        };
        Ok(Some(kind))
    }
}

/// Longest host name or address a channel open may carry.
const MAX_ADDRESS_LEN: usize = 1024;

/// SSH_MSG_CHANNEL_OPEN_FAILURE reason codes (RFC 4254 §5.1). Open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenFailure(pub u32);

impl OpenFailure {
    pub const ADMINISTRATIVELY_PROHIBITED: OpenFailure = OpenFailure(1);
    pub const CONNECT_FAILED: OpenFailure = OpenFailure(2);
    pub const UNKNOWN_CHANNEL_TYPE: OpenFailure = OpenFailure(3);
    pub const RESOURCE_SHORTAGE: OpenFailure = OpenFailure(4);
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            1 => "administratively prohibited",
            2 => "connect failed",
            3 => "unknown channel type",
            4 => "resource shortage",
            _ => "unknown reason",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(kind: ChannelKind) {
        let mut buf = Vec::new();
        kind.encode(&mut Writer::new(&mut buf));
        let mut r = Reader::new(&buf);
        assert_eq!(
            ChannelKind::decode(kind.type_name().as_bytes(), &mut r).unwrap(),
            Some(kind)
        );
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn kinds_round_trip() {
        round_trip(ChannelKind::DirectTcpip {
            host: "db.internal".into(),
            port: 5432,
            originator: "127.0.0.1".into(),
            originator_port: 40000,
        });
        round_trip(ChannelKind::ForwardedTcpip {
            address: "::1".into(),
            port: 8080,
            originator: "10.0.0.1".into(),
            originator_port: 1,
        });
        round_trip(ChannelKind::Tun {
            mode: TunMode::PointToPoint,
            unit: None,
        });
        round_trip(ChannelKind::Tun {
            mode: TunMode::Ethernet,
            unit: Some(3),
        });
    }

    #[test]
    fn a_host_longer_than_1024_bytes_is_refused() {
        for len in [1024, 1025] {
            let mut data = Vec::new();
            Writer::new(&mut data)
                .string("h".repeat(len))
                .u32(22)
                .string("127.0.0.1")
                .u32(1);
            let got = ChannelKind::decode(b"direct-tcpip", &mut Reader::new(&data));
            assert_eq!(got.is_ok(), len == 1024, "{len}: {got:?}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(name in prop::sample::select(vec!["direct-tcpip", "forwarded-tcpip", "tun@openssh.com", "x"]),
                               data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ChannelKind::decode(name.as_bytes(), &mut Reader::new(&data));
        }
    }
}
