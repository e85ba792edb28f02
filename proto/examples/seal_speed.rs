//! Quick seal/open throughput per cipher on 32 KiB payloads (release build):
//!     cargo run --release -p sshvpn-proto --example seal_speed
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use std::time::Instant;

use sshvpn_proto::rng::Random;
use sshvpn_proto::transport::cipher::{CipherAlg, OpeningKey, SealingKey};
use sshvpn_proto::transport::packet::{Opener, Sealer};

fn main() {
    let payload = vec![0x5au8; 32 * 1024];
    for alg in CipherAlg::ALL {
        let key = vec![7u8; alg.key_len()];
        let iv = vec![9u8; alg.iv_len()];
        let mut sealer = Sealer::new();
        sealer.set_key(SealingKey::new(alg, &key, &iv));
        let mut opener = Opener::new();
        opener.set_key(OpeningKey::new(alg, &key, &iv));
        let mut rng = Random::from_seed([1; 32]);
        let n = 20_000;
        let mut out = Vec::with_capacity(40 * 1024);
        let start = Instant::now();
        let mut wire = Vec::new();
        for i in 0..n {
            out.clear();
            sealer.seal_with(&mut out, &mut rng, |b| b.extend_from_slice(&payload));
            if i == 0 {
                wire = out.clone();
            }
        }
        let seal = start.elapsed();
        // Open the same packet repeatedly (re-sealing the first each time would measure seal).
        let mut opener_time = std::time::Duration::ZERO;
        let mut s2 = Sealer::new();
        s2.set_key(SealingKey::new(alg, &key, &iv));
        let mut packets = Vec::new();
        for _ in 0..2000 {
            let mut p = Vec::new();
            s2.seal_with(&mut p, &mut rng, |b| b.extend_from_slice(&payload));
            packets.push(p);
        }
        for p in packets.iter_mut() {
            let t = Instant::now();
            opener.open(p).unwrap().unwrap();
            opener_time += t.elapsed();
        }
        let _ = wire;
        let gbit = |bytes: f64, d: std::time::Duration| bytes * 8.0 / d.as_secs_f64() / 1e9;
        println!(
            "{:32} seal {:6.2} Gbit/s   open {:6.2} Gbit/s",
            alg.name(),
            gbit((n * payload.len()) as f64, seal),
            gbit((2000 * payload.len()) as f64, opener_time)
        );
    }
}
