//! What a `Connection` reports to the application (see `Connection::poll_event`).

use crate::connection::{ChannelId, ChannelKind, GlobalRequest, OpenFailure, RequestId};
use crate::transport::hostkey::{HostKey, PublicKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client: the server proved it holds this host key. Input is paused until
    /// `Connection::host_key_verdict` is called. The server proved possession of the key (or
    /// of the certificate's key); nothing about it is trusted yet — for a certificate, not
    /// even its CA signature.
    VerifyHostKey(HostKey),
    /// A key exchange finished (`initial` for the first one).
    KeyExchangeDone { initial: bool },
    /// Client: the server's banner (RFC 4252 §5.4), to show the user.
    Banner(String),
    /// Client: sign `data` with `key` (held outside this process, e.g. by ssh-agent) and
    /// answer with `Connection::sign_response`.
    SignRequest { key: PublicKey, data: Vec<u8> },
    /// Server: may `user` log in with `key`? Input is paused until `Connection::authorize_key`.
    /// When `signed` is true the key's signature has been verified and accepting logs the user
    /// in; when false the client only asks whether the key would be acceptable.
    /// With `certificate`, `key` is the certified key and signed as such; the certificate
    /// itself (CA, principals, validity, options) is unchecked: that is the application's
    /// part (`keys::certificate::check`).
    AuthorizeKey {
        user: String,
        key: PublicKey,
        certificate: Option<Box<ssh_key::Certificate>>,
        signed: bool,
    },
    /// Authentication succeeded (both roles); channels may be opened now.
    Authenticated { user: String },
    /// The peer wants to open a channel: answer with `accept_channel` or `reject_channel`.
    ChannelOpenRequest { id: ChannelId, kind: ChannelKind },
    /// A channel we opened was confirmed.
    ChannelOpened { id: ChannelId },
    /// A channel we opened was refused; the id is released.
    ChannelOpenFailed {
        id: ChannelId,
        reason: OpenFailure,
        description: String,
    },
    /// Data arrived on a channel whose receive buffer was empty.
    ChannelReadable { id: ChannelId },
    /// A channel that could not send (window or key exchange) may send again.
    ChannelWritable { id: ChannelId },
    /// The peer sent a channel request that wants no reply (requests wanting one are refused
    /// by the connection itself). `data` is the request-specific part.
    ChannelRequest {
        id: ChannelId,
        request: String,
        data: Vec<u8>,
    },
    /// The peer will send no more data on this channel.
    ChannelEof { id: ChannelId },
    /// The peer closed the channel. Buffered data stays readable until `close_channel`.
    ChannelClosed { id: ChannelId },
    /// The peer made a global request that needs the application (`reply_global_request`).
    GlobalRequest {
        id: RequestId,
        request: GlobalRequest,
    },
    /// Our global request was answered; `Ok(port)` carries a port bound by tcpip-forward.
    GlobalReply {
        id: RequestId,
        result: Result<Option<u32>, ()>,
    },
    /// A keepalive probe was answered after this round trip time.
    KeepaliveRtt(std::time::Duration),
}
