//! Protocol version exchange (RFC 4253 §4.2).
//!
//! Owns the parsing of the peer's identification line. A server may send other lines before its
//! identification string; a client may not. Both the line length and the number of such lines
//! are bounded, so a peer cannot make us buffer without end before the first packet.

/// Our identification string, without CR LF.
pub const OUR_IDENT: &str = concat!("SSH-2.0-sshvpn_", env!("CARGO_PKG_VERSION"));

/// RFC 4253 §4.2: "The maximum length of the string is 255 characters, including the Carriage
/// Return and Line Feed."
pub const MAX_IDENT_LEN: usize = 255;
/// Lines a server may send before its identification (OpenSSH also caps this at 1024).
pub const MAX_PRE_BANNER_LINES: usize = 1024;
/// Longest pre-banner line we buffer.
pub const MAX_PRE_BANNER_LINE: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("peer identification is not an SSH-2.0 identification string")]
    NotSsh,
    #[error("peer speaks SSH protocol version {0}, only 2.0 is supported")]
    Unsupported(String),
    #[error("peer identification line is longer than 255 bytes")]
    TooLong,
    #[error("peer sent more than {MAX_PRE_BANNER_LINES} lines before its identification")]
    TooManyLines,
}

/// Scanner over the bytes received before the identification string.
#[derive(Debug, Default)]
pub struct IdentScanner {
    lines_skipped: usize,
}

/// Outcome of scanning buffered input.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Need more bytes; `consumed` leading bytes (complete pre-banner lines) may be dropped.
    Incomplete { consumed: usize },
    /// Found the identification (without CR LF); `consumed` bytes include its line end.
    Found { ident: String, consumed: usize },
}

impl IdentScanner {
    /// `server_lines_allowed` is true on the client: only servers may send lines before their
    /// identification (RFC 4253 §4.2).
    pub fn scan(&mut self, buf: &[u8], server_lines_allowed: bool) -> Result<Scan, VersionError> {
        let mut pos = 0;
        loop {
            let rest = buf.get(pos..).unwrap_or_default();
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                let is_ident = rest.starts_with(b"SSH-") || b"SSH-".starts_with(rest);
                if is_ident && rest.len() > MAX_IDENT_LEN {
                    return Err(VersionError::TooLong);
                }
                if !is_ident && !server_lines_allowed && rest.len() >= 4 {
                    return Err(VersionError::NotSsh);
                }
                if rest.len() > MAX_PRE_BANNER_LINE {
                    return Err(VersionError::TooLong);
                }
                return Ok(Scan::Incomplete { consumed: pos });
            };
            let line_with_end = rest.get(..=nl).unwrap_or_default();
            let line = line_with_end.strip_suffix(b"\n").unwrap_or(line_with_end);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"SSH-") {
                if line_with_end.len() > MAX_IDENT_LEN {
                    return Err(VersionError::TooLong);
                }
                let text = std::str::from_utf8(line).map_err(|_| VersionError::NotSsh)?;
                check_version(text)?;
                return Ok(Scan::Found {
                    ident: text.to_owned(),
                    consumed: pos + nl + 1,
                });
            }
            if !server_lines_allowed {
                return Err(VersionError::NotSsh);
            }
            self.lines_skipped += 1;
            if self.lines_skipped > MAX_PRE_BANNER_LINES {
                return Err(VersionError::TooManyLines);
            }
            pos += nl + 1;
        }
    }
}

/// "SSH-protoversion-softwareversion SP comments": accept 2.0, and 1.99 which RFC 4253 §5.1
/// says means a server compatible with both.
fn check_version(line: &str) -> Result<(), VersionError> {
    let mut parts = line.splitn(3, '-');
    let (_ssh, proto, software) = (parts.next(), parts.next(), parts.next());
    let (Some(proto), Some(software)) = (proto, software) else {
        return Err(VersionError::NotSsh);
    };
    if software.is_empty() || line.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(VersionError::NotSsh);
    }
    match proto {
        "2.0" | "1.99" => Ok(()),
        other => Err(VersionError::Unsupported(other.chars().take(16).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_ident_after_banner_lines_on_client() {
        let input = b"hello there\r\nsecond\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x00";
        let mut s = IdentScanner::default();
        match s.scan(input, true).unwrap() {
            Scan::Found { ident, consumed } => {
                assert_eq!(ident, "SSH-2.0-OpenSSH_9.2p1 Debian-2");
                assert_eq!(&input[consumed..], b"\x00\x00");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_rejects_lines_before_ident() {
        let mut s = IdentScanner::default();
        assert_eq!(
            s.scan(b"GET / HTTP/1.1\r\n", false),
            Err(VersionError::NotSsh)
        );
        assert_eq!(s.scan(b"GET ", false), Err(VersionError::NotSsh));
    }

    #[test]
    fn rejects_ssh1_and_overlong() {
        let mut s = IdentScanner::default();
        assert!(matches!(
            s.scan(b"SSH-1.5-foo\r\n", true),
            Err(VersionError::Unsupported(_))
        ));
        let long = format!("SSH-2.0-{}\r\n", "x".repeat(300));
        assert_eq!(s.scan(long.as_bytes(), true), Err(VersionError::TooLong));
        assert_eq!(
            s.scan(&long.as_bytes()[..280], true),
            Err(VersionError::TooLong)
        );
        assert!(s.scan(b"SSH-1.99-ok\n", true).is_ok());
    }

    #[test]
    fn pre_banner_lines_are_bounded() {
        let mut s = IdentScanner::default();
        let flood = "x\n".repeat(MAX_PRE_BANNER_LINES + 1);
        assert_eq!(
            s.scan(flood.as_bytes(), true),
            Err(VersionError::TooManyLines)
        );
        let mut s = IdentScanner::default();
        assert_eq!(
            s.scan(&[b'a'; MAX_PRE_BANNER_LINE + 1], true),
            Err(VersionError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn any_split_finds_the_same_ident(cut in 0usize..60) {
            let input = b"pre\r\nSSH-2.0-test_1.0 comment\r\nrest";
            let cut = cut.min(input.len());
            let mut s = IdentScanner::default();
            let mut consumed_total = 0;
            if let Scan::Incomplete { consumed } = s.scan(&input[..cut], true).unwrap() {
                consumed_total = consumed;
            }
            match s.scan(&input[consumed_total..], true).unwrap() {
                Scan::Found { ident, consumed } => {
                    prop_assert_eq!(ident, "SSH-2.0-test_1.0 comment");
                    prop_assert_eq!(&input[consumed_total + consumed..], b"rest");
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..400), client in any::<bool>()) {
            let _ = IdentScanner::default().scan(&data, client);
        }
    }
}
