//! ssh-ed25519 public key and signature blobs (RFC 8709 §4, §6), used for host keys in the key
//! exchange and for user keys in publickey authentication.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::wire::{Reader, WireError, Writer};

mod server;

pub use server::{
    ED25519_CERT, HostKey, HostKeyAlg, RSA_CERT, RSA_MAX_BITS, RSA_MIN_BITS, SSH_RSA,
    check_rsa_size,
};

pub const ED25519: &str = "ssh-ed25519";

/// An ed25519 private key that signs for us: a server's host key or a client's identity.
#[derive(Clone)]
pub struct Ed25519Key {
    signing: SigningKey,
}

impl std::fmt::Debug for Ed25519Key {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ed25519Key({})", self.fingerprint())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyBlobError {
    #[error(
        "unsupported key or signature algorithm {0:?} (sshvpn accepts ssh-ed25519, rsa-sha2-256/512 and their OpenSSH certificates)"
    )]
    UnsupportedAlgorithm(String),
    #[error("malformed key or signature blob: {0}")]
    Malformed(#[from] WireError),
    #[error("signature does not verify")]
    BadSignature,
    #[error("the certificate is for another key")]
    CertificateKeyMismatch,
    #[error("RSA key of {0} bits refused: sshvpn requires {RSA_MIN_BITS} to {RSA_MAX_BITS} bits")]
    RsaKeySize(u32),
}

impl Ed25519Key {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// Converts a key loaded through `ssh-key` (for example from an OpenSSH key file).
    pub fn from_ssh_key(key: &ssh_key::PrivateKey) -> Result<Self, KeyBlobError> {
        match key.key_data() {
            ssh_key::private::KeypairData::Ed25519(pair) => {
                Ok(Self::from_seed(&pair.private.to_bytes()))
            }
            other => Err(KeyBlobError::UnsupportedAlgorithm(
                other
                    .algorithm()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|_| "unknown".into()),
            )),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The `string` signature blob: "ssh-ed25519" || string(64-byte signature).
    pub fn sign_blob(&self, data: &[u8]) -> Vec<u8> {
        let sig = self.signing.sign(data);
        let mut out = Vec::with_capacity(4 + ED25519.len() + 4 + 64);
        Writer::new(&mut out).string(ED25519).string(sig.to_bytes());
        out
    }

    pub fn fingerprint(&self) -> String {
        self.public().fingerprint()
    }
}

/// An ed25519 public key as it appears on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// Parses "ssh-ed25519" || string(32 bytes) (RFC 8709 §4).
    pub fn from_blob(blob: &[u8]) -> Result<Self, KeyBlobError> {
        let mut r = Reader::new(blob);
        let alg = r.string()?;
        if alg != ED25519.as_bytes() {
            return Err(KeyBlobError::UnsupportedAlgorithm(
                String::from_utf8_lossy(alg).chars().take(64).collect(),
            ));
        }
        let key: [u8; 32] = r.string()?.try_into().map_err(|_| WireError::Invalid {
            field: "ed25519 key",
            why: "not 32 bytes",
        })?;
        r.finish("ed25519 key")?;
        VerifyingKey::from_bytes(&key)
            .map(PublicKey)
            .map_err(|_| KeyBlobError::BadSignature)
    }

    pub fn blob(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(51);
        Writer::new(&mut out)
            .string(ED25519)
            .string(self.0.as_bytes());
        out
    }

    /// Verifies an "ssh-ed25519" signature blob (RFC 8709 §6) over `data`.
    pub fn verify_blob(&self, data: &[u8], sig_blob: &[u8]) -> Result<(), KeyBlobError> {
        let mut r = Reader::new(sig_blob);
        let alg = r.string()?;
        if alg != ED25519.as_bytes() {
            return Err(KeyBlobError::UnsupportedAlgorithm(
                String::from_utf8_lossy(alg).chars().take(64).collect(),
            ));
        }
        let sig: [u8; 64] = r.string()?.try_into().map_err(|_| WireError::Invalid {
            field: "ed25519 signature",
            why: "not 64 bytes",
        })?;
        r.finish("ed25519 signature")?;
        self.0
            .verify_strict(data, &Signature::from_bytes(&sig))
            .map_err(|_| KeyBlobError::BadSignature)
    }

    /// The same key as an `ssh-key` public key, for known_hosts and authorized_keys matching.
    pub fn to_ssh_key(&self) -> ssh_key::PublicKey {
        ssh_key::PublicKey::new(
            ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(
                *self.0.as_bytes(),
            )),
            "",
        )
    }

    /// OpenSSH's "SHA256:…" fingerprint.
    pub fn fingerprint(&self) -> String {
        self.to_ssh_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    }

    pub fn from_ssh_key(key: &ssh_key::PublicKey) -> Result<Self, KeyBlobError> {
        match key.key_data() {
            ssh_key::public::KeyData::Ed25519(k) => VerifyingKey::from_bytes(&k.0)
                .map(PublicKey)
                .map_err(|_| KeyBlobError::BadSignature),
            other => Err(KeyBlobError::UnsupportedAlgorithm(
                other.algorithm().to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_round_trip_and_tamper() {
        let k = Ed25519Key::from_seed(&[5; 32]);
        let blob = k.public().blob();
        let pk = PublicKey::from_blob(&blob).unwrap();
        let sig = k.sign_blob(b"exchange hash");
        pk.verify_blob(b"exchange hash", &sig).unwrap();
        assert_eq!(
            pk.verify_blob(b"exchange hasH", &sig),
            Err(KeyBlobError::BadSignature)
        );
        assert!(pk.fingerprint().starts_with("SHA256:"));
        assert!(matches!(
            PublicKey::from_blob(b"\0\0\0\x07ssh-rsa"),
            Err(KeyBlobError::UnsupportedAlgorithm(_))
        ));
    }
}
