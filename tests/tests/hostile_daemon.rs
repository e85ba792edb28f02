//! Hostile peers at scale against real sshvpnd processes: thousands of unauthenticated
//! connections, pre-banner floods, running out of file descriptors, ten thousand SOCKS
//! connections through a link, garbage on the control socket, and ssh-audit's verdict.
//!
//! Figures (RSS, descriptors, latency) are printed so a run's output records them; run with
//! `--nocapture` (nextest: `--no-capture`) to see them. Everything is on loopback; attackers
//! connect from other loopback addresses (127.0.0.2 …) than the user (127.0.0.1), as an
//! attacker on the Internet would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sshvpn_tests::daemon::{Daemon, status_kib};
use sshvpn_tests::harness::{
    EchoServer, KeyPair, TestDir, free_port, loopback, require, socks5_connect, transfer_echo_on,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const UP: Duration = Duration::from_secs(15);
/// How long a user may wait for a link while the server is under attack.
const USER_PATIENCE: Duration = Duration::from_secs(10);
/// The server's resident memory must stay below this under every attack here.
const SERVER_RSS_LIMIT_KIB: u64 = 64 * 1024;
const MIB: f64 = 1024.0;

// ---- what /proc says about a process -------------------------------------------------------

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Resident anonymous memory: what the process allocated, without the pages of its program
/// and libraries (which grow as more of the code runs the first time, and are shared).
fn anon_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon")
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

/// User plus system CPU time in clock ticks (proc(5): fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after_name = &stat[stat.rfind(')').expect("stat comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so fields 14 and 15 are at 11 and 12.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Polls until `pred` holds for the value of `probe`, or panics after `timeout` with `what`.
async fn settle<T: std::fmt::Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
    pred: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let v = probe();
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {v:?} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- daemons -------------------------------------------------------------------------------

/// A key authorized on the server and the server's `[server]` section (plus `extra` lines).
async fn server_body(dir: &TestDir, port: u16, extra: &str) -> (String, KeyPair) {
    let key = dir.keygen("client").await;
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, format!("{}\n", key.public_line)).unwrap();
    (
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\nauthorized_keys = \"{}\"\n{extra}",
            keys.display()
        ),
        key,
    )
}

fn link_body(port: u16, key: &KeyPair, socks: u16) -> String {
    format!(
        "[[link]]\nname = \"site\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"alice\"\nidentity = \"{}\"\ntrust_on_first_use = true\nkeepalive = \"2s\"\nkeepalive_max = 3\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\n[[link.socks]]\nlisten = \"127.0.0.1:{socks}\"\n",
        key.private.display()
    )
}

/// An sshvpnd server, a client daemon whose link "site" to it is up with a SOCKS port, and an
/// echo server to reach through it.
struct SocksLink {
    server: Daemon,
    client: Daemon,
    echo: EchoServer,
    socks: SocketAddr,
}

/// Starts a [`SocksLink`]; `server_env` and `client_env` are extra environment variables for
/// each daemon.
async fn socks_link(
    dir: &TestDir,
    server_env: &[(&str, &std::path::Path)],
    client_env: &[(&str, &std::path::Path)],
) -> SocksLink {
    let port = free_port();
    let (body, key) = server_body(dir, port, "").await;
    let server = Daemon::start_env(dir, "server", &body, server_env).await;
    let echo = EchoServer::start().await;
    let socks_port = free_port();
    let client = Daemon::start_env(
        dir,
        "client",
        &link_body(port, &key, socks_port),
        client_env,
    )
    .await;
    client.wait_link("site", "up", UP).await;
    SocksLink {
        server,
        client,
        echo,
        socks: loopback(socks_port),
    }
}

/// What a user does: start a client daemon with a link to `port`, wait for it, and push 1 MiB
/// through its SOCKS port to `echo`. Returns the daemon, the time all of that took and the
/// SOCKS address.
async fn user_connects(
    dir: &TestDir,
    name: &str,
    port: u16,
    key: &KeyPair,
    echo: &EchoServer,
    within: Duration,
) -> (Daemon, Duration, SocketAddr) {
    let socks = free_port();
    let started = Instant::now();
    let client = Daemon::start(dir, name, &link_body(port, key, socks)).await;
    client.wait_link("site", "up", within).await;
    let stream = socks5_connect(loopback(socks), "127.0.0.1", echo.port)
        .await
        .expect("SOCKS CONNECT through the link");
    transfer_echo_on(stream, 1 << 20, within)
        .await
        .expect("1 MiB echoed through the link");
    (client, started.elapsed(), loopback(socks))
}

// ---- the attacker process ------------------------------------------------------------------

/// `netprobe flood`: a separate process holding many unauthenticated connections.
struct Flood {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Flood {
    /// Starts the flood and waits until every connection attempt has finished.
    async fn start(port: u16, source: &str, n: usize) -> (Flood, usize) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_netprobe"))
            .args([
                "flood",
                &format!("127.0.0.1:{port}"),
                source,
                &n.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start netprobe flood");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("netprobe flood did not finish connecting within 60 s")
            .unwrap()
            .expect("netprobe flood exited early");
        // "connected C failed F"
        let words: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"connected"), "{first}");
        let connected: usize = words[1].parse().unwrap();
        (Flood { child, lines }, connected)
    }

    /// Closes every connection; returns how many the server still held open at that moment.
    async fn finish(mut self) -> usize {
        drop(self.child.stdin.take());
        let last = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("netprobe flood did not finish within 30 s")
            .unwrap()
            .expect("netprobe flood exited without its summary");
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        // "open O failed F"
        let words: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"open"), "{last}");
        words[1].parse().unwrap()
    }
}

// ---- 1. ten thousand unauthenticated connections -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unauthenticated_connections_do_not_lock_out_a_user() {
    const ATTACK: usize = 10_000;
    let dir = TestDir::new();
    let port = free_port();
    let (body, key) = server_body(&dir, port, "").await;
    let server = Daemon::start(&dir, "server", &body).await;
    let pid = server.pid();
    let echo = EchoServer::start().await;
    let fds_before = fd_count(pid);
    let rss_before = rss_kib(pid);

    let (flood, connected) = Flood::start(port, "127.0.0.2", ATTACK).await;
    assert_eq!(
        connected, ATTACK,
        "every attacking connection reached the server (it kept accepting)"
    );
    // The server keeps at most max_startups_per_source (default 10) of the attacker's
    // unauthenticated connections and closes the rest at once. (The attacker's own count of
    // open connections is higher: those the kernel's full accept queue left half-open.)
    let fds_flood = settle(
        Duration::from_secs(5),
        "server descriptors while the attacker holds its connections",
        || fd_count(pid),
        |&n| n <= fds_before + sshvpnd::server::MAX_STARTUPS_PER_SOURCE,
    )
    .await;

    // While the attacker holds its connections, a user's link authenticates and moves data.
    let (client, latency, _) =
        user_connects(&dir, "client", port, &key, &echo, USER_PATIENCE).await;
    assert!(
        latency < USER_PATIENCE,
        "the user waited {latency:?} under attack"
    );
    let rss_flood = rss_kib(pid);
    let fds_user = fd_count(pid);
    let held = flood.finish().await;
    assert!(
        rss_flood < SERVER_RSS_LIMIT_KIB,
        "server RSS {rss_flood} KiB under attack"
    );
    assert_eq!(client.terminate().await, Some(0));

    let fds_after = settle(
        Duration::from_secs(10),
        "server descriptors after the attack",
        || fd_count(pid),
        |&n| n <= fds_before + 2,
    )
    .await;
    println!(
        "10k unauthenticated: server fds {fds_before} before, {fds_flood} under attack, {fds_user} with the user \
         connected too, {fds_after} after; RSS {:.1} MiB before, {:.1} MiB under attack (limit {:.0}); \
         connections the attacker saw open at the end: {held}; \
         user link up + 1 MiB echoed in {:.3} s",
        rss_before as f64 / MIB,
        rss_flood as f64 / MIB,
        SERVER_RSS_LIMIT_KIB as f64 / MIB,
        latency.as_secs_f64()
    );
}

// ---- 1b. running out of file descriptors ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_survives_running_out_of_file_descriptors() {
    const NOFILE: u64 = 64;
    let dir = TestDir::new();
    let port = free_port();
    // Startup limits above the descriptor limit, so descriptors run out first.
    let (body, key) = server_body(
        &dir,
        port,
        "max_startups = 500\nmax_startups_per_source = 500\n",
    )
    .await;
    let server = Daemon::start_with_nofile(&dir, "server", &body, NOFILE).await;
    let pid = server.pid();
    let echo = EchoServer::start().await;

    let (flood, connected) = Flood::start(port, "127.0.0.2", 300).await;
    // The kernel queues what sshvpnd cannot accept; under a parallel test run a few SYNs may
    // still be in retransmission. Far more than the descriptor limit is what matters.
    assert!(
        connected as u64 > 2 * NOFILE,
        "only {connected} of 300 connections reached the server's queue"
    );
    // Out of descriptors with connections still queued: the accept loop must wait, not spin.
    let fds = fd_count(pid);
    let ticks_before = cpu_ticks(pid);
    let sample = Duration::from_secs(2);
    tokio::time::sleep(sample).await;
    let ticks = cpu_ticks(pid) - ticks_before;
    // Clock ticks are USER_HZ = 100 per second on Linux.
    let cpu_share = ticks as f64 / 100.0 / sample.as_secs_f64();
    assert!(
        server.log().contains("accept failed"),
        "the flood did not exhaust the server's {NOFILE} descriptors ({fds} open); log:\n{}",
        server.log()
    );
    assert!(
        cpu_share < 0.25,
        "out of descriptors, the server used {:.0}% of a CPU (a spinning accept loop)",
        cpu_share * 100.0
    );
    flood.finish().await;

    // Once the attacker is gone, the same listener serves a user.
    let (_client, latency, _) =
        user_connects(&dir, "client", port, &key, &echo, USER_PATIENCE).await;
    println!(
        "out of descriptors: {fds} open (limit {NOFILE}), server CPU {:.1}% while connections were queued; \
         user link up + 1 MiB echoed {:.3} s after the attacker left",
        cpu_share * 100.0,
        latency.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_and_control_socket_survive_running_out_of_file_descriptors() {
    const NOFILE: u64 = 64;
    let dir = TestDir::new();
    let port = free_port();
    let (body, key) = server_body(&dir, port, "").await;
    let _server = Daemon::start(&dir, "server", &body).await;
    let echo = EchoServer::start().await;
    let local = free_port();
    let client_body = format!(
        "{}\n[[link.forward]]\nlisten = \"127.0.0.1:{local}\"\nconnect = \"127.0.0.1:{}\"\n",
        link_body(port, &key, free_port()),
        echo.port
    );
    let client = Daemon::start_with_nofile(&dir, "client", &client_body, NOFILE).await;
    client.wait_link("site", "up", UP).await;
    let pid = client.pid();

    // More connections to the -L port than the client daemon has descriptors for.
    let mut held = Vec::new();
    for _ in 0..120 {
        held.push(
            tokio::net::TcpStream::connect(loopback(local))
                .await
                .expect("the kernel queues what sshvpnd cannot accept"),
        );
    }
    let log = settle(
        Duration::from_secs(10),
        "the client daemon running out of descriptors",
        || client.log(),
        |l| l.contains("accept failed"),
    )
    .await;
    assert!(log.contains("local forward"), "{log}");
    let ticks_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_share = (cpu_ticks(pid) - ticks_before) as f64 / 100.0 / 2.0;
    assert!(
        cpu_share < 0.25,
        "out of descriptors, the client daemon used {:.0}% of a CPU",
        cpu_share * 100.0
    );
    drop(held);

    // The -L listener and the control socket still serve.
    let started = Instant::now();
    let transfer = tokio::time::timeout(USER_PATIENCE, async {
        loop {
            match tokio::net::TcpStream::connect(loopback(local)).await {
                Ok(s) => match transfer_echo_on(s, 1 << 20, USER_PATIENCE).await {
                    Ok(()) => return,
                    // Connections queued during the exhaustion are still being let go.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
                Err(e) => panic!("the -L listener is gone: {e}"),
            }
        }
    })
    .await;
    assert!(
        transfer.is_ok(),
        "no 1 MiB echo through -L within {USER_PATIENCE:?} after the descriptors came back"
    );
    let (ok, out, err) = client.ctl(&["status"]).await;
    assert!(
        ok,
        "sshvpnctl status after running out of descriptors: {out}{err}"
    );
    println!(
        "client out of descriptors (limit {NOFILE}): CPU {:.1}% meanwhile; -L echoed 1 MiB {:.3} s after they came back",
        cpu_share * 100.0,
        started.elapsed().as_secs_f64()
    );
}

/// (soft, hard) "Max open files" from /proc/PID/limits.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshvpnd_raises_its_open_files_limit_to_the_hard_limit() {
    let dir = TestDir::new();
    // As systemd starts services: a soft limit of 1024 under a far higher hard limit.
    let (_, hard) = open_files_limits(std::process::id());
    assert!(
        hard > 1024,
        "this test needs a hard open files limit above 1024 (ulimit -Hn is {hard})"
    );
    let d = Daemon::start_with_ulimit(&dir, "d", "", "-Sn 1024").await;
    assert_eq!(
        open_files_limits(d.pid()),
        (hard, hard),
        "sshvpnd's soft open files limit"
    );
}

// ---- 2. pre-banner floods ------------------------------------------------------------------

/// Connects from `source` and writes `first` once, then `repeat` until the server cuts the
/// connection off. Returns the bytes written; panics if the server is still reading after 5 s.
async fn write_until_cut_off(source: IpAddr, port: u16, first: Vec<u8>, repeat: Vec<u8>) -> usize {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(loopback(port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let mut written = 0usize;
    let writing = async {
        if wr.write_all(&first).await.is_err() {
            return;
        }
        written += first.len();
        if repeat.is_empty() {
            // Everything is written (into socket buffers): only the server's EOF tells.
            std::future::pending::<()>().await;
        }
        while wr.write_all(&repeat).await.is_ok() {
            written += repeat.len();
        }
    };
    // Cut off = our writes fail, or the server's side reaches EOF (whatever it sent first,
    // e.g. its identification string, is read and ignored).
    let reading = async {
        let mut buf = vec![0u8; 4096];
        while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            () = writing => {}
            () = reading => {}
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "the server was still reading after 5 s ({written} bytes written)"
    );
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_banner_floods_are_cut_off_and_others_unaffected() {
    let dir = TestDir::new();
    let port = free_port();
    let (body, key) = server_body(&dir, port, "").await;
    let server = Daemon::start(&dir, "server", &body).await;
    let pid = server.pid();
    let echo = EchoServer::start().await;
    let (client, _, socks) = user_connects(&dir, "client", port, &key, &echo, UP).await;
    let since = client.link("site").await.since;
    let rss_before = rss_kib(pid);

    let line = b"a line before the identification string\r\n".to_vec();
    let huge = vec![b'a'; 1 << 20];
    let mut ssh_huge = b"SSH-2.0-".to_vec();
    ssh_huge.extend_from_slice(&huge);
    let lines_src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let huge_src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
    let hostile = async {
        let mut most = 0usize;
        for _round in 0..20 {
            let mut round = tokio::task::JoinSet::new();
            // At most max_startups_per_source at once from each address, so the version
            // parser, not the startup limit, is what cuts these off.
            for _ in 0..8 {
                round.spawn(write_until_cut_off(lines_src, port, vec![], line.clone()));
            }
            round.spawn(write_until_cut_off(
                lines_src,
                port,
                b"SSH-2.0-ok_1.0\r\n".to_vec(),
                line.clone(),
            ));
            round.spawn(write_until_cut_off(huge_src, port, huge.clone(), vec![]));
            round.spawn(write_until_cut_off(
                huge_src,
                port,
                ssh_huge.clone(),
                vec![],
            ));
            while let Some(n) = round.join_next().await {
                most = most.max(n.expect("hostile connection"));
            }
        }
        most
    };
    // Meanwhile an established user moves data through the same server.
    let user = async {
        let s = socks5_connect(socks, "127.0.0.1", echo.port).await.unwrap();
        transfer_echo_on(s, 16 << 20, Duration::from_secs(60)).await
    };
    let (most_written, user_result) = tokio::join!(hostile, user);
    user_result.expect("the user's transfer during the flood");
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < SERVER_RSS_LIMIT_KIB,
        "server RSS {rss_after} KiB after the flood"
    );
    let info = client.link("site").await;
    assert_eq!(
        (info.state.as_str(), info.since),
        ("up", since),
        "the user's link stayed up"
    );
    let log = server.log();
    for reason in [
        "not an SSH-2.0 identification",
        "identification line is longer than 255 bytes",
        "packet length",
    ] {
        assert!(
            log.contains(reason),
            "the server's log does not say {reason:?} for any flood; log:\n{log}"
        );
    }
    println!(
        "pre-banner floods: 220 hostile connections cut off (the most one wrote before its writes failed: \
         {most_written} bytes, socket buffers included); \
         server RSS {:.1} MiB before, {:.1} MiB after; user link stayed up and echoed 16 MiB meanwhile",
        rss_before as f64 / MIB,
        rss_after as f64 / MIB
    );
}

// ---- 3. ten thousand SOCKS connections -----------------------------------------------------

/// One short SOCKS session: CONNECT to the echo server, echo 64 bytes, close.
async fn socks_echo_once(socks: SocketAddr, echo_port: u16, i: usize) -> Result<(), String> {
    let mut s = socks5_connect(socks, "127.0.0.1", echo_port)
        .await
        .map_err(|e| format!("connection {i}: {e}"))?;
    let msg = format!("{i:064}");
    s.write_all(msg.as_bytes())
        .await
        .map_err(|e| format!("connection {i}: write: {e}"))?;
    let mut back = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut back))
        .await
        .map_err(|_| format!("connection {i}: no echo within 20 s"))?
        .map_err(|e| format!("connection {i}: read: {e}"))?;
    if back != msg.as_bytes() {
        return Err(format!("connection {i}: wrong echo"));
    }
    Ok(())
}

async fn socks_batches(socks: SocketAddr, echo_port: u16, total: usize, batch: usize) {
    let mut next = 0;
    while next < total {
        let mut set = tokio::task::JoinSet::new();
        for i in next..(next + batch).min(total) {
            set.spawn(socks_echo_once(socks, echo_port, i));
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        next += batch;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_socks_connections_leave_no_descriptors_or_memory_behind() {
    const TOTAL: usize = 10_000;
    const BATCH: usize = 250;
    /// RSS after the run may exceed the warm baseline by at most this much.
    const RSS_MARGIN_KIB: u64 = 8 * 1024;
    let dir = TestDir::new();
    let SocksLink {
        server,
        client,
        echo,
        socks,
    } = socks_link(&dir, &[], &[]).await;
    let (cpid, spid) = (client.pid(), server.pid());
    let (client_fds_start, server_fds_start) = (fd_count(cpid), fd_count(spid));

    // Warm-up: one batch, then let the daemon give back what it freed (once a second).
    socks_batches(socks, echo.port, BATCH, BATCH).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rss_warm = rss_kib(cpid);

    let started = Instant::now();
    socks_batches(socks, echo.port, TOTAL, BATCH).await;
    let elapsed = started.elapsed();
    let rss_peak = rss_kib(cpid);

    let client_fds = settle(
        Duration::from_secs(10),
        "client daemon descriptors",
        || fd_count(cpid),
        |&n| n <= client_fds_start + 2,
    )
    .await;
    let server_fds = settle(
        Duration::from_secs(10),
        "server daemon descriptors",
        || fd_count(spid),
        |&n| n <= server_fds_start + 2,
    )
    .await;
    let rss_after = settle(
        Duration::from_secs(10),
        "client daemon RSS (KiB) after the connections closed",
        || rss_kib(cpid),
        |&kib| kib <= rss_warm + RSS_MARGIN_KIB,
    )
    .await;
    let info = client.link("site").await;
    assert_eq!(info.state, "up");
    assert_eq!(info.channels, 0, "every channel closed: {info:?}");
    println!(
        "10k SOCKS connections ({BATCH} at a time) in {:.1} s: client fds {client_fds_start} -> {client_fds}, \
         server fds {server_fds_start} -> {server_fds}; client RSS warm {:.1} MiB, right after {:.1} MiB, \
         settled {:.1} MiB (margin {:.0} MiB)",
        elapsed.as_secs_f64(),
        rss_warm as f64 / MIB,
        rss_peak as f64 / MIB,
        rss_after as f64 / MIB,
        RSS_MARGIN_KIB as f64 / MIB
    );
}

/// Opens `n` SOCKS connections to the echo server, checks each one echoes, and returns them
/// all open. At most 100 are being set up at a time, so that a loaded machine (other tests
/// run alongside) does not overflow the listener's backlog or the handshake timeouts.
async fn socks_hold(socks: SocketAddr, echo_port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let opening = opening.clone();
        set.spawn(async move {
            let _permit = opening.acquire_owned().await.unwrap();
            let mut s = socks5_connect(socks, "127.0.0.1", echo_port)
                .await
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.write_all(b"x").await.unwrap();
            let mut back = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut back))
                .await
                .unwrap_or_else(|_| panic!("connection {i}: no echo within 20 s"))
                .unwrap();
            s
        });
    }
    let mut held = Vec::with_capacity(n);
    while let Some(s) = set.join_next().await {
        held.push(s.unwrap());
    }
    held
}

/// The issue-6 target "no growth after they close", against the idle daemon rather than a
/// warmed-up one: bursts of a thousand concurrent SOCKS connections, each closed in full,
/// must leave the client daemon's memory where it was with the link idle. Measured as
/// anonymous RSS (what the daemon allocated): total RSS also counts the program's own pages,
/// which grow as code runs for the first time. Before the SOCKS listener reaped finished
/// tasks as they ended and the channel tables shrank, a burst left 2.6 MiB behind here
/// (5–6 MiB in the benchmark's release build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_a_thousand_socks_connections_return_memory_to_idle() {
    const CONNECTIONS: usize = 1000;
    const BURSTS: usize = 3;
    /// Anonymous RSS after a burst may exceed the idle figure by at most this much.
    const MARGIN_KIB: u64 = 1536;
    sshvpn_tests::harness::raise_open_files_limit();
    let dir = TestDir::new();
    // The client at the level a daemon runs at (info). The tests' usual debug level keeps a
    // span per SOCKS connection, and the tracing registry keeps the slots of as many spans as
    // were ever open at once for reuse: a few hundred KiB of live data scattered over the
    // pages the burst used, which then cannot be returned.
    let SocksLink {
        server: _server,
        client,
        echo,
        socks,
    } = socks_link(&dir, &[], &[("RUST_LOG", std::path::Path::new("info"))]).await;
    let cpid = client.pid();
    // One connection first, so that what is built once on first use is in the baseline; then
    // let the daemon give back what it freed (it checks once a second).
    drop(socks_hold(socks, echo.port, 1).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (anon_idle, rss_idle) = (anon_kib(cpid), rss_kib(cpid));
    let mut figures = Vec::new();
    for burst in 1..=BURSTS {
        let held = socks_hold(socks, echo.port, CONNECTIONS).await;
        let anon_held = anon_kib(cpid);
        drop(held);
        let anon_after = settle(
            Duration::from_secs(10),
            &format!("client daemon anonymous RSS (KiB) after burst {burst} closed (idle {anon_idle} KiB)"),
            || anon_kib(cpid),
            |&kib| kib <= anon_idle + MARGIN_KIB,
        )
        .await;
        figures.push(format!(
            "{:.1} -> {:.1} (RSS {:.1})",
            anon_held as f64 / MIB,
            anon_after as f64 / MIB,
            rss_kib(cpid) as f64 / MIB
        ));
    }
    let info = client.link("site").await;
    assert_eq!(info.channels, 0, "every channel closed: {info:?}");
    println!(
        "{BURSTS} bursts of {CONNECTIONS} SOCKS connections: client anonymous RSS idle {:.1} MiB \
         (RSS {:.1}); held -> after each burst: {} MiB (margin {:.1} MiB)",
        anon_idle as f64 / MIB,
        rss_idle as f64 / MIB,
        figures.join(", "),
        MARGIN_KIB as f64 / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_transfer_leaves_no_memory_behind_once_the_link_is_quiet() {
    /// Anonymous RSS once the link is quiet may exceed the idle figure by at most this much.
    const MARGIN_KIB: u64 = 1024;
    let dir = TestDir::new();
    let info = [("RUST_LOG", std::path::Path::new("info"))];
    // Once the link has been quiet for 10 s (proto's QUIET_AFTER; checked again 10 s later
    // if the transfer was still going), both ends give their buffers back.
    let SocksLink {
        server,
        client,
        echo,
        socks,
    } = socks_link(&dir, &info, &info).await;
    let pids = [("client", client.pid()), ("server", server.pid())];
    // A small transfer first, so that what is built once on first use is in the baseline.
    let s = socks5_connect(socks, "127.0.0.1", echo.port).await.unwrap();
    transfer_echo_on(s, 64 * 1024, Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = pids.map(|(_, pid)| anon_kib(pid));

    // 64 MiB each way through one channel grows both daemons' transmit and receive buffers.
    let s = socks5_connect(socks, "127.0.0.1", echo.port).await.unwrap();
    transfer_echo_on(s, 64 << 20, Duration::from_secs(60))
        .await
        .unwrap();
    let after_bulk = pids.map(|(_, pid)| anon_kib(pid));
    assert!(
        after_bulk
            .iter()
            .zip(&idle)
            .all(|(a, i)| *a > i + MARGIN_KIB),
        "the transfer grew both daemons' memory (client, server): idle {idle:?} KiB, after \
         {after_bulk:?}"
    );
    let mut quiet = [0; 2];
    for (i, (name, pid)) in pids.iter().enumerate() {
        quiet[i] = settle(
            Duration::from_secs(30),
            &format!(
                "{name} daemon anonymous RSS (KiB) once the link is quiet (idle {} KiB)",
                idle[i]
            ),
            || anon_kib(*pid),
            |&kib| kib <= idle[i] + MARGIN_KIB,
        )
        .await;
    }
    println!(
        "bulk 64 MiB each way: anonymous RSS (client, server) idle {idle:?} KiB, right after \
         {after_bulk:?}, once quiet {quiet:?}"
    );
}

// ---- 3b. channels nobody reads -------------------------------------------------------------

/// A TCP service that accepts connections and never reads from them.
async fn stalled_service() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (port, task)
}

/// Writes to `stream` until `cap` bytes are written or a write makes no progress for `idle`.
async fn write_until_stalled(
    mut stream: tokio::net::TcpStream,
    cap: usize,
    idle: Duration,
) -> usize {
    let buf = vec![0x5a_u8; 256 * 1024];
    let mut written = 0;
    while written < cap {
        match tokio::time::timeout(idle, stream.write(&buf)).await {
            Ok(Ok(n)) if n > 0 => written += n,
            _ => break,
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_nobody_reads_hold_the_server_to_its_window_budget() {
    // A user pushes data into 128 channels whose destination never reads. The server must
    // hold what the channels' windows allow and no more: they adapt, and all of a
    // connection's windows add up to at most proto's `ChannelConfig::window_budget`
    // (256 MiB), and the daemon holds half a window more on its way to the socket. Without
    // the budget each channel took 16 MiB of window and 4 MiB of queue.
    const BUDGET_KIB: u64 = 256 * 1024;
    const LIMIT_KIB: u64 = 2 * BUDGET_KIB + 64 * 1024;
    const CHANNELS: usize = 128;
    let dir = TestDir::new();
    let info = [("RUST_LOG", std::path::Path::new("info"))];
    let SocksLink {
        server,
        client: _client,
        echo,
        socks,
    } = socks_link(&dir, &info, &info).await;
    let (stalled, _service) = stalled_service().await;
    let s = socks5_connect(socks, "127.0.0.1", echo.port).await.unwrap();
    transfer_echo_on(s, 64 * 1024, Duration::from_secs(10))
        .await
        .unwrap();
    let idle = anon_kib(server.pid());

    let mut streams = Vec::new();
    for _ in 0..CHANNELS {
        streams.push(socks5_connect(socks, "127.0.0.1", stalled).await.unwrap());
    }
    let writers: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(write_until_stalled(s, 24 << 20, Duration::from_secs(2))))
        .collect();
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    let held = anon_kib(server.pid()).saturating_sub(idle);
    println!(
        "{CHANNELS} channels nobody reads: {:.0} MiB written into them, server anonymous RSS \
         +{:.0} MiB (limit {:.0} MiB)",
        written as f64 / (1 << 20) as f64,
        held as f64 / MIB,
        LIMIT_KIB as f64 / MIB
    );
    assert!(
        written as u64 > (LIMIT_KIB + 256 * 1024) * 1024,
        "the writers got only {written} bytes in: too little to test the limit"
    );
    assert!(
        held <= LIMIT_KIB,
        "the server holds {held} KiB more than idle for channels nobody reads, above \
         {LIMIT_KIB} KiB"
    );
    // The link is still there for everything else: a new channel moves data.
    let s = socks5_connect(socks, "127.0.0.1", echo.port).await.unwrap();
    transfer_echo_on(s, 1 << 20, Duration::from_secs(20))
        .await
        .expect("1 MiB echoed through the same link while its other channels are stuck");
}

// ---- 3c. a burst of connections while the daemon is busy ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_for_a_busy_daemon_instead_of_being_dropped() {
    // 600 connections reach the SOCKS port while the daemon cannot accept (stopped here, busy
    // in life): the kernel must queue them all (a backlog of 1024; tokio's default of 128 left
    // the rest retrying SYNs at 1 s, 3 s, 7 s …), and once the daemon runs they are served.
    const BURST: usize = 600;
    let dir = TestDir::new();
    let SocksLink {
        server: _server,
        client,
        echo,
        socks,
    } = socks_link(&dir, &[], &[]).await;
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &client.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} the client daemon");
    };
    signal("-STOP");
    let connects: Vec<_> = (0..BURST)
        .map(|_| {
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(socks),
            ))
        })
        .collect();
    let mut queued = Vec::new();
    for c in connects {
        if let Ok(Ok(stream)) = c.await.unwrap() {
            queued.push(stream);
        }
    }
    signal("-CONT");
    assert_eq!(
        queued.len(),
        BURST,
        "connections completed while the daemon was stopped"
    );
    drop(queued);
    // The daemon serves the next ones as usual.
    let s = socks5_connect(socks, "127.0.0.1", echo.port).await.unwrap();
    transfer_echo_on(s, 64 * 1024, Duration::from_secs(10))
        .await
        .unwrap();
}

// ---- 4. malformed control requests ---------------------------------------------------------

/// Sends `line` on `conn` and returns the parsed reply.
async fn control_round_trip(
    conn: &mut BufReader<tokio::net::UnixStream>,
    line: &[u8],
) -> serde_json::Value {
    conn.get_mut().write_all(line).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_line(&mut reply))
        .await
        .expect("a control reply within 5 s")
        .unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?} is not JSON: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_control_requests_get_errors_and_the_daemon_keeps_serving() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir, "d", "").await;
    let mut conn = BufReader::new(tokio::net::UnixStream::connect(&d.socket).await.unwrap());
    let bad: [&[u8]; 6] = [
        b"garbage\n",
        b"{\"request\": \n",
        b"{\"request\":\"self-destruct\"}\n",
        b"[1,2,3]\n",
        b"\xff\xfe not UTF-8\n",
        b"{\"request\":\"up\"}\n",
    ];
    for line in bad {
        let reply = control_round_trip(&mut conn, line).await;
        assert_eq!(
            reply["response"],
            "error",
            "{:?} -> {reply}",
            String::from_utf8_lossy(line)
        );
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{reply}"
        );
    }
    // The same connection still answers a good request.
    let reply = control_round_trip(&mut conn, b"{\"request\":\"status\"}\n").await;
    assert_eq!(reply["response"], "status", "{reply}");

    // A line longer than the limit: an error, then the daemon hangs up (it does not buffer it).
    let mut long = BufReader::new(tokio::net::UnixStream::connect(&d.socket).await.unwrap());
    let oversized = vec![b'x'; sshvpn_proto::control::MAX_LINE + 100];
    let reply = control_round_trip(&mut long, &oversized).await;
    assert_eq!(reply["response"], "error", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than")),
        "{reply}"
    );
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(5), long.read_to_end(&mut rest)).await;
    assert!(
        eof.is_ok(),
        "the daemon closed the oversized request's connection"
    );

    // A client that connects and says nothing, or half a line, blocks nobody.
    let _silent = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let mut partial = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    partial.write_all(b"{\"request\":\"sta").await.unwrap();
    let (ok, out, err) = d.ctl(&["status"]).await;
    assert!(ok, "sshvpnctl status after malformed requests: {out}{err}");
    let (ok, out, err) = d.ctl(&["--json", "status"]).await;
    assert!(ok && out.contains("\"links\""), "{out}{err}");
}

// ---- 5. ssh-audit --------------------------------------------------------------------------

/// Every `notes.fail` entry in ssh-audit's JSON, as "section algorithm: note".
fn audit_failures(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["kex", "key", "enc", "mac"] {
        for alg in report[section].as_array().into_iter().flatten() {
            for note in alg["notes"]["fail"].as_array().into_iter().flatten() {
                out.push(format!("{section} {}: {note}", alg["algorithm"]));
            }
        }
    }
    out
}

fn audit_warnings(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["kex", "key", "enc", "mac"] {
        for alg in report[section].as_array().into_iter().flatten() {
            for note in alg["notes"]["warn"].as_array().into_iter().flatten() {
                out.push(format!("{section} {}: {note}", alg["algorithm"]));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_audit_finds_no_failures_and_sees_strict_kex() {
    let audit: PathBuf = require("ssh-audit");
    let version = Command::new(&audit)
        .arg("-h")
        .output()
        .await
        .expect("run ssh-audit -h");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let version = version
        .lines()
        .find(|l| l.contains("ssh-audit v"))
        .unwrap_or("ssh-audit (unknown version)")
        .trim_start_matches("# ")
        .to_owned();
    let dir = TestDir::new();
    let port = free_port();
    let (body, _key) = server_body(&dir, port, "").await;
    let _server = Daemon::start(&dir, "server", &body).await;
    // The connection-rate (DHEat) probe is left on: it is part of what ssh-audit reports.
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(&audit)
            .args(["-j", "-t", "20", "-p", &port.to_string(), "127.0.0.1"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ssh-audit finished within 90 s")
    .expect("run ssh-audit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{version}: output is not JSON ({e}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let kex: Vec<&str> = report["kex"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["algorithm"].as_str())
        .collect();
    assert!(
        kex.contains(&"kex-strict-s-v00@openssh.com"),
        "{version} does not see strict kex offered (ssh-audit ≥ 3.1 knows it; tests/run.sh installs 3.9.0): {kex:?}"
    );
    let notes = report["additional_notes"].to_string();
    assert!(
        notes.contains("properly supports the strict key exchange"),
        "{version} did not recognise strict kex: {notes}"
    );
    let failures = audit_failures(&report);
    assert!(
        failures.is_empty(),
        "{version} reports failures:\n{}",
        failures.join("\n")
    );
    assert!(
        report["cves"].as_array().is_some_and(Vec::is_empty),
        "{version} lists CVEs: {}",
        report["cves"]
    );
    // Exit status 3 is ssh-audit's "failure"; 2 (warnings) and 0 are acceptable.
    assert_ne!(
        out.status.code(),
        Some(3),
        "{version} exited with its failure status"
    );
    println!(
        "{version}: exit {:?}, kex {kex:?}, no failures; warnings: {:?}; notes: {}",
        out.status.code(),
        audit_warnings(&report),
        report["additional_notes"]
    );
}
