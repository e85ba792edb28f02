//! curve25519-sha256 key exchange (RFC 8731): ephemeral x25519 key pairs and their agreement.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use super::hash::SharedSecret;
use super::method::KexError;

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

    /// The raw 32-byte shared secret, as the hybrid methods hash it.
    pub fn agree_raw(self, peer_public: &[u8]) -> Result<Zeroizing<[u8; 32]>, KexError> {
        let peer: [u8; 32] = peer_public.try_into().map_err(|_| KexError::BadLength {
            what: "curve25519 public key",
            got: peer_public.len(),
            expected: 32,
        })?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(KexError::ZeroSharedSecret);
        }
        Ok(Zeroizing::new(*shared.as_bytes()))
    }

    /// K: the shared secret as the big-endian magnitude RFC 8731 §3 encodes as an mpint.
    pub fn agree(self, peer_public: &[u8]) -> Result<SharedSecret, KexError> {
        Ok(SharedSecret::mpint(&*self.agree_raw(peer_public)?))
    }
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
            hex::encode(k.encoded()),
            format!(
                "00000020{}",
                "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
            )
        );
    }

    #[test]
    fn low_order_point_is_rejected() {
        let e = Ephemeral::from_random([1; 32]);
        assert_eq!(e.agree(&[0u8; 32]).unwrap_err(), KexError::ZeroSharedSecret);
        let e = Ephemeral::from_random([1; 32]);
        assert!(matches!(
            e.agree(&[0u8; 31]).unwrap_err(),
            KexError::BadLength { got: 31, .. }
        ));
    }
}
