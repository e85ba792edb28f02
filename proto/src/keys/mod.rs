//! Key material: OpenSSH private key files, `authorized_keys` and `known_hosts`.
//!
//! Owns parsing and the matching rules of OpenSSH's sshd(8) AUTHORIZED_KEYS FILE FORMAT and
//! SSH_KNOWN_HOSTS FILE FORMAT sections, and the decryption of `ssh-keygen` private keys
//! (PROTOCOL.key: bcrypt-pbkdf, aes256-ctr) through the `ssh-key` crate. It decides nothing
//! about a connection by itself: the daemon asks it ("may this key open host:port?", "is this
//! host key trusted?") and acts on the answer. It never reads the clock and never draws random
//! numbers (a salt for hashed `known_hosts` names is a parameter); the only IO is the thin
//! `*_file` wrappers, which read one file and name it in their errors.

pub mod authorized_keys;
pub mod certificate;
pub mod known_hosts;
mod options;
mod pattern;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use ssh_key::{Algorithm, HashAlg, PrivateKey, PublicKey};
use zeroize::Zeroizing;

pub use authorized_keys::{
    AuthorizedKey, ExpiryTime, KeyOptions, OptionError, PermitListen, PermitOpen, PortSpec,
    TunnelDevice,
};
pub use certificate::CertError;
pub use known_hosts::{
    HostCertStatus, HostKeyStatus, HostPatterns, KnownHostEntry, KnownHosts, Marker,
};

/// Longest line accepted in `authorized_keys` and `known_hosts`. sshd(8) documents 8
/// kilobytes for `authorized_keys` ("which permits RSA keys up to 16 kilobits").
pub const MAX_LINE_LEN: usize = 8192;

/// Largest key file we read; a 16-kilobit RSA private key is under 13 KiB.
const MAX_FILE_LEN: u64 = 1 << 20;

/// Errors loading keys and key files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file is encrypted and no passphrase was given.
    #[error("key is encrypted; a passphrase is needed")]
    PassphraseNeeded,
    /// Decryption failed its check (PROTOCOL.key's repeated `checkint`).
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A key of an algorithm sshvpn does not use.
    #[error("unsupported key type {0} (sshvpn supports ssh-ed25519)")]
    UnsupportedKeyType(String),
    /// The text is not an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    #[error("not an OpenSSH private key: {0}")]
    NotOpenSshKey(ssh_key::Error),
    /// The key decrypted but its contents are malformed.
    #[error("malformed private key: {0}")]
    Malformed(ssh_key::Error),
    /// A public key could not be encoded.
    #[error("cannot encode public key: {0}")]
    Encode(ssh_key::Error),
    /// A host name that cannot be written into a `known_hosts` line.
    #[error("invalid host name {0:?} for known_hosts")]
    InvalidHostName(String),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is larger than any key file could be.
    #[error("{}: file is larger than {MAX_FILE_LEN} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// An error in the contents of a file.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: Box<KeyError>,
    },
}

/// A line of `authorized_keys` or `known_hosts` that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub reason: LineErrorReason,
}

/// Why a line was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineErrorReason {
    /// Longer than [`MAX_LINE_LEN`].
    #[error("line is longer than {MAX_LINE_LEN} bytes")]
    TooLong,
    /// Options or host names with no key after them.
    #[error("no public key on the line")]
    MissingKey,
    /// The key type and base64 fields do not decode to a public key.
    #[error("bad public key: {0}")]
    BadKey(String),
    /// An `authorized_keys` option string sshd would reject.
    #[error("bad key options: {0}")]
    BadOptions(#[from] OptionError),
    /// A `known_hosts` marker other than `@cert-authority` and `@revoked`, or two markers.
    #[error("bad marker {0:?} (expected @cert-authority or @revoked, at most one)")]
    BadMarker(String),
    /// A `|1|salt|hash` host field that does not decode to a 20-byte salt and hash.
    #[error("bad hashed host name {0:?}")]
    BadHashedHost(String),
}

/// The OpenSSH `SHA256:…` fingerprint of a public key (base64 without padding), as
/// `ssh-keygen -l` prints it.
#[must_use]
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parse an OpenSSH private key (`ssh-keygen`'s format) and decrypt it if it is encrypted.
///
/// Only `ssh-ed25519` keys are accepted; the algorithm is checked before decryption (it is in
/// the file's clear header), so no passphrase is asked for a key that could not be used. A
/// passphrase given for an unencrypted key is ignored, as `ssh` does.
///
/// # Errors
/// [`KeyError::PassphraseNeeded`], [`KeyError::WrongPassphrase`],
/// [`KeyError::UnsupportedKeyType`], [`KeyError::NotOpenSshKey`], [`KeyError::Malformed`].
pub fn load_private_key(text: &str, passphrase: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
    let key = PrivateKey::from_openssh(text).map_err(|e| match e {
        ssh_key::Error::AlgorithmUnsupported { algorithm } => {
            KeyError::UnsupportedKeyType(algorithm.as_str().to_owned())
        }
        other => KeyError::NotOpenSshKey(other),
    })?;
    let algorithm = key.algorithm();
    if algorithm != Algorithm::Ed25519 {
        return Err(KeyError::UnsupportedKeyType(algorithm.as_str().to_owned()));
    }
    if !key.is_encrypted() {
        return Ok(key);
    }
    let passphrase = passphrase.ok_or(KeyError::PassphraseNeeded)?;
    key.decrypt(passphrase).map_err(|e| match e {
        // The two check integers differ, or an AEAD tag fails: the derived key is wrong.
        ssh_key::Error::Crypto => KeyError::WrongPassphrase,
        other => KeyError::Malformed(other),
    })
}

/// [`load_private_key`] on the contents of `path`; errors name the file.
///
/// # Errors
/// As [`load_private_key`], wrapped in [`KeyError::InFile`], or [`KeyError::Read`].
pub fn load_private_key_file(
    path: &Path,
    passphrase: Option<&[u8]>,
) -> Result<PrivateKey, KeyError> {
    let text = read_bounded(path)?;
    load_private_key(&text, passphrase).map_err(|error| KeyError::InFile {
        path: path.to_owned(),
        error: Box::new(error),
    })
}

/// Read a whole text file of at most [`MAX_FILE_LEN`] bytes; the buffer is wiped on drop
/// because it may hold a private key.
fn read_bounded(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if u64::try_from(text.len()).map_or(true, |n| n > MAX_FILE_LEN) {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// Split off the first field of `s` (up to a space or tab) and the rest after the blanks that
/// follow it. OpenSSH separates the fields of both files with any run of spaces and tabs.
fn next_field(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => {
            let (field, rest) = s.split_at(i);
            (field, rest.trim_start_matches([' ', '\t']))
        }
        None => (s, ""),
    }
}

/// Parse `keytype base64 [comment]` into a key (carrying the comment) and the comment.
fn parse_key_fields(s: &str) -> Result<(PublicKey, String), LineErrorReason> {
    let (algorithm, rest) = next_field(s);
    let (base64, rest) = next_field(rest);
    if algorithm.is_empty() || base64.is_empty() {
        return Err(LineErrorReason::MissingKey);
    }
    let comment = rest.trim_end().to_owned();
    let mut key = PublicKey::from_openssh(&format!("{algorithm} {base64}"))
        .map_err(|e| LineErrorReason::BadKey(e.to_string()))?;
    key.set_comment(comment.as_str());
    Ok((key, comment))
}

/// Lines of a file with 1-based numbers, leading blanks removed, comments and blank lines
/// skipped, and over-long lines reported.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, Result<&str, LineErrorReason>)> {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let line = raw.trim_start_matches([' ', '\t']);
        let number = i.saturating_add(1);
        if line.trim_end().is_empty() || line.starts_with('#') {
            None
        } else if raw.len() > MAX_LINE_LEN {
            Some((number, Err(LineErrorReason::TooLong)))
        } else {
            Some((number, Ok(line)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -t ed25519 -N pass -C test@sshvpn` (OpenSSH 9.2: bcrypt, aes256-ctr).
    pub(crate) const ENCRYPTED_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABAEp24ZnK
qH3w97RvCHgEvHAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIKoLMeOfF9kUqcz4
pprQgNPjHI5AnspK9EgVlGKtO4t/AAAAkGySsw57YQsCgwnM1tJM8yPNCRcXlWY2jgwQMF
dw8Vd+scuqUgbKxjGgOlCLVrhdu2Q+4UuKwOfQG1+Ys583l2tQ9YDb9WsVeHqDkt4z7j54
RWkIk/274v+++19AA1h4PpGrUfkxiTHvpdg914dXU1acBgQG+RDus/pIcXNxd391+8IAD9
+D0eDReSDanfKwhQ==
-----END OPENSSH PRIVATE KEY-----
";
    pub(crate) const ENCRYPTED_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKoLMeOfF9kUqcz4pprQgNPjHI5AnspK9EgVlGKtO4t/ test@sshvpn";
    const ENCRYPTED_FP: &str = "SHA256:kyUL2+zgsqlFYD9WZ1sdFSVbb4jyll0Jp0AkQL0nxd4";

    /// `ssh-keygen -t ed25519 -N "" -C plain@sshvpn`.
    const PLAIN_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCxWqydC/csSuylRbwEuBEVWnBwlJbB4VcKa6H/o/eVhAAAAJC7ayCxu2sg
sQAAAAtzc2gtZWQyNTUxOQAAACCxWqydC/csSuylRbwEuBEVWnBwlJbB4VcKa6H/o/eVhA
AAAECAo8hiwhWbJbfPT9TgpSIh9nM0QvsNbMhGMbtwM1EAE7FarJ0L9yxK7KVFvAS4ERVa
cHCUlsHhVwprof+j95WEAAAADHBsYWluQHNzaHZwbgE=
-----END OPENSSH PRIVATE KEY-----
";
    pub(crate) const PLAIN_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILFarJ0L9yxK7KVFvAS4ERVacHCUlsHhVwprof+j95WE plain@sshvpn";
    const PLAIN_FP: &str = "SHA256:MqImZ+3DDt8xR+rbavQptwgZ3StuCKPor3HU/ctWiSA";

    /// `ssh-keygen -t ecdsa -N "" -C ec`.
    const ECDSA_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQTzeC/M4AZd/lyxhf/lEDqJu9bT7AiS
FerIDdmXOdFijagyKYuXy/WYqWo1i4DvXT3sz9NQ0sRfD50YRN70olpZAAAAoOn+Ep7p/h
KeAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPN4L8zgBl3+XLGF
/+UQOom71tPsCJIV6sgN2Zc50WKNqDIpi5fL9ZipajWLgO9dPezP01DSxF8PnRhE3vSiWl
kAAAAhAIu8/Xepyv0Sx6MnsZ1jIOEqQCMITSo2lkrQvUwz30RvAAAAAmVjAQIDBAU=
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn fingerprints_match_ssh_keygen() {
        let enc = PublicKey::from_openssh(ENCRYPTED_PUB).unwrap();
        let plain = PublicKey::from_openssh(PLAIN_PUB).unwrap();
        assert_eq!(fingerprint(&enc), ENCRYPTED_FP);
        assert_eq!(fingerprint(&plain), PLAIN_FP);
    }

    #[test]
    fn decrypts_ssh_keygen_key_with_passphrase() {
        let key = load_private_key(ENCRYPTED_KEY, Some(b"pass")).unwrap();
        assert!(!key.is_encrypted());
        assert_eq!(fingerprint(key.public_key()), ENCRYPTED_FP);
        assert_eq!(key.comment().as_str_lossy(), "test@sshvpn");
        // The decrypted secret really is the one for the public key.
        let sig = key.sign("sshvpn-test", HashAlg::Sha512, b"msg").unwrap();
        key.public_key()
            .verify("sshvpn-test", b"msg", &sig)
            .unwrap();
    }

    #[test]
    fn encrypted_key_without_passphrase() {
        let err = load_private_key(ENCRYPTED_KEY, None).unwrap_err();
        assert!(matches!(err, KeyError::PassphraseNeeded));
        assert_eq!(err.to_string(), "key is encrypted; a passphrase is needed");
    }

    #[test]
    fn encrypted_key_wrong_passphrase() {
        let err = load_private_key(ENCRYPTED_KEY, Some(b"wrong")).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase), "{err:?}");
        assert_eq!(err.to_string(), "wrong passphrase");
    }

    #[test]
    fn unencrypted_key_ignores_passphrase() {
        let a = load_private_key(PLAIN_KEY, None).unwrap();
        let b = load_private_key(PLAIN_KEY, Some(b"anything")).unwrap();
        assert_eq!(fingerprint(a.public_key()), PLAIN_FP);
        assert_eq!(a.public_key().key_data(), b.public_key().key_data());
    }

    #[test]
    fn unsupported_key_type_is_named() {
        let err = load_private_key(ECDSA_KEY, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key type ecdsa-sha2-nistp256 (sshvpn supports ssh-ed25519)"
        );
    }

    #[test]
    fn not_a_key() {
        let err = load_private_key("-----BEGIN RSA PRIVATE KEY-----\nMII=\n", None).unwrap_err();
        assert!(matches!(err, KeyError::NotOpenSshKey(_)), "{err:?}");
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = std::env::temp_dir().join(format!("sshvpn-keys-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("id_ed25519");
        std::fs::write(&path, ENCRYPTED_KEY).unwrap();
        let err = load_private_key_file(&path, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: key is encrypted; a passphrase is needed",
                path.display()
            )
        );
        let key = load_private_key_file(&path, Some(b"pass")).unwrap();
        assert_eq!(fingerprint(key.public_key()), ENCRYPTED_FP);
        let authorized = dir.join("authorized_keys");
        std::fs::write(&authorized, format!("restrict {PLAIN_PUB}\nbad line\n")).unwrap();
        let (keys, errors) = authorized_keys::read_file(&authorized).unwrap();
        assert_eq!((keys.len(), errors.len()), (1, 1));
        let known = dir.join("known_hosts");
        std::fs::write(&known, format!("example.com {ENCRYPTED_PUB}\n")).unwrap();
        let (hosts, errors) = KnownHosts::read_file(&known).unwrap();
        assert!(errors.is_empty());
        let enc = PublicKey::from_openssh(ENCRYPTED_PUB).unwrap();
        assert_eq!(
            hosts.check("example.com", 22, &enc),
            HostKeyStatus::Trusted { line: 1 }
        );
        let missing = dir.join("missing");
        let err = KnownHosts::read_file(&missing).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}", missing.display()))
        );
        let err = load_private_key_file(&missing, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}", missing.display()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
