//! `chacha20-poly1305@openssh.com`, as specified by OpenSSH's
//! `PROTOCOL.chacha20poly1305`.
//!
//! Owns the two ChaCha20 keys of one direction. The 64-byte derived key is
//! split as K_2 = bytes 0..32 (the main key: body and Poly1305 key) and
//! K_1 = bytes 32..64 (the length key). Both use the original 64-bit-nonce
//! ChaCha20 with the sequence number as big-endian nonce, so no state carries
//! over between packets.

use chacha20::ChaCha20Legacy;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{LENGTH_LEN, TAG_LEN, TagMismatch, fixed, split_tag};

/// Size of one ChaCha20 key.
const KEY_LEN: usize = 32;

/// Byte offset of ChaCha20 block 1, where the body keystream starts: block 0
/// is spent on the Poly1305 key ("PROTOCOL.chacha20poly1305", "Packet Handling").
const BODY_KEYSTREAM_OFFSET: u64 = 64;

/// The keys of one direction of `chacha20-poly1305@openssh.com`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ChaCha20Poly1305Key {
    /// K_2: encrypts the body and yields the per-packet Poly1305 key.
    main: [u8; KEY_LEN],
    /// K_1: encrypts only the 4-byte packet length.
    length: [u8; KEY_LEN],
}

impl core::fmt::Debug for ChaCha20Poly1305Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChaCha20Poly1305Key")
            .finish_non_exhaustive()
    }
}

impl ChaCha20Poly1305Key {
    /// Takes the first 64 bytes of derived key material: K_2 then K_1.
    pub(super) fn new(key: &[u8]) -> Self {
        let material = fixed::<{ 2 * KEY_LEN }>(key);
        let mut keys = Self {
            main: [0; KEY_LEN],
            length: [0; KEY_LEN],
        };
        let halves = keys.main.iter_mut().chain(keys.length.iter_mut());
        for (dst, src) in halves.zip(material.iter()) {
            *dst = *src;
        }
        keys
    }

    /// ChaCha20 keyed with K_2 for packet `seq`, positioned at block 0.
    fn main_cipher(&self, seq: u32) -> ChaCha20Legacy {
        ChaCha20Legacy::new((&self.main).into(), &nonce(seq).into())
    }

    /// ChaCha20 keyed with K_1 for packet `seq`, positioned at block 0.
    fn length_cipher(&self, seq: u32) -> ChaCha20Legacy {
        ChaCha20Legacy::new((&self.length).into(), &nonce(seq).into())
    }

    /// The one-time Poly1305 key: the first 32 bytes of the K_2 keystream.
    /// Leaves `main` positioned at block 1, ready for the body.
    fn poly1305(main: &mut ChaCha20Legacy) -> Poly1305 {
        let mut poly_key = Zeroizing::new([0u8; KEY_LEN]);
        main.apply_keystream(poly_key.as_mut_slice());
        main.seek(BODY_KEYSTREAM_OFFSET);
        Poly1305::new((&*poly_key).into())
    }

    /// See [`super::SealingKey::seal`].
    pub(super) fn seal(&self, seq: u32, packet: &mut [u8]) {
        let Some((data, tag)) = split_tag(packet) else {
            packet.fill(0);
            return;
        };
        let Some((length, body)) = data.split_first_chunk_mut::<LENGTH_LEN>() else {
            packet.fill(0);
            return;
        };
        let mut main = self.main_cipher(seq);
        let mac = Self::poly1305(&mut main);
        self.length_cipher(seq).apply_keystream(length);
        main.apply_keystream(body);
        // The tag covers the ciphertext of length || body, with none of the
        // padding or length trailer of RFC 8439's AEAD construction.
        *tag = mac.compute_unpadded(data).into();
    }

    /// See [`super::OpeningKey::open`].
    pub(super) fn open(&self, seq: u32, packet: &mut [u8]) -> Result<(), TagMismatch> {
        let (data, tag) = split_tag(packet).ok_or(TagMismatch)?;
        let mut main = self.main_cipher(seq);
        let expected: [u8; TAG_LEN] = Self::poly1305(&mut main).compute_unpadded(data).into();
        // Authenticate before decrypting anything, in constant time, so a
        // forger learns nothing from how far processing got.
        if !bool::from(expected.as_slice().ct_eq(tag.as_slice())) {
            return Err(TagMismatch);
        }
        let (length, body) = data
            .split_first_chunk_mut::<LENGTH_LEN>()
            .ok_or(TagMismatch)?;
        self.length_cipher(seq).apply_keystream(length);
        main.apply_keystream(body);
        Ok(())
    }

    /// See [`super::OpeningKey::decrypt_length`].
    pub(super) fn decrypt_length(&self, seq: u32, mut first4: [u8; LENGTH_LEN]) -> u32 {
        self.length_cipher(seq).apply_keystream(&mut first4);
        u32::from_be_bytes(first4)
    }
}

/// The 64-bit nonce: the sequence number as a big-endian `uint64`.
fn nonce(seq: u32) -> [u8; 8] {
    u64::from(seq).to_be_bytes()
}
