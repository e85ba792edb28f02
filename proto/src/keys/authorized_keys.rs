//! `authorized_keys` files: sshd(8) AUTHORIZED_KEYS FILE FORMAT.
//!
//! Each line is `[options] keytype base64-key [comment]`; blank lines and lines starting with
//! `#` are ignored. As in sshd (`auth_check_authkey_line`), a line is first read as a key and,
//! failing that, as options followed by a key. Unlike sshd, which skips a bad line silently,
//! every bad line is reported with its number, and the good lines are kept. The options and
//! their meaning live in [`KeyOptions`].

use std::path::Path;

use ssh_key::{Algorithm, PublicKey};

pub use super::options::{
    ExpiryTime, KeyOptions, OptionError, PermitListen, PermitOpen, PortSpec, TunnelDevice,
};
use super::{KeyError, LineError, LineErrorReason, content_lines, next_field, parse_key_fields};

/// One key line of an `authorized_keys` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The public key (its comment set to `comment`).
    pub key: PublicKey,
    /// The comment field, possibly empty.
    pub comment: String,
    /// The options field.
    pub options: KeyOptions,
    /// 1-based line number.
    pub line: usize,
}

impl AuthorizedKey {
    /// Whether `key` is this line's key (comments are not compared).
    #[must_use]
    pub fn matches(&self, key: &PublicKey) -> bool {
        self.key.key_data() == key.key_data()
    }
}

/// Parse a whole file. Returns the valid key lines and an error for every other non-blank,
/// non-comment line.
#[must_use]
pub fn parse(text: &str) -> (Vec<AuthorizedKey>, Vec<LineError>) {
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (line, content) in content_lines(text) {
        match content.and_then(parse_line) {
            Ok((key, comment, options)) => keys.push(AuthorizedKey {
                key,
                comment,
                options,
                line,
            }),
            Err(reason) => errors.push(LineError { line, reason }),
        }
    }
    (keys, errors)
}

/// [`parse`] the file at `path`.
///
/// # Errors
/// [`KeyError::Read`] or [`KeyError::TooLarge`] if the file cannot be read; bad lines are
/// returned, not errors.
pub fn read_file(path: &Path) -> Result<(Vec<AuthorizedKey>, Vec<LineError>), KeyError> {
    Ok(parse(&super::read_bounded(path)?))
}

/// The lines for `key`, in file order. sshd tries each in turn: a line whose options refuse
/// the connection (e.g. `from=`) does not stop a later line for the same key from admitting it.
pub fn lines_for<'a>(
    keys: &'a [AuthorizedKey],
    key: &'a PublicKey,
) -> impl Iterator<Item = &'a AuthorizedKey> + 'a {
    keys.iter().filter(move |k| k.matches(key))
}

/// Parse one line with leading blanks removed: the key, its comment and its options.
///
/// # Errors
/// Why sshd would not use the line.
pub fn parse_line(line: &str) -> Result<(PublicKey, String, KeyOptions), LineErrorReason> {
    let key_first = match parse_key_fields(line) {
        Ok((key, comment)) => return Ok((key, comment, KeyOptions::default())),
        Err(e) => e,
    };
    let with_options = split_options(line).and_then(|(options, rest)| {
        let options = KeyOptions::parse(options)?;
        if rest.is_empty() {
            return Err(LineErrorReason::MissingKey);
        }
        let (key, comment) = parse_key_fields(rest)?;
        Ok((key, comment, options))
    });
    // If both readings fail, report the one the line was evidently meant as.
    let (first, _) = next_field(line);
    match with_options {
        Err(_) if first.parse::<Algorithm>().is_ok() => Err(key_first),
        other => other,
    }
}

/// sshd's `sshkey_advance_past_options`: the options end at the first blank outside double
/// quotes (`\"` does not toggle quoting). Returns the options and the rest, blanks skipped.
fn split_options(line: &str) -> Result<(&str, &str), LineErrorReason> {
    let mut quoted = false;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|&(_, n)| n == '"') => {
                chars.next();
            }
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                let (options, rest) = line.split_at(i);
                return Ok((options, rest.trim_start_matches([' ', '\t'])));
            }
            _ => {}
        }
    }
    if quoted {
        return Err(OptionError::MissingEndQuote("options").into());
    }
    Ok((line, ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::fingerprint;
    use proptest::prelude::*;

    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILFarJ0L9yxK7KVFvAS4ERVacHCUlsHhVwprof+j95WE";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKoLMeOfF9kUqcz4pprQgNPjHI5AnspK9EgVlGKtO4t/";

    #[test]
    fn parses_file_keeping_good_lines() {
        let text = format!(
            "# comment\n\
             \n\
             {K1} alice@laptop\n\
             restrict,permitopen=\"db:5432\" {K2} bob with spaces\n\
             bogus-option {K1}\n\
             \t  command=\"echo \\\"hi\\\"\",no-pty\t{K2}\n\
             ssh-ed25519 AAAAnotbase64!!\n\
             restrict\n\
             command=\"unterminated {K1}\n"
        );
        let (keys, errors) = parse(&text);
        assert_eq!(keys.len(), 3, "{errors:?}");
        assert_eq!(keys[0].line, 3);
        assert_eq!(keys[0].comment, "alice@laptop");
        assert_eq!(keys[0].options, KeyOptions::default());
        assert_eq!(
            fingerprint(&keys[0].key),
            "SHA256:MqImZ+3DDt8xR+rbavQptwgZ3StuCKPor3HU/ctWiSA"
        );
        assert_eq!(keys[1].line, 4);
        assert_eq!(keys[1].comment, "bob with spaces");
        assert!(keys[1].options.is_restricted());
        assert!(
            !keys[1].options.permits_open("db", 5432),
            "restrict disables forwarding"
        );
        assert_eq!(keys[2].line, 6);
        assert_eq!(keys[2].options.command(), Some("echo \"hi\""));
        assert!(!keys[2].options.allows_pty());
        assert_eq!(keys[2].comment, "");

        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![5, 7, 8, 9]);
        assert_eq!(
            errors[0].reason,
            LineErrorReason::BadOptions(OptionError::Unknown("bogus-option".into()))
        );
        assert!(
            matches!(errors[1].reason, LineErrorReason::BadKey(_)),
            "{:?}",
            errors[1]
        );
        assert_eq!(errors[2].reason, LineErrorReason::MissingKey);
        assert!(matches!(errors[3].reason, LineErrorReason::BadOptions(_)));
        assert!(
            errors[0]
                .to_string()
                .starts_with("line 5: bad key options: unknown key option")
        );
    }

    #[test]
    fn quoted_option_values_may_hold_blanks_and_commas() {
        let line = format!("from=\"10.0.0.0/8,!10.9.9.9\",command=\"a b, c\" {K1} c");
        let (_, comment, options) = parse_line(&line).unwrap();
        assert_eq!(comment, "c");
        assert_eq!(options.command(), Some("a b, c"));
        assert_eq!(options.from(), Some("10.0.0.0/8,!10.9.9.9"));
    }

    #[test]
    fn over_long_lines_are_rejected() {
        let text = format!("{K1} {}\n{K2}\n", "x".repeat(9000));
        let (keys, errors) = parse(&text);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].line, 2);
        assert_eq!(
            errors,
            vec![LineError {
                line: 1,
                reason: LineErrorReason::TooLong
            }]
        );
    }

    #[test]
    fn crlf_line_endings() {
        let (keys, errors) = parse(&format!("{K1} one\r\nno-pty {K2} two\r\n"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys[0].comment, "one");
        assert_eq!(keys[1].comment, "two");
    }

    #[test]
    fn lines_for_a_key_in_order() {
        let text = format!("from=\"10.0.0.1\" {K1} a\n{K2} b\nno-pty {K1} c\n");
        let (keys, _) = parse(&text);
        let k1 = PublicKey::from_openssh(K1).unwrap();
        let found: Vec<usize> = lines_for(&keys, &k1).map(|k| k.line).collect();
        assert_eq!(found, vec![1, 3]);
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_option_like_input(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("restrict".to_owned()),
                    Just("no-pty".to_owned()),
                    Just("permitopen=\"".to_owned()),
                    Just("permitlisten=\"[".to_owned()),
                    Just("tunnel=\"".to_owned()),
                    Just("from=\"".to_owned()),
                    Just("expiry-time=\"".to_owned()),
                    Just("environment=\"".to_owned()),
                    Just("\\\"".to_owned()),
                    Just("\"".to_owned()),
                    Just(",".to_owned()),
                    Just(" ".to_owned()),
                    Just(K1.to_owned()),
                    "[ -~]{0,8}",
                ],
                0..24,
            )
        ) {
            let line = parts.concat();
            let _ = parse(&line);
            let _ = KeyOptions::parse(&line);
        }
    }
}
