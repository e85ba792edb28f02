//! `aes128-gcm@openssh.com` and `aes256-gcm@openssh.com`: AES-GCM in the SSH
//! binary packet protocol (RFC 5647 §7), as OpenSSH deploys it.
//!
//! Owns the AES-GCM key of one direction and its nonce. The 4-byte
//! `packet_length` stays in clear and is authenticated as associated data
//! (RFC 5647 §7.3); the nonce is not the sequence number but an invocation
//! counter that this state advances itself (RFC 5647 §7.1).
//!
//! The AEAD is AWS-LC's (`aws-lc-rs`): AES-NI/VAES with carry-less-multiply
//! GHASH in assembly, about three times RustCrypto's `aes-gcm` here (see
//! BENCHMARKS.md), which the tests keep as an independent oracle.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroize;

use super::{CipherAlg, LENGTH_LEN, TAG_LEN, TagMismatch, fixed, split_tag};

/// Length of the GCM nonce (RFC 5647 §7.1).
const NONCE_LEN: usize = 12;

/// Length of the fixed field that starts the nonce (RFC 5647 §7.1).
const FIXED_LEN: usize = 4;

/// The state of one direction of AES-GCM.
///
/// AWS-LC keeps the expanded AES key and the GHASH table in a context it
/// allocates itself, and its allocator cleanses every allocation when it is
/// freed (`OPENSSL_free`), so dropping the [`LessSafeKey`] wipes them.
pub struct AesGcmKey {
    /// `None` only if AWS-LC could not set the key up (it allocates): such a
    /// state zeroes everything it is asked to seal and opens nothing, so the
    /// connection fails closed instead of panicking.
    key: Option<LessSafeKey>,
    alg: CipherAlg,
    /// The 4-byte fixed field of the nonce; never changes (RFC 5647 §7.1).
    fixed: [u8; FIXED_LEN],
    /// The 64-bit invocation counter, incremented after every packet, modulo
    /// 2^64 as RFC 5647 §7.1 specifies.
    invocation: u64,
}

impl core::fmt::Debug for AesGcmKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AesGcmKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Drop for AesGcmKey {
    fn drop(&mut self) {
        // The nonce is not secret, but wiping it keeps a dropped key from
        // revealing how many packets it protected.
        self.fixed.zeroize();
        self.invocation.zeroize();
    }
}

impl AesGcmKey {
    /// `aes128-gcm@openssh.com` from derived key material (RFC 4253 §7.2):
    /// the first 16 bytes of `key` and the first 12 bytes of `iv`.
    pub(super) fn aes128(key: &[u8], iv: &[u8]) -> Self {
        let key = fixed::<16>(key);
        let key = UnboundKey::new(&AES_128_GCM, &*key).ok();
        Self::with_key(key, CipherAlg::Aes128Gcm, iv)
    }

    /// `aes256-gcm@openssh.com` from derived key material (RFC 4253 §7.2):
    /// the first 32 bytes of `key` and the first 12 bytes of `iv`.
    pub(super) fn aes256(key: &[u8], iv: &[u8]) -> Self {
        let key = fixed::<32>(key);
        let key = UnboundKey::new(&AES_256_GCM, &*key).ok();
        Self::with_key(key, CipherAlg::Aes256Gcm, iv)
    }

    /// Splits the derived IV into fixed field and initial invocation counter
    /// (RFC 5647 §7.1).
    fn with_key(key: Option<UnboundKey>, alg: CipherAlg, iv: &[u8]) -> Self {
        let iv = fixed::<NONCE_LEN>(iv);
        let (fixed_field, invocation) = iv.split_at(FIXED_LEN);
        let mut state = Self {
            key: key.map(LessSafeKey::new),
            alg,
            fixed: [0; FIXED_LEN],
            invocation: 0,
        };
        for (dst, src) in state.fixed.iter_mut().zip(fixed_field) {
            *dst = *src;
        }
        let mut counter = [0u8; 8];
        for (dst, src) in counter.iter_mut().zip(invocation) {
            *dst = *src;
        }
        state.invocation = u64::from_be_bytes(counter);
        state
    }

    /// Which of the two GCM ciphers this is.
    pub(super) fn alg(&self) -> CipherAlg {
        self.alg
    }

    /// The nonce for the next packet: fixed field || big-endian invocation
    /// counter (RFC 5647 §7.1). Unique per key as long as [`Self::advance`]
    /// follows every use.
    fn nonce(&self) -> Nonce {
        let mut nonce = [0u8; NONCE_LEN];
        let counter = self.invocation.to_be_bytes();
        for (dst, src) in nonce
            .iter_mut()
            .zip(self.fixed.iter().chain(counter.iter()))
        {
            *dst = *src;
        }
        Nonce::assume_unique_for_key(nonce)
    }

    /// RFC 5647 §7.1: "the invocation field is treated as a 64-bit integer
    /// and is incremented after each invocation", wrapping at 2^64.
    fn advance(&mut self) {
        self.invocation = self.invocation.wrapping_add(1);
    }

    /// See [`super::SealingKey::seal`].
    pub(super) fn seal(&mut self, packet: &mut [u8]) {
        let nonce = self.nonce();
        let Some(key) = &self.key else {
            packet.fill(0);
            return;
        };
        let Some((data, tag_out)) = split_tag(packet) else {
            packet.fill(0);
            return;
        };
        let Some((length, body)) = data.split_first_chunk_mut::<LENGTH_LEN>() else {
            packet.fill(0);
            return;
        };
        let sealed = key
            .seal_in_place_separate_tag(nonce, Aad::from(*length), body)
            .ok()
            .and_then(|tag| <[u8; TAG_LEN]>::try_from(tag.as_ref()).ok());
        match sealed {
            Some(tag) => {
                *tag_out = tag;
                self.advance();
            }
            // Only a body over GCM's 2^36-byte limit fails, far beyond any
            // packet; never let it leave unencrypted.
            None => packet.fill(0),
        }
    }

    /// See [`super::OpeningKey::open`].
    pub(super) fn open(&mut self, packet: &mut [u8]) -> Result<(), TagMismatch> {
        let nonce = self.nonce();
        let key = self.key.as_ref().ok_or(TagMismatch)?;
        let (data, tag) = split_tag(packet).ok_or(TagMismatch)?;
        let (length, body) = data
            .split_first_chunk_mut::<LENGTH_LEN>()
            .ok_or(TagMismatch)?;
        // AWS-LC decrypts and authenticates in one pass, then compares the
        // tag in constant time; on a mismatch it leaves the unauthenticated
        // plaintext in place, so wipe it before anyone can act on it.
        if key
            .open_in_place_separate_tag(nonce, Aad::from(*length), tag.as_slice(), body)
            .is_err()
        {
            body.fill(0);
            return Err(TagMismatch);
        }
        self.advance();
        Ok(())
    }
}
