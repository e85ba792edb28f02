//! OpenSSH `ssh` as the client, sshvpn as the server (issue: proto interop, item 3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use sshvpn_proto::transport::cipher::CipherAlg;
use sshvpn_proto::transport::kex::KexAlg;
use sshvpn_tests::harness::{
    EchoServer, KeyPair, Ssh, TestDir, free_port, loopback, openssh_kex_methods, socks5_connect,
    transfer_echo, transfer_echo_on,
};
use sshvpn_tests::peers::Server;

const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> (TestDir, KeyPair, Server, EchoServer) {
    let dir = TestDir::new();
    let key = dir.keygen("client").await;
    let server = Server::start(&[&key], |_| {}).await;
    let echo = EchoServer::start().await;
    (dir, key, server, echo)
}

fn ssh<'a>(dir: &'a TestDir, key: &KeyPair, server: &Server) -> Ssh<'a> {
    Ssh::new(dir)
        .port(server.port)
        .identity(key)
        .known_hosts_line(&server.known_hosts_line())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_with_each_cipher_and_kex() {
    let (dir, key, server, echo) = setup().await;
    let theirs = openssh_kex_methods();
    let common: Vec<KexAlg> = KexAlg::ALL
        .into_iter()
        .filter(|k| theirs.iter().any(|t| t == k.name()))
        .collect();
    // OpenSSH 9.2 (Debian 12) knows sntrup761x25519 but not yet mlkem768x25519, which the
    // in-memory pair tests cover.
    assert!(
        common.contains(&KexAlg::Sntrup761X25519Sha512OpenSsh),
        "the installed OpenSSH lacks sntrup761x25519-sha512@openssh.com; it offers {theirs:?}"
    );
    for cipher in CipherAlg::ALL {
        for &kex in &common {
            let port = free_port();
            let mut ssh = ssh(&dir, &key, &server)
                .cipher(Some(cipher.name()))
                .kex(Some(kex.name()))
                .local_forward(&format!("127.0.0.1:{port}:127.0.0.1:{}", echo.port))
                .spawn();
            ssh.wait_for_port(port, WAIT).await;
            transfer_echo(loopback(port), 8 << 20, Duration::from_secs(60))
                .await
                .unwrap_or_else(|e| panic!("{cipher:?}/{kex:?}: {e}\nssh:\n{}", ssh.stderr()));
            ssh.kill().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_forward_across_rekey_limit_16m() {
    let (dir, key, server, echo) = setup().await;
    let port = free_port();
    let mut ssh = ssh(&dir, &key, &server)
        .option("RekeyLimit", "16M")
        .local_forward(&format!("127.0.0.1:{port}:127.0.0.1:{}", echo.port))
        .spawn();
    ssh.wait_for_port(port, WAIT).await;
    transfer_echo(loopback(port), 64 << 20, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\nssh:\n{}", ssh.stderr()));
    assert!(
        ssh.exit_status_within(Duration::from_millis(100))
            .await
            .is_none(),
        "ssh still running after re-keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forward_moves_data_intact() {
    let (dir, key, server, echo) = setup().await;
    let port = free_port();
    let mut ssh = ssh(&dir, &key, &server)
        .option("RekeyLimit", "16M")
        .remote_forward(&format!("127.0.0.1:{port}:127.0.0.1:{}", echo.port))
        .spawn();
    ssh.wait_for_port(port, WAIT).await;
    transfer_echo(loopback(port), 32 << 20, Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\nssh:\n{}", ssh.stderr()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_forward_through_socks5() {
    let (dir, key, server, echo) = setup().await;
    let port = free_port();
    let mut ssh = ssh(&dir, &key, &server)
        .dynamic(&format!("127.0.0.1:{port}"))
        .spawn();
    ssh.wait_for_port(port, WAIT).await;
    for target in ["localhost", "127.0.0.1"] {
        let stream = socks5_connect(loopback(port), target, echo.port)
            .await
            .unwrap();
        transfer_echo_on(stream, 8 << 20, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{target}: {e}\nssh:\n{}", ssh.stderr()));
    }
    // A target nobody listens on fails cleanly and the proxy keeps working.
    let closed = free_port();
    assert!(
        socks5_connect(loopback(port), "127.0.0.1", closed)
            .await
            .is_err()
    );
    let stream = socks5_connect(loopback(port), "127.0.0.1", echo.port)
        .await
        .unwrap();
    transfer_echo_on(stream, 1 << 20, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_not_in_authorized_keys_gets_permission_denied() {
    let (dir, _key, server, _echo) = setup().await;
    let stranger = dir.keygen("stranger").await;
    let out = ssh(&dir, &stranger, &server).run("true", WAIT).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("Permission denied (publickey)"),
        "stderr:\n{}",
        out.stderr
    );
}
