//! sshvpn as the client, OpenSSH `sshd` as the server (issue: proto interop, item 2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use sshvpn_proto::ChannelKind;
use sshvpn_proto::keys::load_private_key_file;
use sshvpn_proto::transport::cipher::CipherAlg;
use sshvpn_proto::transport::kex::KexAlg;
use sshvpn_proto::{Ed25519Key, Identity};
use sshvpn_tests::harness::{
    EchoServer, KeyPair, Sshd, SshdOptions, TestDir, openssh_kex_methods, transfer_echo,
    write_pattern,
};
use sshvpn_tests::peers;
use sshvpnd::driver::{ChannelStream, Inbound};
use sshvpnd::trust::HostKeyVerdict;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SIXTY_FOUR_MIB: usize = 64 << 20;

/// A local forward over `client` to the echo server: its address and its task.
async fn forward_to_echo(
    client: &peers::Client,
    echo: &EchoServer,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let forward = tokio::spawn(sshvpnd::forward::local_forward(
        listener,
        client.handle.clone(),
        "127.0.0.1".into(),
        echo.port,
    ));
    (addr, forward)
}

/// A client with default settings, logged in to `sshd` as root.
async fn logged_in(dir: &TestDir, sshd: &Sshd, key: &KeyPair) -> peers::Client {
    let client = peers::connect(dir, sshd.port(), key, &sshd.known_hosts_line(), |_| {}).await;
    let user = tokio::time::timeout(Duration::from_secs(10), client.handle.authenticated()).await;
    assert_eq!(user.unwrap().unwrap(), "root", "sshd log:\n{}", sshd.log());
    client
}

/// Runs a local forward over `client` to the echo server and pushes `total` bytes through it.
async fn echo_through(client: &peers::Client, echo: &EchoServer, total: usize) {
    let (addr, forward) = forward_to_echo(client, echo).await;
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

/// A local reader far slower than the tunnel: the driver's queue toward it stays full most of
/// the time, and the driver moves data (then the echo's EOF) only as the reader makes room.
/// Every byte and then the EOF must still reach the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_local_reader_gets_every_byte_and_the_eof() {
    const TOTAL: usize = 16 << 20;
    let (dir, sshd, key, echo) = setup(SshdOptions::default()).await;
    let client = logged_in(&dir, &sshd, &key).await;
    let (addr, forward) = forward_to_echo(&client, &echo).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let send = tokio::spawn(async move {
        write_pattern(&mut writer, TOTAL).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let receive = async {
        let mut buf = vec![0u8; 16 << 10];
        let mut got = 0usize;
        let mut reads = 0u32;
        loop {
            let n = reader.read(&mut buf).await.unwrap();
            if n == 0 {
                return got;
            }
            got += n;
            reads += 1;
            if reads.is_multiple_of(8) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(60), receive).await;
    forward.abort();
    send.await.unwrap();
    assert_eq!(
        got.expect("the echo's bytes or its EOF never reached the slow reader (60 s)"),
        TOTAL
    );
}

/// The reader of a channel leaves its queue full while the rest of the data and the peer's
/// EOF arrive, then takes one item at a time: the driver must move each chunk into each freed
/// slot and then the EOF, although the last chunk fills the queue again (the EOF then waits
/// for room like data does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_behind_a_full_reader_queue_is_delivered() {
    const TOTAL: usize = 8 << 20;
    let (dir, sshd, key, echo) = setup(SshdOptions::default()).await;
    let client = logged_in(&dir, &sshd, &key).await;
    let stream = client
        .handle
        .open(ChannelKind::DirectTcpip {
            host: "127.0.0.1".into(),
            port: u32::from(echo.port),
            originator: "127.0.0.1".into(),
            originator_port: 1,
        })
        .await
        .unwrap();
    let ChannelStream {
        mut reader,
        mut writer,
    } = stream;
    let mut sent = 0;
    while sent < TOTAL {
        writer.send(vec![7u8; 32 << 10]).await.unwrap();
        sent += 32 << 10;
    }
    writer.eof().await;
    // Long enough for the echo to fill the queue and the windows, and for its EOF to come.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut got = 0;
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), reader.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing more after {got} of {TOTAL} bytes: EOF lost"));
        match item {
            Inbound::Data(data) => got += data.len(),
            Inbound::Eof | Inbound::Closed => break,
            Inbound::Request { .. } => {}
        }
        // One item at a time: the driver refills each freed slot before the next is taken.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(got, TOTAL);
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

/// sshd with an RSA key as its only host key, and only the RSA SHA-2 algorithms enabled.
async fn setup_rsa_host(bits: &str) -> (TestDir, Sshd, KeyPair, KeyPair, EchoServer) {
    let dir = TestDir::new();
    let rsa = dir
        .keygen_typed("ssh_host_rsa_key", &["-t", "rsa", "-b", bits])
        .await;
    let opts = SshdOptions {
        host_key: Some(rsa.private.clone()),
        extra: vec![(
            "HostKeyAlgorithms".into(),
            "rsa-sha2-512,rsa-sha2-256".into(),
        )],
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

/// sshd whose host key (ed25519, or RSA with `rsa`) carries a certificate from a fresh CA,
/// made by `ssh-keygen -s ca -h -I sshd-host <cert_args>`.
struct CertifiedHost {
    dir: TestDir,
    sshd: Sshd,
    ca: KeyPair,
    host: KeyPair,
    client_key: KeyPair,
    echo: EchoServer,
}

async fn setup_certified_host(cert_args: &[&str], rsa: bool) -> CertifiedHost {
    let dir = TestDir::new();
    let ca = dir.keygen("host_ca").await;
    let host = if rsa {
        dir.keygen_typed("ssh_host_rsa_key", &["-t", "rsa", "-b", "2048"])
            .await
    } else {
        dir.keygen("ssh_host_ed25519_key").await
    };
    let mut args = vec!["-h"];
    args.extend_from_slice(cert_args);
    let cert = dir.sign_key(&ca, &host, "sshd-host", &args).await;
    let mut extra = vec![("HostCertificate".into(), cert.display().to_string())];
    if rsa {
        extra.push((
            "HostKeyAlgorithms".into(),
            "rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com".into(),
        ));
    }
    let opts = SshdOptions {
        host_key: Some(host.private.clone()),
        extra,
        ..SshdOptions::default()
    };
    let sshd = Sshd::start(&dir, opts).await;
    let client_key = dir.keygen("client").await;
    sshd.authorize(&client_key);
    let echo = EchoServer::start().await;
    CertifiedHost {
        dir,
        sshd,
        ca,
        host,
        client_key,
        echo,
    }
}

impl CertifiedHost {
    fn ca_line(&self) -> String {
        format!(
            "@cert-authority [127.0.0.1]:{} {}",
            self.sshd.port(),
            self.ca.key_type_and_blob()
        )
    }

    async fn connect(&self, known_hosts: &str) -> peers::Client {
        peers::connect(
            &self.dir,
            self.sshd.port(),
            &self.client_key,
            known_hosts,
            |_| {},
        )
        .await
    }

    /// Connects expecting a refusal, and returns the verdict's reason.
    async fn refusal(&self, known_hosts: &str) -> HostKeyVerdict {
        let client = self.connect(known_hosts).await;
        let err = client.handle.authenticated().await.unwrap_err();
        assert!(err.to_string().contains("was not accepted"), "{err}");
        let verdict = client.verdict.lock().unwrap().clone();
        verdict.expect("a verdict")
    }
}

const VALID_NOW: &str = "-5m:+1h";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_certificate_from_a_trusted_ca_is_accepted_and_moves_data() {
    for rsa in [false, true] {
        let h = setup_certified_host(&["-n", "127.0.0.1,localhost", "-V", VALID_NOW], rsa).await;
        let client = h.connect(&h.ca_line()).await;
        let user = client.handle.authenticated().await;
        assert_eq!(user.unwrap(), "root", "sshd log:\n{}", h.sshd.log());
        assert_eq!(
            client.verdict.lock().unwrap().clone(),
            Some(HostKeyVerdict::Trusted)
        );
        echo_through(&client, &h.echo, 1 << 20).await;
        let alg = if rsa {
            "rsa-sha2-512-cert-v01@openssh.com"
        } else {
            "ssh-ed25519-cert-v01@openssh.com"
        };
        assert!(
            h.sshd.log().contains(&format!("host key algorithm: {alg}")),
            "sshd log:\n{}",
            h.sshd.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_host_certificate_is_refused_with_the_reason() {
    let h = setup_certified_host(&["-n", "127.0.0.1", "-V", "20200101:20200102"], false).await;
    match h.refusal(&h.ca_line()).await {
        HostKeyVerdict::CertificateRefused { reason, .. } => {
            assert!(reason.contains("certificate expired"), "{reason}");
            assert!(reason.contains("2020-01-02"), "{reason}");
        }
        other => panic!("expected a refused certificate, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_certificate_for_another_host_is_refused_with_the_reason() {
    let h = setup_certified_host(&["-n", "vpn.example.com", "-V", VALID_NOW], false).await;
    match h.refusal(&h.ca_line()).await {
        HostKeyVerdict::CertificateRefused { reason, .. } => {
            assert!(
                reason.contains("[vpn.example.com] do not include \"127.0.0.1\""),
                "{reason}"
            );
        }
        other => panic!("expected a refused certificate, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_ca_or_certified_key_is_refused() {
    let h = setup_certified_host(&["-n", "127.0.0.1", "-V", VALID_NOW], false).await;
    let port = h.sshd.port();
    for (revoked, what) in [(&h.ca, "CA"), (&h.host, "certified key")] {
        let lines = format!(
            "{}\n@revoked [127.0.0.1]:{port} {}",
            h.ca_line(),
            revoked.key_type_and_blob()
        );
        match h.refusal(&lines).await {
            HostKeyVerdict::CertificateRefused { reason, line, .. } => {
                assert!(reason.contains("revoked"), "{what}: {reason}");
                assert_eq!(line, Some(2), "{what}");
            }
            other => panic!("{what}: expected a refused certificate, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_trusted_for_other_hosts_only_falls_back_to_the_plain_key() {
    let h = setup_certified_host(&["-n", "127.0.0.1", "-V", VALID_NOW], false).await;
    let other_hosts = format!("@cert-authority *.example.com {}", h.ca.key_type_and_blob());
    // The CA does not vouch for 127.0.0.1 and the key is not known: refused as unknown.
    match h.refusal(&other_hosts).await {
        HostKeyVerdict::Unknown { fingerprint } => {
            assert_eq!(fingerprint, fingerprint_of(&h.host).await);
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }
    // As OpenSSH: the certified key listed as a plain host key is trusted.
    let plain = format!(
        "{other_hosts}\n[127.0.0.1]:{} {}",
        h.sshd.port(),
        h.host.key_type_and_blob()
    );
    let client = h.connect(&plain).await;
    assert_eq!(client.handle.authenticated().await.unwrap(), "root");
}

/// sshd trusting `ca` for user certificates (TrustedUserCAKeys); no authorized_keys entries.
async fn sshd_trusting_user_ca(dir: &TestDir, ca: &KeyPair) -> Sshd {
    let opts = SshdOptions {
        extra: vec![("TrustedUserCAKeys".into(), ca.public.display().to_string())],
        ..SshdOptions::default()
    };
    Sshd::start(dir, opts).await
}

fn certified_identity(key: &KeyPair, cert: &std::path::Path) -> Identity {
    let private = load_private_key_file(&key.private, None).unwrap();
    let private = Ed25519Key::from_ssh_key(&private).unwrap();
    let cert = sshvpn_proto::ssh_key::Certificate::read_file(cert).unwrap();
    Identity::certified(private, &cert).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificate_logs_in_to_sshd_with_trusted_user_ca_keys() {
    let dir = TestDir::new();
    let ca = dir.keygen("user_ca").await;
    let sshd = sshd_trusting_user_ca(&dir, &ca).await;
    let key = dir.keygen("client").await;
    let cert = dir
        .sign_key(&ca, &key, "alice", &["-n", "root", "-V", "-5m:+1h"])
        .await;
    let echo = EchoServer::start().await;
    // Only the certified identity: the plain key is not authorized.
    let identity = certified_identity(&key, &cert);
    let client = peers::connect(&dir, sshd.port(), &key, &sshd.known_hosts_line(), |c| {
        c.identities = vec![identity];
    })
    .await;
    let user = client.handle.authenticated().await;
    assert_eq!(user.unwrap(), "root", "sshd log:\n{}", sshd.log());
    echo_through(&client, &echo, 1 << 20).await;
    let log = sshd.log();
    assert!(
        log.contains("Accepted publickey for root") && log.contains("ED25519-CERT"),
        "sshd log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificate_for_another_principal_is_refused_by_sshd() {
    let dir = TestDir::new();
    let ca = dir.keygen("user_ca").await;
    let sshd = sshd_trusting_user_ca(&dir, &ca).await;
    let key = dir.keygen("client").await;
    let cert = dir
        .sign_key(&ca, &key, "alice", &["-n", "alice", "-V", "-5m:+1h"])
        .await;
    let identity = certified_identity(&key, &cert);
    let client = peers::connect(&dir, sshd.port(), &key, &sshd.known_hosts_line(), |c| {
        c.identities = vec![identity];
    })
    .await;
    let err = client.handle.authenticated().await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(
        sshd.log().contains("name is not a listed principal"),
        "sshd log:\n{}",
        sshd.log()
    );
}

#[test]
fn a_certificate_for_another_key_is_refused_locally() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = TestDir::new();
        let ca = dir.keygen("user_ca").await;
        let key = dir.keygen("client").await;
        let other = dir.keygen("other").await;
        let cert = dir
            .sign_key(&ca, &other, "alice", &["-n", "root", "-V", "+1h"])
            .await;
        let private = load_private_key_file(&key.private, None).unwrap();
        let private = Ed25519Key::from_ssh_key(&private).unwrap();
        let cert = sshvpn_proto::ssh_key::Certificate::read_file(&cert).unwrap();
        let err = Identity::certified(private, &cert).unwrap_err();
        assert!(err.to_string().contains("another key"), "{err}");
    });
}
