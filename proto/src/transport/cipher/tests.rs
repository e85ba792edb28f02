//! Tests for packet protection: known answers from an independent
//! implementation, round trips, tampering, and malformed sizes.

use super::*;
use proptest::prelude::*;

// Known answers computed with pyca/cryptography (OpenSSL's ChaCha20,
// Poly1305 and AES-GCM), independently of this module:
//
//   chacha(k, seq, ctr, d) = ChaCha20(k, le64(ctr) || be64(seq)).encrypt(d)
//   chacha20-poly1305: c = chacha(key[32:], seq, 0, p[:4])
//                        || chacha(key[:32], seq, 1, p[4:])
//                      tag = Poly1305(chacha(key[:32], seq, 0, 0^32), c)
//   aes-gcm:           p[:4] || AESGCM(key).encrypt(iv, p[4:], aad=p[:4])

/// SSH_MSG_SERVICE_REQUEST "ssh-userauth" framed for an 8-byte block
/// (packet_length 28, 10 bytes of padding).
const CHACHA_PLAIN: &str = "0000001c0a050000000c7373682d7573657261757468e0e1e2e3e4e5e6e7e8e9";
/// The same payload framed for a 16-byte block (packet_length 32).
const GCM_PLAIN: &str = "000000200e050000000c7373682d7573657261757468e0e1e2e3e4e5e6e7e8e9eaebeced";

fn bytes(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).expect("test vector is valid hex")
}

/// `plain` followed by room for a tag.
fn with_tag_room(plain: &[u8], tag_len: usize) -> Vec<u8> {
    let mut packet = plain.to_vec();
    packet.resize(plain.len() + tag_len, 0);
    packet
}

fn chacha_key() -> Vec<u8> {
    (0u8..64).collect()
}

fn gcm_iv() -> Vec<u8> {
    (0xa0u8..0xac).collect()
}

/// Key material for `alg`, distinct per direction so tests catch mix-ups.
fn keys(alg: CipherAlg) -> (Vec<u8>, Vec<u8>) {
    let key = (0..alg.key_len()).map(|i| (i * 7 + 3) as u8).collect();
    let iv = (0..alg.iv_len()).map(|i| (i * 13 + 5) as u8).collect();
    (key, iv)
}

fn pair(alg: CipherAlg) -> (SealingKey, OpeningKey) {
    let (key, iv) = keys(alg);
    (
        SealingKey::new(alg, &key, &iv),
        OpeningKey::new(alg, &key, &iv),
    )
}

/// A well-formed packet of `payload_len` bytes padded for `block`.
fn framed(payload_len: usize, block: usize) -> Vec<u8> {
    let unpadded = 4 + 1 + payload_len;
    let mut padding = block - unpadded % block;
    if padding < 4 {
        padding += block;
    }
    let packet_length = u32::try_from(1 + payload_len + padding).expect("small packet");
    let mut packet = packet_length.to_be_bytes().to_vec();
    packet.push(u8::try_from(padding).expect("small padding"));
    packet.extend((0..payload_len).map(|i| i as u8));
    packet.extend(std::iter::repeat_n(0x5a, padding));
    packet
}

#[test]
fn names_round_trip_and_parameters_match_the_specs() {
    for alg in CipherAlg::ALL {
        assert_eq!(CipherAlg::from_name(alg.name()), Some(alg));
    }
    assert_eq!(CipherAlg::from_name("aes128-ctr"), None);
    assert_eq!(CipherAlg::from_name("CHACHA20-POLY1305@OPENSSH.COM"), None);
    assert_eq!(
        CipherAlg::ALL.map(CipherAlg::name),
        [
            "chacha20-poly1305@openssh.com",
            "aes256-gcm@openssh.com",
            "aes128-gcm@openssh.com"
        ]
    );
    let params = |alg: CipherAlg| (alg.key_len(), alg.iv_len(), alg.block_size());
    assert_eq!(params(CipherAlg::ChaCha20Poly1305), (64, 0, 8));
    assert_eq!(params(CipherAlg::Aes128Gcm), (16, 12, 16));
    assert_eq!(params(CipherAlg::Aes256Gcm), (32, 12, 16));
    assert_eq!(CipherAlg::TAG_LEN, 16);
}

#[test]
fn chacha20_poly1305_known_answers() {
    let vectors = [
        (
            3,
            "fb1a92968a401cbb3246d702e0628979de95f73613b4ac26223ebba2ededee81fda6f26350b1c270fa3dded0a27c7dd1",
        ),
        (
            0xffff_fffe,
            "69a614d43d7f5c9cde28ff488ad0319d1b6b567ae17978ccb3b26bb40ea1de8b19216c32e235a342c627463e72a96eb2",
        ),
    ];
    let plain = bytes(CHACHA_PLAIN);
    for (seq, expected) in vectors {
        let mut sealer = SealingKey::new(CipherAlg::ChaCha20Poly1305, &chacha_key(), &[]);
        let mut packet = with_tag_room(&plain, sealer.tag_len());
        sealer.seal(seq, &mut packet);
        assert_eq!(hex::encode(&packet), expected, "seq {seq}");

        let mut opener = OpeningKey::new(CipherAlg::ChaCha20Poly1305, &chacha_key(), &[]);
        let first4: [u8; 4] = packet[..4].try_into().expect("4 bytes");
        assert_eq!(opener.decrypt_length(seq, first4), 28);
        assert_eq!(opener.open(seq, &mut packet), Ok(()));
        assert_eq!(&packet[..plain.len()], plain.as_slice());
    }
}

#[test]
fn aes_gcm_known_answers_follow_the_invocation_counter() {
    let aes128: Vec<u8> = (0x10u8..0x20).collect();
    let aes256: Vec<u8> = (0x40u8..0x60).collect();
    // Counter at 2^64 - 1: the second packet must wrap to 0 without
    // touching the fixed field (RFC 5647 §7.1).
    let wrapping_iv = bytes("01020304ffffffffffffffff");
    let cases = [
        (
            CipherAlg::Aes128Gcm,
            aes128,
            gcm_iv(),
            [
                "00000020098ca0786f9301befb72c433ec045a8678bfffb09c5ae5b2b353f5c3f53f567c349ba6b3cae51451ea304254d5c0ae7b",
                "00000020e649b5ccd30480298574a9848a8e7e5d260df599e77f3738738fc6a567d7401fcb555fc5d80135219b846bf8a2cc87df",
            ],
        ),
        (
            CipherAlg::Aes256Gcm,
            aes256.clone(),
            gcm_iv(),
            [
                "00000020d98a063fe2e7ef5e1142348decce51839b7f15260e8c61c8043b0673032992158cad07f4b5fd7b403ab3f81dae7bc746",
                "",
            ],
        ),
        (
            CipherAlg::Aes256Gcm,
            aes256,
            wrapping_iv,
            [
                "00000020a54e622de91b7ffc38476cf50553434455b83af96201cd0a34643b184c2f789abdb77f8cb99ba625076f381c99e6d700",
                "0000002052c501cbecd7c39dfbe39ae4d39acb475a5a04c77cc26049bd58c31578a30b3c5a53c4cb7a83865543a48ab4c18b7e1c",
            ],
        ),
    ];
    let plain = bytes(GCM_PLAIN);
    for (alg, key, iv, expected) in cases {
        let mut sealer = SealingKey::new(alg, &key, &iv);
        let mut opener = OpeningKey::new(alg, &key, &iv);
        for (seq, expected) in expected
            .into_iter()
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
        {
            let seq = u32::try_from(seq).expect("small");
            let mut packet = with_tag_room(&plain, sealer.tag_len());
            sealer.seal(seq, &mut packet);
            assert_eq!(hex::encode(&packet), expected, "{alg:?} packet {seq}");

            let first4: [u8; 4] = packet[..4].try_into().expect("4 bytes");
            assert_eq!(opener.decrypt_length(seq, first4), 32);
            assert_eq!(opener.open(seq, &mut packet), Ok(()));
            assert_eq!(&packet[..plain.len()], plain.as_slice());
        }
    }
}

#[test]
fn round_trip_across_sequence_numbers() {
    for alg in CipherAlg::ALL {
        let (mut sealer, mut opener) = pair(alg);
        for (i, seq) in [0, 1, 2, 255, 256, 70_000, u32::MAX - 1, u32::MAX]
            .into_iter()
            .enumerate()
        {
            let plain = framed(i * 37, alg.block_size());
            let mut packet = with_tag_room(&plain, sealer.tag_len());
            sealer.seal(seq, &mut packet);
            assert_ne!(
                &packet[4..plain.len()],
                &plain[4..],
                "{alg:?} body left in clear"
            );

            let first4: [u8; 4] = packet[..4].try_into().expect("4 bytes");
            let length = opener.decrypt_length(seq, first4);
            assert_eq!(length as usize, plain.len() - 4, "{alg:?} seq {seq}");
            assert_eq!(opener.open(seq, &mut packet), Ok(()), "{alg:?} seq {seq}");
            assert_eq!(
                &packet[..plain.len()],
                plain.as_slice(),
                "{alg:?} seq {seq}"
            );
        }
    }
}

#[test]
fn any_flipped_bit_is_a_tag_mismatch() {
    for alg in CipherAlg::ALL {
        let plain = framed(40, alg.block_size());
        let (mut sealer, _) = pair(alg);
        let mut sealed = with_tag_room(&plain, sealer.tag_len());
        sealer.seal(9, &mut sealed);
        // Length field, first body byte, last body byte, tag.
        let positions = [0, 3, 4, plain.len() - 1, plain.len(), sealed.len() - 1];
        for position in positions {
            for bit in [0x01u8, 0x80] {
                let (_, mut opener) = pair(alg);
                let mut packet = sealed.clone();
                packet[position] ^= bit;
                assert_eq!(
                    opener.open(9, &mut packet),
                    Err(TagMismatch),
                    "{alg:?} byte {position} bit {bit:#x}"
                );
            }
        }
        let (_, mut opener) = pair(alg);
        assert_eq!(
            opener.open(9, &mut sealed.clone()),
            Ok(()),
            "{alg:?} control"
        );
    }
}

#[test]
fn chacha20_poly1305_binds_the_sequence_number() {
    let (mut sealer, mut opener) = pair(CipherAlg::ChaCha20Poly1305);
    let plain = framed(20, 8);
    let mut packet = with_tag_room(&plain, 16);
    sealer.seal(5, &mut packet);
    assert_eq!(opener.open(6, &mut packet.clone()), Err(TagMismatch));
    assert_eq!(opener.open(5, &mut packet), Ok(()));
}

#[test]
fn aes_gcm_invocation_counter_advances_per_packet() {
    for alg in [CipherAlg::Aes128Gcm, CipherAlg::Aes256Gcm] {
        let plain = framed(20, 16);
        let (mut sealer, _) = pair(alg);
        let mut first = with_tag_room(&plain, 16);
        let mut second = first.clone();
        // The same seq both times: only the invocation counter differs.
        sealer.seal(0, &mut first);
        sealer.seal(0, &mut second);
        assert_ne!(first, second, "{alg:?} reused a nonce");

        let (_, mut out_of_order) = pair(alg);
        assert_eq!(
            out_of_order.open(0, &mut second.clone()),
            Err(TagMismatch),
            "{alg:?}"
        );

        let (_, mut in_order) = pair(alg);
        assert_eq!(in_order.open(0, &mut first), Ok(()), "{alg:?}");
        assert_eq!(in_order.open(0, &mut second), Ok(()), "{alg:?}");
        assert_eq!(&first[..plain.len()], plain.as_slice());
        assert_eq!(&second[..plain.len()], plain.as_slice());
    }
}

#[test]
fn plain_passes_packets_through() {
    let mut sealer = SealingKey::Plain;
    let mut opener = OpeningKey::Plain;
    assert_eq!((sealer.block_size(), sealer.tag_len()), (8, 0));
    assert_eq!((opener.block_size(), opener.tag_len()), (8, 0));
    let plain = framed(10, 8);
    let mut packet = plain.clone();
    sealer.seal(0, &mut packet);
    assert_eq!(packet, plain);
    assert_eq!(opener.decrypt_length(0, [0, 0, 1, 2]), 258);
    assert_eq!(opener.open(0, &mut packet), Ok(()));
    assert_eq!(packet, plain);
    assert_eq!(opener.open(0, &mut [0, 0, 0]), Err(TagMismatch));
}

#[test]
fn keys_report_their_framing_parameters() {
    for alg in CipherAlg::ALL {
        let (sealer, opener) = pair(alg);
        assert_eq!(sealer.block_size(), alg.block_size());
        assert_eq!(opener.block_size(), alg.block_size());
        assert_eq!(sealer.tag_len(), TAG_LEN);
        assert_eq!(opener.tag_len(), TAG_LEN);
    }
}

#[test]
fn longer_key_material_uses_only_the_leading_bytes() {
    for alg in CipherAlg::ALL {
        let (key, iv) = keys(alg);
        let mut long_key = key.clone();
        long_key.extend([0xee; 32]);
        let mut long_iv = iv.clone();
        long_iv.extend([0xee; 8]);
        let mut sealer = SealingKey::new(alg, &long_key, &long_iv);
        let (_, mut opener) = pair(alg);
        let plain = framed(12, alg.block_size());
        let mut packet = with_tag_room(&plain, 16);
        sealer.seal(1, &mut packet);
        assert_eq!(opener.open(1, &mut packet), Ok(()), "{alg:?}");
    }
}

/// The same packet sealed by RustCrypto's crates, an implementation independent
/// of AWS-LC, written from the specifications: RFC 5647 §7 for GCM, OpenSSH's
/// `PROTOCOL.chacha20poly1305` for ChaCha20 (K_2 = key[..32], K_1 = key[32..]).
mod oracle {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use chacha20::ChaCha20Legacy;
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    use poly1305::Poly1305;

    use super::CipherAlg;

    /// `plain` (length || body) sealed as `alg` would send it as the
    /// `invocation`-th packet after the keys were set (`seq` for ChaCha20).
    pub fn seal(
        alg: CipherAlg,
        key: &[u8],
        iv: &[u8],
        seq: u32,
        invocation: u64,
        plain: &[u8],
    ) -> Vec<u8> {
        let mut packet = plain.to_vec();
        let (length, body) = packet.split_at_mut(4);
        let tag: [u8; 16] = match alg {
            CipherAlg::ChaCha20Poly1305 => {
                let nonce = u64::from(seq).to_be_bytes();
                let k_2: [u8; 32] = key[..32].try_into().expect("32 bytes");
                let k_1: [u8; 32] = key[32..64].try_into().expect("32 bytes");
                ChaCha20Legacy::new(&k_1.into(), &nonce.into()).apply_keystream(length);
                let mut main = ChaCha20Legacy::new(&k_2.into(), &nonce.into());
                let mut poly_key = [0u8; 32];
                main.apply_keystream(&mut poly_key);
                main.seek(64u64);
                main.apply_keystream(body);
                let tag = Poly1305::new((&poly_key).into()).compute_unpadded(&packet);
                packet.extend_from_slice(&tag);
                return packet;
            }
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm => {
                let counter = u64::from_be_bytes(iv[4..12].try_into().expect("8 bytes"));
                let mut nonce = iv[..12].to_vec();
                nonce[4..].copy_from_slice(&counter.wrapping_add(invocation).to_be_bytes());
                let nonce = nonce.as_slice().try_into().expect("12 bytes");
                if alg == CipherAlg::Aes128Gcm {
                    aes_gcm::Aes128Gcm::new(key[..16].try_into().expect("16 bytes"))
                        .encrypt_inout_detached(nonce, length, body.into())
                } else {
                    aes_gcm::Aes256Gcm::new(key[..32].try_into().expect("32 bytes"))
                        .encrypt_inout_detached(nonce, length, body.into())
                }
                .expect("small packet")
                .into()
            }
        };
        packet.extend_from_slice(&tag);
        packet
    }
}

fn any_cipher() -> impl Strategy<Value = CipherAlg> {
    prop_oneof![
        Just(CipherAlg::ChaCha20Poly1305),
        Just(CipherAlg::Aes128Gcm),
        Just(CipherAlg::Aes256Gcm),
    ]
}

#[test]
fn aes_gcm_wipes_the_body_when_the_tag_fails() {
    for alg in [CipherAlg::Aes128Gcm, CipherAlg::Aes256Gcm] {
        let plain = framed(64, 16);
        let (mut sealer, mut opener) = pair(alg);
        let mut packet = with_tag_room(&plain, 16);
        sealer.seal(0, &mut packet);
        let last = packet.len() - 1;
        packet[last] ^= 1;
        assert_eq!(opener.open(0, &mut packet), Err(TagMismatch), "{alg:?}");
        assert!(
            packet[4..plain.len()].iter().all(|&b| b == 0),
            "{alg:?} left unauthenticated plaintext or ciphertext behind"
        );
    }
}

fn any_key() -> impl Strategy<Value = Option<CipherAlg>> {
    prop_oneof![
        Just(None),
        Just(Some(CipherAlg::ChaCha20Poly1305)),
        Just(Some(CipherAlg::Aes128Gcm)),
        Just(Some(CipherAlg::Aes256Gcm)),
    ]
}

proptest! {
    #[test]
    fn open_never_panics_and_rejects_short_input(
        alg in any_key(),
        seq in any::<u32>(),
        mut packet in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut opener = match alg {
            None => OpeningKey::Plain,
            Some(alg) => pair(alg).1,
        };
        let short = packet.len() < 4 + opener.tag_len();
        let result = opener.open(seq, &mut packet);
        if short {
            prop_assert_eq!(result, Err(TagMismatch));
        } else if alg.is_some() {
            // Random bytes forge a 128-bit tag with negligible probability.
            prop_assert_eq!(result, Err(TagMismatch));
        }
    }

    #[test]
    fn seal_never_panics_and_never_leaks_short_input(
        alg in any_key(),
        seq in any::<u32>(),
        mut packet in proptest::collection::vec(1u8..=255, 0..80),
    ) {
        let mut sealer = match alg {
            None => SealingKey::Plain,
            Some(alg) => pair(alg).0,
        };
        let short = packet.len() < 4 + sealer.tag_len();
        sealer.seal(seq, &mut packet);
        if short && alg.is_some() {
            prop_assert!(packet.iter().all(|&b| b == 0));
        }
    }
}

proptest! {
    /// Every packet, key, IV and sequence number: what we seal is what an
    /// independent implementation seals, byte for byte, and we open what it
    /// seals. Several packets per key, so the GCM invocation counter and its
    /// wrap at 2^64 are covered too.
    #[test]
    fn seal_and_open_agree_with_an_independent_implementation(
        alg in any_cipher(),
        key in proptest::collection::vec(any::<u8>(), 64),
        iv in proptest::collection::vec(any::<u8>(), 12),
        near_wrap in any::<bool>(),
        seq in any::<u32>(),
        payloads in proptest::collection::vec(0usize..2000, 1..4),
    ) {
        let mut iv = iv;
        if near_wrap {
            iv[4..].copy_from_slice(&(u64::MAX - 1).to_be_bytes());
        }
        let mut sealer = SealingKey::new(alg, &key, &iv);
        let mut opener = OpeningKey::new(alg, &key, &iv);
        for (i, payload_len) in payloads.into_iter().enumerate() {
            let seq = seq.wrapping_add(u32::try_from(i).expect("small"));
            let plain = framed(payload_len, alg.block_size());
            let expected = oracle::seal(alg, &key, &iv, seq, i as u64, &plain);

            let mut packet = with_tag_room(&plain, sealer.tag_len());
            sealer.seal(seq, &mut packet);
            prop_assert_eq!(&packet, &expected, "{:?} packet {}", alg, i);

            let mut received = expected;
            let first4: [u8; 4] = received[..4].try_into().expect("4 bytes");
            prop_assert_eq!(opener.decrypt_length(seq, first4) as usize, plain.len() - 4);
            prop_assert_eq!(opener.open(seq, &mut received), Ok(()));
            prop_assert_eq!(&received[..plain.len()], plain.as_slice());
        }
    }
}
