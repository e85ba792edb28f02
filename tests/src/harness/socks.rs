//! A minimal SOCKS5 client (RFC 1928): the "no authentication" method and CONNECT only,
//! enough to drive `ssh -D` and sshvpnd's SOCKS listener from tests.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the whole SOCKS handshake (TCP connect included) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const VERSION: u8 = 5;
const METHOD_NO_AUTH: u8 = 0;
const CMD_CONNECT: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// Why a SOCKS5 CONNECT did not produce a stream.
#[derive(Debug, thiserror::Error)]
pub enum Socks5Error {
    #[error("SOCKS5 I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("SOCKS5 handshake timed out after {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    #[error("SOCKS5 proxy offered no acceptable method (reply {0:#04x})")]
    NoAcceptableMethod(u8),
    /// RFC 1928 §6: the proxy answered CONNECT with a failure code.
    #[error("SOCKS5 CONNECT failed: reply {code} ({})", reply_meaning(*.code))]
    Reply { code: u8 },
    #[error("SOCKS5 protocol violation: {0}")]
    Protocol(String),
}

/// RFC 1928 §6 reply field meanings.
pub fn reply_meaning(code: u8) -> &'static str {
    match code {
        0 => "succeeded",
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned",
    }
}

/// Connects to the SOCKS5 proxy at `proxy` and asks it to CONNECT to `target_host`
/// (an IPv4/IPv6 literal is sent as an address, anything else as a domain name) and
/// `target_port`. Returns the stream, ready to carry the target's data.
pub async fn socks5_connect(
    proxy: SocketAddr,
    target_host: &str,
    target_port: u16,
) -> Result<TcpStream, Socks5Error> {
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(proxy, target_host, target_port),
    )
    .await
    .map_err(|_| Socks5Error::Timeout)?
}

async fn handshake(
    proxy: SocketAddr,
    target_host: &str,
    target_port: u16,
) -> Result<TcpStream, Socks5Error> {
    let mut stream = TcpStream::connect(proxy).await?;

    // §3: version identifier / method selection.
    stream.write_all(&[VERSION, 1, METHOD_NO_AUTH]).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != VERSION {
        return Err(Socks5Error::Protocol(format!(
            "method reply has version {}",
            choice[0]
        )));
    }
    if choice[1] != METHOD_NO_AUTH {
        return Err(Socks5Error::NoAcceptableMethod(choice[1]));
    }

    // §4: the request.
    let mut request = vec![VERSION, CMD_CONNECT, 0];
    match target_host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(ATYP_IPV4);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(ATYP_IPV6);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = target_host.as_bytes();
            let len = u8::try_from(name.len()).map_err(|_| {
                Socks5Error::Protocol(format!("domain name of {} bytes is too long", name.len()))
            })?;
            request.push(ATYP_DOMAIN);
            request.push(len);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&target_port.to_be_bytes());
    stream.write_all(&request).await?;

    // §6: the reply; its bound address is read and discarded.
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(Socks5Error::Protocol(format!(
            "reply has version {}",
            head[0]
        )));
    }
    if head[1] != 0 {
        return Err(Socks5Error::Reply { code: head[1] });
    }
    let address_len = match head[3] {
        ATYP_IPV4 => 4,
        ATYP_IPV6 => 16,
        ATYP_DOMAIN => usize::from(stream.read_u8().await?),
        other => {
            return Err(Socks5Error::Protocol(format!(
                "reply has address type {other}"
            )));
        }
    };
    let mut bound = vec![0u8; address_len + 2];
    stream.read_exact(&mut bound).await?;
    Ok(stream)
}
