//! The key exchange methods behind one shape: the client sends Q_C in KEX_ECDH_INIT, the server
//! answers with Q_S in KEX_ECDH_REPLY, and both arrive at the same K. curve25519-sha256 is plain
//! ECDH (RFC 8731); the hybrids add a post-quantum KEM (see `hybrid`).

use super::KexAlg;
use super::curve25519::Ephemeral;
use super::hash::{HashAlg, SharedSecret};
use super::hybrid::{self, Kem};
use crate::rng::Random;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KexError {
    #[error("peer's {what} is {got} bytes, expected {expected}")]
    BadLength {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    /// RFC 8731 §3: "If the output is all zero, the key exchange MUST be aborted."
    #[error("curve25519 shared secret is all zero (peer sent a low-order point)")]
    ZeroSharedSecret,
    #[error("peer's {kem} public key or ciphertext is invalid")]
    InvalidKemKey { kem: &'static str },
}

/// The client's secret half of one exchange, kept until the server's reply.
#[derive(Debug)]
pub enum ClientSecret {
    Curve25519(Ephemeral),
    Hybrid(hybrid::ClientKeys),
}

impl KexAlg {
    pub fn hash_alg(self) -> HashAlg {
        match self {
            KexAlg::Sntrup761X25519Sha512 | KexAlg::Sntrup761X25519Sha512OpenSsh => HashAlg::Sha512,
            KexAlg::MlKem768X25519Sha256
            | KexAlg::Curve25519Sha256
            | KexAlg::Curve25519Sha256Libssh => HashAlg::Sha256,
        }
    }

    fn kem(self) -> Option<Kem> {
        match self {
            KexAlg::MlKem768X25519Sha256 => Some(Kem::MlKem768),
            KexAlg::Sntrup761X25519Sha512 | KexAlg::Sntrup761X25519Sha512OpenSsh => {
                Some(Kem::Sntrup761)
            }
            KexAlg::Curve25519Sha256 | KexAlg::Curve25519Sha256Libssh => None,
        }
    }

    /// Client: our secrets and Q_C.
    pub fn client_start(self, rng: &mut Random) -> (ClientSecret, Vec<u8>) {
        match self.kem() {
            Some(kem) => {
                let (keys, q_c) = hybrid::client_start(kem, self.hash_alg(), rng);
                (ClientSecret::Hybrid(keys), q_c)
            }
            None => {
                let eph = Ephemeral::from_random(rng.array());
                let q_c = eph.public.to_vec();
                (ClientSecret::Curve25519(eph), q_c)
            }
        }
    }

    /// Server: Q_S and K from the client's Q_C.
    pub fn server_answer(
        self,
        rng: &mut Random,
        q_c: &[u8],
    ) -> Result<(Vec<u8>, SharedSecret), KexError> {
        match self.kem() {
            Some(kem) => hybrid::server_answer(kem, self.hash_alg(), rng, q_c),
            None => {
                let eph = Ephemeral::from_random(rng.array());
                let q_s = eph.public.to_vec();
                Ok((q_s, eph.agree(q_c)?))
            }
        }
    }
}

impl ClientSecret {
    /// Client: K from the server's Q_S.
    pub fn finish(self, q_s: &[u8]) -> Result<SharedSecret, KexError> {
        match self {
            ClientSecret::Curve25519(eph) => eph.agree(q_s),
            ClientSecret::Hybrid(keys) => keys.finish(q_s),
        }
    }
}
