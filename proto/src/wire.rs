//! RFC 4251 §5 data types and the SSH message numbers (RFC 4250 §4.1).
//!
//! `Reader` decodes from a borrowed payload and never allocates more than the input holds:
//! every length prefix is checked against the bytes that remain before anything is sliced.
//! `Writer` appends to a caller-owned `Vec<u8>`.

use std::fmt;

/// A payload was shorter than its fields say, or a field was malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated message: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("invalid {field}: {why}")]
    Invalid {
        field: &'static str,
        why: &'static str,
    },
    #[error("unexpected trailing bytes after {0}")]
    Trailing(&'static str),
}

/// A cursor over a received payload (RFC 4251 §5).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(WireError::Truncated {
                needed: n - self.buf.len(),
            }),
        }
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// `boolean`: any non-zero value is true (RFC 4251 §5).
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// `string`: a uint32 length then that many bytes. The length is checked against what
    /// remains, so a hostile length never causes an allocation.
    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A `string` that must be UTF-8 (RFC 4251 §5 uses ISO-10646 UTF-8 for text).
    pub fn utf8(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.string()?).map_err(|_| WireError::Invalid {
            field,
            why: "not UTF-8",
        })
    }

    /// `name-list` (RFC 4251 §5): comma-separated US-ASCII names, none empty.
    pub fn name_list(&mut self, field: &'static str) -> Result<NameList<'a>, WireError> {
        let raw = self.string()?;
        let text = std::str::from_utf8(raw).map_err(|_| WireError::Invalid {
            field,
            why: "not ASCII",
        })?;
        if !text.is_ascii() {
            return Err(WireError::Invalid {
                field,
                why: "not ASCII",
            });
        }
        if !text.is_empty() && text.split(',').any(str::is_empty) {
            return Err(WireError::Invalid {
                field,
                why: "empty name",
            });
        }
        Ok(NameList(text))
    }

    /// `mpint` as a byte string, with its sign checked positive.
    pub fn mpint(&mut self) -> Result<&'a [u8], WireError> {
        let bytes = self.string()?;
        if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(WireError::Invalid {
                field: "mpint",
                why: "negative",
            });
        }
        Ok(bytes)
    }

    /// Fails if any bytes remain: messages with junk after their last field are malformed.
    pub fn finish(&self, what: &'static str) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(what))
        }
    }
}

/// A borrowed `name-list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameList<'a>(pub &'a str);

impl<'a> NameList<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let text = self.0;
        text.split(',').filter(|s| !s.is_empty())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|n| n == name)
    }
}

/// Appends RFC 4251 §5 encodings to a buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// `string`. Lengths above u32::MAX cannot be produced by this crate (packets are bounded
    /// far below that), so the length is saturated rather than checked.
    pub fn string(&mut self, v: impl AsRef<[u8]>) -> &mut Self {
        let v = v.as_ref();
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.raw(v)
    }

    pub fn name_list<S: AsRef<str>>(&mut self, names: &[S]) -> &mut Self {
        let start = self.buf.len();
        self.u32(0);
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(n.as_ref().as_bytes());
        }
        let len = u32::try_from(self.buf.len() - start - 4).unwrap_or(u32::MAX);
        if let Some(slot) = self.buf.get_mut(start..start + 4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
        self
    }

    /// `mpint` from an unsigned big-endian magnitude (RFC 4251 §5): leading zeros stripped,
    /// a zero byte prepended when the top bit is set.
    pub fn mpint(&mut self, magnitude: &[u8]) -> &mut Self {
        let first = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let m = magnitude.get(first..).unwrap_or(&[]);
        let pad = m.first().is_some_and(|b| b & 0x80 != 0);
        self.u32(u32::try_from(m.len() + usize::from(pad)).unwrap_or(u32::MAX));
        if pad {
            self.buf.push(0);
        }
        self.raw(m)
    }
}

/// An SSH message number (RFC 4250 §4.1). Open: unknown numbers are kept, so they can be
/// answered with UNIMPLEMENTED rather than rejected at parse time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgType(pub u8);

macro_rules! msg_types {
    ($($name:ident = $v:expr),* $(,)?) => {
        impl MsgType {
            $(pub const $name: MsgType = MsgType($v);)*
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some(stringify!($name)),)* _ => None }
            }
        }
    };
}

msg_types! {
    DISCONNECT = 1, IGNORE = 2, UNIMPLEMENTED = 3, DEBUG = 4, SERVICE_REQUEST = 5,
    SERVICE_ACCEPT = 6, EXT_INFO = 7, KEXINIT = 20, NEWKEYS = 21, KEX_ECDH_INIT = 30,
    KEX_ECDH_REPLY = 31, USERAUTH_REQUEST = 50, USERAUTH_FAILURE = 51, USERAUTH_SUCCESS = 52,
    USERAUTH_BANNER = 53, USERAUTH_PK_OK = 60, GLOBAL_REQUEST = 80, REQUEST_SUCCESS = 81,
    REQUEST_FAILURE = 82, CHANNEL_OPEN = 90, CHANNEL_OPEN_CONFIRMATION = 91,
    CHANNEL_OPEN_FAILURE = 92, CHANNEL_WINDOW_ADJUST = 93, CHANNEL_DATA = 94,
    CHANNEL_EXTENDED_DATA = 95, CHANNEL_EOF = 96, CHANNEL_CLOSE = 97, CHANNEL_REQUEST = 98,
    CHANNEL_SUCCESS = 99, CHANNEL_FAILURE = 100,
}

impl MsgType {
    /// RFC 4251 §7: 1–19 transport generic, 20–29 algorithm negotiation, 30–49 kex specific.
    pub fn is_transport(self) -> bool {
        (1..=49).contains(&self.0)
    }
    /// 20–49: messages that may flow while a key exchange is in progress.
    pub fn is_kex(self) -> bool {
        (20..=49).contains(&self.0)
    }
    /// 50–79: user authentication (RFC 4252).
    pub fn is_userauth(self) -> bool {
        (50..=79).contains(&self.0)
    }
    /// 80–127: connection protocol (RFC 4254).
    pub fn is_connection(self) -> bool {
        (80..=127).contains(&self.0)
    }
}

impl fmt::Debug for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "MsgType({})", self.0),
        }
    }
}

/// SSH_MSG_DISCONNECT reason codes (RFC 4253 §11.1, RFC 4250 §4.2.2). Open newtype.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisconnectReason(pub u32);

macro_rules! reasons {
    ($($name:ident = $v:expr),* $(,)?) => {
        impl DisconnectReason {
            $(pub const $name: DisconnectReason = DisconnectReason($v);)*
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some(stringify!($name)),)* _ => None }
            }
        }
    };
}

reasons! {
    HOST_NOT_ALLOWED_TO_CONNECT = 1, PROTOCOL_ERROR = 2, KEY_EXCHANGE_FAILED = 3,
    RESERVED = 4, MAC_ERROR = 5, COMPRESSION_ERROR = 6, SERVICE_NOT_AVAILABLE = 7,
    PROTOCOL_VERSION_NOT_SUPPORTED = 8, HOST_KEY_NOT_VERIFIABLE = 9, CONNECTION_LOST = 10,
    BY_APPLICATION = 11, TOO_MANY_CONNECTIONS = 12, AUTH_CANCELLED_BY_USER = 13,
    NO_MORE_AUTH_METHODS_AVAILABLE = 14, ILLEGAL_USER_NAME = 15,
}

impl fmt::Debug for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "DisconnectReason({})", self.0),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mpint_examples_from_rfc4251() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &[0, 0, 0, 0]),
            (
                &[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7],
                &[0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7],
            ),
            (&[0x80], &[0, 0, 0, 2, 0x00, 0x80]),
            (&[0x00, 0x00, 0x7f], &[0, 0, 0, 1, 0x7f]),
        ];
        for (mag, want) in cases {
            let mut out = Vec::new();
            Writer::new(&mut out).mpint(mag);
            assert_eq!(&out[..], *want);
        }
    }

    #[test]
    fn string_length_beyond_input_is_truncated_not_allocated() {
        let buf = [0xff, 0xff, 0xff, 0xff, 1, 2];
        assert!(matches!(
            Reader::new(&buf).string(),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn name_list_rejects_empty_names() {
        let mut buf = Vec::new();
        Writer::new(&mut buf).string("a,,b");
        assert!(Reader::new(&buf).name_list("x").is_err());
        let mut buf = Vec::new();
        Writer::new(&mut buf).string("");
        assert_eq!(Reader::new(&buf).name_list("x").unwrap().iter().count(), 0);
    }

    proptest! {
        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.u8();
            let _ = r.string();
            let _ = r.name_list("x");
            let _ = r.mpint();
            let _ = r.u64();
        }

        #[test]
        fn string_round_trips(s in proptest::collection::vec(any::<u8>(), 0..300), n in any::<u32>()) {
            let mut buf = Vec::new();
            Writer::new(&mut buf).string(&s).u32(n);
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.string().unwrap(), &s[..]);
            prop_assert_eq!(r.u32().unwrap(), n);
            prop_assert!(r.finish("t").is_ok());
        }

        #[test]
        fn name_list_round_trips(names in proptest::collection::vec("[a-z0-9@.-]{1,20}", 0..8)) {
            let mut buf = Vec::new();
            Writer::new(&mut buf).name_list(&names);
            let mut r = Reader::new(&buf);
            let got: Vec<&str> = r.name_list("x").unwrap().iter().collect();
            prop_assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
