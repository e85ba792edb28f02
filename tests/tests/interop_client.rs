//! sshvpn as the client, OpenSSH `sshd` as the server (issue: proto interop, item 2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use sshvpn_proto::transport::cipher::CipherAlg;
use sshvpn_tests::harness::{EchoServer, KeyPair, Sshd, SshdOptions, TestDir, transfer_echo};
use sshvpn_tests::peers;
use sshvpnd::trust::HostKeyVerdict;
use tokio::net::TcpListener;

const SIXTY_FOUR_MIB: usize = 64 << 20;

/// Runs a local forward over `client` to the echo server and pushes `total` bytes through it.
async fn echo_through(client: &peers::Client, echo: &EchoServer, total: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let forward = tokio::spawn(sshvpnd::forward::local_forward(
        listener,
        client.handle.clone(),
        "127.0.0.1".into(),
        echo.port,
    ));
    let result = transfer_echo(addr, total, Duration::from_secs(120)).await;
    forward.abort();
    result.unwrap();
}

async fn setup(opts: SshdOptions) -> (TestDir, Sshd, sshvpn_tests::harness::KeyPair, EchoServer) {
    let dir = TestDir::new();
    let sshd = Sshd::start(&dir, opts).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    (dir, sshd, key, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_64_mib_through_direct_tcpip_with_each_cipher() {
    let (dir, sshd, key, echo) = setup(SshdOptions::default()).await;
    for cipher in CipherAlg::ALL {
        let client = peers::connect(&dir, sshd.port(), &key, &sshd.known_hosts_line(), |c| {
            c.transport.preferences.ciphers = vec![cipher];
        })
        .await;
        let user =
            tokio::time::timeout(Duration::from_secs(10), client.handle.authenticated()).await;
        assert_eq!(
            user.unwrap().unwrap(),
            "root",
            "{cipher:?}: sshd log:\n{}",
            sshd.log()
        );
        echo_through(&client, &echo, SIXTY_FOUR_MIB).await;
        let info = client.handle.info().await.unwrap();
        assert_eq!(info.cipher.as_deref(), Some(cipher.name()));
        assert!(info.peer_ident.unwrap().starts_with("SSH-2.0-OpenSSH"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_64_mib_across_rekeys_started_by_either_side() {
    // sshd re-keys every 16 MiB; we re-key every 8 MiB: both directions start exchanges.
    let opts = SshdOptions {
        rekey_limit: Some("16M".into()),
        ..SshdOptions::default()
    };
    let (dir, sshd, key, echo) = setup(opts).await;
    let client = peers::connect(&dir, sshd.port(), &key, &sshd.known_hosts_line(), |c| {
        c.transport.rekey_bytes = 8 << 20;
    })
    .await;
    client.handle.authenticated().await.unwrap();
    echo_through(&client, &echo, SIXTY_FOUR_MIB).await;
    let info = client.handle.info().await.unwrap();
    assert!(
        info.stats.key_exchanges >= 8,
        "expected many re-keys, saw {}",
        info.stats.key_exchanges
    );
    // And an explicit re-key on request still leaves the connection working.
    client.handle.rekey().await.unwrap();
    echo_through(&client, &echo, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_that_does_not_match_is_refused() {
    let (dir, sshd, key, _echo) = setup(SshdOptions::default()).await;
    let impostor = dir.keygen("impostor").await;
    let wrong_line = format!(
        "[127.0.0.1]:{} {}",
        sshd.port(),
        impostor.key_type_and_blob()
    );
    let client = peers::connect(&dir, sshd.port(), &key, &wrong_line, |_| {}).await;
    let err = client.handle.authenticated().await.unwrap_err();
    assert!(err.to_string().contains("was not accepted"), "{err}");
    let verdict = client.verdict.lock().unwrap().clone();
    let expected = sshd.host_key_fingerprint().await;
    match verdict {
        Some(HostKeyVerdict::Changed { fingerprint, .. }) => assert_eq!(fingerprint, expected),
        other => panic!("expected a changed-key verdict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_not_authorized_is_refused() {
    let (dir, sshd, _key, _echo) = setup(SshdOptions::default()).await;
    let stranger = dir.keygen("stranger").await;
    let client = peers::connect(
        &dir,
        sshd.port(),
        &stranger,
        &sshd.known_hosts_line(),
        |_| {},
    )
    .await;
    let err = client.handle.authenticated().await.unwrap_err();
    assert!(
        err.to_string().contains("permission denied (publickey"),
        "{err}"
    );
}

/// sshd with an RSA host key as the only one it may use (its ed25519 key stays configured but
/// `HostKeyAlgorithms` keeps it out of negotiation).
async fn setup_rsa_host(bits: &str) -> (TestDir, Sshd, KeyPair, KeyPair, EchoServer) {
    let dir = TestDir::new();
    let rsa = dir
        .keygen_typed("ssh_host_rsa_key", &["-t", "rsa", "-b", bits])
        .await;
    let opts = SshdOptions {
        extra: vec![
            ("HostKey".into(), rsa.private.display().to_string()),
            (
                "HostKeyAlgorithms".into(),
                "rsa-sha2-512,rsa-sha2-256".into(),
            ),
        ],
        ..SshdOptions::default()
    };
    let sshd = Sshd::start(&dir, opts).await;
    let key = dir.keygen("client").await;
    sshd.authorize(&key);
    let echo = EchoServer::start().await;
    (dir, sshd, rsa, key, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_only_server_is_verified_through_known_hosts_and_moves_data() {
    let (dir, sshd, rsa, key, echo) = setup_rsa_host("3072").await;
    let line = format!("[127.0.0.1]:{} {}", sshd.port(), rsa.key_type_and_blob());
    assert!(line.contains(" ssh-rsa "), "{line}");
    let client = peers::connect(&dir, sshd.port(), &key, &line, |_| {}).await;
    let user = client.handle.authenticated().await;
    assert_eq!(user.unwrap(), "root", "sshd log:\n{}", sshd.log());
    assert_eq!(
        client.verdict.lock().unwrap().clone(),
        Some(HostKeyVerdict::Trusted)
    );
    echo_through(&client, &echo, 1 << 20).await;
    // We prefer SHA-512 (RFC 8332 §3.1), and never SHA-1.
    assert!(
        sshd.log().contains("host key algorithm: rsa-sha2-512"),
        "sshd log:\n{}",
        sshd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_rsa_host_key_is_refused_with_its_fingerprint() {
    let (dir, sshd, rsa, key, _echo) = setup_rsa_host("2048").await;
    let impostor = dir
        .keygen_typed("impostor_rsa", &["-t", "rsa", "-b", "2048"])
        .await;
    let line = format!(
        "[127.0.0.1]:{} {}",
        sshd.port(),
        impostor.key_type_and_blob()
    );
    let client = peers::connect(&dir, sshd.port(), &key, &line, |_| {}).await;
    let err = client.handle.authenticated().await.unwrap_err();
    let expected = fingerprint_of(&rsa).await;
    assert!(err.to_string().contains("was not accepted"), "{err}");
    assert!(err.to_string().contains(&expected), "{err}");
    match client.verdict.lock().unwrap().clone() {
        Some(HostKeyVerdict::Changed { fingerprint, .. }) => assert_eq!(fingerprint, expected),
        other => panic!("expected a changed-key verdict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_host_key_below_2048_bits_is_refused() {
    let (dir, sshd, rsa, key, _echo) = setup_rsa_host("1024").await;
    let line = format!("[127.0.0.1]:{} {}", sshd.port(), rsa.key_type_and_blob());
    let client = peers::connect(&dir, sshd.port(), &key, &line, |_| {}).await;
    let err = client.handle.authenticated().await.unwrap_err();
    assert!(
        err.to_string().contains("RSA key of 1024 bits refused"),
        "{err}"
    );
}

/// `ssh-keygen -lf`'s SHA256 fingerprint of a key pair.
async fn fingerprint_of(key: &KeyPair) -> String {
    let out = tokio::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key.public)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|t| t.starts_with("SHA256:"))
        .unwrap()
        .to_owned()
}
