//! The exchange hash H and key derivation (RFC 4253 §7.2, RFC 5656 §4), with the hash function
//! the negotiated method names: SHA-256 for curve25519-sha256 and mlkem768x25519-sha256,
//! SHA-512 for sntrup761x25519-sha512@openssh.com.

use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::wire::Writer;

/// The hash function of a key exchange method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha512,
}

impl HashAlg {
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha512 => 64,
        }
    }

    /// Hashes the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> HashValue {
        let mut out = HashValue {
            bytes: [0; 64],
            len: self.output_len(),
        };
        match self {
            HashAlg::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                out.bytes[..32].copy_from_slice(&h.finalize());
            }
            HashAlg::Sha512 => {
                let mut h = Sha512::new();
                parts.iter().for_each(|p| h.update(p));
                out.bytes.copy_from_slice(&h.finalize());
            }
        }
        out
    }
}

/// A hash output of either length: the exchange hash H, and so the session identifier.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashValue {
    bytes: [u8; 64],
    len: usize,
}

impl HashValue {
    /// No hash yet (before the first key exchange).
    pub const EMPTY: HashValue = HashValue {
        bytes: [0; 64],
        len: 0,
    };

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl zeroize::Zeroize for HashValue {
    fn zeroize(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for HashValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashValue({} bytes)", self.len)
    }
}

/// K exactly as it enters the exchange hash and key derivation: an mpint for curve25519
/// (RFC 8731 §3), a string for the hybrid KEM methods. Zeroized on drop.
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl SharedSecret {
    /// K = mpint(`magnitude`), as the ECDH methods encode it.
    pub fn mpint(magnitude: &[u8]) -> Self {
        let mut k = Zeroizing::new(Vec::with_capacity(magnitude.len() + 5));
        Writer::new(&mut k).mpint(magnitude);
        Self(k)
    }

    /// K = string(`bytes`), as the hybrid KEM methods encode their hashed secret.
    pub fn string(bytes: &[u8]) -> Self {
        let mut k = Zeroizing::new(Vec::with_capacity(bytes.len() + 4));
        Writer::new(&mut k).string(bytes);
        Self(k)
    }

    pub(crate) fn encoded(&self) -> &[u8] {
        &self.0
    }
}

/// The inputs of the exchange hash, in RFC 5656 §4 order.
#[derive(Debug)]
pub struct HashInputs<'a> {
    pub client_ident: &'a [u8],
    pub server_ident: &'a [u8],
    pub client_kexinit: &'a [u8],
    pub server_kexinit: &'a [u8],
    pub host_key_blob: &'a [u8],
    /// Q_C: the client's ephemeral public value (for a hybrid, KEM key then x25519 key).
    pub client_public: &'a [u8],
    /// Q_S: the server's ephemeral public value (for a hybrid, KEM ciphertext then x25519 key).
    pub server_public: &'a [u8],
}

/// H = HASH(V_C || V_S || I_C || I_S || K_S || Q_C || Q_S || K), each but K as an SSH string.
pub fn exchange_hash(alg: HashAlg, inputs: &HashInputs<'_>, k: &SharedSecret) -> HashValue {
    let mut buf = Vec::with_capacity(4096);
    let mut w = Writer::new(&mut buf);
    w.string(inputs.client_ident).string(inputs.server_ident);
    w.string(inputs.client_kexinit)
        .string(inputs.server_kexinit);
    w.string(inputs.host_key_blob);
    w.string(inputs.client_public).string(inputs.server_public);
    w.raw(k.encoded());
    alg.digest(&[&buf])
}

/// RFC 4253 §7.2: K1 = HASH(K || H || X || session_id), Kn+1 = HASH(K || H || K1 || … || Kn),
/// extended until `len` bytes are available. `letter` is 'A' … 'F'.
pub fn derive_key(
    alg: HashAlg,
    k: &SharedSecret,
    h: &[u8],
    letter: u8,
    session_id: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 64));
    let first = alg.digest(&[k.encoded(), h, &[letter], session_id]);
    out.extend_from_slice(first.as_bytes());
    while out.len() < len {
        let next = alg.digest(&[k.encoded(), h, &out]);
        out.extend_from_slice(next.as_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_key_extends_past_one_hash() {
        let k = SharedSecret::mpint(&[5]);
        assert_eq!(k.encoded(), &[0, 0, 0, 1, 5]);
        let long = derive_key(HashAlg::Sha256, &k, b"h", b'C', b"sid", 64);
        let short = derive_key(HashAlg::Sha256, &k, b"h", b'C', b"sid", 32);
        assert_eq!(&long[..32], &short[..]);
        assert_eq!(long.len(), 64);
        let mut manual = Sha256::new();
        manual.update([0, 0, 0, 1, 5]);
        manual.update(b"h");
        manual.update(&short[..]);
        assert_eq!(&long[32..], &manual.finalize()[..]);
    }

    #[test]
    fn sha512_derivation_uses_whole_blocks() {
        let k = SharedSecret::string(&[7; 64]);
        assert_eq!(&k.encoded()[..4], &[0, 0, 0, 64]);
        let key = derive_key(HashAlg::Sha512, &k, b"h", b'A', b"sid", 32);
        let mut manual = Sha512::new();
        manual.update(k.encoded());
        manual.update(b"h");
        manual.update(b"A");
        manual.update(b"sid");
        assert_eq!(&key[..], &manual.finalize()[..32]);
    }

    #[test]
    fn hash_value_has_the_algorithm_length() {
        assert_eq!(HashAlg::Sha256.digest(&[b"x"]).as_bytes().len(), 32);
        assert_eq!(HashAlg::Sha512.digest(&[b"x"]).as_bytes().len(), 64);
        assert_eq!(
            HashAlg::Sha256.digest(&[b"a", b"bc"]),
            HashAlg::Sha256.digest(&[b"abc"])
        );
    }
}
