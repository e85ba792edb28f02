//! The layer-3 VPN in network namespaces (needs root and /dev/net/tun; CI runs as root):
//! client, server and a host on the server's LAN, joined by veth pairs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use sshvpn_tests::daemon::{Daemon, binary};
use sshvpn_tests::harness::{KeyPair, TestDir, require};
use sshvpn_tests::netns::{Netns, require_netns, veth};

const UP: Duration = Duration::from_secs(20);

/// Client ⇄ server ⇄ LAN host, with forwarding on the server and the LAN routing the
/// tunnel's addresses back through it.
struct Topology {
    cli: Netns,
    srv: Netns,
    lan: Netns,
    cli_if: String,
}

fn topology() -> Topology {
    require_netns();
    let (cli, srv, lan) = (Netns::new("cli"), Netns::new("srv"), Netns::new("lan"));
    let (cli_if, _) = veth(
        &cli,
        &["10.200.0.1/24", "fd00:200::1/64"],
        &srv,
        &["10.200.0.2/24", "fd00:200::2/64"],
    );
    veth(
        &srv,
        &["10.201.0.1/24", "fd00:201::1/64"],
        &lan,
        &["10.201.0.2/24", "fd00:201::2/64"],
    );
    srv.sysctl("net.ipv4.ip_forward", "1");
    srv.sysctl("net.ipv6.conf.all.forwarding", "1");
    lan.ip(&["route", "add", "10.77.0.0/24", "via", "10.201.0.1"]);
    lan.ip(&["-6", "route", "add", "fd77::/64", "via", "fd00:201::1"]);
    Topology {
        cli,
        srv,
        lan,
        cli_if,
    }
}

/// OpenSSH sshd inside `ns` on 10.200.0.2:22 with PermitTunnel point-to-point.
async fn sshd_in(ns: &Netns, dir: &TestDir, client: &KeyPair) -> (tokio::process::Child, String) {
    let host = dir.keygen("host").await;
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, format!("{}\n", client.public_line)).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let cfg = dir.path().join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port 22\nListenAddress 10.200.0.2\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nPermitRootLogin prohibit-password\nPermitTunnel point-to-point\nClientAliveInterval 1\nClientAliveCountMax 2\nLogLevel DEBUG1\n",
            host.private.display(),
            keys.display()
        ),
    )
    .unwrap();
    let child = ns.spawn(
        &require("sshd"),
        &["-D", "-e", "-f", cfg.to_str().unwrap()],
        &dir.path().join("sshd.log"),
    );
    for _ in 0..100 {
        if std::fs::read_to_string(dir.path().join("sshd.log"))
            .unwrap_or_default()
            .contains("Server listening")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, format!("10.200.0.2 {}\n", host.key_type_and_blob())).unwrap();
    (child, known.display().to_string())
}

fn netprobe(ns: &Netns, args: &[&str], secs: u64) -> String {
    let bin = binary("netprobe");
    let mut cmd = vec![bin.to_str().unwrap()];
    cmd.extend_from_slice(args);
    let out = ns.exec(&cmd, Duration::from_secs(secs));
    assert!(
        out.status.success(),
        "netprobe {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A checksummed TCP transfer from `from` to a sink in `to`.
fn tcp_transfer(from: &Netns, to: &Netns, addr: &str, bytes: usize) {
    let bin = binary("netprobe");
    let to_name = to.name.clone();
    let listen = addr.to_owned();
    let sink = std::thread::spawn(move || {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &to_name,
                "timeout",
                "60",
                bin.to_str().unwrap(),
                "sink",
                &listen,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = netprobe(from, &["send", addr, &bytes.to_string()], 60);
    let received = sink.join().unwrap();
    assert_eq!(sent, received, "bytes and SHA-256 sent vs received");
    assert!(sent.starts_with(&bytes.to_string()));
}

/// Pings right after a bulk transfer come back in well under a millisecond here. sshd runs
/// `-w` tunnels with Nagle on; if our ACKs to its last small write (a WINDOW_ADJUST) were
/// delayed, each reply would wait for the next request to carry the ACK: a ping interval late.
fn interactive_after_bulk(ns: &Netns, far: &str) {
    let median = ns
        .ping_median_ms(far, 50)
        .expect("pings through the tunnel came back");
    assert!(
        median < 5.0,
        "median ping through the tunnel after a bulk transfer: {median} ms (replies held back?)"
    );
}

fn udp_check(from: &Netns, to: &Netns, addr: &str) {
    let bin = binary("netprobe");
    let mut echo = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &to.name,
            "timeout",
            "30",
            bin.to_str().unwrap(),
            "udp-echo",
            addr,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let got: u32 = netprobe(from, &["udp-ping", addr, "20"], 30)
        .parse()
        .unwrap();
    let _ = echo.kill();
    let _ = echo.wait();
    assert!(got >= 18, "only {got}/20 UDP datagrams came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshvpnd_link_to_openssh_sshd_carries_ip_and_survives_an_outage() {
    let t = topology();
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    let (_sshd, known) = sshd_in(&t.srv, &dir, &key).await;
    let body = format!(
        "[[link]]\nname = \"vpn\"\nhost = \"10.200.0.2\"\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{known}\"\nkeepalive = \"1s\"\nkeepalive_max = 2\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\n[link.tun]\nlocal = \"10.77.0.2/24\"\nlocal6 = \"fd77::2/64\"\nroutes = [\"10.201.0.0/24\", \"fd00:201::/64\"]\nmtu = 1400\n",
        key.private.display()
    );
    let d = Daemon::start_in(&t.cli, &dir, "client", &body).await;
    d.wait_link("vpn", "up", UP).await;
    // The far end of `ssh -w` is configured by hand, as an OpenSSH user would.
    let far = t.srv.wait_link("tun", UP);
    t.srv.ip(&["addr", "add", "10.77.0.1/24", "dev", &far]);
    t.srv
        .ip(&["addr", "add", "fd77::1/64", "dev", &far, "nodad"]);
    t.srv.ip(&["link", "set", &far, "up"]);
    let info = d.link("vpn").await;
    let tun = info.tun.clone().unwrap();
    assert!(
        tun.channel_open && tun.addresses.contains(&"10.77.0.2/24".to_owned()),
        "{tun:?}"
    );

    assert!(t.cli.ping("10.77.0.1", 3), "ping the tunnel's far end");
    assert!(t.cli.ping("10.201.0.2", 3), "ping the LAN host over IPv4");
    assert!(t.cli.ping("fd00:201::2", 3), "ping the LAN host over IPv6");
    tcp_transfer(&t.cli, &t.lan, "10.201.0.2:5001", 64 << 20);
    interactive_after_bulk(&t.cli, "10.77.0.1");
    tcp_transfer(&t.cli, &t.lan, "[fd00:201::2]:5002", 8 << 20);
    interactive_after_bulk(&t.cli, "10.77.0.1");
    udp_check(&t.cli, &t.lan, "10.201.0.2:5003");
    udp_check(&t.cli, &t.lan, "[fd00:201::2]:5004");
    let tun = d.link("vpn").await.tun.unwrap();
    assert!(tun.packets_out > 1000 && tun.packets_in > 1000, "{tun:?}");
    assert!(!tun.offload, "OpenSSH gets one packet per message: {tun:?}");

    // Take the client–server wire down for longer than keepalive × keepalive_max.
    t.cli.ip(&["link", "set", &t.cli_if, "down"]);
    let deadline = std::time::Instant::now() + UP;
    while d.link("vpn").await.state == "up" {
        assert!(
            std::time::Instant::now() < deadline,
            "dead peer not detected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !t.cli.ping("10.201.0.2", 2),
        "no traffic while the link is down"
    );
    let during = d.link("vpn").await.tun.unwrap();
    assert!(
        during.dropped_link_down > 0,
        "packets during the outage are counted as dropped: {during:?}"
    );
    assert_eq!(during.device, tun.device, "the device outlives the outage");
    t.cli.ip(&["link", "set", &t.cli_if, "up"]);
    t.cli
        .ip(&["addr", "replace", "10.200.0.1/24", "dev", &t.cli_if]);
    d.wait_link("vpn", "up", UP).await;
    // sshd made a new tun device for the new connection (the old session's went away with
    // it, found dead by ClientAlive); configure it as before.
    let far = t.srv.wait_single_link("tun", UP);
    t.srv.ip(&["addr", "replace", "10.77.0.1/24", "dev", &far]);
    t.srv.ip(&["link", "set", &far, "up"]);
    assert!(
        t.cli.ping("10.201.0.2", 3),
        "traffic resumes by itself after the outage"
    );

    // sshd's end of the tunnel goes away (its device deleted), so sshd ends the tunnel
    // channel on a connection that is otherwise fine: the link connects again for a new
    // one, rather than stay up with a dead tunnel.
    t.srv.ip(&["link", "del", &far]);
    let far = t.srv.wait_single_link("tun", UP);
    t.srv.ip(&["addr", "replace", "10.77.0.1/24", "dev", &far]);
    t.srv.ip(&["link", "set", &far, "up"]);
    d.wait_link("vpn", "up", UP).await;
    assert!(
        t.cli.ping("10.201.0.2", 3),
        "traffic resumes after sshd ended the tunnel channel; log:\n{}",
        d.log()
    );

    // SIGTERM: the device and its routes are gone.
    assert_eq!(d.terminate().await, Some(0));
    let links = t.cli.ip(&["-o", "link", "show"]);
    assert!(!links.contains(tun.device.as_deref().unwrap()), "{links}");
    assert!(!t.cli.ip(&["route", "show"]).contains("10.201.0.0/24"));
}

/// sshvpnd as the server in `srv` on 10.200.0.2:2222 with a tun pool; `authorized` lines.
async fn sshvpnd_server(t: &Topology, dir: &TestDir, authorized: &str) -> (Daemon, String) {
    let keys = dir.path().join("server_authorized_keys");
    std::fs::write(&keys, authorized).unwrap();
    let body = format!(
        "[server]\nlisten = [\"10.200.0.2:2222\"]\nauthorized_keys = \"{}\"\ntun_pool = \"10.77.0.0/24\"\n",
        keys.display()
    );
    let d = Daemon::start_in(&t.srv, dir, "server", &body).await;
    let known = format!("[10.200.0.2]:2222 {}", d.host_key_blob());
    (d, known)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_ssh_w_against_sshvpnd_server_with_anti_spoofing() {
    let t = topology();
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    let (server, known_line) = sshvpnd_server(&t, &dir, &format!("{}\n", key.public_line)).await;
    let known = dir.path().join("ssh_known_hosts");
    std::fs::write(&known, format!("{known_line}\n")).unwrap();
    let ssh_log = dir.path().join("ssh.log");
    let known_opt = format!("UserKnownHostsFile={}", known.display());
    let _ssh = t.cli.spawn(
        &require("ssh"),
        &[
            "-N",
            "-w",
            "any:any",
            "-o",
            "Tunnel=point-to-point",
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &known_opt,
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            key.private.to_str().unwrap(),
            "-p",
            "2222",
            "root@10.200.0.2",
        ],
        &ssh_log,
    );
    // Both ends' devices appear; configure the client's as an OpenSSH user would (the server
    // leased it the pool's first client address, 10.77.0.2, and is 10.77.0.1 itself).
    let ours = t.cli.wait_link("tun", UP);
    t.srv.wait_link("tun", UP);
    t.cli.ip(&[
        "addr",
        "add",
        "10.77.0.2",
        "peer",
        "10.77.0.1",
        "dev",
        &ours,
    ]);
    t.cli.ip(&["link", "set", &ours, "up"]);
    t.cli.ip(&["route", "add", "10.201.0.0/24", "dev", &ours]);
    assert!(
        t.cli.ping("10.77.0.1", 3),
        "ping the server through ssh -w; ssh log:\n{}",
        std::fs::read_to_string(&ssh_log).unwrap_or_default()
    );
    assert!(
        t.cli.ping("10.201.0.2", 3),
        "ping the server's LAN through ssh -w"
    );
    tcp_transfer(&t.cli, &t.lan, "10.201.0.2:5011", 16 << 20);
    interactive_after_bulk(&t.cli, "10.77.0.1");

    spoofed_source_is_dropped(&t, &ours);
    drop(_ssh);
    server_counted_spoofed(&server).await;
}

/// Pings the LAN from 10.77.0.99, an address on the client's device `dev` that is not the
/// client's lease: nothing may come back. The client's own address still works.
fn spoofed_source_is_dropped(t: &Topology, dev: &str) {
    t.cli
        .ip(&["addr", "add", "10.77.0.99", "peer", "10.77.0.1", "dev", dev]);
    let spoofed = t.cli.exec(
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "10.77.0.99",
            "10.201.0.2",
        ],
        Duration::from_secs(10),
    );
    assert!(
        !spoofed.status.success(),
        "a spoofed source must not get through"
    );
    assert!(
        t.cli.ping("10.201.0.2", 2),
        "the client's own address still works"
    );
}

/// Waits for the server to log the tunnel closing, with at least 3 spoofed packets dropped.
async fn server_counted_spoofed(server: &Daemon) {
    let deadline = std::time::Instant::now() + UP;
    loop {
        let log = server.log();
        if let Some(n) = log
            .lines()
            .filter(|l| l.contains("tunnel closed"))
            .find_map(|l| l.split("spoofed_dropped=").nth(1))
        {
            let n: u64 = n
                .split_whitespace()
                .next()
                .unwrap()
                .trim_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap();
            assert!(n >= 3, "server counted {n} spoofed packets");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not report the tunnel closing:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshvpnd_to_sshvpnd_tunnel_and_key_options() {
    let t = topology();
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    let no_tun = dir.keygen("no-tun").await;
    // `tunnel="5"` forces unit 5: a request for another unit is refused.
    let (server, known_line) = sshvpnd_server(
        &t,
        &dir,
        &format!("{}\ntunnel=\"5\" {}\n", key.public_line, no_tun.public_line),
    )
    .await;
    let known = dir.path().join("client_known_hosts");
    std::fs::write(&known, format!("{known_line}\n")).unwrap();
    let link = |name: &str, k: &KeyPair, extra: &str| {
        format!(
            "[[link]]\nname = \"{name}\"\nhost = \"10.200.0.2\"\nport = 2222\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\n\n[link.tun]\nroutes = [\"10.201.0.0/24\"]\n{extra}\n",
            k.private.display(),
            known.display()
        )
    };
    let client = Daemon::start_in(&t.cli, &dir, "client", &link("site", &key, "")).await;
    // No `local` configured: the server's assignment sets the device up.
    let up = client.wait_link("site", "up", UP).await;
    let tun = up.tun.unwrap();
    assert_eq!(tun.addresses, ["10.77.0.2/24"], "{tun:?}");
    assert!(tun.channel_open && tun.error.is_none(), "{tun:?}");
    assert!(
        t.cli.ping("10.77.0.1", 3),
        "ping the sshvpnd server through the tunnel"
    );
    assert!(t.cli.ping("10.201.0.2", 3), "ping the server's LAN");
    // Between two sshvpnd the super-packets cross as they are, both ways, and the server's
    // kernel cuts them for its LAN.
    tcp_transfer(&t.cli, &t.lan, "10.201.0.2:5021", 32 << 20);
    tcp_transfer(&t.lan, &t.cli, "10.77.0.2:5022", 32 << 20);
    interactive_after_bulk(&t.cli, "10.77.0.1");
    udp_check(&t.cli, &t.lan, "10.201.0.2:5023");
    let tun = client.link("site").await.tun.unwrap();
    assert!(
        tun.offload,
        "the sshvpnd server takes super-packets: {tun:?}"
    );
    assert!(
        tun.packets_out > 20_000 && tun.packets_in > 20_000,
        "64 MiB counted as packets: {tun:?}"
    );
    assert_eq!((tun.dropped_invalid, tun.dropped_device), (0, 0), "{tun:?}");
    // Spoofed sources arrive as offload frames now, and are dropped all the same.
    spoofed_source_is_dropped(&t, tun.device.as_deref().unwrap());
    assert_eq!(client.terminate().await, Some(0));
    server_counted_spoofed(&server).await;

    let dir2 = TestDir::new();
    let other = Daemon::start_in(
        &t.cli,
        &dir2,
        "other",
        &link("forced", &no_tun, "remote_unit = 7"),
    )
    .await;
    let info = other.wait_link("forced", "up", UP).await;
    let deadline = std::time::Instant::now() + UP;
    let mut tun = info.tun.unwrap();
    while tun.error.is_none() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
        tun = other.link("forced").await.tun.unwrap();
    }
    assert!(
        tun.error
            .as_deref()
            .unwrap()
            .contains("administratively prohibited"),
        "{tun:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tunnel_keeps_the_route_to_its_server() {
    let t = topology();
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    let (_server, known_line) = sshvpnd_server(&t, &dir, &format!("{}\n", key.public_line)).await;
    let known = dir.path().join("client_known_hosts");
    std::fs::write(&known, format!("{known_line}\n")).unwrap();
    // The client's ordinary default route goes via the server's address, as a home router
    // would: a full tunnel must not swallow the SSH connection that carries it.
    t.cli.ip(&["route", "add", "default", "via", "10.200.0.2"]);
    let body = format!(
        "[[link]]\nname = \"all\"\nhost = \"10.200.0.2\"\nport = 2222\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\nkeepalive = \"1s\"\n\n[link.tun]\nlocal = \"10.77.0.2/24\"\nroutes = [\"default\"]\n",
        key.private.display(),
        known.display()
    );
    let d = Daemon::start_in(&t.cli, &dir, "client", &body).await;
    let info = d.wait_link("all", "up", UP).await;
    let tun = info.tun.unwrap();
    let dev = tun.device.clone().unwrap();
    assert!(
        tun.routes.iter().any(|r| r.starts_with("0.0.0.0/1"))
            && tun.routes.iter().any(|r| r.starts_with("128.0.0.0/1")),
        "{tun:?}"
    );
    // Everything else goes through the tunnel; the server itself does not.
    let via_lan = t.cli.ip(&["route", "get", "10.201.0.2"]);
    assert!(via_lan.contains(&format!("dev {dev}")), "{via_lan}");
    let via_server = t.cli.ip(&["route", "get", "10.200.0.2"]);
    assert!(!via_server.contains(&format!("dev {dev}")), "{via_server}");
    assert!(
        t.cli.ping("10.201.0.2", 3),
        "LAN host reachable through the full tunnel"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        d.link("all").await.state,
        "up",
        "keepalives still cross to the server"
    );
    assert!(t.cli.ping("10.201.0.2", 2));
    assert_eq!(d.terminate().await, Some(0));
    assert!(
        !t.cli.ip(&["route", "show"]).contains("0.0.0.0/1"),
        "routes removed on exit"
    );
}
