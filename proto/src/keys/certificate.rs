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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssh_key::PrivateKey;
    use ssh_key::certificate::Builder;
    use ssh_key::private::Ed25519Keypair;

    const NOW: u64 = 1_800_000_000;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    /// A certificate for key 2 signed by CA 1, valid an hour either side of NOW.
    fn builder(cert_type: CertType) -> Builder {
        let mut b = Builder::new(
            [7u8; 32],
            key(2).public_key().key_data().clone(),
            NOW - 3600,
            NOW + 3600,
        )
        .unwrap();
        b.cert_type(cert_type).unwrap();
        b.key_id("test").unwrap();
        b.valid_principal("alice").unwrap();
        b.valid_principal("vpn.example.com").unwrap();
        b
    }

    fn req(cert_type: CertType, principal: &str) -> Requirements<'_> {
        Requirements {
            cert_type,
            principal,
            now: NOW,
            peer: Some("192.0.2.7".parse().unwrap()),
        }
    }

    fn blob(cert: &Certificate) -> Vec<u8> {
        ssh_key::encoding::Encode::encode_vec(cert).unwrap()
    }

    #[test]
    fn valid_certificates_pass_and_round_trip_through_parse() {
        let host = builder(CertType::Host).sign(&key(1)).unwrap();
        let parsed = parse(&blob(&host)).unwrap();
        assert_eq!(parsed, host);
        check(&parsed, &req(CertType::Host, "vpn.example.com")).unwrap();
        let user = builder(CertType::User).sign(&key(1)).unwrap();
        check(&user, &req(CertType::User, "alice")).unwrap();
        assert!(!permits_port_forwarding(&user));
    }

    #[test]
    fn each_check_refuses_with_its_reason() {
        let host = builder(CertType::Host).sign(&key(1)).unwrap();
        assert_eq!(
            check(&host, &req(CertType::User, "alice")),
            Err(CertError::WrongType {
                wanted: "user",
                found: "host"
            })
        );
        let err = check(&host, &req(CertType::Host, "other.example.com")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "certificate principals [alice,vpn.example.com] do not include \"other.example.com\""
        );
        let mut late = req(CertType::Host, "alice");
        late.now = NOW + 3600;
        assert!(matches!(
            check(&host, &late),
            Err(CertError::Expired { .. })
        ));
        late.now = NOW - 3601;
        assert!(matches!(
            check(&host, &late),
            Err(CertError::NotYetValid { .. })
        ));

        let mut b = builder(CertType::User);
        b.critical_option("force-command", "/bin/true").unwrap();
        let forced = b.sign(&key(1)).unwrap();
        assert_eq!(
            check(&forced, &req(CertType::User, "alice")),
            Err(CertError::UnsupportedCriticalOption("force-command".into()))
        );

        // No principals: OpenSSH's "any principal" in some uses; refused here.
        let mut b = Builder::new(
            [7u8; 32],
            key(2).public_key().key_data().clone(),
            NOW - 1,
            NOW + 1,
        )
        .unwrap();
        b.cert_type(CertType::User).unwrap();
        b.all_principals_valid().unwrap();
        let anyone = b.sign(&key(1)).unwrap();
        assert_eq!(
            check(&anyone, &req(CertType::User, "alice")),
            Err(CertError::NoPrincipals)
        );
    }

    #[test]
    fn source_address_is_checked_against_the_peer() {
        for (list, ok) in [
            ("192.0.2.0/24", true),
            ("10.0.0.0/8,192.0.2.7", true),
            ("198.51.100.0/24", false),
            ("2001:db8::/32", false),
        ] {
            let mut b = builder(CertType::User);
            b.critical_option(SOURCE_ADDRESS, list).unwrap();
            let cert = b.sign(&key(1)).unwrap();
            let result = check(&cert, &req(CertType::User, "alice"));
            assert_eq!(result.is_ok(), ok, "{list}: {result:?}");
        }
        let mut b = builder(CertType::User);
        b.critical_option(SOURCE_ADDRESS, "192.0.2.*").unwrap();
        let cert = b.sign(&key(1)).unwrap();
        assert!(matches!(
            check(&cert, &req(CertType::User, "alice")),
            Err(CertError::BadSourceAddress(_))
        ));
        // An IPv4 peer seen on a dual-stack socket is still the IPv4 address.
        let mut b = builder(CertType::User);
        b.critical_option(SOURCE_ADDRESS, "192.0.2.7/32").unwrap();
        let cert = b.sign(&key(1)).unwrap();
        let mut mapped = req(CertType::User, "alice");
        mapped.peer = Some("::ffff:192.0.2.7".parse().unwrap());
        check(&cert, &mapped).unwrap();
    }

    #[test]
    fn a_forged_or_tampered_certificate_fails_its_signature() {
        let cert = builder(CertType::User).sign(&key(1)).unwrap();
        let good = blob(&cert);
        // Flip one bit of every byte of the signed part in turn: either the blob no longer
        // parses, or the CA signature fails. Never accepted, never a panic.
        let signed_len = good.len() - 4 - 4 - 11 - 4 - 64;
        for i in 0..signed_len {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            if let Ok(c) = parse(&bad) {
                assert!(
                    check(&c, &req(CertType::User, "alice")).is_err(),
                    "byte {i} flipped still passes"
                );
            }
        }
        // The signature itself.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        let c = parse(&bad).unwrap();
        assert_eq!(verify_ca_signature(&c), Err(CertError::BadCaSignature));
    }

    #[test]
    fn truncated_and_wrongly_typed_blobs_are_malformed() {
        let good = blob(&builder(CertType::Host).sign(&key(1)).unwrap());
        for len in 0..good.len() {
            assert_eq!(
                parse(&good[..len]),
                Err(CertError::Malformed),
                "length {len}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(parse(&trailing), Err(CertError::Malformed));
        // A plain key blob is not a certificate.
        let plain = key(2).public_key().to_bytes().unwrap();
        assert_eq!(parse(&plain), Err(CertError::Malformed));
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(unix_to_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_to_utc(1_577_923_200), "2020-01-02T00:00:00Z");
        assert_eq!(unix_to_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(unix_to_utc(u64::MAX), "forever");
    }

    proptest! {
        #[test]
        fn hostile_certificate_blobs_never_panic(
            prefix in prop::sample::select(vec![
                "ssh-ed25519-cert-v01@openssh.com",
                "ssh-rsa-cert-v01@openssh.com",
                "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            ]),
            tail in prop::collection::vec(any::<u8>(), 0..800),
        ) {
            let mut b = Vec::new();
            crate::wire::Writer::new(&mut b).string(prefix).raw(&tail);
            if let Ok(c) = parse(&b) {
                let _ = check(&c, &req(CertType::User, "alice"));
            }
        }

        #[test]
        fn mutated_certificates_never_pass(i in 0usize..400, bit in 0u8..8) {
            let mut b = blob(&builder(CertType::User).sign(&key(1)).unwrap());
            let len = b.len();
            if let Some(byte) = b.get_mut(i % len) {
                *byte ^= 1 << bit;
            }
            if let Ok(c) = parse(&b) {
                // Only a flip in the unsigned comment-free tail could survive, and there is none.
                prop_assert!(check(&c, &req(CertType::User, "alice")).is_err());
            }
        }
    }
}
