//! Seal and open per cipher: sshvpn's packet layer (framing, padding, length field, sequence
//! numbers) against the raw crates doing the same AEAD work on a buffer of the same size.
//! `bash tests/bench/micro.sh` runs this and prints the ratios; see BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Tag};
use chacha20::ChaCha20Legacy;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use poly1305::Poly1305;
use sshvpn_proto::rng::Random;
use sshvpn_proto::transport::cipher::{CipherAlg, OpeningKey, SealingKey};
use sshvpn_proto::transport::packet::{Opener, Sealer};

/// A TUN packet at a common MTU, and the size the target names.
const SIZES: [usize; 2] = [1500, 32 * 1024];
/// Packets sealed ahead of each timed batch of opens (opening consumes them, in order).
const BATCH: u64 = 64;

const KEY: [u8; 64] = [7; 64];
const IV: [u8; 12] = [9; 12];

fn keys(alg: CipherAlg) -> (SealingKey, OpeningKey) {
    let key = &KEY[..alg.key_len()];
    let iv = &IV[..alg.iv_len()];
    (SealingKey::new(alg, key, iv), OpeningKey::new(alg, key, iv))
}

/// The raw crates' AEAD over `buf`, with the tag of the last call. For the OpenSSH ChaCha20
/// construction that is a ChaCha20 block for the Poly1305 key, the keystream over the body and
/// Poly1305 over it; for GCM it is one `encrypt_inout_detached`.
enum Raw {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    Chacha,
}

impl Raw {
    fn new(alg: CipherAlg) -> Self {
        match alg {
            CipherAlg::Aes128Gcm => Raw::Aes128(Box::new(Aes128Gcm::new((&[7u8; 16]).into()))),
            CipherAlg::Aes256Gcm => Raw::Aes256(Box::new(Aes256Gcm::new((&[7u8; 32]).into()))),
            CipherAlg::ChaCha20Poly1305 => Raw::Chacha,
        }
    }

    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        let nonce = Nonce::<Aes128Gcm>::default();
        match self {
            Raw::Aes128(g) => g
                .encrypt_inout_detached(&nonce, &[], buf.into())
                .unwrap()
                .into(),
            Raw::Aes256(g) => g
                .encrypt_inout_detached(&nonce, &[], buf.into())
                .unwrap()
                .into(),
            Raw::Chacha => {
                let mut c = ChaCha20Legacy::new((&[7u8; 32]).into(), (&[0u8; 8]).into());
                let mut poly_key = [0u8; 32];
                c.apply_keystream(&mut poly_key);
                c.seek(64);
                c.apply_keystream(buf);
                Poly1305::new((&poly_key).into())
                    .compute_unpadded(buf)
                    .into()
            }
        }
    }

    fn open(&self, buf: &mut [u8], tag: &[u8; 16]) {
        let nonce = Nonce::<Aes128Gcm>::default();
        let tag: &Tag = tag.into();
        match self {
            Raw::Aes128(g) => g
                .decrypt_inout_detached(&nonce, &[], buf.into(), tag)
                .unwrap(),
            Raw::Aes256(g) => g
                .decrypt_inout_detached(&nonce, &[], buf.into(), tag)
                .unwrap(),
            Raw::Chacha => {
                let mut c = ChaCha20Legacy::new((&[7u8; 32]).into(), (&[0u8; 8]).into());
                let mut poly_key = [0u8; 32];
                c.apply_keystream(&mut poly_key);
                let mac: [u8; 16] = Poly1305::new((&poly_key).into())
                    .compute_unpadded(buf)
                    .into();
                assert_eq!(&mac, tag);
                c.seek(64);
                c.apply_keystream(buf);
            }
        }
    }
}

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    for alg in CipherAlg::ALL {
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let payload = vec![0x5a; size];
            let mut sealer = Sealer::new();
            sealer.set_key(keys(alg).0);
            let mut rng = Random::from_seed([1; 32]);
            let mut out = Vec::with_capacity(size + 64);
            group.bench_with_input(
                BenchmarkId::new(format!("{}/sshvpn", alg.name()), size),
                &size,
                |b, _| {
                    b.iter(|| {
                        out.clear();
                        sealer.seal_with(&mut out, &mut rng, |p| p.extend_from_slice(&payload));
                        black_box(&out);
                    })
                },
            );
            let raw = Raw::new(alg);
            let mut buf = payload.clone();
            group.bench_with_input(
                BenchmarkId::new(format!("{}/raw", alg.name()), size),
                &size,
                |b, _| b.iter(|| black_box(raw.seal(&mut buf))),
            );
        }
    }
    group.finish();
}

/// Times only the opens; each batch's packets are sealed beforehand, untimed, because opening
/// decrypts in place and advances the sequence number (and GCM's invocation counter).
fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    for alg in CipherAlg::ALL {
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let payload = vec![0x5a; size];
            group.bench_with_input(
                BenchmarkId::new(format!("{}/sshvpn", alg.name()), size),
                &size,
                |b, _| {
                    b.iter_custom(|iters| {
                        let mut rng = Random::from_seed([2; 32]);
                        let (sealing, opening) = keys(alg);
                        let mut sealer = Sealer::new();
                        sealer.set_key(sealing);
                        let mut opener = Opener::new();
                        opener.set_key(opening);
                        let mut elapsed = Duration::ZERO;
                        let mut left = iters;
                        while left > 0 {
                            let n = left.min(BATCH);
                            left -= n;
                            let mut packets: Vec<Vec<u8>> = (0..n)
                                .map(|_| {
                                    let mut p = Vec::with_capacity(size + 64);
                                    sealer.seal_with(&mut p, &mut rng, |b| {
                                        b.extend_from_slice(&payload)
                                    });
                                    p
                                })
                                .collect();
                            let start = Instant::now();
                            for p in &mut packets {
                                black_box(opener.open(p).unwrap().unwrap());
                            }
                            elapsed += start.elapsed();
                        }
                        elapsed
                    })
                },
            );
            let raw = Raw::new(alg);
            let mut sealed = payload.clone();
            let tag = raw.seal(&mut sealed);
            group.bench_with_input(
                BenchmarkId::new(format!("{}/raw", alg.name()), size),
                &size,
                |b, _| {
                    b.iter_custom(|iters| {
                        let mut elapsed = Duration::ZERO;
                        let mut left = iters;
                        while left > 0 {
                            let n = left.min(BATCH);
                            left -= n;
                            let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| sealed.clone()).collect();
                            let start = Instant::now();
                            for buf in &mut bufs {
                                raw.open(buf, &tag);
                            }
                            elapsed += start.elapsed();
                        }
                        elapsed
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = seal, open
}
criterion_main!(benches);
