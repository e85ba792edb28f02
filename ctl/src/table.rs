//! The human-readable status table.

use std::time::{SystemTime, UNIX_EPOCH};

use sshvpn_proto::control::LinkInfo;

fn ago(t: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    human_secs(now.saturating_sub(t))
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).copied().unwrap_or("B"))
    }
}

pub fn status(links: &[LinkInfo]) -> String {
    if links.is_empty() {
        return "no links configured\n".into();
    }
    let mut out = format!(
        "{:<16} {:<14} {:<8} {:<28} {:<30} {:>6} {:>11} {:>11}\n",
        "LINK", "STATE", "SINCE", "SERVER", "CIPHER", "RTT", "SENT", "RECEIVED"
    );
    for l in links {
        let rtt = l.rtt_ms.map_or("-".into(), |ms| format!("{ms:.0}ms"));
        let cipher = l.cipher.clone().unwrap_or_else(|| "-".into());
        let state = match l.next_retry {
            Some(t) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!("{} {}", l.state, human_secs(t.saturating_sub(now)))
            }
            None => l.state.clone(),
        };
        out.push_str(&format!(
            "{:<16} {:<14} {:<8} {:<28} {:<30} {:>6} {:>11} {:>11}\n",
            l.name,
            state,
            ago(l.since),
            l.server,
            cipher,
            rtt,
            bytes(l.bytes_sent),
            bytes(l.bytes_received)
        ));
        if let Some(fp) = &l.server_host_key {
            let kinds: Vec<String> = l
                .channels_by_kind
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let kinds = if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            };
            out.push_str(&format!(
                "  host key {fp}  kex {}  channels {}{kinds}\n",
                l.kex.as_deref().unwrap_or("-"),
                l.channels
            ));
        }
        for f in &l.forwards {
            let err = f
                .error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<6} {} -> {}  {}{err}\n",
                f.kind, f.listen, f.connect, f.state
            ));
        }
        if let Some(t) = &l.tun {
            out.push_str(&format!(
                "  tun    {} {}  routes [{}]  channel {}{}  out {} pkts / {}  in {} pkts / {}  dropped: link down {}, invalid {}, device {}\n",
                t.device.as_deref().unwrap_or("-"),
                t.addresses.join(" "),
                t.routes.join(", "),
                if t.channel_open { "open" } else { "closed" },
                if t.offload { " (super-packets)" } else { "" },
                t.packets_out,
                bytes(t.bytes_out),
                t.packets_in,
                bytes(t.bytes_in),
                t.dropped_link_down,
                t.dropped_invalid,
                t.dropped_device
            ));
            if let Some(e) = &t.error {
                out.push_str(&format!("  tun error: {e}\n"));
            }
        }
        if let Some(e) = &l.last_error {
            out.push_str(&format!("  last error: {e}\n"));
        }
    }
    out
}
