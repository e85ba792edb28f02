//! sshvpn as the client, OpenSSH `sshd` as the server (issue: proto interop, item 2).
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
    EchoServer, Sshd, SshdOptions, TestDir, openssh_kex_methods, transfer_echo,
};
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

/// Every key exchange method the installed sshd also knows, each forced alone, then our default
/// preference list: against OpenSSH 9.2 that must land on a post-quantum hybrid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_exchange_method_and_the_default_is_post_quantum() {
    let (dir, sshd, key, echo) = setup(SshdOptions::default()).await;
    let theirs = openssh_kex_methods();
    let common: Vec<KexAlg> = KexAlg::ALL
        .into_iter()
        .filter(|k| theirs.iter().any(|t| t == k.name()))
        .collect();
    assert!(
        common.contains(&KexAlg::Sntrup761X25519Sha512OpenSsh),
        "the installed OpenSSH lacks sntrup761x25519-sha512@openssh.com; it offers {theirs:?}"
    );
    let forced = common.iter().map(|&k| Some(k));
    for kex in forced.chain([None]) {
        let client = peers::connect(&dir, sshd.port(), &key, &sshd.known_hosts_line(), |c| {
            if let Some(kex) = kex {
                c.transport.preferences.kex = vec![kex];
            }
        })
        .await;
        let user =
            tokio::time::timeout(Duration::from_secs(10), client.handle.authenticated()).await;
        assert_eq!(
            user.unwrap().unwrap(),
            "root",
            "{kex:?}: sshd log:\n{}",
            sshd.log()
        );
        echo_through(&client, &echo, 4 << 20).await;
        let info = client.handle.info().await.unwrap();
        let negotiated = info.kex.unwrap();
        match kex {
            Some(kex) => assert_eq!(negotiated, kex.name()),
            None => assert!(
                negotiated.starts_with("sntrup761x25519") || negotiated.starts_with("mlkem768"),
                "default preferences negotiated {negotiated} with OpenSSH, not a hybrid"
            ),
        }
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
