//! OpenSSH certificates (PROTOCOL.certkeys): decoding a certificate blob and the checks that
//! make one trustworthy — the CA's signature, the certificate type, the validity interval, the
//! principals and the critical options.
//!
//! Which CA keys are trusted is not decided here: `known_hosts` (`@cert-authority`) does it for
//! host certificates, and the server's policy (`TrustedUserCAKeys`, `cert-authority` lines) for
//! user certificates. Like the rest of `keys`, this module never reads the clock: "now" is a
//! parameter.

use std::net::IpAddr;

use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate};

use super::pattern::addr_match_cidr_list;
use crate::transport::hostkey::check_rsa_size;

/// The one critical option sshvpn understands (PROTOCOL.certkeys "Critical options"). The
/// others are refused: `force-command` because sshvpn runs no commands and so could not honour
/// the restriction, `verify-required` because it signs for FIDO keys only.
pub const SOURCE_ADDRESS: &str = "source-address";
/// The extension that allows port forwarding (PROTOCOL.certkeys "Extensions").
pub const PERMIT_PORT_FORWARDING: &str = "permit-port-forwarding";

/// Why a certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("malformed certificate")]
    Malformed,
    #[error("certificate is a {found} certificate where a {wanted} certificate is required")]
    WrongType {
        wanted: &'static str,
        found: &'static str,
    },
    #[error("certificate is signed by CA {ca}, which is not trusted here")]
    UntrustedCa { ca: String },
    #[error("certificate's CA {ca} is revoked")]
    RevokedCa { ca: String },
    #[error("certified key {key} is revoked")]
    RevokedKey { key: String },
    #[error("certificate's CA signature does not verify")]
    BadCaSignature,
    #[error("certificate's CA signature uses {0}, which is refused (SHA-1 or unsupported)")]
    CaSignatureAlgorithm(String),
    #[error("certificate's key or CA key is unsupported: {0}")]
    UnsupportedKey(String),
    #[error("certificate is not valid yet (valid from {})", unix_to_utc(*valid_after))]
    NotYetValid { valid_after: u64 },
    #[error("certificate expired (valid until {})", unix_to_utc(*valid_before))]
    Expired { valid_before: u64 },
    #[error("certificate has no principals")]
    NoPrincipals,
    #[error("certificate principals [{listed}] do not include {wanted:?}")]
    PrincipalNotListed { wanted: String, listed: String },
    #[error("certificate has critical option {0:?}, which sshvpn does not support")]
    UnsupportedCriticalOption(String),
    #[error("certificate source-address {allowed:?} does not include {peer}")]
    SourceAddress { allowed: String, peer: IpAddr },
    #[error("certificate source-address {0:?} is malformed")]
    BadSourceAddress(String),
}

/// Decodes a certificate blob: `string "…-cert-v01@openssh.com"` and the fields that follow,
/// with nothing after the signature. Lengths are bounded by the blob itself, so a hostile
/// blob cannot make this allocate more than its own size.
pub fn parse(blob: &[u8]) -> Result<Certificate, CertError> {
    let cert = Certificate::from_bytes(blob).map_err(|_| CertError::Malformed)?;
    match cert.public_key() {
        KeyData::Ed25519(_) => {}
        KeyData::Rsa(rsa) => {
            check_rsa_size(rsa).map_err(|e| CertError::UnsupportedKey(e.to_string()))?;
        }
        other => return Err(CertError::UnsupportedKey(other.algorithm().to_string())),
    }
    Ok(cert)
}

/// The CA's signature over the certificate is valid, made with an algorithm we accept
/// (ssh-ed25519, rsa-sha2-256, rsa-sha2-512; never SHA-1 "ssh-rsa").
pub fn verify_ca_signature(cert: &Certificate) -> Result<(), CertError> {
    match cert.signature_key() {
        KeyData::Ed25519(_) => {}
        KeyData::Rsa(rsa) => {
            check_rsa_size(rsa).map_err(|e| CertError::UnsupportedKey(e.to_string()))?;
        }
        other => return Err(CertError::UnsupportedKey(other.algorithm().to_string())),
    }
    let alg = cert.signature().algorithm();
    match (cert.signature_key(), &alg) {
        (KeyData::Ed25519(_), Algorithm::Ed25519)
        | (KeyData::Rsa(_), Algorithm::Rsa { hash: Some(_) }) => {}
        _ => return Err(CertError::CaSignatureAlgorithm(alg.to_string())),
    }
    cert.verify_signature()
        .map_err(|_| CertError::BadCaSignature)
}

/// What a certificate must be to authenticate one peer.
#[derive(Debug, Clone, Copy)]
pub struct Requirements<'a> {
    pub cert_type: CertType,
    /// The name that must be among the principals (a host name, or a user name).
    pub principal: &'a str,
    /// Seconds since the epoch.
    pub now: u64,
    /// The peer's address, for `source-address` (user certificates).
    pub peer: Option<IpAddr>,
}

/// Checks everything but who the CA is: its signature, type, validity, principal and critical
/// options. The signature is checked first so nothing else in the certificate is believed
/// before it is known to come from the CA.
pub fn check(cert: &Certificate, req: &Requirements<'_>) -> Result<(), CertError> {
    verify_ca_signature(cert)?;
    if cert.cert_type() != req.cert_type {
        return Err(CertError::WrongType {
            wanted: type_name(req.cert_type),
            found: type_name(cert.cert_type()),
        });
    }
    // PROTOCOL.certkeys: valid after <= current time < valid before.
    if req.now < cert.valid_after() {
        return Err(CertError::NotYetValid {
            valid_after: cert.valid_after(),
        });
    }
    if req.now >= cert.valid_before() {
        return Err(CertError::Expired {
            valid_before: cert.valid_before(),
        });
    }
    check_principal(cert, req.principal)?;
    for (name, value) in cert.critical_options().iter() {
        match (name.as_str(), req.cert_type, req.peer) {
            (SOURCE_ADDRESS, CertType::User, Some(peer)) => {
                let allowed = addr_match_cidr_list(peer, value)
                    .map_err(|_| CertError::BadSourceAddress(value.clone()))?;
                if !allowed {
                    return Err(CertError::SourceAddress {
                        allowed: value.clone(),
                        peer,
                    });
                }
            }
            _ => return Err(CertError::UnsupportedCriticalOption(name.clone())),
        }
    }
    Ok(())
}

/// `principal` is listed. An empty list means "any principal" to OpenSSH for some uses; sshvpn
/// refuses it so a certificate always names whom it is for.
pub fn check_principal(cert: &Certificate, principal: &str) -> Result<(), CertError> {
    let listed = cert.valid_principals();
    if listed.is_empty() {
        return Err(CertError::NoPrincipals);
    }
    if listed.iter().any(|p| p == principal) {
        Ok(())
    } else {
        Err(CertError::PrincipalNotListed {
            wanted: principal.to_owned(),
            listed: listed
                .iter()
                .take(16)
                .map(|p| p.chars().take(64).collect::<String>())
                .collect::<Vec<_>>()
                .join(","),
        })
    }
}

/// Whether the certificate grants port forwarding (`permit-port-forwarding`).
pub fn permits_port_forwarding(cert: &Certificate) -> bool {
    cert.extensions().contains_key(PERMIT_PORT_FORWARDING)
}

/// The CA key's "SHA256:…" fingerprint.
pub fn ca_fingerprint(cert: &Certificate) -> String {
    cert.signature_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string()
}

fn type_name(t: CertType) -> &'static str {
    match t {
        CertType::Host => "host",
        CertType::User => "user",
    }
}

/// Seconds since the epoch as "YYYY-MM-DDTHH:MM:SSZ" (H. Hinnant's `civil_from_days`);
/// "forever" for OpenSSH's "no end" value.
pub fn unix_to_utc(t: u64) -> String {
    if t == u64::MAX {
        return "forever".into();
    }
    let Ok(secs) = i64::try_from(t) else {
        return t.to_string();
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
