//! The control protocol between `sshvpnctl` and `sshvpnd` over a Unix socket: JSON lines, one
//! request and one response per line, after a hello exchange that fixes the version.
//! The `--json` output of `sshvpnctl` is these types, so they are a stable interface: add
//! fields freely, rename none.

use serde::{Deserialize, Serialize};

/// Bumped only for incompatible changes.
pub const VERSION: u32 = 1;
/// Longest request line the daemon reads.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    Hello {
        version: u32,
    },
    Status,
    Up {
        link: String,
    },
    Down {
        link: String,
    },
    Reload,
    /// Adds a forward to a running link (until the link's configuration is reloaded with a
    /// change, or the daemon restarts). `kind` is socks, local or remote; `connect` is
    /// ignored for socks.
    ForwardAdd {
        link: String,
        kind: String,
        listen: String,
        connect: Option<String>,
    },
    /// Removes the forward listening on `listen`.
    ForwardRemove {
        link: String,
        listen: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum Response {
    Hello { version: u32, daemon: String },
    Status { links: Vec<LinkInfo> },
    Ok { message: String },
    Error { message: String },
}

/// One link, as `sshvpnctl status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub name: String,
    /// connecting, authenticating, up, backing-off, down, failed.
    pub state: String,
    /// Unix time (seconds) of the last state change.
    pub since: u64,
    pub server: String,
    pub server_host_key: Option<String>,
    pub kex: Option<String>,
    pub cipher: Option<String>,
    pub rtt_ms: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub channels: u64,
    /// Open channels by type: "direct-tcpip", "forwarded-tcpip", "tun@openssh.com".
    #[serde(default)]
    pub channels_by_kind: std::collections::BTreeMap<String, u64>,
    pub last_error: Option<String>,
    /// Unix time (seconds) of the next connection attempt while backing off.
    pub next_retry: Option<u64>,
    pub forwards: Vec<ForwardInfo>,
    /// The link's TUN side, when `[link.tun]` is configured.
    #[serde(default)]
    pub tun: Option<TunInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunInfo {
    pub device: Option<String>,
    pub addresses: Vec<String>,
    pub routes: Vec<String>,
    pub channel_open: bool,
    /// The peer takes super-packets as they are (it is sshvpnd): one channel message per up
    /// to 64 KiB instead of per packet.
    #[serde(default)]
    pub offload: bool,
    /// Device → tunnel.
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Tunnel → device.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets read from the device while the link was down.
    pub dropped_link_down: u64,
    /// Packets that were not IPv4/IPv6 or too large.
    pub dropped_invalid: u64,
    /// Packets the device refused.
    pub dropped_device: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardInfo {
    /// socks, local, remote.
    pub kind: String,
    pub listen: String,
    pub connect: String,
    /// pending, active, failed.
    pub state: String,
    pub error: Option<String>,
}

/// Parses one request line; errors are for the reply, never a reason to stop serving.
pub fn parse_request(line: &str) -> Result<Request, String> {
    if line.len() > MAX_LINE {
        return Err(format!("request longer than {MAX_LINE} bytes"));
    }
    serde_json::from_str(line).map_err(|e| format!("malformed request: {e}"))
}

/// One line of JSON, newline-terminated.
pub fn to_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).unwrap_or_else(|e| {
        format!("{{\"response\":\"error\",\"message\":\"cannot encode response: {e}\"}}")
    });
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_have_stable_names() {
        let r = Request::Up {
            link: "office".into(),
        };
        let line = to_line(&r);
        assert_eq!(line, "{\"request\":\"up\",\"link\":\"office\"}\n");
        assert_eq!(parse_request(line.trim()).unwrap(), r);
        assert_eq!(
            parse_request("{\"request\":\"hello\",\"version\":1}").unwrap(),
            Request::Hello { version: 1 }
        );
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "null",
            "{\"request\":\"explode\"}",
            "{\"request\":\"up\"}",
            "[1,2]",
        ] {
            assert!(parse_request(bad).is_err(), "{bad}");
        }
        assert!(
            parse_request(&"x".repeat(MAX_LINE + 1))
                .unwrap_err()
                .contains("longer")
        );
    }
}
