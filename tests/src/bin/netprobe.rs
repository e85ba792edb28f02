//! netprobe: traffic endpoints for network-namespace tests, run inside namespaces with
//! `ip netns exec`. Prints one line of results; exits non-zero on failure.
//!
//!   netprobe sink ADDR:PORT                 accept one TCP connection, print "BYTES SHA256"
//!   netprobe send ADDR:PORT BYTES           send a deterministic pattern, print "BYTES SHA256"
//!   netprobe udp-echo ADDR:PORT             echo UDP datagrams for 60 s
//!   netprobe udp-ping ADDR:PORT COUNT       send COUNT datagrams, print how many came back
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
                    *b = ((sent + i) as u64)
                        .wrapping_mul(2_654_435_761)
                        .to_le_bytes()[1];
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
        _ => {
            eprintln!("usage: netprobe sink|send|udp-echo|udp-ping …");
            std::process::exit(2);
        }
    }
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
