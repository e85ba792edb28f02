//! netprobe: traffic endpoints for network-namespace tests, run inside namespaces with
//! `ip netns exec`. Prints one line of results; exits non-zero on failure.
//!
//!   netprobe sink ADDR:PORT                 accept one TCP connection, print "BYTES SHA256"
//!   netprobe send ADDR:PORT BYTES           send a deterministic pattern, print "BYTES SHA256"
//!   netprobe udp-echo ADDR:PORT             echo UDP datagrams for 60 s
//!   netprobe udp-ping ADDR:PORT COUNT       send COUNT datagrams, print how many came back
//!   netprobe sink-forever ADDR:PORT         accept connections and discard what they send
//!   netprobe echo-forever ADDR:PORT         accept connections and echo what they send
//!   netprobe socks-send PROXY HOST:PORT SECS   push data through SOCKS5 for SECS, print Gbit/s
//!   netprobe socks-hold PROXY HOST:PORT N   open N SOCKS5 connections, print "held", wait for stdin EOF
//!   netprobe first-byte ADDR:PORT SECS      poll until a TCP echo answers, print the seconds it took
//!   netprobe echo-check ADDR:PORT BYTES     send the pattern to an echo, check every byte that comes
//!                                           back and the EOF after it, print "BYTES SHA256"
//!   netprobe socks-echo-check PROXY HOST:PORT BYTES   the same through SOCKS5
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
        ["udp-echo", addr] => {
            let u = UdpSocket::bind(addr).expect("bind");
            u.set_read_timeout(Some(Duration::from_secs(60))).ok();
            println!("listening");
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = u.recv_from(&mut buf) {
                let _ = u.send_to(&buf[..n], from);
            }
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
        ["echo-check", addr, bytes] => {
            let total = bytes.parse().expect("bytes");
            println!("{}", echo_check(connect_retry(addr), total));
        }
        ["socks-echo-check", proxy, target, bytes] => {
            let total = bytes.parse().expect("bytes");
            println!("{}", echo_check(socks_connect(proxy, target), total));
        }
        _ => {
            eprintln!(
                "usage: netprobe sink|send|udp-echo|udp-ping|sink-forever|echo-forever|socks-send|socks-hold|first-byte|echo-check|socks-echo-check …"
            );
            std::process::exit(2);
        }
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
