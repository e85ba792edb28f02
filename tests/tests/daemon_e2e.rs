//! sshvpnd and sshvpnctl as users run them: real processes, configuration files, OpenSSH on
//! the other end or another sshvpnd.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::time::Duration;

use sshvpn_tests::daemon::{Daemon, binary};
use sshvpn_tests::harness::{
    EchoServer, KeyPair, Ssh, Sshd, SshdOptions, TestDir, free_port, loopback, socks5_connect,
    transfer_echo, transfer_echo_on,
};

const UP: Duration = Duration::from_secs(15);

/// An sshvpnd server on a free loopback port that admits `key`, with extra environment for
/// the daemon: the daemon and its port.
async fn sshvpnd_server(dir: &TestDir, key: &KeyPair, env: &[(&str, &Path)]) -> (Daemon, u16) {
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, format!("{}\n", key.public_line)).unwrap();
    let port = free_port();
    let server = Daemon::start_env(
        dir,
        "server",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauthorized_keys = \"{}\"\n",
            keys.display()
        ),
        env,
    )
    .await;
    (server, port)
}

fn link_to(name: &str, port: u16, identity: &KeyPair, trust: &str) -> String {
    format!(
        "[[link]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"root\"\nidentity = \"{}\"\n{trust}\nkeepalive = \"1s\"\nkeepalive_max = 3\nreconnect_min = \"200ms\"\nreconnect_max = \"2s\"\n",
        identity.private.display()
    )
}

fn known_hosts(dir: &TestDir, line: &str) -> String {
    let path = dir.unique_path("known_hosts", "txt");
    std::fs::write(&path, format!("{line}\n")).unwrap();
    format!("known_hosts = \"{}\"", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_to_openssh_sshd_carries_socks_and_forwards() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    let (socks, local, remote) = (free_port(), free_port(), free_port());
    let body = format!(
        "{}\n[[link.socks]]\nlisten = \"127.0.0.1:{socks}\"\n\n[[link.forward]]\nlisten = \"127.0.0.1:{local}\"\nconnect = \"127.0.0.1:{}\"\n\n[[link.remote_forward]]\nlisten = \"127.0.0.1:{remote}\"\nconnect = \"127.0.0.1:{}\"\n",
        link_to(
            "office",
            sshd.port(),
            &key,
            &known_hosts(&dir, &sshd.known_hosts_line())
        ),
        echo.port,
        echo.port
    );
    // Two worker threads: the other tests run the default here (one CPU of two: everything
    // on the main thread), this one tokio's thread pool.
    let d = Daemon::start_env(
        &dir,
        "client",
        &body,
        &[("TOKIO_WORKER_THREADS", Path::new("2"))],
    )
    .await;
    let info = d.wait_link("office", "up", UP).await;
    let workers = threads(d.pid())
        .filter(|t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == "tokio-rt-worker")
        })
        .count();
    assert_eq!(workers, 2, "worker threads");
    assert_eq!(
        info.server_host_key.as_deref(),
        Some(sshd.host_key_fingerprint().await.as_str())
    );
    assert!(
        info.forwards.iter().all(|f| f.state == "active"),
        "{:?}",
        info.forwards
    );

    for target in ["127.0.0.1", "localhost"] {
        let s = socks5_connect(loopback(socks), target, echo.port)
            .await
            .unwrap();
        transfer_echo_on(s, 4 << 20, Duration::from_secs(60))
            .await
            .unwrap();
    }
    transfer_echo(loopback(local), 16 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    transfer_echo(loopback(remote), 16 << 20, Duration::from_secs(60))
        .await
        .unwrap();

    // The human status names the link, its state and every forward.
    let (ok, table, _) = d.ctl(&["status"]).await;
    assert!(
        ok && table.contains("office")
            && table.contains(" up ")
            && table.contains(&format!("127.0.0.1:{local}")),
        "{table}"
    );
    let info = d.link("office").await;
    assert!(
        info.bytes_sent > 16 << 20 && info.bytes_received > 16 << 20,
        "{info:?}"
    );
    assert!(info.cipher.is_some() && info.kex.is_some());
    assert_eq!(d.terminate().await, Some(0));
}

/// The /proc directories of the threads of `pid`.
fn threads(pid: u32) -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| t.path())
}

/// Context switches of every thread of `pid` so far: how often the process woke.
fn wakeups(pid: u32) -> u64 {
    threads(pid)
        .map(|t| {
            let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_lets_the_daemon_sleep() {
    // ssh and sshd wake only for traffic and their keepalives; a daemon with an idle link
    // should too (an always-on VPN runs on laptops). Keepalives here every 60 s.
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    let socks = free_port();
    let body = format!(
        "{}\n[[link.socks]]\nlisten = \"127.0.0.1:{socks}\"\n",
        link_to(
            "office",
            sshd.port(),
            &key,
            &known_hosts(&dir, &sshd.known_hosts_line())
        )
        .replace("keepalive = \"1s\"", "keepalive = \"60s\"")
    );
    let d = Daemon::start(&dir, "client", &body).await;
    d.wait_link("office", "up", UP).await;
    // A connection that opens and closes: the memory it freed goes back to the system in
    // the next two seconds, and then nothing is left to do.
    let s = socks5_connect(loopback(socks), "127.0.0.1", echo.port)
        .await
        .unwrap();
    transfer_echo_on(s, 1 << 20, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let before = wakeups(d.pid());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let woke = wakeups(d.pid()) - before;
    assert!(
        woke <= 4,
        "an idle sshvpnd woke {woke} times in 4 s (ssh and sshd: none without traffic); \
         something polls on a timer"
    );
    assert_eq!(d.link("office").await.state, "up");
    assert_eq!(d.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_comes_back_after_the_server_is_killed_and_restarted() {
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    std::fs::write(
        dir.path().join("authorized_keys"),
        format!("{}\n", key.public_line),
    )
    .unwrap();
    let server_port = free_port();
    let server_body = format!(
        "[server]\nlisten = [\"127.0.0.1:{server_port}\"]\nauthorized_keys = \"{}\"\n",
        dir.path().join("authorized_keys").display()
    );
    let server = Daemon::start(&dir, "server", &server_body).await;
    let echo = EchoServer::start().await;
    let socks = free_port();
    let body = format!(
        "{}\n[[link.socks]]\nlisten = \"127.0.0.1:{socks}\"\n",
        link_to("site", server_port, &key, "trust_on_first_use = true")
    );
    let client = Daemon::start(&dir, "client", &body).await;
    client.wait_link("site", "up", UP).await;

    // Kill the server in the middle of a transfer.
    let s = socks5_connect(loopback(socks), "127.0.0.1", echo.port)
        .await
        .unwrap();
    let transfer = tokio::spawn(transfer_echo_on(s, 256 << 20, Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let config = server.config.clone();
    server.kill().await;
    assert!(
        transfer.await.unwrap().is_err(),
        "a transfer cut by the server's death must not report success"
    );
    let lost = client.link("site").await;
    assert_ne!(lost.state, "up", "the link noticed the server is gone");

    // Same port, same state directory (same host key): the link returns by itself.
    let server = Daemon::start_with(&dir, "server", config).await;
    let back = client
        .wait_link("site", "up", Duration::from_secs(10))
        .await;
    assert!(back.last_error.is_none());
    let s = socks5_connect(loopback(socks), "127.0.0.1", echo.port)
        .await
        .unwrap();
    transfer_echo_on(s, 4 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_link_does_not_affect_a_working_one() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    let (good_socks, bad_socks) = (free_port(), free_port());
    let impostor = dir.keygen("impostor").await;
    let wrong = format!(
        "[127.0.0.1]:{} {}",
        sshd.port(),
        impostor.key_type_and_blob()
    );
    let body = format!(
        "{}\n[[link.socks]]\nlisten = \"127.0.0.1:{good_socks}\"\n\n{}\n[[link.socks]]\nlisten = \"127.0.0.1:{bad_socks}\"\n\n{}\n",
        link_to(
            "good",
            sshd.port(),
            &key,
            &known_hosts(&dir, &sshd.known_hosts_line())
        ),
        link_to("wrong-key", sshd.port(), &key, &known_hosts(&dir, &wrong)),
        link_to(
            "nobody-home",
            free_port(),
            &key,
            &known_hosts(&dir, &sshd.known_hosts_line())
        ),
    );
    let d = Daemon::start(&dir, "client", &body).await;
    d.wait_link("good", "up", UP).await;
    // A changed host key stops the link with the fingerprint in the reason; it does not retry.
    let failed = d.wait_link("wrong-key", "failed", UP).await;
    let fp = sshd.host_key_fingerprint().await;
    let err = failed.last_error.unwrap();
    assert!(
        err.contains("HOST KEY CHANGED") && err.contains(&fp),
        "{err}"
    );
    // Nothing listening: the link keeps retrying with a visible error.
    let deadline = std::time::Instant::now() + UP;
    loop {
        let l = d.link("nobody-home").await;
        if l.last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot connect"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{l:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The good link carries traffic throughout; the broken link's SOCKS port fails cleanly.
    let s = socks5_connect(loopback(good_socks), "127.0.0.1", echo.port)
        .await
        .unwrap();
    transfer_echo_on(s, 4 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        socks5_connect(loopback(bad_socks), "127.0.0.1", echo.port)
            .await
            .is_err()
    );
    assert_eq!(d.link("good").await.state, "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_down_and_reload() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let trust = known_hosts(&dir, &sshd.known_hosts_line());
    let body = link_to("one", sshd.port(), &key, &trust);
    let d = Daemon::start(&dir, "client", &body).await;
    let first = d.wait_link("one", "up", UP).await;

    let (ok, out, _) = d.ctl(&["down", "one"]).await;
    assert!(ok, "{out}");
    d.wait_link("one", "down", UP).await;
    let (ok, _, _) = d.ctl(&["up", "one"]).await;
    assert!(ok);
    let again = d.wait_link("one", "up", UP).await;

    // Reload with a second link added: "one" keeps its connection (same since), "two" starts.
    std::fs::write(
        &d.config,
        format!(
            "{}\n{body}\n{}",
            Daemon::daemon_section(&dir, "client"),
            link_to("two", sshd.port(), &key, &trust)
        ),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_link("two", "up", UP).await;
    assert_eq!(
        d.link("one").await.since,
        again.since,
        "unchanged link kept its connection"
    );
    assert!(again.since >= first.since);

    // A broken configuration is rejected and everything keeps running.
    std::fs::write(&d.config, "[[link]]\nname = 3\n").unwrap();
    let (ok, _, err) = d.ctl(&["reload"]).await;
    assert!(
        !ok && err.contains("reload rejected") && err.contains("link.name"),
        "{err}"
    );
    assert_eq!(d.link("two").await.state, "up");

    // Errors are one line and a non-zero exit.
    let (ok, _, err) = d.ctl(&["up", "nonexistent"]).await;
    assert!(
        !ok && err.trim().lines().count() == 1 && err.contains("no link named"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_file_line_and_key() {
    let dir = TestDir::new();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[link]]\nname = \"x\"\nhost = \"h\"\nuser = \"u\"\nhost_key = \"SHA256:abc\"\nkeepalive = \"soon\"\n").unwrap();
    let out = std::process::Command::new(binary("sshvpnd"))
        .arg("--check-config")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}:6: link.keepalive:", path.display())),
        "{err}"
    );
    std::fs::write(
        &path,
        "[[link]]\nname = \"x\"\nhost = \"h\"\nuser = \"u\"\nhost_key = \"SHA256:abc\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary("sshvpnd"))
        .arg("--check-config")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And sshvpnctl without a daemon says what is wrong in one line.
    let out = std::process::Command::new(binary("sshvpnctl"))
        .args(["--socket", "/nonexistent/sock", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("cannot reach sshvpnd at /nonexistent/sock")
            && err.contains("is it running?"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_against_sshvpnd_server_with_key_options() {
    let dir = TestDir::new();
    let open = dir.keygen("open").await;
    let limited = dir.keygen("limited").await;
    let restricted = dir.keygen("restricted").await;
    let echo = EchoServer::start().await;
    let other = EchoServer::start().await;
    let keys = dir.path().join("authorized_keys");
    std::fs::write(
        &keys,
        format!(
            "{}\npermitopen=\"127.0.0.1:{}\" {}\nrestrict {}\n",
            open.public_line, echo.port, limited.public_line, restricted.public_line
        ),
    )
    .unwrap();
    let port = free_port();
    let d = Daemon::start(
        &dir,
        "server",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauthorized_keys = \"{}\"\n",
            keys.display()
        ),
    )
    .await;
    let known = format!("[127.0.0.1]:{port} {}", d.host_key_blob());
    let ssh = |key: &KeyPair| {
        Ssh::new(&dir)
            .port(port)
            .identity(key)
            .known_hosts_line(&known)
    };

    // Unrestricted: -L, -R and -D all work.
    let (l, r, dy) = (free_port(), free_port(), free_port());
    let mut p = ssh(&open)
        .local_forward(&format!("127.0.0.1:{l}:127.0.0.1:{}", echo.port))
        .remote_forward(&format!("127.0.0.1:{r}:127.0.0.1:{}", echo.port))
        .dynamic(&format!("127.0.0.1:{dy}"))
        .spawn();
    p.wait_for_port(l, UP).await;
    p.wait_for_port(r, UP).await;
    transfer_echo(loopback(l), 8 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    transfer_echo(loopback(r), 8 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    let s = socks5_connect(loopback(dy), "localhost", echo.port)
        .await
        .unwrap();
    transfer_echo_on(s, 1 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    p.kill().await;

    // permitopen: the permitted target works, another is refused.
    let dy = free_port();
    let mut p = ssh(&limited).dynamic(&format!("127.0.0.1:{dy}")).spawn();
    p.wait_for_port(dy, UP).await;
    let s = socks5_connect(loopback(dy), "127.0.0.1", echo.port)
        .await
        .unwrap();
    transfer_echo_on(s, 1 << 20, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        socks5_connect(loopback(dy), "127.0.0.1", other.port)
            .await
            .is_err(),
        "permitopen must refuse other targets"
    );
    p.kill().await;

    // restrict: no forwarding at all; ssh with ExitOnForwardFailure gives up on -R.
    let mut p = ssh(&restricted)
        .remote_forward(&format!(
            "127.0.0.1:{}:127.0.0.1:{}",
            free_port(),
            echo.port
        ))
        .spawn();
    let status = p
        .exit_status_within(UP)
        .await
        .expect("ssh should exit when -R is refused");
    assert!(!status.success());
    assert!(
        p.stderr().contains("remote port forwarding failed"),
        "{}",
        p.stderr()
    );
    assert!(d.log().contains("refused by authorized_keys options"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forward_ports_are_freed_when_the_client_goes() {
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    let echo = EchoServer::start().await;
    // Two worker threads, as sshvpnd runs on four cores or more: there the end of a
    // connection races the cleanup of what it served.
    let (d, port) = sshvpnd_server(&dir, &key, &[("TOKIO_WORKER_THREADS", Path::new("2"))]).await;
    let known = format!("[127.0.0.1]:{port} {}", d.host_key_blob());
    let r = free_port();
    let fixed = format!("127.0.0.1:{r}:127.0.0.1:{}", echo.port);
    let ssh = || {
        Ssh::new(&dir)
            .port(port)
            .identity(&key)
            .known_hosts_line(&known)
            .remote_forward(&fixed)
    };

    // A fixed port, and two ports for the server to choose (`-R 0`: RFC 4254 §7.1); ssh
    // drops a repeated forward, so each of these goes to its own echo server.
    let other = EchoServer::start().await;
    let mut first = ssh()
        .remote_forward(&format!("127.0.0.1:0:127.0.0.1:{}", echo.port))
        .remote_forward(&format!("127.0.0.1:0:127.0.0.1:{}", other.port))
        .spawn();
    first.wait_for_port(r, UP).await;
    let deadline = tokio::time::Instant::now() + UP;
    let mut ports = allocated_ports(&first.stderr());
    while ports.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ssh did not report two allocated ports:\n{}",
            first.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        ports = allocated_ports(&first.stderr());
    }
    for p in [r].iter().chain(&ports) {
        transfer_echo(loopback(*p), 1 << 20, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{e}\nssh:\n{}\nsshvpnd:\n{}", first.stderr(), d.log()));
    }
    first.kill().await;

    // With the client gone, nothing listens on its ports any more (as with sshd).
    for p in [r].iter().chain(&ports) {
        let deadline = tokio::time::Instant::now() + UP;
        while tokio::net::TcpStream::connect(loopback(*p)).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "port {p} still listening {UP:?} after the client that asked for it was killed\nssh:\n{}\nsshvpnd:\n{}",
                first.stderr(),
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The same user reconnecting gets the fixed port again, and it carries data.
    let mut second = ssh().spawn();
    second.wait_for_port(r, UP).await;
    transfer_echo(loopback(r), 1 << 20, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\nssh:\n{}\nsshvpnd:\n{}", second.stderr(), d.log()));
    assert!(
        second.exit_status_within(Duration::ZERO).await.is_none(),
        "ssh gave up on -R {fixed} on its second connection:\n{}",
        second.stderr()
    );
    second.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_forward_on_port_0_gets_the_servers_port_and_cancels_it() {
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    let echo = EchoServer::start().await;
    let (server, port) = sshvpnd_server(&dir, &key, &[]).await;
    // As `ssh -R 0:127.0.0.1:ECHO -R 0:127.0.0.1:OTHER`: the server chooses the ports, and
    // each forward's connections go to its own target.
    let other = EchoServer::start().await;
    let client = Daemon::start(
        &dir,
        "client",
        &format!(
            "[[link]]\nname = \"site\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"alice\"\n\
             identity = \"{}\"\ntrust_on_first_use = true\n\n[[link.remote_forward]]\n\
             listen = \"127.0.0.1:0\"\nconnect = \"127.0.0.1:{}\"\n\n[[link.remote_forward]]\n\
             listen = \"127.0.0.1:0\"\nconnect = \"127.0.0.1:{}\"\n",
            key.private.display(),
            echo.port,
            other.port
        ),
    )
    .await;
    client.wait_link("site", "up", UP).await;
    let before = (echo.connections(), other.connections());
    port_0_forward_carries_data_and_cancels(&client, "site", || server.log()).await;
    assert_eq!(
        (echo.connections(), other.connections()),
        (before.0 + 1, before.1),
        "the first forward's connection went to its own target"
    );
    // The second forward, with its own port, is still there and goes to the other target.
    let info = client.link("site").await;
    let second: std::net::SocketAddr = info
        .forwards
        .iter()
        .find(|f| f.kind == "remote")
        .expect("the second remote forward")
        .listen
        .parse()
        .unwrap();
    transfer_echo(second, 1 << 20, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\nclient:\n{}", client.log()));
    assert_eq!(other.connections(), before.1 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_forward_on_port_0_added_at_runtime_works_with_openssh_sshd() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    let trust = known_hosts(&dir, &sshd.known_hosts_line());
    let client = Daemon::start(&dir, "client", &link_to("one", sshd.port(), &key, &trust)).await;
    client.wait_link("one", "up", UP).await;
    let target = format!("127.0.0.1:{}", echo.port);
    let (ok, out, err) = client
        .ctl(&["forward", "add", "one", "remote", "127.0.0.1:0", &target])
        .await;
    assert!(ok, "forward add: {out}{err}");
    // A second one on port 0 is no duplicate: the server chooses another port for it.
    let other = EchoServer::start().await;
    let other_target = format!("127.0.0.1:{}", other.port);
    let (ok, out, err) = client
        .ctl(&[
            "forward",
            "add",
            "one",
            "remote",
            "127.0.0.1:0",
            &other_target,
        ])
        .await;
    assert!(ok, "a second forward add on port 0: {out}{err}");
    port_0_forward_carries_data_and_cancels(&client, "one", || sshd.log()).await;
    assert_eq!(
        other.connections(),
        0,
        "the first forward went to its own target"
    );
    let deadline = tokio::time::Instant::now() + UP;
    let second: std::net::SocketAddr = loop {
        let info = client.link("one").await;
        let forward = info.forwards.iter().find(|f| f.kind == "remote");
        if let Some(f) = forward
            && f.state == "active"
            && let Ok(listen) = f.listen.parse::<std::net::SocketAddr>()
            && listen.port() != 0
        {
            break listen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no chosen port for the second forward after {UP:?}: {forward:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    transfer_echo(second, 1 << 20, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}
client:
{}
sshd:
{}",
                client.log(),
                sshd.log()
            )
        });
    assert_eq!(
        other.connections(),
        1,
        "the second forward went to its target"
    );
}

/// The link's one remote forward, asked for on port 0: the status shows the port the server
/// chose, it carries data to the echo server, and removing it by that address makes the
/// server stop listening (a cancel names the chosen port: RFC 4254 §7.1).
async fn port_0_forward_carries_data_and_cancels(
    client: &Daemon,
    link: &str,
    server_log: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + UP;
    let chosen: std::net::SocketAddr = loop {
        let info = client.link(link).await;
        let forward = info
            .forwards
            .iter()
            .find(|f| f.kind == "remote")
            .expect("the remote forward in the status");
        let listen: std::net::SocketAddr = forward.listen.parse().unwrap();
        if forward.state == "active" && listen.port() != 0 {
            break listen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no chosen port in the status after {UP:?}: {forward:?}\n{}",
            client.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    transfer_echo(chosen, 1 << 20, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\nclient:\n{}\nserver:\n{}", client.log(), server_log()));

    let (ok, out, err) = client
        .ctl(&["forward", "remove", link, &chosen.to_string()])
        .await;
    assert!(ok, "forward remove: {out}{err}");
    let deadline = tokio::time::Instant::now() + UP;
    while tokio::net::TcpStream::connect(chosen).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{chosen} still listening {UP:?} after the forward was removed\nserver:\n{}",
            server_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !client
            .link(link)
            .await
            .forwards
            .iter()
            .any(|f| f.listen == chosen.to_string()),
        "the removed forward left the status"
    );
}

/// The ports ssh reports the server allocated for its `-R 0:…` forwards.
fn allocated_ports(ssh_log: &str) -> Vec<u16> {
    ssh_log
        .lines()
        .filter_map(|l| {
            l.split("Allocated port ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_from_ssh_agent_and_passphrase_file() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let agent_key = dir.keygen("in-agent").await;
    let locked = dir.keygen_with_passphrase("locked", "correct horse").await;
    sshd.authorize(&agent_key);
    sshd.authorize(&locked);
    let trust = known_hosts(&dir, &sshd.known_hosts_line());

    // ssh-agent holding the key; the link has no identity file.
    let sock = dir.path().join("agent.sock");
    let _agent = tokio::process::Command::new(sshvpn_tests::harness::require("ssh-agent"))
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let added = tokio::process::Command::new(sshvpn_tests::harness::require("ssh-add"))
        .arg(&agent_key.private)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .await
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let body = format!(
        "[[link]]\nname = \"agent\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"root\"\n{trust}\n\n{}identity_passphrase_file = \"{}\"\n",
        sshd.port(),
        link_to("locked", sshd.port(), &locked, &trust),
        {
            let p = dir.path().join("passphrase");
            std::fs::write(&p, "correct horse\n").unwrap();
            p.display().to_string()
        }
    );
    let d = Daemon::start_env(&dir, "client", &body, &[("SSH_AUTH_SOCK", &sock)]).await;
    d.wait_link("agent", "up", UP).await;
    d.wait_link("locked", "up", UP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_added_and_removed_at_runtime() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    let d = Daemon::start(
        &dir,
        "client",
        &link_to(
            "one",
            sshd.port(),
            &key,
            &known_hosts(&dir, &sshd.known_hosts_line()),
        ),
    )
    .await;
    d.wait_link("one", "up", UP).await;
    let (socks, local, remote) = (free_port(), free_port(), free_port());
    let target = format!("127.0.0.1:{}", echo.port);
    for args in [
        vec![
            "forward",
            "add",
            "one",
            "socks",
            &format!("127.0.0.1:{socks}"),
        ],
        vec![
            "forward",
            "add",
            "one",
            "local",
            &format!("127.0.0.1:{local}"),
            &target,
        ],
        vec![
            "forward",
            "add",
            "one",
            "remote",
            &format!("127.0.0.1:{remote}"),
            &target,
        ],
    ] {
        let (ok, out, err) = d
            .ctl(&args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>())
            .await;
        assert!(ok, "{args:?}: {out}{err}");
    }
    let s = socks5_connect(loopback(socks), "127.0.0.1", echo.port)
        .await
        .unwrap();
    transfer_echo_on(s, 1 << 20, Duration::from_secs(30))
        .await
        .unwrap();
    transfer_echo(loopback(local), 1 << 20, Duration::from_secs(30))
        .await
        .unwrap();
    transfer_echo(loopback(remote), 1 << 20, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        d.link("one")
            .await
            .forwards
            .iter()
            .filter(|f| f.state == "active")
            .count(),
        3
    );
    // A duplicate is refused with a one-line error.
    let (ok, _, err) = d
        .ctl(&[
            "forward",
            "add",
            "one",
            "socks",
            &format!("127.0.0.1:{socks}"),
        ])
        .await;
    assert!(!ok && err.contains("in use"), "{err}");
    for listen in [format!("127.0.0.1:{local}"), format!("127.0.0.1:{remote}")] {
        let (ok, out, err) = d.ctl(&["forward", "remove", "one", &listen]).await;
        assert!(ok, "{out}{err}");
    }
    assert!(
        tokio::net::TcpStream::connect(loopback(local))
            .await
            .is_err(),
        "local listener closed"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(loopback(remote))
            .await
            .is_err(),
        "sshd stopped listening after cancel"
    );
    assert_eq!(d.link("one").await.forwards.len(), 1);
}

/// A SOCKS5 CONNECT with username/password, by hand: returns the reply code and the stream.
async fn socks5_auth(
    proxy: u16,
    user: &str,
    pass: &str,
    atyp_addr: &[u8],
    port: u16,
) -> (u8, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(loopback(proxy))
        .await
        .unwrap();
    s.write_all(&[5, 1, 2]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 2], "proxy must ask for username/password");
    let mut auth = vec![1, user.len() as u8];
    auth.extend_from_slice(user.as_bytes());
    auth.push(pass.len() as u8);
    auth.extend_from_slice(pass.as_bytes());
    s.write_all(&auth).await.unwrap();
    let mut a = [0u8; 2];
    s.read_exact(&mut a).await.unwrap();
    if a[1] != 0 {
        return (0xff, s);
    }
    let mut req = vec![5, 1, 0];
    req.extend_from_slice(atyp_addr);
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply[..4]).await.unwrap();
    let rest = match reply[3] {
        1 => 6,
        4 => 18,
        _ => 0,
    };
    let mut tail = vec![0u8; rest];
    s.read_exact(&mut tail).await.unwrap();
    (reply[1], s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_auth_ipv6_and_failure_codes_through_the_daemon() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TestDir::new();
    // The far end is another sshvpnd (a site link): it connects out over IPv6 too.
    let key = dir.keygen("client").await;
    let (_server, server_port) = sshvpnd_server(&dir, &key, &[]).await;
    // An echo service on IPv6 loopback.
    let v6 = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let v6_port = v6.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = v6.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let socks = free_port();
    let body = format!(
        "{}\n[[link.socks]]\nlisten = \"127.0.0.1:{socks}\"\nusername = \"alice\"\npassword = \"s3cret\"\n",
        link_to("one", server_port, &key, "trust_on_first_use = true")
    );
    let d = Daemon::start(&dir, "client", &body).await;
    d.wait_link("one", "up", UP).await;

    let mut v6_addr = vec![4u8];
    v6_addr.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    let (code, mut s) = socks5_auth(socks, "alice", "s3cret", &v6_addr, v6_port).await;
    assert_eq!(code, 0, "CONNECT to [::1] through the link");
    s.write_all(b"over ipv6").await.unwrap();
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"over ipv6");
    // While it is open, status counts it by kind.
    let info = d.link("one").await;
    assert_eq!(
        info.channels_by_kind.get("direct-tcpip"),
        Some(&1),
        "{info:?}"
    );

    let (code, _) = socks5_auth(socks, "alice", "wrong", &v6_addr, v6_port).await;
    assert_eq!(code, 0xff, "a wrong password is refused");

    // Nothing listens there: the server's "Connection refused" becomes reply 5.
    let closed = free_port();
    let (code, _) = socks5_auth(socks, "alice", "s3cret", &[1, 127, 0, 0, 1], closed).await;
    assert_eq!(code, 5, "connection refused");
    // A name that does not resolve on the far side: host unreachable (4) or general failure (1).
    let name = b"no-such-host.invalid";
    let mut dom = vec![3u8, name.len() as u8];
    dom.extend_from_slice(name);
    let (code, _) = socks5_auth(socks, "alice", "s3cret", &dom, 80).await;
    assert!(
        code == 4 || code == 1,
        "unresolvable name gave reply {code}"
    );
    assert_eq!(d.link("one").await.state, "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sets_the_proxy_and_unix_socket_forwards_work() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    let socks = free_port();
    let unix = dir.path().join("fwd.sock");
    let body = format!(
        "{}\n[[link.socks]]\nlisten = \"127.0.0.1:{socks}\"\n\n[[link.forward]]\nlisten = \"{}\"\nconnect = \"127.0.0.1:{}\"\n",
        link_to(
            "one",
            sshd.port(),
            &key,
            &known_hosts(&dir, &sshd.known_hosts_line())
        ),
        unix.display(),
        echo.port
    );
    let d = Daemon::start(&dir, "client", &body).await;
    d.wait_link("one", "up", UP).await;

    let (ok, out, err) = d
        .ctl(&[
            "exec",
            "one",
            "--",
            "sh",
            "-c",
            "echo $ALL_PROXY $https_proxy",
        ])
        .await;
    assert!(ok, "{err}");
    let want = format!("socks5h://127.0.0.1:{socks}");
    assert_eq!(out.trim(), format!("{want} {want}"));
    // The program's exit status is passed through.
    let (ok, _, _) = d.ctl(&["exec", "one", "--", "sh", "-c", "exit 3"]).await;
    assert!(!ok);

    let mut s = tokio::net::UnixStream::connect(&unix).await.unwrap();
    s.write_all(b"through a unix socket").await.unwrap();
    let mut buf = [0u8; 21];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"through a unix socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_with_host_and_user_certificates_to_openssh_sshd() {
    let dir = TestDir::new();
    let host_ca = dir.keygen("host_ca").await;
    let user_ca = dir.keygen("user_ca").await;
    let host = dir.keygen("ssh_host_ed25519_key").await;
    let host_cert = dir
        .sign_key(
            &host_ca,
            &host,
            "sshd",
            &["-h", "-n", "127.0.0.1", "-V", "-5m:+1h"],
        )
        .await;
    let sshd = Sshd::start(
        &dir,
        SshdOptions {
            host_key: Some(host.private.clone()),
            extra: vec![
                ("HostCertificate".into(), host_cert.display().to_string()),
                (
                    "TrustedUserCAKeys".into(),
                    user_ca.public.display().to_string(),
                ),
            ],
            ..SshdOptions::default()
        },
    )
    .await;
    // The identity is not in authorized_keys; its certificate, `client-cert.pub` beside it
    // (OpenSSH's convention, no `certificate` key needed), is what logs in.
    let key = dir.keygen("client").await;
    dir.sign_key(&user_ca, &key, "alice", &["-n", "root", "-V", "-5m:+1h"])
        .await;
    let echo = EchoServer::start().await;
    let local = free_port();
    // known_hosts holds only the host CA.
    let trust = known_hosts(
        &dir,
        &format!(
            "@cert-authority [127.0.0.1]:{} {}",
            sshd.port(),
            host_ca.key_type_and_blob()
        ),
    );
    let body = format!(
        "{}\n[[link.forward]]\nlisten = \"127.0.0.1:{local}\"\nconnect = \"127.0.0.1:{}\"\n",
        link_to("certs", sshd.port(), &key, &trust),
        echo.port
    );
    let d = Daemon::start(&dir, "client", &body).await;
    d.wait_link("certs", "up", UP).await;
    transfer_echo(loopback(local), 1 << 20, Duration::from_secs(30))
        .await
        .unwrap();
    let log = sshd.log();
    assert!(
        log.contains("Accepted publickey for root") && log.contains("ED25519-CERT"),
        "{log}"
    );
    assert_eq!(d.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshvpnd_server_trusts_user_certificates_from_trusted_user_ca_keys() {
    let dir = TestDir::new();
    let user_ca = dir.keygen("user_ca").await;
    let key = dir.keygen("client").await;
    let cert = dir
        .sign_key(&user_ca, &key, "alice", &["-n", "root", "-V", "-5m:+1h"])
        .await;
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, "").unwrap();
    let echo = EchoServer::start().await;
    let port = free_port();
    let d = Daemon::start(
        &dir,
        "server",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauthorized_keys = \"{}\"\ntrusted_user_ca_keys = \"{}\"\n",
            keys.display(),
            user_ca.public.display()
        ),
    )
    .await;
    let known = format!("[127.0.0.1]:{port} {}", d.host_key_blob());
    let l = free_port();
    let mut p = Ssh::new(&dir)
        .port(port)
        .identity(&key)
        .option("CertificateFile", &cert.display().to_string())
        .known_hosts_line(&known)
        .local_forward(&format!("127.0.0.1:{l}:127.0.0.1:{}", echo.port))
        .spawn();
    p.wait_for_port(l, UP).await;
    transfer_echo(loopback(l), 1 << 20, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\nssh:\n{}\nsshvpnd:\n{}", p.stderr(), d.log()));
    p.kill().await;
    assert!(d.log().contains("certificate=true"), "{}", d.log());
}
