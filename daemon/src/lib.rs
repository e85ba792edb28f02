//! sshvpnd: the daemon's library half. The binary (`main.rs`) is a thin shell over it, so
//! end-to-end tests can drive the same code in-process.

pub mod agent;
pub mod config;
pub mod control;
pub mod daemon;
pub mod driver;
pub mod forward;
pub mod link;
pub mod policy;
pub mod server;
pub mod socks;
pub mod systemd;
pub mod trust;
pub mod tun;

use std::time::{Duration, Instant};

use sshvpn_proto::{ClientConfig, Connection, Error};
use tokio::net::TcpStream;

/// Connects to `addr` and starts a client driver on the connection.
pub async fn connect(
    addr: &str,
    config: ClientConfig,
    policy: Box<dyn driver::Policy>,
) -> std::io::Result<(
    driver::Handle,
    tokio::sync::mpsc::Receiver<driver::Incoming>,
    tokio::task::JoinHandle<Result<(), Error>>,
)> {
    let socket = TcpStream::connect(addr).await?;
    let conn = Connection::client(config, Instant::now()).map_err(std::io::Error::other)?;
    Ok(driver::spawn(socket, conn, policy))
}

/// Pause after a failed `accept` before the next one. The usual cause is running out of file
/// descriptors (EMFILE/ENFILE): the connection stays queued, so retrying at once would spin a
/// core, and ending the loop would close the listener for good. Waiting lets connections close.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What every accept loop does with an `accept` error: log it and wait [`ACCEPT_BACKOFF`].
pub async fn pause_after_accept_error(listener: &str, error: &std::io::Error) {
    tracing::warn!(listener, %error, "accept failed; retrying shortly");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Connections the kernel may queue for one of our listeners before we accept them (capped
/// by `net.core.somaxconn`). tokio listens with 128, as the standard library does: a burst of
/// 250 SOCKS connections overflowed it, and each handshake the kernel dropped cost its client
/// a one-second SYN retransmit, and now and then a reset.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A TCP listener on the first of `addr`'s addresses that takes one, with
/// [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind`).
pub async fn listen_tcp(
    addr: impl tokio::net::ToSocketAddrs,
) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        let bound = socket
            .set_reuseaddr(true)
            .and_then(|()| socket.bind(a))
            .and_then(|()| socket.listen(LISTEN_BACKLOG));
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

/// The next TCP connection on `listener`, riding out accept errors (see [`ACCEPT_BACKOFF`]);
/// `what` names the listener in the log.
pub async fn accept_tcp(
    listener: &tokio::net::TcpListener,
    what: &str,
) -> (TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => pause_after_accept_error(what, &error).await,
        }
    }
}
