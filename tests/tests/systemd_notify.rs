//! sshvpnd under a (fake) service manager: the test plays systemd's NOTIFY_SOCKET.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::time::{Duration, Instant};

use sshvpn_tests::daemon::Daemon;
use sshvpn_tests::harness::{Sshd, SshdOptions, TestDir, free_port, loopback};
use tokio::net::UnixDatagram;

/// Every notification received so far, with when it came.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<(Instant, String)>,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        Manager {
            socket: UnixDatagram::bind(path).unwrap(),
            seen: Vec::new(),
        }
    }

    /// Collects notifications until one contains `needle` (returning it) or `timeout` passes.
    async fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push((Instant::now(), msg.clone()));
                    if msg.contains(needle) {
                        return msg;
                    }
                }
                _ => panic!(
                    "no notification containing {needle:?} within {timeout:?}; seen: {:?}",
                    self.seen.iter().map(|s| &s.1).collect::<Vec<_>>()
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_and_reload_notifications() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let socks = free_port();
    let body = format!(
        "[[link]]\nname = \"office\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\n\n[[link.socks]]\nlisten = \"127.0.0.1:{socks}\"\n",
        sshd.port(),
        key.private.display(),
        known.display()
    );
    let notify = dir.path().join("notify.sock");
    let mut manager = Manager::bind(&notify);
    let d = Daemon::start_env(
        &dir,
        "client",
        &body,
        &[
            ("NOTIFY_SOCKET", &notify),
            ("WATCHDOG_USEC", Path::new("1000000")),
        ],
    )
    .await;

    // READY=1 comes once the listeners are bound.
    manager.wait_for("READY=1", Duration::from_secs(10)).await;
    assert!(
        std::net::TcpStream::connect(loopback(socks)).is_ok(),
        "SOCKS listener bound by READY=1"
    );

    // STATUS follows the link.
    manager
        .wait_for("STATUS=1/1 links up", Duration::from_secs(15))
        .await;
    let since = d.link("office").await.since;
    d.ctl(&["down", "office"]).await;
    let down = manager
        .wait_for("office: down", Duration::from_secs(10))
        .await;
    assert!(down.contains("STATUS=0/1 links up"), "{down}");
    d.ctl(&["up", "office"]).await;
    manager
        .wait_for("STATUS=1/1 links up", Duration::from_secs(15))
        .await;
    let since_up = d.link("office").await.since;
    assert!(since_up >= since);

    // WATCHDOG=1 at half of WATCHDOG_USEC (1 s): at least 4 pings in 2.5 s, none far apart.
    let start = Instant::now();
    let mut pings = Vec::new();
    while start.elapsed() < Duration::from_millis(2500) {
        manager.wait_for("WATCHDOG=1", Duration::from_secs(2)).await;
        pings.push(Instant::now());
    }
    assert!(pings.len() >= 4, "{} watchdog pings in 2.5 s", pings.len());
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest < Duration::from_millis(900),
        "watchdog gap {longest:?}"
    );

    // SIGHUP with an unchanged configuration: RELOADING=1, then READY=1, and the link keeps
    // its connection (same since; sshd saw one login for it).
    let logins_before = sshd.log().matches("Accepted publickey").count();
    d.signal("HUP");
    let reloading = manager
        .wait_for("RELOADING=1", Duration::from_secs(10))
        .await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    manager.wait_for("READY=1", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = d.link("office").await;
    assert_eq!(
        (after.state.as_str(), after.since),
        ("up", since_up),
        "unchanged link kept its connection"
    );
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        logins_before,
        "no new login after reload"
    );

    // SIGTERM: STOPPING=1 and a clean exit.
    let code = d.terminate().await;
    manager.wait_for("STOPPING=1", Duration::from_secs(5)).await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_by_socket_activation() {
    let dir = TestDir::new();
    let activate = sshvpn_tests::harness::require("systemd-socket-activate");
    let sock = dir.path().join("activated.sock");
    let config = dir.path().join("empty.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    // systemd-socket-activate binds the socket and starts sshvpnd on the first connection,
    // passing it as fd 3 (LISTEN_FDS=1), as sshvpnd.socket does.
    let mut daemon = tokio::process::Command::new(activate)
        .arg("-l")
        .arg(&sock)
        .arg(sshvpn_tests::daemon::binary("sshvpnd"))
        .arg("--config")
        .arg(&config)
        .arg("--control-socket")
        .arg(&sock)
        .kill_on_drop(true)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The socket file appears when systemd-socket-activate binds it, a moment before it
    // listens (a connection then is refused): ask again until it answers, as a unit's
    // dependants would find it already listening.
    let mut out = None;
    for _ in 0..100 {
        let o = tokio::process::Command::new(sshvpn_tests::daemon::binary("sshvpnctl"))
            .arg("--socket")
            .arg(&sock)
            .args(["--json", "status"])
            .output()
            .await
            .unwrap();
        let refused = String::from_utf8_lossy(&o.stderr).contains("No such file")
            || String::from_utf8_lossy(&o.stderr).contains("Connection refused");
        out = Some(o);
        if !refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = out.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"response\":\"status\""));
    let _ = daemon.kill().await;
}
