//! OpenSSH host and address patterns, as ssh_config(5) PATTERNS describes them.
//!
//! The semantics are those of OpenSSH's `match.c` (`match_pattern`, `match_pattern_list`,
//! `match_hostname`, `match_host_and_ip`) and `addrmatch.c` (`addr_match_list`): `*` and `?`
//! wildcards, comma-separated lists, `!` negation that vetoes the whole list, and CIDR
//! `address/masklen` entries for addresses. This module only matches; it never resolves names.

use std::net::IpAddr;

/// Outcome of matching a string against a comma-separated pattern list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListMatch {
    /// A negated (`!`) pattern matched: the list rejects the string whatever else matched.
    Negative,
    /// No pattern matched.
    NoMatch,
    /// A positive pattern matched and no negated one did.
    Positive,
}

/// OpenSSH copies each subpattern into a 1024-byte buffer and treats a longer one as "no
/// match" for the whole list (`match_pattern_list`).
const MAX_SUBPATTERN: usize = 1023;

/// `match_pattern`: glob match where `*` matches any run of bytes and `?` exactly one byte.
///
/// Iterative with single-star backtracking, so it is linear-ish in the input rather than
/// exponential as the recursive C version can be, with the same results.
pub(crate) fn match_pattern(s: &[u8], pattern: &[u8]) -> bool {
    let (mut si, mut pi) = (0usize, 0usize);
    // Position in the pattern just after the last `*`, and where in `s` that star's match ends.
    let mut star: Option<(usize, usize)> = None;
    loop {
        let pc = pattern.get(pi).copied();
        let sc = s.get(si).copied();
        match (pc, sc) {
            (Some(b'*'), _) => {
                pi += 1;
                star = Some((pi, si));
                continue;
            }
            (Some(p), Some(c)) if p == b'?' || p == c => {
                pi += 1;
                si += 1;
                continue;
            }
            (None, None) => return true,
            _ => {}
        }
        // Mismatch: let the last star swallow one more byte, if there is one.
        match star {
            Some((star_pi, star_si)) if star_si < s.len() => {
                star = Some((star_pi, star_si + 1));
                pi = star_pi;
                si = star_si + 1;
            }
            _ => return false,
        }
    }
}

/// `match_pattern_list`: match `string` against a comma-separated list of patterns, each
/// optionally negated with `!`. With `lowercase`, the patterns are lowercased first (the caller
/// lowercases `string`), as `match_hostname` does.
pub(crate) fn match_pattern_list(string: &str, patterns: &str, lowercase: bool) -> ListMatch {
    let mut got_positive = false;
    for sub in patterns.split(',') {
        let (negated, sub) = match sub.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, sub),
        };
        if sub.len() >= MAX_SUBPATTERN {
            return ListMatch::NoMatch;
        }
        let matched = if lowercase {
            match_pattern(string.as_bytes(), sub.to_ascii_lowercase().as_bytes())
        } else {
            match_pattern(string.as_bytes(), sub.as_bytes())
        };
        if matched {
            if negated {
                return ListMatch::Negative;
            }
            got_positive = true;
        }
    }
    if got_positive {
        ListMatch::Positive
    } else {
        ListMatch::NoMatch
    }
}

/// `match_hostname`: case-insensitive pattern-list match of a host name.
pub(crate) fn match_hostname(host: &str, patterns: &str) -> ListMatch {
    match_pattern_list(&host.to_ascii_lowercase(), patterns, true)
}

/// A pattern list that `addr_match_list` rejects as malformed (its `-2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidAddressList(pub(crate) String);

/// How one list entry parses as `address[/masklen]` (`addr_pton_cidr`).
enum Cidr {
    Network(IpAddr, u32),
    /// Not an address: the entry is a wildcard pattern instead.
    NotAnAddress,
    /// An address with a mask too long for its family or with host bits set.
    Inconsistent,
}

/// OpenSSH copies the entry into a 64-byte buffer before parsing it as an address.
const MAX_CIDR_TEXT: usize = 63;

fn parse_cidr(entry: &str) -> Cidr {
    if entry.len() > MAX_CIDR_TEXT {
        return Cidr::NotAnAddress;
    }
    let (addr_text, mask_text) = match entry.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (entry, None),
    };
    let mask = match mask_text {
        Some(m) => {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Cidr::NotAnAddress;
            }
            match m.parse::<u32>() {
                Ok(len) if len <= 128 => Some(len),
                _ => return Cidr::NotAnAddress,
            }
        }
        None => None,
    };
    let Ok(addr) = addr_text.parse::<IpAddr>() else {
        return Cidr::NotAnAddress;
    };
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len = mask.unwrap_or(max);
    if len > max || host_bits(addr, len) != 0 {
        return Cidr::Inconsistent;
    }
    Cidr::Network(addr, len)
}

/// The bits of `addr` below a `len`-bit prefix.
fn host_bits(addr: IpAddr, len: u32) -> u128 {
    let (value, width): (u128, u32) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let host_width = width.saturating_sub(len);
    let mask = if host_width >= 128 {
        u128::MAX
    } else {
        (1u128 << host_width) - 1
    };
    value & mask
}

fn in_network(addr: IpAddr, net: IpAddr, len: u32) -> bool {
    let (value, net_value) = match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n))),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n)),
        _ => return false,
    };
    // Clearing the host bits of `addr` must leave exactly the network address.
    value ^ host_bits(addr, len) == net_value
}

/// `addr_match_list`: match an address against a pattern list whose entries are CIDR blocks
/// or wildcard patterns over the address's text form. With `addr` `None` the list is only
/// checked for syntax, as OpenSSH does when it validates a list.
pub(crate) fn addr_match_list(
    addr: Option<IpAddr>,
    list: &str,
) -> Result<ListMatch, InvalidAddressList> {
    let addr_text = addr.map(|a| a.to_string());
    let mut result = ListMatch::NoMatch;
    for entry in list.split(',') {
        let (negated, entry) = match entry.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        if entry.is_empty() {
            return Err(InvalidAddressList("empty entry".to_owned()));
        }
        let found = match parse_cidr(entry) {
            Cidr::Inconsistent => {
                return Err(InvalidAddressList(format!(
                    "inconsistent mask length for network {entry:?}"
                )));
            }
            Cidr::Network(net, len) => addr.is_some_and(|a| in_network(a, net, len)),
            Cidr::NotAnAddress => addr_text
                .as_deref()
                .is_some_and(|a| match_pattern(a.as_bytes(), entry.as_bytes())),
        };
        if found {
            if negated {
                // OpenSSH stops at a negative match, so later entries go unchecked.
                return Ok(ListMatch::Negative);
            }
            result = ListMatch::Positive;
        }
    }
    Ok(result)
}

/// `addr_match_cidr_list`: the certificate `source-address` check. Every entry must be an
/// address or CIDR block (no wildcards, no negation); a malformed list is an error.
pub(crate) fn addr_match_cidr_list(addr: IpAddr, list: &str) -> Result<bool, InvalidAddressList> {
    let addr = addr.to_canonical();
    let mut found = false;
    for entry in list.split(',') {
        match parse_cidr(entry) {
            Cidr::Network(net, len) => found |= in_network(addr, net, len),
            Cidr::NotAnAddress | Cidr::Inconsistent => {
                return Err(InvalidAddressList(format!(
                    "{entry:?} is not an address or CIDR block"
                )));
            }
        }
    }
    Ok(found)
}

/// `match_host_and_ip`: the `from=` check. True only if the host name or the address matches
/// positively and neither matches a negated pattern. A malformed list matches nothing.
pub(crate) fn match_host_and_ip(host: &str, addr: IpAddr, patterns: &str) -> bool {
    let Ok(by_addr) = addr_match_list(Some(addr), patterns) else {
        return false;
    };
    if by_addr == ListMatch::Negative {
        return false;
    }
    match match_hostname(host, patterns) {
        ListMatch::Negative => false,
        ListMatch::NoMatch => by_addr == ListMatch::Positive,
        ListMatch::Positive => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_wildcards() {
        assert!(match_pattern(b"host.example.com", b"*.example.com"));
        assert!(match_pattern(b"a.example.com", b"?.example.com"));
        assert!(!match_pattern(b"ab.example.com", b"?.example.com"));
        assert!(match_pattern(b"", b"*"));
        assert!(!match_pattern(b"", b"?"));
        assert!(match_pattern(b"abc", b"a**c"));
        assert!(match_pattern(b"aXbXc", b"a*b*c"));
        assert!(!match_pattern(b"aXbXd", b"a*b*c"));
        assert!(match_pattern(b"exact", b"exact"));
        assert!(!match_pattern(b"exact", b"exac"));
        assert!(!match_pattern(b"exac", b"exact"));
    }

    #[test]
    fn glob_pathological_input_is_fast() {
        let s = vec![b'a'; 4000];
        let mut p = b"*a".repeat(30);
        p.push(b'b');
        assert!(!match_pattern(&s, &p));
    }

    #[test]
    fn pattern_list_negation_vetoes() {
        assert_eq!(
            match_hostname("www.example.com", "*.example.com,!www.example.com"),
            ListMatch::Negative
        );
        assert_eq!(
            match_hostname("mail.example.com", "*.example.com,!www.example.com"),
            ListMatch::Positive
        );
        assert_eq!(
            match_hostname("other.org", "*.example.com"),
            ListMatch::NoMatch
        );
        assert_eq!(
            match_hostname("WWW.Example.COM", "*.EXAMPLE.com"),
            ListMatch::Positive
        );
    }

    #[test]
    fn address_lists() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            addr_match_list(Some(a), "10.0.0.0/8"),
            Ok(ListMatch::Positive)
        );
        assert_eq!(
            addr_match_list(Some(a), "192.168.0.0/16"),
            Ok(ListMatch::NoMatch)
        );
        assert_eq!(
            addr_match_list(Some(a), "10.0.0.0/8,!10.1.0.0/16"),
            Ok(ListMatch::Negative)
        );
        assert_eq!(
            addr_match_list(Some(a), "10.1.2.*"),
            Ok(ListMatch::Positive)
        );
        assert_eq!(
            addr_match_list(Some(a), "0.0.0.0/0"),
            Ok(ListMatch::Positive)
        );
        assert!(addr_match_list(Some(a), "10.0.0.1/8").is_err());
        assert!(addr_match_list(Some(a), "10.0.0.0/33").is_err());
        assert!(addr_match_list(None, "a,,b").is_err());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            addr_match_list(Some(v6), "2001:db8::/32"),
            Ok(ListMatch::Positive)
        );
        assert_eq!(
            addr_match_list(Some(v6), "10.0.0.0/8"),
            Ok(ListMatch::NoMatch)
        );
        assert_eq!(addr_match_list(Some(v6), "::/0"), Ok(ListMatch::Positive));
    }
}
