//! `check_host_certificate` against `@cert-authority` and `@revoked` lines.

use super::*;
use ssh_key::PrivateKey;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;

const NOW: u64 = 1_800_000_000;

fn private(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

fn public_text(seed: u8) -> String {
    private(seed).public_key().to_openssh().unwrap()
}

/// Host key 2, certified by CA 1 for vpn.example.com.
fn cert() -> ssh_key::Certificate {
    let key = private(2).public_key().key_data().clone();
    let mut b = Builder::new([9u8; 16], key, NOW - 60, NOW + 60).unwrap();
    b.cert_type(CertType::Host).unwrap();
    b.valid_principal("vpn.example.com").unwrap();
    b.sign(&private(1)).unwrap()
}

fn status(text: &str, host: &str, port: u16) -> HostCertStatus {
    let (known, errors) = KnownHosts::parse(text);
    assert!(errors.is_empty(), "{errors:?}");
    known.check_host_certificate(host, port, &cert(), NOW)
}

#[test]
fn ca_line_whose_pattern_matches_trusts_the_certificate() {
    let ca = public_text(1);
    let text = format!("# comment\n@cert-authority *.example.com {ca}\n");
    assert_eq!(
        status(&text, "VPN.example.com", 22),
        HostCertStatus::Trusted { line: 2 }
    );
    // With a port, the pattern is [host]:port but the principal is still the host.
    let text = format!("@cert-authority [vpn.example.com]:2222 {ca}\n");
    assert_eq!(
        status(&text, "vpn.example.com", 2222),
        HostCertStatus::Trusted { line: 1 }
    );
    assert_eq!(
        status(&text, "vpn.example.com", 22),
        HostCertStatus::NoAuthority
    );
}

#[test]
fn other_ca_plain_line_or_other_host_is_no_authority() {
    for text in [
        format!("@cert-authority *.example.com {}\n", public_text(3)),
        format!("vpn.example.com {}\n", public_text(1)),
        format!("@cert-authority *.example.org {}\n", public_text(1)),
        format!("@cert-authority *,!vpn.example.com {}\n", public_text(1)),
    ] {
        assert_eq!(
            status(&text, "vpn.example.com", 22),
            HostCertStatus::NoAuthority,
            "{text}"
        );
    }
}

#[test]
fn revoked_ca_or_key_wins() {
    for (revoked, want) in [(1, "CA"), (2, "certified key")] {
        let text = format!(
            "@cert-authority * {}\n@revoked vpn.example.com {}\n",
            public_text(1),
            public_text(revoked)
        );
        match status(&text, "vpn.example.com", 22) {
            HostCertStatus::Refused {
                line: Some(2),
                reason,
            } => assert!(reason.to_string().contains("revoked"), "{want}: {reason}"),
            other => panic!("{want}: {other:?}"),
        }
    }
}

#[test]
fn trusted_ca_but_wrong_host_is_refused_with_the_reason() {
    let text = format!("@cert-authority * {}\n", public_text(1));
    match status(&text, "db.example.com", 22) {
        HostCertStatus::Refused {
            line: Some(1),
            reason: CertError::PrincipalNotListed { wanted, .. },
        } => assert_eq!(wanted, "db.example.com"),
        other => panic!("{other:?}"),
    }
}
