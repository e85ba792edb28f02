//! Proves the harness against OpenSSH itself: stock ssh through stock sshd.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use sshvpn_tests::harness::{
    EchoServer, SinkServer, Ssh, Sshd, SshdOptions, TestDir, free_port, loopback, pattern_sha256,
    socks5_connect, transfer_echo, transfer_echo_on, write_pattern,
};
use tokio::io::AsyncWriteExt;

const UP: Duration = Duration::from_secs(10);
const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn local_forward_moves_8_mib_intact() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;

    let lport = free_port();
    let mut ssh = Ssh::new(&dir)
        .port(sshd.port())
        .identity(&key)
        .known_hosts_line(&sshd.known_hosts_line())
        .local_forward(&format!("127.0.0.1:{lport}:127.0.0.1:{}", echo.port))
        .spawn();
    ssh.wait_for_port(lport, UP).await;

    let result = transfer_echo(loopback(lport), 8 * MIB, Duration::from_secs(15)).await;
    assert!(
        result.is_ok(),
        "{result:?}\nssh:\n{}\nsshd:\n{}",
        ssh.stderr(),
        sshd.log()
    );
    assert_eq!(
        ssh.exit_status_within(Duration::ZERO).await,
        None,
        "ssh should still run"
    );
}

#[tokio::test]
async fn dynamic_forward_connects_through_socks5() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    let mut sink = SinkServer::start().await;

    let dport = free_port();
    let mut ssh = Ssh::new(&dir)
        .port(sshd.port())
        .identity(&key)
        .known_hosts_line(&sshd.known_hosts_line())
        .dynamic(&format!("127.0.0.1:{dport}"))
        .spawn();
    ssh.wait_for_port(dport, UP).await;

    // A domain name is resolved by sshd, as `ssh -D` does.
    let stream = socks5_connect(loopback(dport), "localhost", echo.port)
        .await
        .unwrap_or_else(|e| panic!("{e}\nssh:\n{}", ssh.stderr()));
    transfer_echo_on(stream, MIB, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}\nssh:\n{}", ssh.stderr()));

    // An IPv4 address, one way, checked by the sink's digest.
    let mut stream = socks5_connect(loopback(dport), "127.0.0.1", sink.port)
        .await
        .unwrap_or_else(|e| panic!("{e}\nssh:\n{}", ssh.stderr()));
    write_pattern(&mut stream, MIB).await.unwrap();
    stream.shutdown().await.unwrap();
    let report = sink.next_report(Duration::from_secs(10)).await;
    assert_eq!(report.bytes, MIB as u64);
    assert_eq!(report.sha256, pattern_sha256(MIB));
    assert_eq!(report.error, None);

    // A closed target port gives no stream (ssh -D just closes the client connection when
    // sshd refuses the channel, so this is an early EOF rather than a SOCKS reply code).
    let closed = free_port();
    let refused = socks5_connect(loopback(dport), "127.0.0.1", closed).await;
    assert!(
        refused.is_err(),
        "CONNECT to closed port {closed} succeeded"
    );
}

#[tokio::test]
async fn unauthorized_key_is_refused() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let authorized = dir.keygen("authorized").await;
    let stranger = dir.keygen("stranger").await;
    sshd.authorize(&authorized);

    let output = Ssh::new(&dir)
        .port(sshd.port())
        .identity(&stranger)
        .known_hosts_line(&sshd.known_hosts_line())
        .run("true", Duration::from_secs(15))
        .await;
    assert!(
        !output.status.success(),
        "stranger logged in: {}",
        output.stderr
    );
    assert!(
        output.stderr.contains("Permission denied (publickey)"),
        "stderr:\n{}",
        output.stderr
    );

    // The same command with the authorized key succeeds, so the refusal above was about the key.
    let output = Ssh::new(&dir)
        .port(sshd.port())
        .identity(&authorized)
        .known_hosts_line(&sshd.known_hosts_line())
        .run("true", Duration::from_secs(15))
        .await;
    assert!(
        output.status.success(),
        "{}\nsshd:\n{}",
        output.stderr,
        sshd.log()
    );
}

#[tokio::test]
async fn unknown_host_key_is_refused() {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, SshdOptions::default()).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);

    let output = Ssh::new(&dir)
        .port(sshd.port())
        .identity(&key)
        .run("true", Duration::from_secs(15))
        .await;
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("Host key verification failed"),
        "stderr:\n{}",
        output.stderr
    );
    let fingerprint = sshd.host_key_fingerprint().await;
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    assert!(
        output.stderr.contains(&fingerprint),
        "stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn passphrase_key_and_cipher_override() {
    let dir = TestDir::new();
    let key = dir.keygen_with_passphrase("locked", "secret").await;
    assert!(
        std::fs::read_to_string(&key.private)
            .unwrap()
            .contains("OPENSSH PRIVATE KEY")
    );
    let sshd = Sshd::start(
        &dir,
        SshdOptions {
            ciphers: Some("aes256-gcm@openssh.com".to_owned()),
            kex_algorithms: Some("curve25519-sha256".to_owned()),
            rekey_limit: Some("1M".to_owned()),
            ..SshdOptions::default()
        },
    )
    .await;
    let plain = dir.keygen("plain").await;
    sshd.authorize(&plain);

    // The client offers only chacha20; the server only aes256-gcm: no common cipher.
    let output = Ssh::new(&dir)
        .port(sshd.port())
        .identity(&plain)
        .known_hosts_line(&sshd.known_hosts_line())
        .cipher(Some("chacha20-poly1305@openssh.com"))
        .run("true", Duration::from_secs(15))
        .await;
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("no matching cipher found"),
        "stderr:\n{}",
        output.stderr
    );

    let output = Ssh::new(&dir)
        .port(sshd.port())
        .identity(&plain)
        .known_hosts_line(&sshd.known_hosts_line())
        .cipher(Some("aes256-gcm@openssh.com"))
        .kex(Some("curve25519-sha256"))
        .run("true", Duration::from_secs(15))
        .await;
    assert!(output.status.success(), "{}", output.stderr);
    assert!(
        output.stderr.contains("cipher: aes256-gcm@openssh.com"),
        "stderr:\n{}",
        output.stderr
    );
}
