//! `aes128-gcm@openssh.com` and `aes256-gcm@openssh.com`: AES-GCM in the SSH
//! binary packet protocol (RFC 5647 §7), as OpenSSH deploys it.
//!
//! Owns the expanded AES key, the GHASH key and the nonce of one direction.
//! The 4-byte `packet_length` stays in clear and is authenticated as
//! associated data (RFC 5647 §7.3); the nonce is not the sequence number but
//! an invocation counter that this state advances itself (RFC 5647 §7.1).

use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Tag};
use zeroize::Zeroize;

use super::{CipherAlg, LENGTH_LEN, TagMismatch, fixed, split_tag};

/// Length of the GCM nonce (RFC 5647 §7.1).
const NONCE_LEN: usize = 12;

/// Length of the fixed field that starts the nonce (RFC 5647 §7.1).
const FIXED_LEN: usize = 4;

/// The block cipher half of the state, boxed so that [`super::SealingKey`]
/// stays small next to its `Plain` variant (the expanded keys run to hundreds
/// of bytes). Boxing happens once per NEWKEYS, never per packet.
enum Gcm {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
}

/// The state of one direction of AES-GCM. The AES and GHASH keys are wiped on
/// drop by `aes-gcm` itself.
pub struct AesGcmKey {
    gcm: Gcm,
    /// The 4-byte fixed field of the nonce; never changes (RFC 5647 §7.1).
    fixed: [u8; FIXED_LEN],
    /// The 64-bit invocation counter, incremented after every packet, modulo
    /// 2^64 as RFC 5647 §7.1 specifies.
    invocation: u64,
}

impl core::fmt::Debug for AesGcmKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AesGcmKey")
            .field("alg", &self.alg())
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
        Self::with_cipher(Gcm::Aes128(Box::new(Aes128Gcm::new((&*key).into()))), iv)
    }

    /// `aes256-gcm@openssh.com` from derived key material (RFC 4253 §7.2):
    /// the first 32 bytes of `key` and the first 12 bytes of `iv`.
    pub(super) fn aes256(key: &[u8], iv: &[u8]) -> Self {
        let key = fixed::<32>(key);
        Self::with_cipher(Gcm::Aes256(Box::new(Aes256Gcm::new((&*key).into()))), iv)
    }

    /// Splits the derived IV into fixed field and initial invocation counter
    /// (RFC 5647 §7.1).
    fn with_cipher(gcm: Gcm, iv: &[u8]) -> Self {
        let iv = fixed::<NONCE_LEN>(iv);
        let (fixed_field, invocation) = iv.split_at(FIXED_LEN);
        let mut state = Self {
            gcm,
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
        match self.gcm {
            Gcm::Aes128(_) => CipherAlg::Aes128Gcm,
            Gcm::Aes256(_) => CipherAlg::Aes256Gcm,
        }
    }

    /// The nonce for the next packet: fixed field || big-endian invocation
    /// counter (RFC 5647 §7.1).
    fn nonce(&self) -> Nonce<Aes128Gcm> {
        let mut nonce = Nonce::<Aes128Gcm>::default();
        let counter = self.invocation.to_be_bytes();
        for (dst, src) in nonce
            .iter_mut()
            .zip(self.fixed.iter().chain(counter.iter()))
        {
            *dst = *src;
        }
        nonce
    }

    /// RFC 5647 §7.1: "the invocation field is treated as a 64-bit integer
    /// and is incremented after each invocation", wrapping at 2^64.
    fn advance(&mut self) {
        self.invocation = self.invocation.wrapping_add(1);
    }

    /// See [`super::SealingKey::seal`].
    pub(super) fn seal(&mut self, packet: &mut [u8]) {
        let nonce = self.nonce();
        let Some((data, tag_out)) = split_tag(packet) else {
            packet.fill(0);
            return;
        };
        let Some((length, body)) = data.split_first_chunk_mut::<LENGTH_LEN>() else {
            packet.fill(0);
            return;
        };
        let sealed = match &self.gcm {
            Gcm::Aes128(gcm) => gcm.encrypt_inout_detached(&nonce, length, body.into()),
            Gcm::Aes256(gcm) => gcm.encrypt_inout_detached(&nonce, length, body.into()),
        };
        match sealed {
            Ok(tag) => {
                *tag_out = tag.into();
                self.advance();
            }
            // Only a body over GCM's 2^36-byte limit fails, far beyond any
            // packet; never let it leave unencrypted.
            Err(_) => packet.fill(0),
        }
    }

    /// See [`super::OpeningKey::open`].
    pub(super) fn open(&mut self, packet: &mut [u8]) -> Result<(), TagMismatch> {
        let nonce = self.nonce();
        let (data, tag) = split_tag(packet).ok_or(TagMismatch)?;
        let (length, body) = data
            .split_first_chunk_mut::<LENGTH_LEN>()
            .ok_or(TagMismatch)?;
        let tag: &Tag = (&*tag).into();
        // aes-gcm compares the tag in constant time before it decrypts.
        let opened = match &self.gcm {
            Gcm::Aes128(gcm) => gcm.decrypt_inout_detached(&nonce, length, body.into(), tag),
            Gcm::Aes256(gcm) => gcm.decrypt_inout_detached(&nonce, length, body.into(), tag),
        };
        opened.map_err(|_| TagMismatch)?;
        self.advance();
        Ok(())
    }
}
