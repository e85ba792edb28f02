//! `chacha20-poly1305@openssh.com`, as specified by OpenSSH's
//! `PROTOCOL.chacha20poly1305`.
//!
//! Owns the two ChaCha20 keys of one direction. The 64-byte derived key is
//! split as K_2 = bytes 0..32 (the main key: body and Poly1305 key) and
//! K_1 = bytes 32..64 (the length key). Both use the original 64-bit-nonce
//! ChaCha20 with the sequence number as big-endian nonce, so no state carries
//! over between packets.
//!
//! The construction is AWS-LC's (`aws-lc-rs`'s `chacha20_poly1305_openssh`),
//! which splits the key the same way: its assembly ChaCha20 and Poly1305 run
//! about 2.5 times RustCrypto's `chacha20` + `poly1305` on 1500-byte packets
//! and 1.3 times on 32 KiB ones here (see BENCHMARKS.md); the tests keep
//! RustCrypto's crates as an independent oracle.
//!
//! Key wiping: `aws-lc-rs` zeroizes both ChaCha20 keys when a key is dropped.
//! The one-time Poly1305 key of each packet lives on its stack and is not
//! wiped; it authenticates only that packet, which has been sent or checked.

use aws_lc_rs::aead::chacha20_poly1305_openssh::{self as openssh, KEY_LEN};

use super::{LENGTH_LEN, TagMismatch, fixed, split_tag};

/// Seals the packets of one direction.
pub struct ChaCha20Poly1305SealingKey(openssh::SealingKey);

/// Opens the packets of one direction.
pub struct ChaCha20Poly1305OpeningKey(openssh::OpeningKey);

impl core::fmt::Debug for ChaCha20Poly1305SealingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChaCha20Poly1305SealingKey")
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for ChaCha20Poly1305OpeningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChaCha20Poly1305OpeningKey")
            .finish_non_exhaustive()
    }
}

impl ChaCha20Poly1305SealingKey {
    /// Takes the first 64 bytes of derived key material: K_2 then K_1.
    pub(super) fn new(key: &[u8]) -> Self {
        Self(openssh::SealingKey::new(&fixed::<KEY_LEN>(key)))
    }

    /// See [`super::SealingKey::seal`].
    pub(super) fn seal(&self, seq: u32, packet: &mut [u8]) {
        let Some((data, tag)) = split_tag(packet) else {
            packet.fill(0);
            return;
        };
        // `packet_length` is a uint32 (RFC 4253 §6); nothing longer is a
        // packet, and ChaCha20's 32-bit block counter must not wrap.
        if u32::try_from(data.len().saturating_sub(LENGTH_LEN)).is_err() {
            packet.fill(0);
            return;
        }
        // The tag covers the ciphertext of length || body, with none of the
        // padding or length trailer of RFC 8439's AEAD construction.
        self.0.seal_in_place(seq, data, tag);
    }
}

impl ChaCha20Poly1305OpeningKey {
    /// Takes the first 64 bytes of derived key material: K_2 then K_1.
    pub(super) fn new(key: &[u8]) -> Self {
        Self(openssh::OpeningKey::new(&fixed::<KEY_LEN>(key)))
    }

    /// See [`super::OpeningKey::open`].
    pub(super) fn open(&self, seq: u32, packet: &mut [u8]) -> Result<(), TagMismatch> {
        let (data, tag) = split_tag(packet).ok_or(TagMismatch)?;
        // AWS-LC checks the tag in constant time before it decrypts anything,
        // so a forger learns nothing from how far processing got.
        self.0
            .open_in_place(seq, data, tag)
            .map_err(|_| TagMismatch)?;
        // AWS-LC leaves the length encrypted. The caller sized the body from
        // `decrypt_length`, and the tag just verified over that body and the
        // encrypted length, so the plaintext length is the body's length:
        // writing it saves decrypting it again (a ChaCha20 block, about 8% of
        // opening a 1500-byte packet).
        let body_len =
            u32::try_from(data.len().saturating_sub(LENGTH_LEN)).map_err(|_| TagMismatch)?;
        let length = data.first_chunk_mut::<LENGTH_LEN>().ok_or(TagMismatch)?;
        *length = body_len.to_be_bytes();
        Ok(())
    }

    /// See [`super::OpeningKey::decrypt_length`].
    pub(super) fn decrypt_length(&self, seq: u32, first4: [u8; LENGTH_LEN]) -> u32 {
        u32::from_be_bytes(self.0.decrypt_packet_length(seq, first4))
    }
}
