//! `known_hosts` files: sshd(8) SSH_KNOWN_HOSTS FILE FORMAT.
//!
//! Each line is `[marker] hostnames keytype base64-key [comment]`. Host names are a
//! comma-separated pattern list (`*`, `?`, `!` negation), a non-22 port is written
//! `[host]:port`, and a hashed entry `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` hides the
//! name (OpenSSH's hostfile.c, `ssh-keygen -H`). Markers are `@revoked` and `@cert-authority`.
//!
//! [`KnownHosts::check`] gives OpenSSH's verdict for a plain host key and
//! [`KnownHosts::check_host_certificate`] for a host certificate (PROTOCOL.certkeys, checked
//! against `@cert-authority` lines); trust-on-first-use writes [`KnownHosts::entry_line`] out. Randomness for hashed names comes from the caller.

use std::path::Path;

use base64ct::{Base64, Encoding as _};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha1::Sha1;
use ssh_key::PublicKey;

use super::certificate::{self, CertError, Requirements};
use super::pattern::{ListMatch, match_hostname};
use super::{
    KeyError, LineError, LineErrorReason, content_lines, fingerprint, next_field, parse_key_fields,
};

/// Length of the salt and of the HMAC-SHA1 in a hashed host name.
const HASH_LEN: usize = 20;
/// The magic that starts a hashed host name (`HASH_MAGIC` in OpenSSH).
const HASH_MAGIC: &str = "|1|";

/// A line's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `@cert-authority`: the key is a CA for host certificates of the matching hosts.
    CertAuthority,
    /// `@revoked`: the key must never be accepted.
    Revoked,
}

/// The host names field of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPatterns {
    /// A comma-separated pattern list.
    Plain(String),
    /// A hashed name: only an exact name matches, no patterns.
    Hashed {
        /// The HMAC key.
        salt: [u8; HASH_LEN],
        /// HMAC-SHA1(salt, name).
        hash: [u8; HASH_LEN],
    },
}

impl HostPatterns {
    /// Whether `name` (a lowercase host, or `[host]:port`) is matched, as OpenSSH's
    /// `match_maybe_hashed`: a plain list must match positively with no negated pattern
    /// matching; a hashed one must hash to the same value.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPatterns::Plain(patterns) => match_hostname(name, patterns) == ListMatch::Positive,
            HostPatterns::Hashed { salt, hash } => hmac_sha1(salt)
                .map(|mut mac| {
                    mac.update(name.as_bytes());
                    mac.verify_slice(hash).is_ok()
                })
                .unwrap_or(false),
        }
    }
}

/// HMAC keyed with `salt`. HMAC accepts keys of any length, so this is never `None`; the
/// `Option` only spares a panic path.
fn hmac_sha1(salt: &[u8; HASH_LEN]) -> Option<Hmac<Sha1>> {
    Hmac::<Sha1>::new_from_slice(salt).ok()
}

/// One key line of a `known_hosts` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHostEntry {
    /// 1-based line number.
    pub line: usize,
    /// The marker, if any.
    pub marker: Option<Marker>,
    /// The host names field.
    pub hosts: HostPatterns,
    /// The key (its comment set to `comment`).
    pub key: PublicKey,
    /// The comment field, possibly empty.
    pub comment: String,
}

/// What a `known_hosts` file says about a host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// A line for this host has this key.
    Trusted {
        /// The line.
        line: usize,
    },
    /// An `@revoked` line for this host has this key. This wins over `Trusted`.
    Revoked {
        /// The line.
        line: usize,
    },
    /// No line has this key, but a line for this host has a different key of the same type:
    /// the host key changed, or someone is in the middle.
    Changed {
        /// The first such line.
        line: usize,
        /// The fingerprint of the key on that line.
        expected_fingerprint: String,
    },
    /// No line for this host has a key of this type. Lines with keys of other types do not
    /// make it `Changed`: OpenSSH likewise treats a new key type as a new host key (and
    /// prefers already-known types when negotiating so it rarely meets this case).
    Unknown,
}

/// What a `known_hosts` file says about a host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCertStatus {
    /// An `@cert-authority` line for this host names the certificate's CA, and the
    /// certificate passed every check.
    Trusted {
        /// The `@cert-authority` line.
        line: usize,
    },
    /// No `@cert-authority` line for this host names the certificate's CA. OpenSSH then checks
    /// the certified key as a plain host key; so does sshvpn.
    NoAuthority,
    /// Refused: a revoked CA or key, or a certificate that fails a check.
    Refused {
        /// The `@cert-authority` or `@revoked` line involved, when there is one.
        line: Option<usize>,
        /// Why.
        reason: CertError,
    },
}

/// A parsed `known_hosts` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<KnownHostEntry>,
}

impl KnownHosts {
    /// Parse a whole file. Returns the valid entries and an error for every other non-blank,
    /// non-comment line.
    #[must_use]
    pub fn parse(text: &str) -> (Self, Vec<LineError>) {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (line, content) in content_lines(text) {
            match content.and_then(|c| parse_entry(line, c)) {
                Ok(entry) => entries.push(entry),
                Err(reason) => errors.push(LineError { line, reason }),
            }
        }
        (Self { entries }, errors)
    }

    /// [`parse`](Self::parse) the file at `path`.
    ///
    /// # Errors
    /// [`KeyError::Read`] or [`KeyError::TooLarge`] if the file cannot be read; bad lines
    /// are returned, not errors.
    pub fn read_file(path: &Path) -> Result<(Self, Vec<LineError>), KeyError> {
        Ok(Self::parse(&super::read_bounded(path)?))
    }

    /// The entries, in file order.
    #[must_use]
    pub fn entries(&self) -> &[KnownHostEntry] {
        &self.entries
    }

    /// The name lines are matched against: `host`, or `[host]:port` when the port is not 22;
    /// lowercased, as ssh does.
    #[must_use]
    pub fn lookup_name(host: &str, port: u16) -> String {
        let host = host.to_ascii_lowercase();
        if port == 22 {
            host
        } else {
            format!("[{host}]:{port}")
        }
    }

    /// What the file says about `key` for `host` on `port` (OpenSSH's
    /// `check_key_in_hostkeys`, plus `@revoked`). `@cert-authority` lines are ignored here.
    #[must_use]
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyStatus {
        let name = Self::lookup_name(host, port);
        let mut trusted = None;
        let mut changed = None;
        for entry in self.entries.iter().filter(|e| e.hosts.matches(&name)) {
            let same_key = entry.key.key_data() == key.key_data();
            match entry.marker {
                Some(Marker::Revoked) if same_key => {
                    return HostKeyStatus::Revoked { line: entry.line };
                }
                None if same_key => {
                    trusted.get_or_insert(entry.line);
                }
                None if entry.key.algorithm() == key.algorithm() => {
                    changed.get_or_insert(entry);
                }
                _ => {}
            }
        }
        match (trusted, changed) {
            (Some(line), _) => HostKeyStatus::Trusted { line },
            (None, Some(entry)) => HostKeyStatus::Changed {
                line: entry.line,
                expected_fingerprint: fingerprint(&entry.key),
            },
            (None, None) => HostKeyStatus::Unknown,
        }
    }

    /// What the file says about a host certificate presented by `host` on `port` at `now`
    /// (seconds since the epoch), as OpenSSH's `check_host_cert`: the CA must be on an
    /// `@cert-authority` line whose patterns match the host; neither the CA nor the certified
    /// key may be on a matching `@revoked` line; the certificate must be a valid host
    /// certificate naming `host` (lowercased, without the port, as OpenSSH) as a principal.
    #[must_use]
    pub fn check_host_certificate(
        &self,
        host: &str,
        port: u16,
        cert: &ssh_key::Certificate,
        now: u64,
    ) -> HostCertStatus {
        let name = Self::lookup_name(host, port);
        let ca = cert.signature_key();
        let key = cert.public_key();
        let mut authority = None;
        for entry in self.entries.iter().filter(|e| e.hosts.matches(&name)) {
            let refused = |reason| HostCertStatus::Refused {
                line: Some(entry.line),
                reason,
            };
            match entry.marker {
                Some(Marker::Revoked) if entry.key.key_data() == ca => {
                    return refused(CertError::RevokedCa {
                        ca: certificate::ca_fingerprint(cert),
                    });
                }
                Some(Marker::Revoked) if entry.key.key_data() == key => {
                    return refused(CertError::RevokedKey {
                        key: fingerprint(&entry.key),
                    });
                }
                Some(Marker::CertAuthority) if entry.key.key_data() == ca => {
                    authority.get_or_insert(entry.line);
                }
                _ => {}
            }
        }
        let Some(line) = authority else {
            return HostCertStatus::NoAuthority;
        };
        let principal = host.to_ascii_lowercase();
        let req = Requirements {
            cert_type: ssh_key::certificate::CertType::Host,
            principal: &principal,
            now,
            peer: None,
        };
        match certificate::check(cert, &req) {
            Ok(()) => HostCertStatus::Trusted { line },
            Err(reason) => HostCertStatus::Refused {
                line: Some(line),
                reason,
            },
        }
    }

    /// A line (without newline) recording `key` for `host` on `port`, for trust on first use.
    /// With `hash_salt` the name is hashed as `ssh-keygen -H` / `HashKnownHosts` does; the
    /// caller supplies 20 random bytes. The key's comment is not written.
    ///
    /// # Errors
    /// [`KeyError::InvalidHostName`] for a name that would not read back as itself (empty,
    /// blanks, commas, pattern characters), [`KeyError::Encode`] if the key cannot be encoded.
    pub fn entry_line(
        host: &str,
        port: u16,
        key: &PublicKey,
        hash_salt: Option<&[u8; HASH_LEN]>,
    ) -> Result<String, KeyError> {
        let forbidden = |c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | '*' | '?' | '!' | '[' | ']')
        };
        if host.is_empty() || host.contains(forbidden) || host.starts_with(['|', '@', '#']) {
            return Err(KeyError::InvalidHostName(host.to_owned()));
        }
        let name = Self::lookup_name(host, port);
        let hosts = match hash_salt {
            Some(salt) => {
                let mut mac =
                    hmac_sha1(salt).ok_or_else(|| KeyError::InvalidHostName(name.clone()))?;
                mac.update(name.as_bytes());
                let hash = mac.finalize().into_bytes();
                format!(
                    "{HASH_MAGIC}{}|{}",
                    Base64::encode_string(salt),
                    Base64::encode_string(&hash)
                )
            }
            None => name,
        };
        let mut bare = key.clone();
        bare.set_comment("");
        let key_text = bare.to_openssh().map_err(KeyError::Encode)?;
        Ok(format!("{hosts} {key_text}"))
    }
}

/// Parse one line with leading blanks removed.
fn parse_entry(line: usize, text: &str) -> Result<KnownHostEntry, LineErrorReason> {
    let mut marker = None;
    let mut rest = text;
    while rest.starts_with('@') {
        let (word, after) = next_field(rest);
        let this = match word {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            _ => return Err(LineErrorReason::BadMarker(word.to_owned())),
        };
        if marker.replace(this).is_some() {
            return Err(LineErrorReason::BadMarker(word.to_owned()));
        }
        rest = after;
    }
    let (hosts_field, key_fields) = next_field(rest);
    if hosts_field.is_empty() || key_fields.is_empty() || key_fields.starts_with('#') {
        return Err(LineErrorReason::MissingKey);
    }
    let hosts = parse_hosts(hosts_field)?;
    let (key, comment) = parse_key_fields(key_fields)?;
    Ok(KnownHostEntry {
        line,
        marker,
        hosts,
        key,
        comment,
    })
}

fn parse_hosts(field: &str) -> Result<HostPatterns, LineErrorReason> {
    if !field.starts_with('|') {
        return Ok(HostPatterns::Plain(field.to_owned()));
    }
    let bad = || LineErrorReason::BadHashedHost(field.to_owned());
    let (salt, hash) = field
        .strip_prefix(HASH_MAGIC)
        .and_then(|s| s.split_once('|'))
        .ok_or_else(bad)?;
    let decode = |text: &str| -> Option<[u8; HASH_LEN]> {
        let mut out = [0u8; HASH_LEN];
        // A longer input fails to decode into the buffer; a shorter one fails the length check.
        match Base64::decode(text, &mut out) {
            Ok(decoded) if decoded.len() == HASH_LEN => Some(out),
            _ => None,
        }
    };
    Ok(HostPatterns::Hashed {
        salt: decode(salt).ok_or_else(bad)?,
        hash: decode(hash).ok_or_else(bad)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssh_key::public::Ed25519PublicKey;

    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILFarJ0L9yxK7KVFvAS4ERVacHCUlsHhVwprof+j95WE";
    const K1_FP: &str = "SHA256:MqImZ+3DDt8xR+rbavQptwgZ3StuCKPor3HU/ctWiSA";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKoLMeOfF9kUqcz4pprQgNPjHI5AnspK9EgVlGKtO4t/";
    const EC: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPN4L8zgBl3+XLGF/+UQOom71tPsCJIV6sgN2Zc50WKNqDIpi5fL9ZipajWLgO9dPezP01DSxF8PnRhE3vSiWlk=";

    /// `ssh-keygen -H` (OpenSSH 9.2) of `example.com K1` and `[example.com]:2222 K2`;
    /// `ssh-keygen -F` finds each under that name.
    const HASHED: &str = "\
|1|A8fgUXoYbne2CB0F/AqldV4+wdA=|TvZOHi/Nx58m+4OF/behfswBB4k= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILFarJ0L9yxK7KVFvAS4ERVacHCUlsHhVwprof+j95WE
|1|dmwBZbJLDQLNwP7tzhfO1ZKExV0=|KRltfqtZG4jrPDO16ys/ytfgS8c= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKoLMeOfF9kUqcz4pprQgNPjHI5AnspK9EgVlGKtO4t/
";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn kh(text: &str) -> KnownHosts {
        let (hosts, errors) = KnownHosts::parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        hosts
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        let hosts = kh(HASHED);
        assert!(matches!(
            hosts.entries()[0].hosts,
            HostPatterns::Hashed { .. }
        ));
        assert_eq!(
            hosts.check("example.com", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 1 }
        );
        assert_eq!(
            hosts.check("EXAMPLE.com", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 1 }
        );
        assert_eq!(
            hosts.check("example.com", 2222, &key(K2)),
            HostKeyStatus::Trusted { line: 2 }
        );
        assert_eq!(
            hosts.check("example.org", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            hosts.check("example.com", 2223, &key(K2)),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            hosts.check("example.com", 22, &key(K2)),
            HostKeyStatus::Changed {
                line: 1,
                expected_fingerprint: K1_FP.into()
            }
        );
    }

    #[test]
    fn entry_line_reproduces_ssh_keygen_hash() {
        let salt: [u8; 20] = Base64::decode_vec("A8fgUXoYbne2CB0F/AqldV4+wdA=")
            .unwrap()
            .try_into()
            .unwrap();
        let line = KnownHosts::entry_line("example.com", 22, &key(K1), Some(&salt)).unwrap();
        assert_eq!(line, HASHED.lines().next().unwrap());
        assert_eq!(
            KnownHosts::entry_line("Example.COM", 2222, &key(K2), None).unwrap(),
            format!("[example.com]:2222 {K2}")
        );
    }

    #[test]
    fn patterns_ports_and_negation() {
        let text = format!(
            "*.example.com,!evil.example.com {K1}\n\
             [alt.example.com]:2222,192.0.2.? {K2} a comment\n\
             host1,host2 {EC}\n"
        );
        let hosts = kh(&text);
        assert_eq!(hosts.entries()[1].comment, "a comment");
        assert_eq!(
            hosts.check("www.example.com", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 1 }
        );
        assert_eq!(
            hosts.check("evil.example.com", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            hosts.check("www.example.com", 2222, &key(K1)),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            hosts.check("alt.example.com", 2222, &key(K2)),
            HostKeyStatus::Trusted { line: 2 }
        );
        assert_eq!(
            hosts.check("alt.example.com", 22, &key(K2)),
            HostKeyStatus::Changed {
                line: 1,
                expected_fingerprint: K1_FP.into(),
            }
        );
        assert_eq!(
            hosts.check("192.0.2.9", 22, &key(K2)),
            HostKeyStatus::Trusted { line: 2 }
        );
        assert_eq!(
            hosts.check("host2", 22, &key(EC)),
            HostKeyStatus::Trusted { line: 3 }
        );
        // Only a key of another type is known: not a change.
        assert_eq!(hosts.check("host2", 22, &key(K1)), HostKeyStatus::Unknown);
    }

    #[test]
    fn revoked_wins_over_trusted() {
        let text = format!("example.com {K1}\n@revoked * {K1}\n@revoked * {K2}\n");
        let hosts = kh(&text);
        assert_eq!(hosts.entries()[1].marker, Some(Marker::Revoked));
        assert_eq!(
            hosts.check("example.com", 22, &key(K1)),
            HostKeyStatus::Revoked { line: 2 }
        );
        assert_eq!(
            hosts.check("other", 22, &key(K2)),
            HostKeyStatus::Revoked { line: 3 }
        );
        // A revoked key is not a known key for the Changed verdict.
        let hosts = kh(&format!("@revoked example.com {K2}\n"));
        assert_eq!(
            hosts.check("example.com", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn trusted_wins_over_changed() {
        let hosts = kh(&format!("example.com {K2}\nexample.com {K1}\n"));
        assert_eq!(
            hosts.check("example.com", 22, &key(K1)),
            HostKeyStatus::Trusted { line: 2 }
        );
    }

    #[test]
    fn cert_authority_lines_are_kept_but_not_trusted_as_host_keys() {
        let hosts = kh(&format!("@cert-authority *.example.com {K1}\n"));
        assert_eq!(hosts.entries()[0].marker, Some(Marker::CertAuthority));
        assert_eq!(
            hosts.check("a.example.com", 22, &key(K1)),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn bad_lines_are_reported_with_numbers() {
        let text = format!(
            "# comment\n\
             good {K1}\n\
             @bogus host {K1}\n\
             @revoked @revoked host {K1}\n\
             |1|c2FsdA==|aGFzaA== {K1}\n\
             |2|A8fgUXoYbne2CB0F/AqldV4+wdA=|TvZOHi/Nx58m+4OF/behfswBB4k= {K1}\n\
             hostonly\n\
             host ssh-ed25519 bad!\n\
             \t also-good {K2}\n"
        );
        let (hosts, errors) = KnownHosts::parse(&text);
        let lines: Vec<usize> = hosts.entries().iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 9]);
        let bad: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(bad, vec![3, 4, 5, 6, 7, 8]);
        assert!(matches!(errors[0].reason, LineErrorReason::BadMarker(_)));
        assert!(matches!(errors[1].reason, LineErrorReason::BadMarker(_)));
        assert!(matches!(
            errors[2].reason,
            LineErrorReason::BadHashedHost(_)
        ));
        assert!(matches!(
            errors[3].reason,
            LineErrorReason::BadHashedHost(_)
        ));
        assert_eq!(errors[4].reason, LineErrorReason::MissingKey);
        assert!(matches!(errors[5].reason, LineErrorReason::BadKey(_)));
    }

    #[test]
    fn entry_line_rejects_unwritable_names() {
        for bad in [
            "", "a b", "a,b", "*.x", "!x", "|1|x", "@revoked", "[x]:1", "#x",
        ] {
            assert!(
                matches!(
                    KnownHosts::entry_line(bad, 22, &key(K1), None),
                    Err(KeyError::InvalidHostName(_))
                ),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let (hosts, _) = KnownHosts::parse(&text);
            let _ = hosts.check("example.com", 22, &key(K1));
        }

        #[test]
        fn parse_never_panics_on_line_like_input(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("@revoked ".to_owned()),
                    Just("@cert-authority ".to_owned()),
                    Just("|1|".to_owned()),
                    Just("A8fgUXoYbne2CB0F/AqldV4+wdA=".to_owned()),
                    Just("|".to_owned()),
                    Just("[".to_owned()),
                    Just("]:".to_owned()),
                    Just(",".to_owned()),
                    Just("!".to_owned()),
                    Just(" ".to_owned()),
                    Just("\n".to_owned()),
                    Just(K1.to_owned()),
                    "[ -~]{0,8}",
                ],
                0..24,
            )
        ) {
            let (hosts, _) = KnownHosts::parse(&parts.concat());
            let _ = hosts.check("example.com", 2222, &key(K1));
        }

        #[test]
        fn entry_line_round_trips(
            host in "[a-z0-9][a-z0-9.-]{0,30}|[0-9a-f]{1,4}(:[0-9a-f]{1,4}){2,7}",
            port in any::<u16>(),
            key_bytes in any::<[u8; 32]>(),
            other_bytes in any::<[u8; 32]>(),
            salt in proptest::option::of(any::<[u8; 20]>()),
        ) {
            let key = PublicKey::from(Ed25519PublicKey(key_bytes));
            let line = KnownHosts::entry_line(&host, port, &key, salt.as_ref()).unwrap();
            let (hosts, errors) = KnownHosts::parse(&format!("{line}\n"));
            prop_assert!(errors.is_empty(), "{:?}", errors);
            prop_assert_eq!(hosts.check(&host, port, &key), HostKeyStatus::Trusted { line: 1 });
            let other = PublicKey::from(Ed25519PublicKey(other_bytes));
            if other_bytes != key_bytes {
                let changed = matches!(
                    hosts.check(&host, port, &other),
                    HostKeyStatus::Changed { line: 1, .. }
                );
                prop_assert!(changed);
            }
            let other_port = port.wrapping_add(1);
            prop_assert_eq!(hosts.check(&host, other_port, &key), HostKeyStatus::Unknown);
        }
    }
}

#[cfg(test)]
#[path = "known_hosts_cert_tests.rs"]
mod cert_tests;
