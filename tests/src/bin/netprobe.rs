//! netprobe: traffic endpoints for network-namespace tests, run inside namespaces with
//! `ip netns exec`. Prints one line of results; exits non-zero on failure.
//!
//!   netprobe sink ADDR:PORT                 accept one TCP connection, print "BYTES SHA256"
//!   netprobe send ADDR:PORT BYTES           send a deterministic pattern, print "BYTES SHA256"
//!   netprobe dribble ADDR:PORT BYTES        the same, one byte per write (TCP_NODELAY), 20 µs apart
//!   netprobe udp-echo ADDR:PORT             echo UDP datagrams for 60 s
//!   netprobe udp-ping ADDR:PORT COUNT       send COUNT datagrams, print how many came back
//!   netprobe udp-blast ADDR:PORT COUNT      send COUNT small datagrams 20 µs apart, print how many
//!   netprobe sink-forever ADDR:PORT         accept connections and discard what they send
//!   netprobe echo-forever ADDR:PORT         accept connections and echo what they send
//!   netprobe socks-send PROXY HOST:PORT SECS   push data through SOCKS5 for SECS, print Gbit/s
//!   netprobe socks-hold PROXY HOST:PORT N   open N SOCKS5 connections, print "held", wait for stdin EOF
//!   netprobe first-byte ADDR:PORT SECS      poll until a TCP echo answers, print the seconds it took
//!   netprobe echo-rtt ADDR:PORT COUNT MS    send one byte to a TCP echo every MS milliseconds,
//!                                           COUNT times, each after the last came back; print
//!                                           the round trips' median, 90th percentile and
//!                                           largest in milliseconds (NETPROBE_ALL=1: each
//!                                           one, in order, on stderr first)
//!   netprobe tcp-hold HOST BASE PORTS PER   open PER echo connections to each of PORTS ports from
//!                                           BASE, check each echoes a byte, print "held N", wait
//!                                           for stdin EOF
//!   netprobe flood ADDR:PORT SOURCE N       open N TCP connections from SOURCE (a third silent, a
//!                                           third sending an SSH banner and stalling, a third
//!                                           writing pre-banner lines until cut off); print
//!                                           "connected C failed F", then hold them until stdin
//!                                           closes and print "open O" (those still open)
//!   netprobe echo-check ADDR:PORT BYTES     send the pattern to an echo, check every byte that comes
//!                                           back and the EOF after it, print "BYTES SHA256"
//!   netprobe socks-echo-check PROXY HOST:PORT BYTES   the same through SOCKS5
//!   netprobe relay LISTEN CONNECT           carry each TCP connection on LISTEN to CONNECT as it
//!                                           is (no SSH, no cipher): the benchmark's reference for
//!                                           what any user-space relay costs here
//!   netprobe delay DEV MTU MS LOSS           a wide-area path, for a router namespace: create TUN
//!                                           device DEV, and write every packet read from it back
//!                                           into it MS milliseconds later, dropping LOSS percent
//!                                           at random (tc netem's delay and loss, which this
//!                                           kernel lacks); print "ready", run until killed
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sink", addr] => {
            let l = TcpListener::bind(addr).expect("bind");
            println!("listening");
            let (mut s, _) = l.accept().expect("accept");
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            loop {
                let n = s.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                total += n as u64;
            }
            println!("{total} {}", hex(&h.finalize()));
        }
        ["send", addr, bytes] => {
            let total: usize = bytes.parse().expect("bytes");
            let mut s = connect_retry(addr);
            let mut h = Sha256::new();
            let mut sent = 0usize;
            let mut block = vec![0u8; 1 << 16];
            while sent < total {
                let n = block.len().min(total - sent);
                for (i, b) in block[..n].iter_mut().enumerate() {
                    *b = pattern_byte(sent + i);
                }
                s.write_all(&block[..n]).expect("write");
                h.update(&block[..n]);
                sent += n;
            }
            s.shutdown(std::net::Shutdown::Write).ok();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            println!("{sent} {}", hex(&h.finalize()));
        }
        ["dribble", addr, bytes] => {
            let total: usize = bytes.parse().expect("bytes");
            let mut s = connect_retry(addr);
            s.set_nodelay(true).ok();
            let mut h = Sha256::new();
            for i in 0..total {
                let b = [pattern_byte(i)];
                s.write_all(&b).expect("write");
                h.update(b);
                // Apart enough that each byte is read on its own.
                std::thread::sleep(Duration::from_micros(20));
            }
            s.shutdown(std::net::Shutdown::Write).ok();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            println!("{total} {}", hex(&h.finalize()));
        }
        ["udp-echo", addr] => {
            let u = UdpSocket::bind(addr).expect("bind");
            u.set_read_timeout(Some(Duration::from_secs(60))).ok();
            println!("listening");
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = u.recv_from(&mut buf) {
                let _ = u.send_to(&buf[..n], from);
            }
        }
        ["udp-blast", addr, count] => {
            let count: u32 = count.parse().expect("count");
            let u = UdpSocket::bind("0.0.0.0:0").expect("bind");
            u.connect(addr).expect("connect");
            let mut sent = 0;
            for i in 0..count {
                if u.send(format!("blast {i}").as_bytes()).is_ok() {
                    sent += 1;
                }
                // Apart enough that each is read from the device on its own.
                std::thread::sleep(Duration::from_micros(20));
            }
            println!("{sent}");
        }
        ["udp-ping", addr, count] => {
            let count: u32 = count.parse().expect("count");
            let bind = if addr.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let u = UdpSocket::bind(bind).expect("bind");
            u.connect(addr).expect("connect");
            u.set_read_timeout(Some(Duration::from_millis(500))).ok();
            let mut got = 0;
            let mut buf = [0u8; 64];
            for i in 0..count {
                let msg = format!("probe {i}");
                u.send(msg.as_bytes()).ok();
                if u.recv(&mut buf).is_ok_and(|n| &buf[..n] == msg.as_bytes()) {
                    got += 1;
                }
            }
            println!("{got}");
        }
        ["echo-forever", addr] => {
            let l = TcpListener::bind(addr).expect("bind");
            println!("listening");
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        ["sink-forever", addr] => {
            let l = TcpListener::bind(addr).expect("bind");
            println!("listening");
            for s in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = vec![0u8; 1 << 16];
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        }
        ["socks-send", proxy, target, secs] => {
            let secs: f64 = secs.parse().expect("secs");
            let mut s = socks_connect(proxy, target);
            let block = vec![0x5au8; 1 << 17];
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                s.write_all(&block).expect("write");
                sent += block.len() as u64;
            }
            let gbit = sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
            println!("{gbit:.3}");
        }
        ["socks-hold", proxy, target, n] => {
            let n: usize = n.parse().expect("n");
            let held: Vec<TcpStream> = (0..n).map(|_| socks_connect(proxy, target)).collect();
            println!("held {}", held.len());
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(held);
        }
        ["tcp-hold", host, base, ports, per] => {
            let base: u16 = base.parse().expect("base port");
            let ports: u16 = ports.parse().expect("port count");
            let per: usize = per.parse().expect("connections per port");
            let mut held = Vec::new();
            for port in base..base + ports {
                for _ in 0..per {
                    let mut s = TcpStream::connect((*host, port))
                        .unwrap_or_else(|e| panic!("connect {host}:{port}: {e}"));
                    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
                    let mut b = [0u8; 1];
                    s.write_all(b"x").expect("write");
                    s.read_exact(&mut b)
                        .unwrap_or_else(|e| panic!("no echo through {host}:{port}: {e}"));
                    held.push(s);
                }
            }
            println!("held {}", held.len());
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(held);
        }
        ["echo-rtt", addr, count, ms] => {
            let count: usize = count.parse().expect("count");
            assert!(count > 0, "echo-rtt: COUNT must be at least 1");
            let gap = Duration::from_millis(ms.parse().expect("ms"));
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.set_read_timeout(Some(Duration::from_secs(30))).ok();
            let mut rtts = Vec::with_capacity(count);
            let mut b = [0u8; 1];
            for _ in 0..count {
                let sent = Instant::now();
                s.write_all(b"x").expect("write");
                s.read_exact(&mut b).expect("echo");
                rtts.push(sent.elapsed().as_secs_f64() * 1e3);
                std::thread::sleep(gap);
            }
            if std::env::var_os("NETPROBE_ALL").is_some() {
                let all: Vec<String> = rtts.iter().map(|r| format!("{r:.0}")).collect();
                eprintln!("{}", all.join(" "));
            }
            rtts.sort_by(f64::total_cmp);
            let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
            println!("{:.1} {:.1} {:.1}", at(0.5), at(0.9), at(1.0));
        }
        ["first-byte", addr, secs] => {
            let limit = Duration::from_secs_f64(secs.parse().expect("secs"));
            let start = Instant::now();
            loop {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                    let mut b = [0u8; 1];
                    if s.write_all(b"x").is_ok() && matches!(s.read(&mut b), Ok(1)) {
                        println!("{:.4}", start.elapsed().as_secs_f64());
                        return;
                    }
                }
                assert!(
                    start.elapsed() < limit,
                    "no echo through {addr} within {limit:?}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        ["flood", addr, source, n] => {
            flood(
                addr.parse().expect("ADDR:PORT"),
                source.parse().expect("SOURCE address"),
                n.parse().expect("N"),
            );
        }
        ["echo-check", addr, bytes] => {
            let total = bytes.parse().expect("bytes");
            println!("{}", echo_check(connect_retry(addr), total));
        }
        ["socks-echo-check", proxy, target, bytes] => {
            let total = bytes.parse().expect("bytes");
            println!("{}", echo_check(socks_connect(proxy, target), total));
        }
        ["relay", listen, connect] => {
            let l = TcpListener::bind(listen).expect("bind");
            println!("listening");
            for a in l.incoming().flatten() {
                let Ok(b) = TcpStream::connect(connect) else {
                    continue;
                };
                let _ = (a.set_nodelay(true), b.set_nodelay(true));
                let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
                std::thread::spawn(move || relay_copy(a, b));
                std::thread::spawn(move || relay_copy(b2, a2));
            }
        }
        ["delay", dev, mtu, ms, loss] => delay(
            dev,
            mtu.parse().expect("mtu"),
            Duration::from_secs_f64(ms.parse::<f64>().expect("ms") / 1000.0),
            loss.parse().expect("loss percent"),
        ),
        _ => {
            eprintln!(
                "usage: netprobe sink|send|udp-echo|udp-ping|sink-forever|echo-forever|socks-send|socks-hold|first-byte|echo-rtt|tcp-hold|flood|echo-check|socks-echo-check|relay|delay …"
            );
            std::process::exit(2);
        }
    }
}

/// One direction of `relay`: read and write through a user-space buffer, as a tunnel must (no
/// splice), then pass the EOF on.
fn relay_copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 256 << 10];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// `delay`: a router's wire with a fixed one-way delay. Packets the namespace routes into the
/// TUN device come back out of it `delay` later, in order; the router's policy rules send
/// them on from there. A reader thread stamps each packet and drops `loss_percent` of them;
/// a writer thread waits for each one's time. Up to 65,536 packets wait at once (a router's
/// buffer: past that, new packets are dropped).
fn delay(dev: &str, mtu: u16, delay: Duration, loss_percent: f64) {
    let device = tun_rs::DeviceBuilder::new()
        .name(dev)
        .mtu(mtu)
        .packet_information(false)
        .build_sync()
        .expect("create the TUN device");
    let device = std::sync::Arc::new(device);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Instant, Vec<u8>)>(65_536);
    let writer = device.clone();
    std::thread::spawn(move || {
        for (due, packet) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let _ = writer.send(&packet);
        }
    });
    println!("ready");
    let drop_below = (loss_percent / 100.0 * u64::MAX as f64) as u64;
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
        | 1;
    let mut buf = vec![0u8; usize::from(mtu) + 64];
    loop {
        let n = device.recv(&mut buf).expect("read from the TUN device");
        // xorshift64: enough to pick packets to drop.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state < drop_below {
            continue;
        }
        let _ = tx.try_send((Instant::now() + delay, buf[..n].to_vec()));
    }
}

/// The byte at `offset` of the pattern `send` and `echo-check` write.
fn pattern_byte(offset: usize) -> u8 {
    (offset as u64).wrapping_mul(2_654_435_761).to_le_bytes()[1]
}

/// Writes `total` pattern bytes (then half-closes) while reading the echo, which must be the
/// same bytes followed by EOF. Returns "BYTES SHA256" of what came back.
fn echo_check(stream: TcpStream, total: usize) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    let sender = std::thread::spawn(move || {
        let mut block = vec![0u8; 1 << 16];
        let mut sent = 0usize;
        while sent < total {
            let n = block.len().min(total - sent);
            for (i, b) in block[..n].iter_mut().enumerate() {
                *b = pattern_byte(sent + i);
            }
            writer.write_all(&block[..n]).expect("write");
            sent += n;
        }
        writer.shutdown(std::net::Shutdown::Write).ok();
    });
    let mut reader = stream;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        let n = reader
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read after {got} of {total} echoed bytes: {e}"));
        if n == 0 {
            break;
        }
        assert!(
            got + n <= total,
            "echo returned more than the {total} bytes sent"
        );
        if let Some(i) = (0..n).find(|&i| buf[i] != pattern_byte(got + i)) {
            panic!("echoed byte {} differs from what was sent", got + i);
        }
        h.update(&buf[..n]);
        got += n;
    }
    sender.join().expect("sender");
    assert_eq!(got, total, "the echo ended after {got} of {total} bytes");
    format!("{got} {}", hex(&h.finalize()))
}

/// A minimal SOCKS5 CONNECT (no auth, domain-name address type).
fn socks_connect(proxy: &str, target: &str) -> TcpStream {
    let (host, port) = target.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    let mut s = connect_retry(proxy);
    s.write_all(&[5, 1, 0]).expect("greeting");
    let mut m = [0u8; 2];
    s.read_exact(&mut m).expect("method");
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).expect("request");
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).expect("reply");
    assert_eq!(reply[1], 0, "SOCKS reply {}", reply[1]);
    s
}

fn connect_retry(addr: &str) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("connect {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Many unauthenticated connections at once: see the usage at the top.
fn flood(server: std::net::SocketAddr, source: std::net::IpAddr, n: usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;

    sshvpn_tests::harness::raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // Connects in flight at once: enough to outrun the server's accept loop, few enough
        // not to overflow its listen backlog (SYN retries would only slow the flood down).
        let gate = Arc::new(tokio::sync::Semaphore::new(512));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let all_done = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let (gate, done, failures, all_done, mut stop) = (
                gate.clone(),
                done.clone(),
                failures.clone(),
                all_done.clone(),
                stop_rx.clone(),
            );
            tasks.spawn(async move {
                let connected = async {
                    let _slot = gate.acquire_owned().await.expect("gate");
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.bind(std::net::SocketAddr::new(source, 0))?;
                    tokio::time::timeout(Duration::from_secs(20), socket.connect(server))
                        .await
                        .map_err(|_| std::io::Error::other("connect timed out"))?
                }
                .await;
                if connected.is_err() {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                if done.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    all_done.notify_one();
                }
                let Ok(mut stream) = connected else {
                    return None;
                };
                match i % 3 {
                    0 => {}
                    1 => {
                        let _ = stream.write_all(b"SSH-2.0-flood_1.0\r\n").await;
                    }
                    _ => {
                        let line = b"a line before the identification string, again\r\n";
                        loop {
                            tokio::select! {
                                w = stream.write_all(line) => if w.is_err() { break },
                                _ = stop.changed() => break,
                            }
                        }
                    }
                }
                let _ = stop.wait_for(|s| *s).await;
                // Still open: a read would block (nothing or only the server's banner and
                // KEXINIT pending is also "open"; EOF or a reset is "closed").
                let mut buf = vec![0u8; 64 * 1024];
                let open = loop {
                    match stream.try_read(&mut buf) {
                        Ok(0) => break false,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
                        Err(_) => break false,
                    }
                };
                Some(open)
            });
        }
        if n > 0 {
            all_done.notified().await;
        }
        // Let the server answer (or cut off) the last connections before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let failed = failures.load(Ordering::SeqCst);
        println!("connected {} failed {failed}", n - failed);
        let _ = tokio::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        })
        .await;
        let _ = stop_tx.send(true);
        let (mut open, mut failed) = (0usize, 0usize);
        while let Some(r) = tasks.join_next().await {
            match r.expect("flood task") {
                Some(true) => open += 1,
                Some(false) => {}
                None => failed += 1,
            }
        }
        println!("open {open} failed {failed}");
    });
}
