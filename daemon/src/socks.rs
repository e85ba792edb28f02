//! The SOCKS front end of a dynamic forward (`ssh -D`): SOCKS5 (RFC 1928) with no
//! authentication or username/password (RFC 1929), and SOCKS4/SOCKS4a CONNECT.
//!
//! This module owns the client side of the handshake and the reply. It does not know how the
//! far end is reached: [`serve`] asks its caller's `open` for a [`ChannelStream`] (normally a
//! `direct-tcpip` channel over the link) and splices the two. Names are never resolved here;
//! they travel to the far side unresolved, as `ssh -D` does. The byte formats live in [`wire`],
//! which does no I/O.

pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sshvpn_proto::OpenFailure;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::driver::{ChannelStream, OpenError, splice};
use wire::{Decode, Hello, WireError};

/// How long [`serve`] gives a client to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which protocol a client spoke; the reply must be in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocksVersion {
    V4,
    V4a,
    V5,
}

/// What a SOCKS client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    /// An IPv4 or IPv6 literal (without brackets) or a domain name, unresolved: names are
    /// resolved on the far side, as `ssh -D` does.
    pub host: String,
    pub port: u16,
    pub version: SocksVersion,
}

/// Credentials a client must present (RFC 1929). Without them, no authentication is asked.
#[derive(Clone, PartialEq, Eq)]
pub struct SocksAuth {
    pub username: String,
    pub password: String,
}

impl SocksAuth {
    /// Compares in constant time (for equal lengths), so timing does not reveal how much of a
    /// guess was right.
    fn verify(&self, username: &[u8], password: &[u8]) -> bool {
        let user = self.username.as_bytes().ct_eq(username);
        let pass = self.password.as_bytes().ct_eq(password);
        bool::from(user & pass)
    }
}

impl std::fmt::Debug for SocksAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocksAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a handshake ended without a request. Where the protocol has a way to say so, the client
/// has already been told and our side of the connection shut down.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("malformed message: {0}")]
    Malformed(#[from] WireError),
    #[error("client offered no acceptable authentication method")]
    NoAcceptableMethod,
    #[error("wrong username or password")]
    AuthFailed,
    #[error("SOCKS4 has no authentication, and authentication is required")]
    AuthRequired,
    #[error("command {0:#04x} not supported (only CONNECT is)")]
    CommandNotSupported(u8),
}

/// Runs the SOCKS handshake on `stream`, bounded by `timeout` as a whole.
///
/// SOCKS5 offers NO AUTHENTICATION REQUIRED, or only USERNAME/PASSWORD when `auth` is given.
/// SOCKS4 and SOCKS4a are refused when `auth` is given (they cannot authenticate). Only CONNECT
/// is supported. Reads exactly the handshake's bytes: anything the client sent after its
/// request stays in `stream`.
pub async fn accept(
    stream: &mut TcpStream,
    auth: Option<&SocksAuth>,
    timeout: Duration,
) -> Result<SocksRequest, SocksError> {
    tokio::time::timeout(timeout, handshake(stream, auth))
        .await
        .map_err(|_| SocksError::Timeout)?
}

async fn handshake<S>(stream: &mut S, auth: Option<&SocksAuth>) -> Result<SocksRequest, SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match read_message(stream, wire::decode_hello).await? {
        Hello::Socks5 { methods } => socks5(stream, &methods, auth).await,
        Hello::Socks4(req) => {
            if auth.is_some() {
                return Err(
                    refuse(stream, &wire::socks4_reply(false), SocksError::AuthRequired).await,
                );
            }
            if req.command != wire::CMD_CONNECT {
                let err = SocksError::CommandNotSupported(req.command);
                return Err(refuse(stream, &wire::socks4_reply(false), err).await);
            }
            let version = match req.kind {
                wire::Socks4Kind::V4 => SocksVersion::V4,
                wire::Socks4Kind::V4a => SocksVersion::V4a,
            };
            Ok(SocksRequest {
                host: req.host,
                port: req.port,
                version,
            })
        }
    }
}

async fn socks5<S>(
    stream: &mut S,
    methods: &[u8],
    auth: Option<&SocksAuth>,
) -> Result<SocksRequest, SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let method = match auth {
        Some(_) => wire::METHOD_USERNAME_PASSWORD,
        None => wire::METHOD_NO_AUTH,
    };
    // RFC 1928 §3: "If the selected METHOD is X'FF', none of the methods listed by the client
    // are acceptable, and the client MUST close the connection."
    if !methods.contains(&method) {
        let reply = wire::method_selection(wire::METHOD_NO_ACCEPTABLE);
        return Err(refuse(stream, &reply, SocksError::NoAcceptableMethod).await);
    }
    stream.write_all(&wire::method_selection(method)).await?;

    if let Some(auth) = auth {
        let offered = read_message(stream, wire::decode_userpass).await?;
        let ok = auth.verify(&offered.username, &offered.password);
        // RFC 1929 §2: on failure "the server MUST close the connection".
        if !ok {
            let status = wire::userpass_status(false);
            return Err(refuse(stream, &status, SocksError::AuthFailed).await);
        }
        stream.write_all(&wire::userpass_status(true)).await?;
    }

    let req = match read_message(stream, wire::decode_socks5_request).await {
        Ok(req) => req,
        Err(SocksError::Malformed(e)) => {
            let reply = wire::socks5_reply(e.reply_code());
            return Err(refuse(stream, &reply, e.into()).await);
        }
        Err(e) => return Err(e),
    };
    if req.command != wire::CMD_CONNECT {
        let reply = wire::socks5_reply(wire::REP_COMMAND_NOT_SUPPORTED);
        let err = SocksError::CommandNotSupported(req.command);
        return Err(refuse(stream, &reply, err).await);
    }
    Ok(SocksRequest {
        host: req.host,
        port: req.port,
        version: SocksVersion::V5,
    })
}

/// Reads one message, asking the decoder how much to read so nothing past it is consumed.
async fn read_message<S, T>(
    stream: &mut S,
    decode: fn(&[u8]) -> Result<Decode<T>, WireError>,
) -> Result<T, SocksError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(64);
    loop {
        match decode(&buf)? {
            Decode::Done(msg, _) => return Ok(msg),
            Decode::Need(n) => {
                // The decoders bound every field; this keeps a decoder bug from becoming an
                // unbounded allocation.
                if buf.len() + n > wire::MAX_MESSAGE {
                    return Err(std::io::Error::other("SOCKS message too long").into());
                }
                let want = u64::try_from(n).unwrap_or(u64::MAX);
                let got = (&mut *stream).take(want).read_to_end(&mut buf).await?;
                if got < n {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
    }
}

/// Tells the client no, shuts our side down, and hands back why. A failure to write the
/// refusal changes nothing: the connection is being given up either way.
async fn refuse<S>(stream: &mut S, reply: &[u8], err: SocksError) -> SocksError
where
    S: AsyncWrite + Unpin,
{
    let _ = stream.write_all(reply).await;
    let _ = stream.shutdown().await;
    err
}

/// Sends the reply to `req`: success with BND 0.0.0.0:0 (as `ssh -D` does), or the failure
/// [`reply_code`] maps `outcome`'s error to. SOCKS4 can only say granted or rejected.
pub async fn reply(
    stream: &mut TcpStream,
    req: &SocksRequest,
    outcome: Result<(), &OpenError>,
) -> std::io::Result<()> {
    match req.version {
        SocksVersion::V5 => {
            let rep = outcome.map_or_else(reply_code, |()| wire::REP_SUCCEEDED);
            stream.write_all(&wire::socks5_reply(rep)).await?;
        }
        SocksVersion::V4 | SocksVersion::V4a => {
            stream
                .write_all(&wire::socks4_reply(outcome.is_ok()))
                .await?;
        }
    }
    stream.flush().await
}

/// Maps a failed channel open (RFC 4254 §5.1 reason and description) to a SOCKS5 reply code
/// (RFC 1928 §6). OpenSSH's `sshd` puts the `connect`/`getaddrinfo` error text in the
/// description, which is the only place the kind of connect failure shows.
pub fn reply_code(err: &OpenError) -> u8 {
    match err {
        OpenError::Closed => wire::REP_NETWORK_UNREACHABLE,
        OpenError::Channel(_) => wire::REP_GENERAL_FAILURE,
        OpenError::Refused {
            reason,
            description,
        } => match *reason {
            OpenFailure::ADMINISTRATIVELY_PROHIBITED => wire::REP_NOT_ALLOWED,
            OpenFailure::CONNECT_FAILED => connect_failure_code(description),
            _ => wire::REP_GENERAL_FAILURE,
        },
    }
}

fn connect_failure_code(description: &str) -> u8 {
    let text = description.to_ascii_lowercase();
    let mentions = |words: &[&str]| words.iter().any(|w| text.contains(w));
    // RFC 1928 §6 has no code for "name not found"; X'04' is what clients show as
    // "host unreachable", which is what an unresolvable name is to them.
    if mentions(&["refused"]) {
        wire::REP_CONNECTION_REFUSED
    } else if mentions(&[
        "unreachable",
        "no route",
        "resolve",
        "name or service",
        "lookup",
    ]) {
        wire::REP_HOST_UNREACHABLE
    } else {
        wire::REP_GENERAL_FAILURE
    }
}

/// Accepts SOCKS clients on `listener` until the future is dropped; dropping it also ends every
/// connection it started. Each connection runs in its own task: handshake (bounded by
/// [`HANDSHAKE_TIMEOUT`]), `open(request, peer)`, reply, and on success a splice of the socket
/// and the channel. At most `max_conns` run at once; connections beyond that are closed at once.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    auth: Option<SocksAuth>,
    max_conns: usize,
    open: F,
) where
    F: Fn(SocksRequest, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ChannelStream, OpenError>> + Send + 'static,
{
    let open = Arc::new(open);
    let auth = auth.map(Arc::new);
    let mut conns = JoinSet::new();
    loop {
        // Reap connections as they finish, not at the next accept: a finished task stays
        // allocated (about 1.3 KiB each) until it is joined, so after a burst of a thousand
        // connections and then silence their memory would stay with the daemon.
        let (tcp, peer) = tokio::select! {
            accepted = crate::accept_tcp(&listener, "SOCKS") => accepted,
            Some(done) = conns.join_next() => {
                if let Err(error) = done {
                    tracing::warn!(%error, "SOCKS connection task failed");
                }
                continue;
            }
        };
        if conns.len() >= max_conns {
            tracing::warn!(%peer, max_conns, "SOCKS connection limit reached; closing");
            continue;
        }
        let span = tracing::debug_span!("socks", %peer);
        conns.spawn(connection(tcp, peer, auth.clone(), Arc::clone(&open)).instrument(span));
    }
}

async fn connection<F, Fut>(
    mut tcp: TcpStream,
    peer: SocketAddr,
    auth: Option<Arc<SocksAuth>>,
    open: Arc<F>,
) where
    F: Fn(SocksRequest, SocketAddr) -> Fut,
    Fut: Future<Output = Result<ChannelStream, OpenError>>,
{
    let _ = tcp.set_nodelay(true);
    let req = match accept(&mut tcp, auth.as_deref(), HANDSHAKE_TIMEOUT).await {
        Ok(req) => req,
        Err(error) => {
            tracing::debug!(%error, "SOCKS handshake failed");
            return;
        }
    };
    tracing::debug!(host = %req.host, port = req.port, version = ?req.version, "SOCKS CONNECT");
    match open(req.clone(), peer).await {
        Ok(channel) => {
            if let Err(error) = reply(&mut tcp, &req, Ok(())).await {
                tracing::debug!(%error, "SOCKS reply failed");
                return;
            }
            splice(channel, tcp).await;
        }
        Err(error) => {
            tracing::info!(host = %req.host, port = req.port, %error, "SOCKS CONNECT failed");
            let _ = reply(&mut tcp, &req, Err(&error)).await;
        }
    }
}

#[cfg(test)]
mod tests;
