//! SOCKS wire formats, sans-IO: SOCKS5 (RFC 1928 §3–§6), its username/password
//! sub-negotiation (RFC 1929 §2), and SOCKS4/SOCKS4a CONNECT as OpenSSH's `ssh -D` accepts them.
//!
//! Each decoder takes the bytes received so far and answers either how many more bytes it needs
//! at least ([`Decode::Need`]) or the message and how many bytes it took ([`Decode::Done`]).
//! Malformed bytes are an `Err`. A decoder never asks for more than the message's own length,
//! so a reader that reads exactly what is asked for never consumes bytes the client pipelined
//! after its request; those stay in the socket for the splice. Every length is bounded by the
//! wire format (one length byte) or, for SOCKS4's NUL-terminated strings, by [`MAX_CSTR`].

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest SOCKS4 user id or SOCKS4a host name accepted, NUL excluded.
pub const MAX_CSTR: usize = 255;
/// Longest message any decoder can ask for: a SOCKS4a request with both strings at the cap.
pub const MAX_MESSAGE: usize = 8 + 2 * (MAX_CSTR + 1);

pub const VERSION_4: u8 = 0x04;
pub const VERSION_5: u8 = 0x05;

/// RFC 1928 §3 METHOD values.
pub const METHOD_NO_AUTH: u8 = 0x00;
pub const METHOD_USERNAME_PASSWORD: u8 = 0x02;
pub const METHOD_NO_ACCEPTABLE: u8 = 0xFF;

/// RFC 1928 §4 CMD values (SOCKS4 uses the same numbers for CONNECT and BIND).
pub const CMD_CONNECT: u8 = 0x01;
pub const CMD_BIND: u8 = 0x02;
pub const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// RFC 1928 §5 ATYP values.
pub const ATYP_IPV4: u8 = 0x01;
pub const ATYP_DOMAIN: u8 = 0x03;
pub const ATYP_IPV6: u8 = 0x04;

/// RFC 1928 §6 REP values.
pub const REP_SUCCEEDED: u8 = 0x00;
pub const REP_GENERAL_FAILURE: u8 = 0x01;
pub const REP_NOT_ALLOWED: u8 = 0x02;
pub const REP_NETWORK_UNREACHABLE: u8 = 0x03;
pub const REP_HOST_UNREACHABLE: u8 = 0x04;
pub const REP_CONNECTION_REFUSED: u8 = 0x05;
pub const REP_COMMAND_NOT_SUPPORTED: u8 = 0x07;
pub const REP_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;

/// SOCKS4 CD values in a reply.
pub const SOCKS4_GRANTED: u8 = 0x5a;
pub const SOCKS4_REJECTED: u8 = 0x5b;

/// RFC 1929 §2 sub-negotiation version.
pub const USERPASS_VERSION: u8 = 0x01;

/// What a decoder made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Decode<T> {
    /// At least this many more bytes are needed (always ≥ 1).
    Need(usize),
    /// The message, and how many bytes of the input it took.
    Done(T, usize),
}

/// Bytes that are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("unsupported SOCKS version {0}")]
    Version(u8),
    #[error("unsupported username/password sub-negotiation version {0}")]
    AuthVersion(u8),
    #[error("unsupported address type {0}")]
    AddressType(u8),
    #[error("SOCKS4 {0} longer than 255 bytes")]
    TooLong(&'static str),
    #[error("host name is empty, not UTF-8, or contains NUL")]
    BadHostName,
}

impl WireError {
    /// The RFC 1928 §6 reply for a malformed request.
    pub fn reply_code(&self) -> u8 {
        match self {
            WireError::AddressType(_) => REP_ADDRESS_TYPE_NOT_SUPPORTED,
            _ => REP_GENERAL_FAILURE,
        }
    }
}

/// SOCKS4 and SOCKS4a differ only in how the destination is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks4Kind {
    /// DSTIP is the destination.
    V4,
    /// DSTIP is 0.0.0.x (x ≠ 0) and a host name follows the user id.
    V4a,
}

/// A SOCKS4 or SOCKS4a request (VN CD DSTPORT DSTIP USERID NUL [HOSTNAME NUL]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks4Request {
    pub kind: Socks4Kind,
    pub command: u8,
    pub port: u16,
    pub host: String,
    pub user_id: Vec<u8>,
}

/// The first message on a connection; its first byte says which protocol it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// RFC 1928 §3 version identifier/method selection message.
    Socks5 { methods: Vec<u8> },
    /// SOCKS4 has no negotiation: the first message is the request.
    Socks4(Socks4Request),
}

/// RFC 1928 §4 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Request {
    pub command: u8,
    pub host: String,
    pub port: u16,
}

/// RFC 1929 §2 username/password request. Kept as bytes: the RFC does not say they are text.
#[derive(Clone, PartialEq, Eq)]
pub struct UserPass {
    pub username: Vec<u8>,
    pub password: Vec<u8>,
}

impl std::fmt::Debug for UserPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPass")
            .field("username", &String::from_utf8_lossy(&self.username))
            .finish_non_exhaustive()
    }
}

/// `buf[at..at + len]`, or how many bytes are missing.
fn field(buf: &[u8], at: usize, len: usize) -> Result<&[u8], usize> {
    let end = at + len;
    buf.get(at..end).ok_or(end.saturating_sub(buf.len()))
}

fn byte(buf: &[u8], at: usize) -> Result<u8, usize> {
    buf.get(at)
        .copied()
        .ok_or((at + 1).saturating_sub(buf.len()))
}

/// Reads a NUL-terminated string starting at `at`: `Ok(Some(content))`, `Ok(None)` if the NUL
/// has not arrived yet, or an error once [`MAX_CSTR`] bytes arrived without one.
fn cstr<'a>(buf: &'a [u8], at: usize, what: &'static str) -> Result<Option<&'a [u8]>, WireError> {
    let rest = buf.get(at..).unwrap_or_default();
    match rest.iter().take(MAX_CSTR + 1).position(|&b| b == 0) {
        Some(nul) => Ok(rest.get(..nul)),
        None if rest.len() > MAX_CSTR => Err(WireError::TooLong(what)),
        None => Ok(None),
    }
}

fn host_name(bytes: &[u8]) -> Result<String, WireError> {
    match std::str::from_utf8(bytes) {
        Ok(name) if !name.is_empty() && !name.contains('\0') => Ok(name.to_owned()),
        _ => Err(WireError::BadHostName),
    }
}

/// Turns "need n more bytes" from the helpers into the decoder's answer.
macro_rules! need {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(n) => return Ok(Decode::Need(n)),
        }
    };
}

/// Decodes the first message of a connection.
pub fn decode_hello(buf: &[u8]) -> Result<Decode<Hello>, WireError> {
    match need!(byte(buf, 0)) {
        VERSION_5 => {
            let n = usize::from(need!(byte(buf, 1)));
            let methods = need!(field(buf, 2, n));
            Ok(Decode::Done(
                Hello::Socks5 {
                    methods: methods.to_vec(),
                },
                2 + n,
            ))
        }
        VERSION_4 => Ok(match decode_socks4(buf)? {
            Decode::Done(req, len) => Decode::Done(Hello::Socks4(req), len),
            Decode::Need(n) => Decode::Need(n),
        }),
        v => Err(WireError::Version(v)),
    }
}

fn decode_socks4(buf: &[u8]) -> Result<Decode<Socks4Request>, WireError> {
    let head = need!(field(buf, 0, 8));
    let [_vn, command, p0, p1, a, b, c, d] = <[u8; 8]>::try_from(head).unwrap_or_default();
    let port = u16::from_be_bytes([p0, p1]);
    let Some(user_id) = cstr(buf, 8, "user id")? else {
        return Ok(Decode::Need(1));
    };
    let after_user = 8 + user_id.len() + 1;
    // SOCKS4a: DSTIP 0.0.0.x with x ≠ 0 means "the host name follows".
    let (kind, host, len) = if [a, b, c] == [0, 0, 0] && d != 0 {
        let Some(name) = cstr(buf, after_user, "host name")? else {
            return Ok(Decode::Need(1));
        };
        (
            Socks4Kind::V4a,
            host_name(name)?,
            after_user + name.len() + 1,
        )
    } else {
        (
            Socks4Kind::V4,
            Ipv4Addr::new(a, b, c, d).to_string(),
            after_user,
        )
    };
    let req = Socks4Request {
        kind,
        command,
        port,
        host,
        user_id: user_id.to_vec(),
    };
    Ok(Decode::Done(req, len))
}

/// Decodes an RFC 1928 §4 request. RSV is ignored, as OpenSSH does.
pub fn decode_socks5_request(buf: &[u8]) -> Result<Decode<Socks5Request>, WireError> {
    let version = need!(byte(buf, 0));
    if version != VERSION_5 {
        return Err(WireError::Version(version));
    }
    let command = need!(byte(buf, 1));
    let atyp = need!(byte(buf, 3));
    let (host, at) = match atyp {
        ATYP_IPV4 => {
            let octets: [u8; 4] = need!(field(buf, 4, 4)).try_into().unwrap_or_default();
            (Ipv4Addr::from(octets).to_string(), 8)
        }
        ATYP_IPV6 => {
            let octets: [u8; 16] = need!(field(buf, 4, 16)).try_into().unwrap_or_default();
            (Ipv6Addr::from(octets).to_string(), 20)
        }
        ATYP_DOMAIN => {
            // §5: "the first octet of the address field contains the number of octets of
            // name that follow" — so a name is at most 255 bytes.
            let n = usize::from(need!(byte(buf, 4)));
            (host_name(need!(field(buf, 5, n)))?, 5 + n)
        }
        other => return Err(WireError::AddressType(other)),
    };
    let port: [u8; 2] = need!(field(buf, at, 2)).try_into().unwrap_or_default();
    let req = Socks5Request {
        command,
        host,
        port: u16::from_be_bytes(port),
    };
    Ok(Decode::Done(req, at + 2))
}

/// Decodes an RFC 1929 §2 request: VER ULEN UNAME PLEN PASSWD.
pub fn decode_userpass(buf: &[u8]) -> Result<Decode<UserPass>, WireError> {
    let version = need!(byte(buf, 0));
    if version != USERPASS_VERSION {
        return Err(WireError::AuthVersion(version));
    }
    let ulen = usize::from(need!(byte(buf, 1)));
    let username = need!(field(buf, 2, ulen)).to_vec();
    let plen = usize::from(need!(byte(buf, 2 + ulen)));
    let password = need!(field(buf, 3 + ulen, plen)).to_vec();
    Ok(Decode::Done(
        UserPass { username, password },
        3 + ulen + plen,
    ))
}

/// RFC 1928 §3 METHOD selection message.
pub fn method_selection(method: u8) -> [u8; 2] {
    [VERSION_5, method]
}

/// RFC 1929 §2 status: "A STATUS field of X'00' indicates success"; we send X'01' otherwise.
pub fn userpass_status(ok: bool) -> [u8; 2] {
    [USERPASS_VERSION, if ok { 0x00 } else { 0x01 }]
}

/// RFC 1928 §6 reply with BND.ADDR 0.0.0.0 and BND.PORT 0, as `ssh -D` sends.
pub fn socks5_reply(rep: u8) -> [u8; 10] {
    [VERSION_5, rep, 0x00, ATYP_IPV4, 0, 0, 0, 0, 0, 0]
}

/// SOCKS4 reply: VN 0, CD granted/rejected, DSTPORT and DSTIP zero (clients ignore them).
pub fn socks4_reply(granted: bool) -> [u8; 8] {
    let cd = if granted {
        SOCKS4_GRANTED
    } else {
        SOCKS4_REJECTED
    };
    [0x00, cd, 0, 0, 0, 0, 0, 0]
}
