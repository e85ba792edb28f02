//! Seal and open per cipher: sshvpn's packet layer (framing, padding, length field, sequence
//! numbers) against the two AEAD crates it could sit on, each doing the bare SSH packet work on
//! a buffer of the same size: `rustcrypto` (`aes-gcm`, `chacha20` + `poly1305`, what sshvpn
//! used before) and `aws-lc-rs` (what it uses now).
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
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use aws_lc_rs::aead::{self as awslc_aead, chacha20_poly1305_openssh as awslc_openssh};
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
/// The `packet_length` field in front of every raw buffer: GCM's associated data, or what
/// OpenSSH's ChaCha20 construction encrypts with its second key.
const LEN: usize = 4;

const KEY: [u8; 64] = [7; 64];
const IV: [u8; 12] = [9; 12];

fn keys(alg: CipherAlg) -> (SealingKey, OpeningKey) {
    let key = &KEY[..alg.key_len()];
    let iv = &IV[..alg.iv_len()];
    (SealingKey::new(alg, key, iv), OpeningKey::new(alg, key, iv))
}

/// A crate's bare AEAD over `buf` = 4-byte length || body, with the tag of the last call:
/// for GCM one seal/open of the body with the length as associated data; for the OpenSSH
/// ChaCha20 construction the length under K_1, a K_2 block for the Poly1305 key, the K_2
/// keystream over the body and Poly1305 over length and body.
enum Raw {
    RustCryptoAes128(Box<Aes128Gcm>),
    RustCryptoAes256(Box<Aes256Gcm>),
    RustCryptoChacha,
    AwsLcGcm(awslc_aead::LessSafeKey),
    AwsLcChacha(awslc_openssh::SealingKey, awslc_openssh::OpeningKey),
}

/// The crates `Raw` measures, as named in benchmark ids.
const CRATES: [&str; 2] = ["rustcrypto", "aws-lc-rs"];

impl Raw {
    fn new(alg: CipherAlg, krate: &str) -> Self {
        let awslc_gcm = |alg| {
            let key = awslc_aead::UnboundKey::new(alg, &KEY[..alg.key_len()]).unwrap();
            Raw::AwsLcGcm(awslc_aead::LessSafeKey::new(key))
        };
        match (krate, alg) {
            ("rustcrypto", CipherAlg::Aes128Gcm) => {
                Raw::RustCryptoAes128(Box::new(Aes128Gcm::new((&[7u8; 16]).into())))
            }
            ("rustcrypto", CipherAlg::Aes256Gcm) => {
                Raw::RustCryptoAes256(Box::new(Aes256Gcm::new((&[7u8; 32]).into())))
            }
            ("rustcrypto", CipherAlg::ChaCha20Poly1305) => Raw::RustCryptoChacha,
            ("aws-lc-rs", CipherAlg::Aes128Gcm) => awslc_gcm(&awslc_aead::AES_128_GCM),
            ("aws-lc-rs", CipherAlg::Aes256Gcm) => awslc_gcm(&awslc_aead::AES_256_GCM),
            ("aws-lc-rs", CipherAlg::ChaCha20Poly1305) => Raw::AwsLcChacha(
                awslc_openssh::SealingKey::new(&KEY),
                awslc_openssh::OpeningKey::new(&KEY),
            ),
            _ => panic!("no raw benchmark for {krate}"),
        }
    }

    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        let nonce = Nonce::<Aes128Gcm>::default();
        let (len, body) = buf.split_at_mut(LEN);
        match self {
            Raw::RustCryptoAes128(g) => g
                .encrypt_inout_detached(&nonce, len, body.into())
                .unwrap()
                .into(),
            Raw::RustCryptoAes256(g) => g
                .encrypt_inout_detached(&nonce, len, body.into())
                .unwrap()
                .into(),
            Raw::RustCryptoChacha => {
                ChaCha20Legacy::new((&[7u8; 32]).into(), (&[0u8; 8]).into()).apply_keystream(len);
                let mut c = ChaCha20Legacy::new((&[7u8; 32]).into(), (&[0u8; 8]).into());
                let mut poly_key = [0u8; 32];
                c.apply_keystream(&mut poly_key);
                c.seek(64);
                c.apply_keystream(body);
                Poly1305::new((&poly_key).into())
                    .compute_unpadded(buf)
                    .into()
            }
            Raw::AwsLcGcm(key) => {
                let nonce = awslc_aead::Nonce::assume_unique_for_key([0; 12]);
                let aad = awslc_aead::Aad::from(<[u8; LEN]>::try_from(&*len).unwrap());
                let tag = key.seal_in_place_separate_tag(nonce, aad, body).unwrap();
                tag.as_ref().try_into().unwrap()
            }
            Raw::AwsLcChacha(key, _) => {
                let mut tag = [0; 16];
                key.seal_in_place(0, buf, &mut tag);
                tag
            }
        }
    }

    fn open(&self, buf: &mut [u8], tag: &[u8; 16]) {
        let nonce = Nonce::<Aes128Gcm>::default();
        match self {
            Raw::RustCryptoAes128(g) => {
                let (len, body) = buf.split_at_mut(LEN);
                g.decrypt_inout_detached(&nonce, len, body.into(), tag.into())
                    .unwrap()
            }
            Raw::RustCryptoAes256(g) => {
                let (len, body) = buf.split_at_mut(LEN);
                g.decrypt_inout_detached(&nonce, len, body.into(), tag.into())
                    .unwrap()
            }
            Raw::RustCryptoChacha => {
                let mut c = ChaCha20Legacy::new((&[7u8; 32]).into(), (&[0u8; 8]).into());
                let mut poly_key = [0u8; 32];
                c.apply_keystream(&mut poly_key);
                let mac: [u8; 16] = Poly1305::new((&poly_key).into())
                    .compute_unpadded(buf)
                    .into();
                assert_eq!(&mac, tag);
                let (len, body) = buf.split_at_mut(LEN);
                ChaCha20Legacy::new((&[7u8; 32]).into(), (&[0u8; 8]).into()).apply_keystream(len);
                c.seek(64);
                c.apply_keystream(body);
            }
            Raw::AwsLcGcm(key) => {
                let nonce = awslc_aead::Nonce::assume_unique_for_key([0; 12]);
                let (len, body) = buf.split_at_mut(LEN);
                let aad = awslc_aead::Aad::from(<[u8; LEN]>::try_from(&*len).unwrap());
                key.open_in_place_separate_tag(nonce, aad, tag, body)
                    .unwrap();
            }
            Raw::AwsLcChacha(_, key) => {
                key.open_in_place(0, buf, tag).unwrap();
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
            for krate in CRATES {
                let raw = Raw::new(alg, krate);
                let mut buf = vec![0x5a; LEN + size];
                group.bench_with_input(
                    BenchmarkId::new(format!("{}/{krate}", alg.name()), size),
                    &size,
                    |b, _| b.iter(|| black_box(raw.seal(&mut buf))),
                );
            }
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
            for krate in CRATES {
                let raw = Raw::new(alg, krate);
                let mut sealed = vec![0x5a; LEN + size];
                let tag = raw.seal(&mut sealed);
                group.bench_with_input(
                    BenchmarkId::new(format!("{}/{krate}", alg.name()), size),
                    &size,
                    |b, _| {
                        b.iter_custom(|iters| {
                            let mut elapsed = Duration::ZERO;
                            let mut left = iters;
                            while left > 0 {
                                let n = left.min(BATCH);
                                left -= n;
                                let mut bufs: Vec<Vec<u8>> =
                                    (0..n).map(|_| sealed.clone()).collect();
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
