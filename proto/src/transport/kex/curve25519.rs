//! curve25519-sha256 key exchange (RFC 8731), the exchange hash (RFC 5656 §4, as RFC 8731 §3
//! uses it) and key derivation (RFC 4253 §7.2).

use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::wire::Writer;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcdhError {
    #[error("peer's ephemeral curve25519 key is not 32 bytes")]
    BadPublicKey,
    /// RFC 8731 §3: "If the output is all zero, the key exchange MUST be aborted."
    #[error("curve25519 shared secret is all zero (peer sent a low-order point)")]
    ZeroSharedSecret,
}

/// Our ephemeral key pair for one exchange.
pub struct Ephemeral {
    secret: StaticSecret,
    pub public: [u8; 32],
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ephemeral(..)")
    }
}

impl Ephemeral {
    pub fn from_random(mut bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        bytes.zeroize();
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// The shared secret K as the big-endian magnitude RFC 8731 §3 encodes as an mpint.
    pub fn agree(self, peer_public: &[u8]) -> Result<SharedSecret, EcdhError> {
        let peer: [u8; 32] = peer_public
            .try_into()
            .map_err(|_| EcdhError::BadPublicKey)?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(EcdhError::ZeroSharedSecret);
        }
        let mut k = Zeroizing::new(Vec::with_capacity(37));
        Writer::new(&mut k).mpint(shared.as_bytes());
        Ok(SharedSecret(k))
    }
}

/// K, already encoded as an mpint (length prefix included), zeroized on drop.
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
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
    pub client_ephemeral: &'a [u8],
    pub server_ephemeral: &'a [u8],
}

/// H = SHA256(V_C || V_S || I_C || I_S || K_S || Q_C || Q_S || K), each as an SSH string
/// (K as an mpint).
pub fn exchange_hash(inputs: &HashInputs<'_>, k: &SharedSecret) -> [u8; 32] {
    let mut buf = Vec::with_capacity(2048);
    let mut w = Writer::new(&mut buf);
    w.string(inputs.client_ident).string(inputs.server_ident);
    w.string(inputs.client_kexinit)
        .string(inputs.server_kexinit);
    w.string(inputs.host_key_blob);
    w.string(inputs.client_ephemeral)
        .string(inputs.server_ephemeral);
    w.raw(&k.0);
    Sha256::digest(&buf).into()
}

/// RFC 4253 §7.2: K1 = HASH(K || H || X || session_id), Kn+1 = HASH(K || H || K1 || … || Kn),
/// extended until `len` bytes are available. `letter` is 'A' … 'F'.
pub fn derive_key(
    k: &SharedSecret,
    h: &[u8],
    letter: u8,
    session_id: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut hasher = Sha256::new();
    hasher.update(&*k.0);
    hasher.update(h);
    hasher.update([letter]);
    hasher.update(session_id);
    out.extend_from_slice(&hasher.finalize());
    while out.len() < len {
        let mut hasher = Sha256::new();
        hasher.update(&*k.0);
        hasher.update(h);
        hasher.update(&*out);
        out.extend_from_slice(&hasher.finalize());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1 test vector: Alice's and Bob's keys agree on the published secret.
    #[test]
    fn rfc7748_vector() {
        let a: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let b_pub = hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
            .unwrap();
        let alice = Ephemeral::from_random(a);
        assert_eq!(
            hex::encode(alice.public),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let k = alice.agree(&b_pub).unwrap();
        // mpint of 4a5d9d5b…: top bit clear, so no leading zero byte.
        assert_eq!(
            hex::encode(&*k.0),
            format!(
                "00000020{}",
                "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
            )
        );
    }

    #[test]
    fn low_order_point_is_rejected() {
        let e = Ephemeral::from_random([1; 32]);
        assert_eq!(
            e.agree(&[0u8; 32]).unwrap_err(),
            EcdhError::ZeroSharedSecret
        );
        let e = Ephemeral::from_random([1; 32]);
        assert_eq!(e.agree(&[0u8; 31]).unwrap_err(), EcdhError::BadPublicKey);
    }

    #[test]
    fn derive_key_extends_past_one_hash() {
        let k = SharedSecret(Zeroizing::new(vec![0, 0, 0, 1, 5]));
        let long = derive_key(&k, b"h", b'C', b"sid", 64);
        let short = derive_key(&k, b"h", b'C', b"sid", 32);
        assert_eq!(&long[..32], &short[..]);
        assert_eq!(long.len(), 64);
        let mut manual = Sha256::new();
        manual.update([0, 0, 0, 1, 5]);
        manual.update(b"h");
        manual.update(&short[..]);
        assert_eq!(&long[32..], &manual.finalize()[..]);
    }
}
