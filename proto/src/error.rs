//! The crate's error type, and its one mapping to an SSH_MSG_DISCONNECT reason code.

use crate::transport::hostkey::KeyBlobError;
use crate::transport::kex::NoCommonAlgorithm;
use crate::transport::kex::method::KexError;
use crate::transport::packet::PacketError;
use crate::transport::version::VersionError;
use crate::wire::{DisconnectReason, MsgType, WireError};

/// Why a connection ended. Every variant but `PeerDisconnected` and `Closed` is sent to the
/// peer as a DISCONNECT with the reason from [`Error::disconnect_reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("identification exchange failed: {0}")]
    Version(#[from] VersionError),
    #[error("bad packet: {0}")]
    Packet(#[from] PacketError),
    #[error("malformed message: {0}")]
    Malformed(#[from] WireError),
    #[error("key exchange failed: {0}")]
    NoCommonAlgorithm(#[from] NoCommonAlgorithm),
    #[error("key exchange failed: {0}")]
    Kex(#[from] KexError),
    #[error(
        "key exchange failed: the peer kept sending but did not finish it, and {0} bytes of \
         replies wait for it to end"
    )]
    KexStalled(usize),
    #[error("server host key or its signature is invalid: {0}")]
    HostKeySignature(KeyBlobError),
    #[error("host key {fingerprint} was not accepted")]
    HostKeyRejected { fingerprint: String },
    #[error("server host key changed during re-key (was {was}, now {now})")]
    HostKeyChanged { was: String, now: String },
    #[error("unexpected {msg:?} {state}")]
    Unexpected { msg: MsgType, state: &'static str },
    #[error("strict key exchange violated: {0}")]
    StrictKex(&'static str),
    #[error("permission denied ({methods}): no more authentication methods to try")]
    AuthFailed { methods: String },
    #[error("too many authentication failures")]
    TooManyAuthFailures,
    #[error("login grace time exceeded before authentication completed")]
    LoginGraceExpired,
    #[error("service {0:?} is not available")]
    ServiceNotAvailable(String),
    #[error("channel protocol violation: {0}")]
    Channel(String),
    #[error("peer did not answer {0} keepalive probes")]
    KeepaliveTimeout(u32),
    #[error("peer disconnected: {reason}: {description}")]
    PeerDisconnected {
        reason: DisconnectReason,
        description: String,
    },
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("the peer closed the TCP connection")]
    ConnectionLost,
}

impl Error {
    /// The reason code sent to the peer when this error ends the connection, or `None` when
    /// nothing should be sent (the peer already left).
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        use DisconnectReason as R;
        Some(match self {
            Error::Version(VersionError::Unsupported(_)) => R::PROTOCOL_VERSION_NOT_SUPPORTED,
            Error::Version(_) => R::PROTOCOL_ERROR,
            Error::Packet(PacketError::Tag(_)) => R::MAC_ERROR,
            Error::Packet(_) | Error::Malformed(_) | Error::Unexpected { .. } => R::PROTOCOL_ERROR,
            Error::StrictKex(_) | Error::Channel(_) => R::PROTOCOL_ERROR,
            Error::NoCommonAlgorithm(_)
            | Error::Kex(_)
            | Error::KexStalled(_)
            | Error::HostKeySignature(_) => R::KEY_EXCHANGE_FAILED,
            Error::HostKeyRejected { .. } | Error::HostKeyChanged { .. } => {
                R::HOST_KEY_NOT_VERIFIABLE
            }
            Error::AuthFailed { .. } | Error::TooManyAuthFailures => {
                R::NO_MORE_AUTH_METHODS_AVAILABLE
            }
            Error::LoginGraceExpired => R::BY_APPLICATION,
            Error::ServiceNotAvailable(_) => R::SERVICE_NOT_AVAILABLE,
            Error::KeepaliveTimeout(_) => R::CONNECTION_LOST,
            Error::Closed(_) => R::BY_APPLICATION,
            Error::PeerDisconnected { .. } | Error::ConnectionLost => return None,
        })
    }
}
