//! Post-quantum hybrid key exchange: a KEM paired with x25519, both secrets hashed into K.
//!
//! - mlkem768x25519-sha256 (draft-ietf-sshm-mlkem-hybrid-kex; OpenSSH 9.9's default): ML-KEM-768
//!   (FIPS 203) with SHA-256.
//! - sntrup761x25519-sha512@openssh.com (OpenSSH 9.0's default): Streamlined NTRU Prime 761 with
//!   SHA-512.
//!
//! The messages are KEX_ECDH_INIT and KEX_ECDH_REPLY. Q_C is the client's KEM public key
//! followed by its x25519 key; Q_S is the KEM ciphertext followed by the server's x25519 key.
//! K = string(HASH(kem_secret || x25519_secret)), the x25519 secret as its raw 32 bytes.

use ml_kem::{Decapsulate, KeyExport, MlKem768};
use zeroize::{Zeroize, Zeroizing};

use super::curve25519::Ephemeral;
use super::hash::{HashAlg, SharedSecret};
use super::method::KexError;
use crate::rng::Random;

const X25519_LEN: usize = 32;

/// The post-quantum half of a hybrid method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kem {
    MlKem768,
    Sntrup761,
}

impl Kem {
    fn name(self) -> &'static str {
        match self {
            Kem::MlKem768 => "ML-KEM-768",
            Kem::Sntrup761 => "sntrup761",
        }
    }

    fn public_key_len(self) -> usize {
        match self {
            Kem::MlKem768 => 1184,
            Kem::Sntrup761 => sntrup761::PUBLIC_KEY_SIZE,
        }
    }

    fn ciphertext_len(self) -> usize {
        match self {
            Kem::MlKem768 => 1088,
            Kem::Sntrup761 => sntrup761::CIPHERTEXT_SIZE,
        }
    }
}

enum KemSecret {
    MlKem768(Box<ml_kem::DecapsulationKey<MlKem768>>),
    Sntrup761(Box<sntrup761::DecapsulationKey>),
}

/// The client's secrets for one exchange, kept until the server's reply.
pub struct ClientKeys {
    kem: KemSecret,
    x25519: Ephemeral,
    hash: HashAlg,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hybrid::ClientKeys(..)")
    }
}

/// Splits `blob` into its KEM part of `kem_len` bytes and the x25519 key that follows.
fn split<'a>(
    blob: &'a [u8],
    kem_len: usize,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), KexError> {
    if blob.len() != kem_len + X25519_LEN {
        return Err(KexError::BadLength {
            what,
            got: blob.len(),
            expected: kem_len + X25519_LEN,
        });
    }
    Ok(blob.split_at(kem_len))
}

fn combine(hash: HashAlg, kem_secret: &[u8], x25519_secret: &[u8; 32]) -> SharedSecret {
    let mut both = Zeroizing::new(Vec::with_capacity(64));
    both.extend_from_slice(kem_secret);
    both.extend_from_slice(x25519_secret);
    let mut digest = hash.digest(&[&both]);
    let k = SharedSecret::string(digest.as_bytes());
    digest.zeroize();
    k
}

/// Client: fresh KEM and x25519 key pairs, and Q_C.
pub fn client_start(kem: Kem, hash: HashAlg, rng: &mut Random) -> (ClientKeys, Vec<u8>) {
    let x25519 = Ephemeral::from_random(rng.array());
    let mut q_c = Vec::with_capacity(kem.public_key_len() + X25519_LEN);
    let secret = match kem {
        Kem::MlKem768 => {
            let seed = Zeroizing::new(rng.array::<64>());
            let dk = ml_kem::DecapsulationKey::<MlKem768>::from_seed((*seed).into());
            q_c.extend_from_slice(&dk.encapsulation_key().to_bytes());
            KemSecret::MlKem768(Box::new(dk))
        }
        Kem::Sntrup761 => {
            let (ek, dk) = sntrup761::generate_key_from_seed(rng.array());
            q_c.extend_from_slice(ek.as_ref());
            KemSecret::Sntrup761(Box::new(dk))
        }
    };
    q_c.extend_from_slice(&x25519.public);
    let keys = ClientKeys {
        kem: secret,
        x25519,
        hash,
    };
    (keys, q_c)
}

/// Server: encapsulates to the client's KEM key and agrees on x25519; returns Q_S and K.
pub fn server_answer(
    kem: Kem,
    hash: HashAlg,
    rng: &mut Random,
    q_c: &[u8],
) -> Result<(Vec<u8>, SharedSecret), KexError> {
    let (kem_public, x25519_public) = split(q_c, kem.public_key_len(), "hybrid client key")?;
    let mut q_s = Vec::with_capacity(kem.ciphertext_len() + X25519_LEN);
    let kem_secret: Zeroizing<Vec<u8>> = match kem {
        Kem::MlKem768 => {
            let encoded = kem_public
                .try_into()
                .map_err(|_| KexError::InvalidKemKey { kem: kem.name() })?;
            // FIPS 203 §7.2: the encapsulation key's coefficients must be reduced mod q.
            let ek = ml_kem::EncapsulationKey::<MlKem768>::new(encoded)
                .map_err(|_| KexError::InvalidKemKey { kem: kem.name() })?;
            let (ciphertext, secret) = ek.encapsulate_deterministic(&rng.array::<32>().into());
            q_s.extend_from_slice(&ciphertext);
            Zeroizing::new(secret.to_vec())
        }
        Kem::Sntrup761 => {
            let ek = sntrup761::EncapsulationKey::try_from(kem_public)
                .map_err(|_| KexError::InvalidKemKey { kem: kem.name() })?;
            let (ciphertext, secret) = ek.encapsulate_deterministic(rng.array());
            q_s.extend_from_slice(ciphertext.as_ref());
            Zeroizing::new(secret.as_ref().to_vec())
        }
    };
    let x25519 = Ephemeral::from_random(rng.array());
    q_s.extend_from_slice(&x25519.public);
    let x25519_secret = x25519.agree_raw(x25519_public)?;
    Ok((q_s, combine(hash, &kem_secret, &x25519_secret)))
}

impl ClientKeys {
    /// Client: decapsulates the server's ciphertext and agrees on x25519; returns K.
    pub fn finish(self, q_s: &[u8]) -> Result<SharedSecret, KexError> {
        let kem = match &self.kem {
            KemSecret::MlKem768(_) => Kem::MlKem768,
            KemSecret::Sntrup761(_) => Kem::Sntrup761,
        };
        let (ciphertext, x25519_public) = split(q_s, kem.ciphertext_len(), "hybrid server reply")?;
        let invalid = || KexError::InvalidKemKey { kem: kem.name() };
        // Decapsulation never fails: a forged ciphertext yields an unrelated secret (implicit
        // rejection), and the host key signature over H fails instead.
        let kem_secret: Zeroizing<Vec<u8>> = match &self.kem {
            KemSecret::MlKem768(dk) => {
                let ciphertext = ciphertext.try_into().map_err(|_| invalid())?;
                Zeroizing::new(dk.decapsulate(ciphertext).to_vec())
            }
            KemSecret::Sntrup761(dk) => {
                let ciphertext =
                    sntrup761::Ciphertext::try_from(ciphertext).map_err(|_| invalid())?;
                Zeroizing::new(dk.decapsulate(&ciphertext).as_ref().to_vec())
            }
        };
        let x25519_secret = self.x25519.agree_raw(x25519_public)?;
        Ok(combine(self.hash, &kem_secret, &x25519_secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(kem: Kem, hash: HashAlg) {
        let mut rng = Random::from_seed([3; 32]);
        let (client, q_c) = client_start(kem, hash, &mut rng);
        assert_eq!(q_c.len(), kem.public_key_len() + 32);
        let (q_s, server_k) = server_answer(kem, hash, &mut rng, &q_c).unwrap();
        assert_eq!(q_s.len(), kem.ciphertext_len() + 32);
        let client_k = client.finish(&q_s).unwrap();
        assert_eq!(client_k.encoded(), server_k.encoded());
        // string(HASH(..)): a 4-byte length, then the digest.
        assert_eq!(client_k.encoded().len(), 4 + hash.output_len());
    }

    #[test]
    fn mlkem768x25519_agrees() {
        agree(Kem::MlKem768, HashAlg::Sha256);
    }

    #[test]
    fn sntrup761x25519_agrees() {
        agree(Kem::Sntrup761, HashAlg::Sha512);
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let mut rng = Random::from_seed([4; 32]);
        for kem in [Kem::MlKem768, Kem::Sntrup761] {
            let (_, q_c) = client_start(kem, HashAlg::Sha256, &mut rng);
            let short = &q_c[..q_c.len() - 1];
            assert!(matches!(
                server_answer(kem, HashAlg::Sha256, &mut rng, short),
                Err(KexError::BadLength { .. })
            ));
            let (client, _) = client_start(kem, HashAlg::Sha256, &mut rng);
            assert!(matches!(
                client.finish(&[0; 40]),
                Err(KexError::BadLength { .. })
            ));
        }
    }

    #[test]
    fn unreduced_mlkem_key_is_refused() {
        let mut rng = Random::from_seed([5; 32]);
        // All-ones coefficients are 4095 > q = 3329: the FIPS 203 modulus check fails.
        let q_c = vec![0xff; Kem::MlKem768.public_key_len() + 32];
        assert!(matches!(
            server_answer(Kem::MlKem768, HashAlg::Sha256, &mut rng, &q_c),
            Err(KexError::InvalidKemKey { .. })
        ));
    }

    #[test]
    fn low_order_x25519_point_is_refused() {
        let mut rng = Random::from_seed([6; 32]);
        let (_, mut q_c) = client_start(Kem::Sntrup761, HashAlg::Sha512, &mut rng);
        let n = q_c.len();
        q_c[n - 32..].fill(0);
        assert!(matches!(
            server_answer(Kem::Sntrup761, HashAlg::Sha512, &mut rng, &q_c),
            Err(KexError::ZeroSharedSecret)
        ));
    }
}
