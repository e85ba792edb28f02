//! Packet encryption for the SSH binary packet protocol (RFC 4253 §6, §6.3).
//!
//! Owns the per-direction AEAD state: keys, and for AES-GCM the invocation
//! counter. Only AEAD ciphers are offered, so there is no separate MAC (RFC 4253
//! §6.4 is subsumed by the AEAD tag, as RFC 5647 §5.1 and OpenSSH's
//! `PROTOCOL.chacha20poly1305` specify).
//!
//! This module must not frame packets, bound lengths or allocate: the caller
//! owns the buffer, passes whole packets (length, body and room for the tag)
//! and checks `packet_length` against its limits before buffering the body.
//! Every operation works in place.
//!
//! The AEAD arithmetic is AWS-LC's (`aws-lc-rs`), whose assembly AES-GCM and
//! ChaCha20-Poly1305 are what keeps the data path off the CPU ceiling; this
//! module adds what SSH puts around it (key split, nonces, length handling).

mod aes_gcm;
mod chacha20_poly1305;

pub use self::aes_gcm::AesGcmKey;
pub use self::chacha20_poly1305::{ChaCha20Poly1305OpeningKey, ChaCha20Poly1305SealingKey};

use zeroize::Zeroizing;

/// Length in bytes of the authentication tag of every supported AEAD cipher.
pub const TAG_LEN: usize = 16;

/// Length in bytes of the `packet_length` field that starts every packet
/// (RFC 4253 §6).
const LENGTH_LEN: usize = 4;

/// Block size that framing uses before the first NEWKEYS: RFC 4253 §6 requires
/// padding to a multiple of "the cipher block size or 8, whichever is larger".
const PLAIN_BLOCK_SIZE: usize = 8;

/// An AEAD cipher as negotiated in KEXINIT (RFC 4253 §6.3).
///
/// The unencrypted state before the first NEWKEYS is not a `CipherAlg` but
/// the `Plain` variant of [`SealingKey`] and [`OpeningKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipherAlg {
    /// `chacha20-poly1305@openssh.com` (OpenSSH `PROTOCOL.chacha20poly1305`).
    ChaCha20Poly1305,
    /// `aes128-gcm@openssh.com` (RFC 5647 as deployed by OpenSSH).
    Aes128Gcm,
    /// `aes256-gcm@openssh.com` (RFC 5647 as deployed by OpenSSH).
    Aes256Gcm,
}

impl CipherAlg {
    /// Every supported cipher, most preferred first, as listed in our KEXINIT
    /// `encryption_algorithms` (RFC 4253 §7.1).
    pub const ALL: [CipherAlg; 3] = [
        CipherAlg::ChaCha20Poly1305,
        CipherAlg::Aes256Gcm,
        CipherAlg::Aes128Gcm,
    ];

    /// Length in bytes of the authentication tag of every supported cipher.
    pub const TAG_LEN: usize = TAG_LEN;

    /// The algorithm name used in KEXINIT name-lists (RFC 4253 §6.3).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CipherAlg::ChaCha20Poly1305 => "chacha20-poly1305@openssh.com",
            CipherAlg::Aes128Gcm => "aes128-gcm@openssh.com",
            CipherAlg::Aes256Gcm => "aes256-gcm@openssh.com",
        }
    }

    /// Parses a KEXINIT algorithm name; `None` for anything we do not
    /// implement (the names are compared exactly, RFC 4251 §6).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Bytes of key material to derive for this cipher (RFC 4253 §7.2, "Encryption key").
    #[must_use]
    pub fn key_len(self) -> usize {
        match self {
            // Two 256-bit ChaCha20 keys: main (K_2) then length (K_1).
            CipherAlg::ChaCha20Poly1305 => 64,
            CipherAlg::Aes128Gcm => 16,
            CipherAlg::Aes256Gcm => 32,
        }
    }

    /// Bytes of IV to derive for this cipher (RFC 4253 §7.2, "Initial IV").
    #[must_use]
    pub fn iv_len(self) -> usize {
        match self {
            // The nonce is the sequence number; no IV is derived.
            CipherAlg::ChaCha20Poly1305 => 0,
            // RFC 5647 §7.1: 4-byte fixed field || 8-byte invocation counter.
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm => 12,
        }
    }

    /// The block size that packet padding must align to (RFC 4253 §6).
    #[must_use]
    pub fn block_size(self) -> usize {
        match self {
            CipherAlg::ChaCha20Poly1305 => 8,
            // RFC 5647 §7.2: `packet_length` itself must be a multiple of 16.
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm => 16,
        }
    }
}

/// The authentication tag of a received packet did not verify.
///
/// RFC 4253 §6.4 and RFC 5647 §7.3 both require the connection to be
/// terminated; the buffer may hold partly decrypted data and must be discarded.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("packet authentication failed (corrupted or tampered data)")]
pub struct TagMismatch;

/// Seals outgoing packets for one direction.
///
/// Keys are wiped on drop (by AWS-LC; see the cipher modules for what it wipes).
#[derive(Debug)]
pub enum SealingKey {
    /// Before the first NEWKEYS (RFC 4253 §6.3 "none"): nothing is encrypted.
    Plain,
    /// `chacha20-poly1305@openssh.com`.
    ChaCha20Poly1305(ChaCha20Poly1305SealingKey),
    /// `aes128-gcm@openssh.com` or `aes256-gcm@openssh.com`.
    AesGcm(AesGcmKey),
}

impl SealingKey {
    /// Builds the sealing state from the key and IV derived by key exchange
    /// (RFC 4253 §7.2).
    ///
    /// `key` and `iv` must hold at least [`CipherAlg::key_len`] and
    /// [`CipherAlg::iv_len`] bytes; only that many leading bytes are used.
    /// Shorter input is a caller bug (key derivation extends keys to any
    /// length): it is caught by a debug assertion and, in release builds,
    /// zero-filled rather than panicking.
    #[must_use]
    pub fn new(alg: CipherAlg, key: &[u8], iv: &[u8]) -> SealingKey {
        match alg {
            CipherAlg::ChaCha20Poly1305 => {
                SealingKey::ChaCha20Poly1305(ChaCha20Poly1305SealingKey::new(key))
            }
            CipherAlg::Aes128Gcm => SealingKey::AesGcm(AesGcmKey::aes128(key, iv)),
            CipherAlg::Aes256Gcm => SealingKey::AesGcm(AesGcmKey::aes256(key, iv)),
        }
    }

    /// The block size that padding must align to (RFC 4253 §6).
    #[must_use]
    pub fn block_size(&self) -> usize {
        match self {
            SealingKey::Plain => PLAIN_BLOCK_SIZE,
            SealingKey::ChaCha20Poly1305(_) => CipherAlg::ChaCha20Poly1305.block_size(),
            SealingKey::AesGcm(key) => key.alg().block_size(),
        }
    }

    /// Bytes of tag appended after each packet: 0 before NEWKEYS.
    #[must_use]
    pub fn tag_len(&self) -> usize {
        match self {
            SealingKey::Plain => 0,
            SealingKey::ChaCha20Poly1305(_) | SealingKey::AesGcm(_) => TAG_LEN,
        }
    }

    /// Encrypts one packet in place and writes its tag.
    ///
    /// `packet` is `packet_length` (4 bytes, big-endian) || `padding_length`
    /// || payload || padding, followed by exactly [`Self::tag_len`] bytes that
    /// receive the tag. ChaCha20-Poly1305 also encrypts the length; AES-GCM
    /// leaves it in clear as associated data (RFC 5647 §7.3).
    ///
    /// `seq` is the packet sequence number (RFC 4253 §6.4). AES-GCM ignores it
    /// and advances its own invocation counter instead (RFC 5647 §7.1).
    ///
    /// Callers pass valid sizes. If `packet` is too short to hold a length
    /// and a tag, it is zeroed so that no plaintext can reach the wire.
    pub fn seal(&mut self, seq: u32, packet: &mut [u8]) {
        match self {
            SealingKey::Plain => {}
            SealingKey::ChaCha20Poly1305(key) => key.seal(seq, packet),
            SealingKey::AesGcm(key) => key.seal(packet),
        }
    }
}

/// Opens incoming packets for one direction.
///
/// Keys are wiped on drop (by AWS-LC; see the cipher modules for what it wipes).
#[derive(Debug)]
pub enum OpeningKey {
    /// Before the first NEWKEYS (RFC 4253 §6.3 "none"): nothing is encrypted.
    Plain,
    /// `chacha20-poly1305@openssh.com`.
    ChaCha20Poly1305(ChaCha20Poly1305OpeningKey),
    /// `aes128-gcm@openssh.com` or `aes256-gcm@openssh.com`.
    AesGcm(AesGcmKey),
}

impl OpeningKey {
    /// Builds the opening state from the key and IV derived by key exchange
    /// (RFC 4253 §7.2). Length rules as for [`SealingKey::new`].
    #[must_use]
    pub fn new(alg: CipherAlg, key: &[u8], iv: &[u8]) -> OpeningKey {
        match alg {
            CipherAlg::ChaCha20Poly1305 => {
                OpeningKey::ChaCha20Poly1305(ChaCha20Poly1305OpeningKey::new(key))
            }
            CipherAlg::Aes128Gcm => OpeningKey::AesGcm(AesGcmKey::aes128(key, iv)),
            CipherAlg::Aes256Gcm => OpeningKey::AesGcm(AesGcmKey::aes256(key, iv)),
        }
    }

    /// The block size that `packet_length` framing aligns to (RFC 4253 §6).
    #[must_use]
    pub fn block_size(&self) -> usize {
        match self {
            OpeningKey::Plain => PLAIN_BLOCK_SIZE,
            OpeningKey::ChaCha20Poly1305(_) => CipherAlg::ChaCha20Poly1305.block_size(),
            OpeningKey::AesGcm(key) => key.alg().block_size(),
        }
    }

    /// Bytes of tag that follow each packet body: 0 before NEWKEYS.
    #[must_use]
    pub fn tag_len(&self) -> usize {
        match self {
            OpeningKey::Plain => 0,
            OpeningKey::ChaCha20Poly1305(_) | OpeningKey::AesGcm(_) => TAG_LEN,
        }
    }

    /// Returns `packet_length` from the first four bytes as received.
    ///
    /// The value is NOT authenticated yet: the caller must bound it (RFC 4253
    /// §6.1) before buffering that many bytes, and [`Self::open`] verifies it.
    #[must_use]
    pub fn decrypt_length(&self, seq: u32, first4: [u8; 4]) -> u32 {
        match self {
            OpeningKey::Plain | OpeningKey::AesGcm(_) => u32::from_be_bytes(first4),
            OpeningKey::ChaCha20Poly1305(key) => key.decrypt_length(seq, first4),
        }
    }

    /// Verifies and decrypts one packet in place.
    ///
    /// `packet` is the 4 length bytes as received || the encrypted body
    /// (`packet_length` bytes) || the tag ([`Self::tag_len`] bytes). The tag is
    /// compared in constant time and no plaintext is released unless it
    /// verifies: ChaCha20-Poly1305 checks it before decrypting, AES-GCM (one
    /// pass for both) wipes the body when it fails. On success the plaintext
    /// length is left in `packet[0..4]` and the plaintext body after it. On
    /// [`TagMismatch`] the buffer content is unspecified.
    ///
    /// A slice too short for a length and a tag yields [`TagMismatch`].
    pub fn open(&mut self, seq: u32, packet: &mut [u8]) -> Result<(), TagMismatch> {
        match self {
            OpeningKey::Plain if packet.len() >= LENGTH_LEN => Ok(()),
            OpeningKey::Plain => Err(TagMismatch),
            OpeningKey::ChaCha20Poly1305(key) => key.open(seq, packet),
            OpeningKey::AesGcm(key) => key.open(packet),
        }
    }
}

/// Copies the first `N` bytes of derived key material into a fixed array
/// that is wiped on drop.
///
/// Shorter input is zero-filled instead of panicking: key derivation always
/// yields the requested length (RFC 4253 §7.2), so this only guards against
/// a caller bug, which debug builds report.
fn fixed<const N: usize>(material: &[u8]) -> Zeroizing<[u8; N]> {
    debug_assert!(
        material.len() >= N,
        "derived key material shorter than the cipher needs"
    );
    let mut out = Zeroizing::new([0u8; N]);
    for (dst, src) in out.iter_mut().zip(material) {
        *dst = *src;
    }
    out
}

/// Splits `packet` into (length field || body, tag), or `None` if it cannot
/// hold a length and a tag.
fn split_tag(packet: &mut [u8]) -> Option<(&mut [u8], &mut [u8; TAG_LEN])> {
    let tag_start = packet.len().checked_sub(TAG_LEN)?;
    if tag_start < LENGTH_LEN {
        return None;
    }
    let (data, tag) = packet.split_at_mut_checked(tag_start)?;
    let tag = <&mut [u8; TAG_LEN]>::try_from(tag).ok()?;
    Some((data, tag))
}

#[cfg(test)]
mod tests;
