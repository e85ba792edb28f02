//! The server host key as a client receives it in SSH_MSG_KEX_ECDH_REPLY (RFC 4253 §8, RFC 5656
//! §4), for every host key algorithm the client offers: ssh-ed25519 (RFC 8709), rsa-sha2-256 and
//! rsa-sha2-512 (RFC 8332) and their OpenSSH certificate forms (PROTOCOL.certkeys).
//!
//! This module proves possession only: the signature over the exchange hash is made by the key
//! in the blob. Whether that key (or the CA that signed its certificate) is trusted is the
//! application's decision, through `Event::VerifyHostKey` and `keys::known_hosts`.

use ssh_key::public::{KeyData, RsaPublicKey};
use ssh_key::{Algorithm, Certificate, HashAlg};

use super::{ED25519, KeyBlobError, PublicKey};
use crate::wire::{Reader, WireError};

/// RFC 8332 §3 leaves the minimum to policy; OpenSSH's `RequiredRSASize` defaults to 2048.
pub const RSA_MIN_BITS: u32 = 2048;
/// The largest modulus the `rsa` crate verifies with.
pub const RSA_MAX_BITS: u32 = 8192;

pub const ED25519_CERT: &str = "ssh-ed25519-cert-v01@openssh.com";
pub const RSA_CERT: &str = "ssh-rsa-cert-v01@openssh.com";
pub const SSH_RSA: &str = "ssh-rsa";

/// Host key algorithms (the `server_host_key_algorithms` names of RFC 4253 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyAlg {
    Ed25519Cert,
    RsaSha512Cert,
    RsaSha256Cert,
    Ed25519,
    RsaSha512,
    RsaSha256,
}

impl HostKeyAlg {
    /// The client's preference order. Certificates first, as OpenSSH's default
    /// `HostKeyAlgorithms`: a certificate whose host has no `@cert-authority` line is checked as
    /// its plain key (see `HostKey::to_ssh_key`), so preferring them never loses a server that
    /// known_hosts already trusts by its plain key. SHA-1 `ssh-rsa` is deliberately absent.
    pub const CLIENT: [HostKeyAlg; 6] = [
        HostKeyAlg::Ed25519Cert,
        HostKeyAlg::RsaSha512Cert,
        HostKeyAlg::RsaSha256Cert,
        HostKeyAlg::Ed25519,
        HostKeyAlg::RsaSha512,
        HostKeyAlg::RsaSha256,
    ];
    /// What a server offers: sshvpnd has ed25519 host keys only.
    pub const SERVER: [HostKeyAlg; 1] = [HostKeyAlg::Ed25519];

    pub fn name(self) -> &'static str {
        match self {
            HostKeyAlg::Ed25519Cert => ED25519_CERT,
            HostKeyAlg::RsaSha512Cert => "rsa-sha2-512-cert-v01@openssh.com",
            HostKeyAlg::RsaSha256Cert => "rsa-sha2-256-cert-v01@openssh.com",
            HostKeyAlg::Ed25519 => ED25519,
            HostKeyAlg::RsaSha512 => "rsa-sha2-512",
            HostKeyAlg::RsaSha256 => "rsa-sha2-256",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::CLIENT.into_iter().find(|a| a.name() == name)
    }

    /// The key type that starts the key blob (RFC 8332 §3: the rsa-sha2-* algorithms use
    /// "ssh-rsa" keys).
    pub fn key_type(self) -> &'static str {
        match self {
            HostKeyAlg::Ed25519Cert => ED25519_CERT,
            HostKeyAlg::RsaSha512Cert | HostKeyAlg::RsaSha256Cert => RSA_CERT,
            HostKeyAlg::Ed25519 => ED25519,
            HostKeyAlg::RsaSha512 | HostKeyAlg::RsaSha256 => SSH_RSA,
        }
    }

    /// The signature format name the signature blob must carry.
    pub fn signature_name(self) -> &'static str {
        match self.rsa_hash() {
            Some(HashAlg::Sha512) => "rsa-sha2-512",
            Some(_) => "rsa-sha2-256",
            None => ED25519,
        }
    }

    fn rsa_hash(self) -> Option<HashAlg> {
        match self {
            HostKeyAlg::RsaSha512 | HostKeyAlg::RsaSha512Cert => Some(HashAlg::Sha512),
            HostKeyAlg::RsaSha256 | HostKeyAlg::RsaSha256Cert => Some(HashAlg::Sha256),
            HostKeyAlg::Ed25519 | HostKeyAlg::Ed25519Cert => None,
        }
    }

    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            HostKeyAlg::Ed25519Cert | HostKeyAlg::RsaSha512Cert | HostKeyAlg::RsaSha256Cert
        )
    }
}

/// A host key that proved possession; not yet trusted.
#[derive(Clone, PartialEq, Eq)]
pub enum HostKey {
    Ed25519(PublicKey),
    Rsa(Box<RsaPublicKey>),
    /// An OpenSSH certificate. Its CA signature is NOT checked here: that needs the trusted
    /// CAs and the clock (`keys::known_hosts::KnownHosts::check_host_certificate`).
    Certificate(Box<Certificate>),
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({} {})", self.type_name(), self.fingerprint())
    }
}

impl From<PublicKey> for HostKey {
    fn from(key: PublicKey) -> Self {
        HostKey::Ed25519(key)
    }
}

impl HostKey {
    /// Parses a key blob, which must be of the negotiated algorithm's key type.
    pub fn from_blob(alg: HostKeyAlg, blob: &[u8]) -> Result<Self, KeyBlobError> {
        let key_type = Reader::new(blob).string()?;
        if key_type != alg.key_type().as_bytes() {
            return Err(KeyBlobError::UnsupportedAlgorithm(format!(
                "{} key for negotiated {}",
                String::from_utf8_lossy(key_type)
                    .chars()
                    .take(64)
                    .collect::<String>(),
                alg.name()
            )));
        }
        match alg {
            HostKeyAlg::Ed25519 => PublicKey::from_blob(blob).map(HostKey::Ed25519),
            HostKeyAlg::RsaSha512 | HostKeyAlg::RsaSha256 => {
                let key = ssh_key::PublicKey::from_bytes(blob)
                    .map_err(|_| malformed("ssh-rsa key"))?
                    .key_data()
                    .clone();
                match key {
                    KeyData::Rsa(rsa) => {
                        check_rsa_size(&rsa)?;
                        Ok(HostKey::Rsa(Box::new(rsa)))
                    }
                    _ => Err(malformed("ssh-rsa key").into()),
                }
            }
            HostKeyAlg::Ed25519Cert | HostKeyAlg::RsaSha512Cert | HostKeyAlg::RsaSha256Cert => {
                let cert = crate::keys::certificate::parse(blob)
                    .map_err(|_| malformed("host certificate"))?;
                if let KeyData::Rsa(rsa) = cert.public_key() {
                    check_rsa_size(rsa)?;
                }
                Ok(HostKey::Certificate(Box::new(cert)))
            }
        }
    }

    /// Verifies `sig_blob` over `data` with this key, as the negotiated algorithm requires:
    /// an rsa-sha2-512 negotiation takes only an rsa-sha2-512 signature, and a SHA-1 "ssh-rsa"
    /// signature is never accepted (RFC 8332 §3).
    pub fn verify(
        &self,
        alg: HostKeyAlg,
        data: &[u8],
        sig_blob: &[u8],
    ) -> Result<(), KeyBlobError> {
        match (self.signing_key()?, alg.rsa_hash()) {
            (SigningKey::Ed25519(key), None) => key.verify_blob(data, sig_blob),
            (SigningKey::Rsa(key), Some(hash)) => verify_rsa(key, hash, alg, data, sig_blob),
            _ => Err(KeyBlobError::UnsupportedAlgorithm(alg.name().into())),
        }
    }

    fn signing_key(&self) -> Result<SigningKey<'_>, KeyBlobError> {
        let data = match self {
            HostKey::Ed25519(key) => return Ok(SigningKey::Ed25519(*key)),
            HostKey::Rsa(key) => return Ok(SigningKey::Rsa(key)),
            HostKey::Certificate(cert) => cert.public_key(),
        };
        match data {
            KeyData::Ed25519(_) => {
                PublicKey::from_ssh_key(&ssh_key::PublicKey::new(data.clone(), ""))
                    .map(SigningKey::Ed25519)
            }
            KeyData::Rsa(key) => Ok(SigningKey::Rsa(key)),
            other => Err(KeyBlobError::UnsupportedAlgorithm(
                other.algorithm().to_string(),
            )),
        }
    }

    /// The plain key (a certificate's certified key), for known_hosts matching and
    /// fingerprints.
    pub fn to_ssh_key(&self) -> ssh_key::PublicKey {
        let data = match self {
            HostKey::Ed25519(key) => return key.to_ssh_key(),
            HostKey::Rsa(key) => KeyData::Rsa((**key).clone()),
            HostKey::Certificate(cert) => cert.public_key().clone(),
        };
        ssh_key::PublicKey::new(data, "")
    }

    pub fn certificate(&self) -> Option<&Certificate> {
        match self {
            HostKey::Certificate(cert) => Some(cert),
            _ => None,
        }
    }

    /// The key type as OpenSSH names it in messages ("ED25519-CERT", "RSA").
    pub fn type_name(&self) -> &'static str {
        match (self, self.to_ssh_key().algorithm()) {
            (HostKey::Certificate(_), Algorithm::Rsa { .. }) => "RSA-CERT",
            (HostKey::Certificate(_), _) => "ED25519-CERT",
            (HostKey::Rsa(_), _) => "RSA",
            (HostKey::Ed25519(_), _) => "ED25519",
        }
    }

    /// OpenSSH's "SHA256:…" fingerprint of the (certified) key.
    pub fn fingerprint(&self) -> String {
        self.to_ssh_key().fingerprint(HashAlg::Sha256).to_string()
    }
}

enum SigningKey<'a> {
    Ed25519(PublicKey),
    Rsa(&'a RsaPublicKey),
}

fn malformed(field: &'static str) -> WireError {
    WireError::Invalid {
        field,
        why: "does not decode",
    }
}

/// Refuses moduli below [`RSA_MIN_BITS`] (factorable) and above [`RSA_MAX_BITS`].
pub fn check_rsa_size(key: &RsaPublicKey) -> Result<(), KeyBlobError> {
    let bits = key.key_size();
    if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(KeyBlobError::RsaKeySize(bits))
    }
}

/// RFC 8332 §3: string "rsa-sha2-256"/"rsa-sha2-512" || string(PKCS#1 v1.5 signature).
fn verify_rsa(
    key: &RsaPublicKey,
    hash: HashAlg,
    alg: HostKeyAlg,
    data: &[u8],
    sig_blob: &[u8],
) -> Result<(), KeyBlobError> {
    use signature::Verifier as _;
    check_rsa_size(key)?;
    let mut r = Reader::new(sig_blob);
    let name = r.string()?;
    if name != alg.signature_name().as_bytes() {
        return Err(KeyBlobError::UnsupportedAlgorithm(format!(
            "{} signature for negotiated {}",
            String::from_utf8_lossy(name)
                .chars()
                .take(64)
                .collect::<String>(),
            alg.name()
        )));
    }
    let sig = r.string()?;
    r.finish("rsa signature")?;
    // PKCS#1 v1.5 signatures are exactly the modulus length (RFC 8017 §8.2.2 step 1).
    let modulus_len = usize::try_from(key.key_size().div_ceil(8)).unwrap_or(usize::MAX);
    if sig.len() != modulus_len {
        return Err(KeyBlobError::BadSignature);
    }
    let sig = ssh_key::Signature::new(Algorithm::Rsa { hash: Some(hash) }, sig.to_vec())
        .map_err(|_| KeyBlobError::BadSignature)?;
    key.verify(data, &sig)
        .map_err(|_| KeyBlobError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::hostkey::Ed25519Key;
    use crate::wire::Writer;
    use proptest::prelude::*;
    use signature::Signer as _;
    use ssh_key::private::{KeypairData, RsaKeypair};

    const RSA2048: &str = include_str!("testdata/rsa2048");
    const RSA1024: &str = include_str!("testdata/rsa1024");

    fn rsa(text: &str) -> (RsaKeypair, Vec<u8>) {
        let key = ssh_key::PrivateKey::from_openssh(text).unwrap();
        let blob = key.public_key().to_bytes().unwrap();
        match key.key_data() {
            KeypairData::Rsa(pair) => (pair.clone(), blob),
            _ => unreachable!("test key is RSA"),
        }
    }

    fn sig_blob(name: &str, sig: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Writer::new(&mut out).string(name).string(sig);
        out
    }

    #[test]
    fn rsa_sha2_signatures_verify_and_others_are_refused() {
        let (pair, blob) = rsa(RSA2048);
        for (alg, hash, other) in [
            (HostKeyAlg::RsaSha512, HashAlg::Sha512, "rsa-sha2-256"),
            (HostKeyAlg::RsaSha256, HashAlg::Sha256, "rsa-sha2-512"),
        ] {
            let key = HostKey::from_blob(alg, &blob).unwrap();
            assert_eq!(key.type_name(), "RSA");
            let sig = (&pair, Some(hash)).try_sign(b"exchange hash").unwrap();
            let good = sig_blob(alg.signature_name(), sig.as_bytes());
            key.verify(alg, b"exchange hash", &good).unwrap();
            assert_eq!(
                key.verify(alg, b"exchange hasH", &good),
                Err(KeyBlobError::BadSignature)
            );
            // The right bytes under SHA-1's name, or under the hash that was not negotiated.
            for name in ["ssh-rsa", other] {
                assert!(matches!(
                    key.verify(alg, b"exchange hash", &sig_blob(name, sig.as_bytes())),
                    Err(KeyBlobError::UnsupportedAlgorithm(_))
                ));
            }
            // A truncated signature is refused before the RSA operation.
            let short = sig_blob(alg.signature_name(), sig.as_bytes().get(1..).unwrap());
            assert_eq!(
                key.verify(alg, b"exchange hash", &short),
                Err(KeyBlobError::BadSignature)
            );
        }
    }

    #[test]
    fn rsa_below_2048_bits_is_refused() {
        let (_, blob) = rsa(RSA1024);
        assert_eq!(
            HostKey::from_blob(HostKeyAlg::RsaSha512, &blob),
            Err(KeyBlobError::RsaKeySize(1024))
        );
        assert!(
            KeyBlobError::RsaKeySize(1024)
                .to_string()
                .contains("requires 2048")
        );
    }

    #[test]
    fn key_type_must_be_the_negotiated_algorithms() {
        let (_, rsa_blob) = rsa(RSA2048);
        let ed_blob = Ed25519Key::from_seed(&[3; 32]).public().blob();
        for (alg, blob) in [
            (HostKeyAlg::RsaSha512, &ed_blob),
            (HostKeyAlg::Ed25519, &rsa_blob),
            (HostKeyAlg::Ed25519Cert, &ed_blob),
            (HostKeyAlg::RsaSha256Cert, &rsa_blob),
        ] {
            assert!(
                matches!(
                    HostKey::from_blob(alg, blob),
                    Err(KeyBlobError::UnsupportedAlgorithm(_))
                ),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn ed25519_host_key_verifies_through_host_key() {
        let k = Ed25519Key::from_seed(&[4; 32]);
        let key = HostKey::from_blob(HostKeyAlg::Ed25519, &k.public().blob()).unwrap();
        key.verify(HostKeyAlg::Ed25519, b"h", &k.sign_blob(b"h"))
            .unwrap();
        // An ed25519 key cannot be used under an RSA algorithm name.
        assert!(
            key.verify(HostKeyAlg::RsaSha512, b"h", &k.sign_blob(b"h"))
                .is_err()
        );
        assert_eq!(key.fingerprint(), k.fingerprint());
    }

    proptest! {
        #[test]
        fn hostile_key_blobs_never_panic(
            alg in prop::sample::select(HostKeyAlg::CLIENT.to_vec()),
            tail in prop::collection::vec(any::<u8>(), 0..600),
            sig in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut blob = Vec::new();
            Writer::new(&mut blob).string(alg.key_type()).raw(&tail);
            if let Ok(key) = HostKey::from_blob(alg, &blob) {
                let _ = key.verify(alg, b"h", &sig);
            }
        }
    }
}
