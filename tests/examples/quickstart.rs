//! Quick start: an sshvpn server and an sshvpn client in one process on loopback, a local
//! forward (`ssh -L` style) through the SSH link to an echo service, and a bulk transfer
//! through it. Needs nothing but this repository.
//!
//!     cargo run --release -p sshvpn-tests --example quickstart

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sshvpn_proto::keys::authorized_keys;
use sshvpn_proto::{ClientConfig, Ed25519Key, ServerConfig};
use sshvpn_tests::harness::{EchoServer, transfer_echo};
use sshvpnd::policy::AuthorizedKeys;
use sshvpnd::trust::{ClientPolicy, HostKeyTrust};
use tokio::net::TcpListener;

fn random_key() -> Result<Ed25519Key> {
    let mut seed = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
    Ok(Ed25519Key::from_seed(&seed))
}

#[tokio::main]
async fn main() -> Result<()> {
    let host_key = random_key()?;
    let user_key = random_key()?;

    // The server end: accepts the user's key, serves direct-tcpip.
    let line = user_key.public().to_ssh_key().to_openssh()?;
    let (authorized, _) = authorized_keys::parse(&line);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = listener.local_addr()?;
    tokio::spawn(sshvpnd::server::serve(
        listener,
        ServerConfig::new(host_key.clone()),
        AuthorizedKeys::List(authorized),
        None,
        sshvpnd::server::StartupLimits::default(),
        None,
    ));
    println!(
        "server  listening on {server_addr}, host key {}",
        host_key.fingerprint()
    );

    // The client end: pins the server's fingerprint, logs in with the user key.
    let trust = HostKeyTrust::Fingerprint(host_key.fingerprint());
    let config = ClientConfig::new("demo", vec![user_key]);
    let (handle, _incoming, _task) = sshvpnd::connect(
        &server_addr.to_string(),
        config,
        Box::new(ClientPolicy::new(trust)),
    )
    .await?;
    let user = tokio::time::timeout(Duration::from_secs(10), handle.authenticated())
        .await
        .context("handshake timed out")??;
    let info = handle.info().await?;
    println!(
        "client  authenticated as {user:?} with {} / {}",
        info.kex.unwrap_or_default(),
        info.cipher.unwrap_or_default()
    );

    // A local forward to an echo service "behind" the server.
    let echo = EchoServer::start().await;
    let forward = TcpListener::bind("127.0.0.1:0").await?;
    let forward_addr = forward.local_addr()?;
    tokio::spawn(sshvpnd::forward::local_forward(
        forward,
        handle.clone(),
        "127.0.0.1".into(),
        echo.port,
    ));
    println!("forward {forward_addr} -> (ssh) -> 127.0.0.1:{}", echo.port);

    let total = 256 << 20;
    let start = Instant::now();
    if let Err(e) = transfer_echo(forward_addr, total, Duration::from_secs(300)).await {
        bail!("transfer failed: {e}");
    }
    let secs = start.elapsed().as_secs_f64();
    let info = handle.info().await?;
    println!(
        "moved   {} MiB each way intact in {secs:.2}s ({:.0} Mbit/s each way); {} packets sent, {} key exchange(s)",
        total >> 20,
        (total as f64 * 8.0) / secs / 1e6,
        info.stats.packets_sent,
        info.stats.key_exchanges
    );
    handle.disconnect("quick start done").await;
    println!("ok");
    Ok(())
}
