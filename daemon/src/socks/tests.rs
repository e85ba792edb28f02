// Tests may unwrap and index: a panic is a test failure, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;
use sshvpn_proto::OpenFailure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::wire::{self, Decode, Hello, Socks4Kind, Socks4Request, Socks5Request, UserPass};
use super::*;

const T: Duration = Duration::from_secs(2);

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

/// Everything the server sent, and whether it then closed (EOF or reset) rather than going quiet.
async fn drain(client: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_millis(300), client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// The client sends `input` in one go; the server runs `accept`.
async fn exchange(
    input: &[u8],
    auth: Option<&SocksAuth>,
) -> (Result<SocksRequest, SocksError>, Vec<u8>, bool) {
    let (mut client, mut server) = pair().await;
    client.write_all(input).await.unwrap();
    let result = accept(&mut server, auth, T).await;
    let (sent, closed) = drain(&mut client).await;
    drop(server);
    (result, sent, closed)
}

fn greeting(methods: &[u8]) -> Vec<u8> {
    let mut v = vec![5, methods.len() as u8];
    v.extend_from_slice(methods);
    v
}

fn request5(cmd: u8, addr: &[u8], port: u16) -> Vec<u8> {
    let mut v = vec![5, cmd, 0];
    v.extend_from_slice(addr);
    v.extend_from_slice(&port.to_be_bytes());
    v
}

fn domain(name: &str) -> Vec<u8> {
    let mut v = vec![wire::ATYP_DOMAIN, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v
}

fn userpass(user: &[u8], pass: &[u8]) -> Vec<u8> {
    let mut v = vec![1, user.len() as u8];
    v.extend_from_slice(user);
    v.push(pass.len() as u8);
    v.extend_from_slice(pass);
    v
}

fn request4(cmd: u8, port: u16, ip: [u8; 4], user: &[u8], host: Option<&str>) -> Vec<u8> {
    let mut v = vec![4, cmd];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&ip);
    v.extend_from_slice(user);
    v.push(0);
    if let Some(h) = host {
        v.extend_from_slice(h.as_bytes());
        v.push(0);
    }
    v
}

fn v5(host: &str, port: u16) -> SocksRequest {
    SocksRequest {
        host: host.into(),
        port,
        version: SocksVersion::V5,
    }
}

fn creds() -> SocksAuth {
    SocksAuth {
        username: "alice".into(),
        password: "s3cret".into(),
    }
}

#[tokio::test]
async fn socks5_no_auth_connect_ipv4_ipv6_domain() {
    let cases = [
        (vec![wire::ATYP_IPV4, 10, 1, 2, 3], v5("10.1.2.3", 80)),
        (
            [&[wire::ATYP_IPV6][..], &Ipv6Addr::LOCALHOST.octets()].concat(),
            v5("::1", 80),
        ),
        (domain("example.com"), v5("example.com", 80)),
    ];
    for (addr, want) in cases {
        let mut input = greeting(&[wire::METHOD_NO_AUTH]);
        input.extend(request5(wire::CMD_CONNECT, &addr, 80));
        let (got, sent, closed) = exchange(&input, None).await;
        assert_eq!(got.unwrap(), want);
        assert_eq!(sent, [5, 0], "method selection only; the reply comes later");
        assert!(!closed);
    }
}

#[tokio::test]
async fn bytes_after_the_request_stay_in_the_socket() {
    let (mut client, mut server) = pair().await;
    let mut input = greeting(&[wire::METHOD_NO_AUTH]);
    input.extend(request5(wire::CMD_CONNECT, &domain("h"), 1));
    input.extend_from_slice(b"GET / HTTP/1.0\r\n");
    client.write_all(&input).await.unwrap();
    assert_eq!(accept(&mut server, None, T).await.unwrap(), v5("h", 1));
    let mut rest = [0u8; 16];
    server.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"GET / HTTP/1.0\r\n");
}

#[tokio::test]
async fn socks5_username_password() {
    let auth = creds();
    let mut input = greeting(&[wire::METHOD_NO_AUTH, wire::METHOD_USERNAME_PASSWORD]);
    input.extend(userpass(b"alice", b"s3cret"));
    input.extend(request5(wire::CMD_CONNECT, &[1, 127, 0, 0, 1], 22));
    let (got, sent, closed) = exchange(&input, Some(&auth)).await;
    assert_eq!(got.unwrap(), v5("127.0.0.1", 22));
    assert_eq!(sent, [5, 2, 1, 0]);
    assert!(!closed);

    for (user, pass) in [
        (&b"alice"[..], &b"wrong!"[..]),
        (b"bob", b"s3cret"),
        (b"alice", b""),
    ] {
        let mut input = greeting(&[wire::METHOD_USERNAME_PASSWORD]);
        input.extend(userpass(user, pass));
        let (got, sent, closed) = exchange(&input, Some(&auth)).await;
        assert!(matches!(got, Err(SocksError::AuthFailed)), "{got:?}");
        assert_eq!(sent, [5, 2, 1, 1]);
        assert!(closed, "RFC 1929: the server MUST close the connection");
    }
}

#[tokio::test]
async fn no_auth_refused_when_auth_required() {
    let input = greeting(&[wire::METHOD_NO_AUTH]);
    let (got, sent, closed) = exchange(&input, Some(&creds())).await;
    assert!(
        matches!(got, Err(SocksError::NoAcceptableMethod)),
        "{got:?}"
    );
    assert_eq!(sent, [5, 0xFF]);
    assert!(closed);
}

#[tokio::test]
async fn username_password_refused_when_not_configured() {
    let input = greeting(&[wire::METHOD_USERNAME_PASSWORD]);
    let (got, sent, _) = exchange(&input, None).await;
    assert!(
        matches!(got, Err(SocksError::NoAcceptableMethod)),
        "{got:?}"
    );
    assert_eq!(sent, [5, 0xFF]);
}

#[tokio::test]
async fn socks4_and_socks4a() {
    let input = request4(wire::CMD_CONNECT, 443, [192, 0, 2, 7], b"user", None);
    let (got, sent, _) = exchange(&input, None).await;
    let want = SocksRequest {
        host: "192.0.2.7".into(),
        port: 443,
        version: SocksVersion::V4,
    };
    assert_eq!(got.unwrap(), want);
    assert!(sent.is_empty());

    let input = request4(
        wire::CMD_CONNECT,
        443,
        [0, 0, 0, 1],
        b"",
        Some("example.org"),
    );
    let (got, _, _) = exchange(&input, None).await;
    let want = SocksRequest {
        host: "example.org".into(),
        port: 443,
        version: SocksVersion::V4a,
    };
    assert_eq!(got.unwrap(), want);
}

#[tokio::test]
async fn socks4_refused_when_auth_required() {
    let input = request4(wire::CMD_CONNECT, 80, [10, 0, 0, 1], b"", None);
    let (got, sent, closed) = exchange(&input, Some(&creds())).await;
    assert!(matches!(got, Err(SocksError::AuthRequired)), "{got:?}");
    assert_eq!(sent, [0, 0x5b, 0, 0, 0, 0, 0, 0]);
    assert!(closed);
}

#[tokio::test]
async fn only_connect_is_supported() {
    for cmd in [wire::CMD_BIND, wire::CMD_UDP_ASSOCIATE, 0x09] {
        let mut input = greeting(&[wire::METHOD_NO_AUTH]);
        input.extend(request5(cmd, &[1, 10, 0, 0, 1], 80));
        let (got, sent, closed) = exchange(&input, None).await;
        assert!(matches!(got, Err(SocksError::CommandNotSupported(c)) if c == cmd));
        assert_eq!(sent, [5, 0, 5, 0x07, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert!(closed);
    }
    let input = request4(wire::CMD_BIND, 80, [10, 0, 0, 1], b"", None);
    let (got, sent, _) = exchange(&input, None).await;
    assert!(matches!(got, Err(SocksError::CommandNotSupported(2))));
    assert_eq!(sent, [0, 0x5b, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn malformed_requests_are_refused() {
    // Unknown address type: RFC 1928 §6 X'08'.
    let mut input = greeting(&[wire::METHOD_NO_AUTH]);
    input.extend_from_slice(&[5, 1, 0, 0x02, 1, 2]);
    let (got, sent, _) = exchange(&input, None).await;
    assert!(matches!(
        got,
        Err(SocksError::Malformed(wire::WireError::AddressType(2)))
    ));
    assert_eq!(sent[2..4], [5, 0x08]);
    // Unknown protocol version.
    let (got, sent, _) = exchange(b"GET / HTTP/1.1\r\n\r\n", None).await;
    assert!(matches!(
        got,
        Err(SocksError::Malformed(wire::WireError::Version(b'G')))
    ));
    assert!(sent.is_empty());
    // A SOCKS4 user id with no NUL within 255 bytes.
    let mut input = request4(wire::CMD_CONNECT, 80, [10, 0, 0, 1], &[b'a'; 300], None);
    input.truncate(8 + 300);
    let (got, _, _) = exchange(&input, None).await;
    assert!(matches!(
        got,
        Err(SocksError::Malformed(wire::WireError::TooLong(_)))
    ));
}

#[tokio::test]
async fn truncated_input_is_an_error_not_a_hang() {
    let mut full = greeting(&[wire::METHOD_NO_AUTH]);
    full.extend(request5(wire::CMD_CONNECT, &domain("example.com"), 80));
    for cut in 0..full.len() {
        let (mut client, mut server) = pair().await;
        client.write_all(&full[..cut]).await.unwrap();
        client.shutdown().await.unwrap();
        let got = accept(&mut server, None, T).await;
        assert!(matches!(got, Err(SocksError::Io(_))), "cut {cut}: {got:?}");
    }
    let (_client, mut server) = pair().await;
    let got = accept(&mut server, None, Duration::from_millis(50)).await;
    assert!(matches!(got, Err(SocksError::Timeout)), "{got:?}");
}

#[tokio::test]
async fn random_bytes_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300 {
        let len = (next() % 600) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Steer a third of the cases past the version byte.
        if let Some(first) = input.first_mut() {
            *first = [*first, 4, 5][i % 3];
        }
        let auth = (i % 2 == 0).then(creds);
        let (mut client, mut server) = pair().await;
        client.write_all(&input).await.unwrap();
        client.shutdown().await.unwrap();
        // Any outcome but a panic or a hang is fine.
        let _ = accept(&mut server, auth.as_ref(), T).await;
    }
}

#[tokio::test]
async fn reply_bytes() {
    let refused = OpenError::Refused {
        reason: OpenFailure::CONNECT_FAILED,
        description: "Connection refused".into(),
    };
    for (version, outcome, want) in [
        (SocksVersion::V5, Ok(()), vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
        (
            SocksVersion::V5,
            Err(&refused),
            vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0],
        ),
        (SocksVersion::V4, Ok(()), vec![0, 0x5a, 0, 0, 0, 0, 0, 0]),
        (
            SocksVersion::V4a,
            Err(&refused),
            vec![0, 0x5b, 0, 0, 0, 0, 0, 0],
        ),
    ] {
        let (mut client, mut server) = pair().await;
        let req = SocksRequest {
            host: "h".into(),
            port: 1,
            version,
        };
        reply(&mut server, &req, outcome).await.unwrap();
        let mut got = vec![0u8; want.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, want, "{version:?} {outcome:?}");
    }
}

#[test]
fn reply_code_mapping() {
    let refused = |reason, description: &str| OpenError::Refused {
        reason,
        description: description.into(),
    };
    let cf = OpenFailure::CONNECT_FAILED;
    let cases = [
        (refused(cf, "Connection refused"), 0x05),
        (refused(cf, "connect failed: Connection refused"), 0x05),
        (refused(cf, "Network is unreachable"), 0x04),
        (refused(cf, "No route to host"), 0x04),
        (refused(cf, "failed to lookup address information"), 0x04),
        (refused(cf, "Name or service not known"), 0x04),
        (refused(cf, "could not resolve host"), 0x04),
        (refused(cf, "Connection timed out"), 0x01),
        (refused(cf, ""), 0x01),
        (
            refused(OpenFailure::ADMINISTRATIVELY_PROHIBITED, "open failed"),
            0x02,
        ),
        (
            refused(OpenFailure::RESOURCE_SHORTAGE, "Connection refused"),
            0x01,
        ),
        (refused(OpenFailure::UNKNOWN_CHANNEL_TYPE, ""), 0x01),
        (refused(OpenFailure(99), ""), 0x01),
        (OpenError::Closed, 0x03),
        (OpenError::Channel("oops".into()), 0x01),
    ];
    for (err, want) in cases {
        assert_eq!(reply_code(&err), want, "{err:?}");
    }
}

/// Starts `serve` with an `open` that reports each call and then fails with `err`.
async fn serve_failing(
    err: OpenError,
    max_conns: usize,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(SocksRequest, SocketAddr)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(serve(listener, None, max_conns, move |req, peer| {
        let tx = tx.clone();
        let err = err.clone();
        async move {
            tx.send((req, peer)).unwrap();
            Err(err)
        }
    }));
    (addr, rx)
}

#[tokio::test]
async fn serve_reports_open_failure_to_the_client() {
    let err = OpenError::Refused {
        reason: OpenFailure::CONNECT_FAILED,
        description: "Connection refused".into(),
    };
    let (addr, mut calls) = serve_failing(err, 8).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut input = greeting(&[wire::METHOD_NO_AUTH]);
    input.extend(request5(wire::CMD_CONNECT, &domain("db.internal"), 5432));
    client.write_all(&input).await.unwrap();
    let (sent, closed) = drain(&mut client).await;
    assert_eq!(sent, [5, 0, 5, 0x05, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert!(closed);
    let (req, peer) = calls.recv().await.unwrap();
    assert_eq!(req, v5("db.internal", 5432));
    assert_eq!(peer, client.local_addr().unwrap());

    let mut client = TcpStream::connect(addr).await.unwrap();
    let input = request4(wire::CMD_CONNECT, 80, [0, 0, 0, 9], b"u", Some("web"));
    client.write_all(&input).await.unwrap();
    let (sent, closed) = drain(&mut client).await;
    assert_eq!(sent, [0, 0x5b, 0, 0, 0, 0, 0, 0]);
    assert!(closed);
}

#[tokio::test]
async fn serve_closes_connections_beyond_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut opened) = mpsc::unbounded_channel();
    tokio::spawn(serve(listener, None, 1, move |_, _| {
        let tx = tx.clone();
        async move {
            tx.send(()).unwrap();
            std::future::pending::<Result<ChannelStream, OpenError>>().await
        }
    }));
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut input = greeting(&[wire::METHOD_NO_AUTH]);
    input.extend(request5(wire::CMD_CONNECT, &domain("h"), 1));
    first.write_all(&input).await.unwrap();
    opened.recv().await.unwrap();

    let mut second = TcpStream::connect(addr).await.unwrap();
    let _ = second.write_all(&greeting(&[wire::METHOD_NO_AUTH])).await;
    let (sent, closed) = drain(&mut second).await;
    assert!(
        sent.is_empty() && closed,
        "second connection: {sent:?} closed={closed}"
    );

    let (sent, closed) = drain(&mut first).await;
    assert_eq!(sent, [5, 0]);
    assert!(
        !closed,
        "the first connection is still waiting for its channel"
    );
}

// Decoders: round trips and arbitrary input.

fn finish<T: std::fmt::Debug>(d: Result<Decode<T>, wire::WireError>) -> (T, usize) {
    match d {
        Ok(Decode::Done(v, n)) => (v, n),
        other => panic!("not done: {other:?}"),
    }
}

/// Every strict prefix of a valid message asks for more, never more than the rest.
fn check_prefixes<T: std::fmt::Debug>(
    bytes: &[u8],
    decode: fn(&[u8]) -> Result<Decode<T>, wire::WireError>,
) {
    for cut in 0..bytes.len() {
        match decode(&bytes[..cut]) {
            Ok(Decode::Need(n)) => assert!(n >= 1 && cut + n <= bytes.len(), "cut {cut} need {n}"),
            other => panic!("prefix {cut} of {bytes:?}: {other:?}"),
        }
    }
}

fn check_arbitrary<T>(bytes: &[u8], decode: fn(&[u8]) -> Result<Decode<T>, wire::WireError>) {
    match decode(bytes) {
        Ok(Decode::Need(n)) => assert!(n >= 1 && bytes.len() + n <= wire::MAX_MESSAGE),
        Ok(Decode::Done(_, n)) => assert!(n <= bytes.len()),
        Err(_) => {}
    }
}

fn hostname() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{1,255}"
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        check_arbitrary(&bytes, wire::decode_hello);
        check_arbitrary(&bytes, wire::decode_socks5_request);
        check_arbitrary(&bytes, wire::decode_userpass);
    }

    #[test]
    fn greeting_round_trip(methods in proptest::collection::vec(any::<u8>(), 0..=255)) {
        let bytes = greeting(&methods);
        check_prefixes(&bytes, wire::decode_hello);
        prop_assert_eq!(finish(wire::decode_hello(&bytes)), (Hello::Socks5 { methods }, bytes.len()));
    }

    #[test]
    fn socks5_request_round_trip(cmd: u8, port: u16, v4: [u8; 4], v6: [u8; 16], name in hostname()) {
        for (addr, host) in [
            ([&[wire::ATYP_IPV4][..], &v4].concat(), Ipv4Addr::from(v4).to_string()),
            ([&[wire::ATYP_IPV6][..], &v6].concat(), Ipv6Addr::from(v6).to_string()),
            (domain(&name), name.clone()),
        ] {
            let bytes = request5(cmd, &addr, port);
            check_prefixes(&bytes, wire::decode_socks5_request);
            let want = Socks5Request { command: cmd, host, port };
            prop_assert_eq!(finish(wire::decode_socks5_request(&bytes)), (want, bytes.len()));
        }
    }

    #[test]
    fn userpass_round_trip(
        username in proptest::collection::vec(any::<u8>(), 0..=255),
        password in proptest::collection::vec(any::<u8>(), 0..=255),
    ) {
        let bytes = userpass(&username, &password);
        check_prefixes(&bytes, wire::decode_userpass);
        let want = UserPass { username, password };
        prop_assert_eq!(finish(wire::decode_userpass(&bytes)), (want, bytes.len()));
    }

    #[test]
    fn socks4_round_trip(
        cmd: u8,
        port: u16,
        ip: [u8; 4],
        socks4a: bool,
        user in proptest::collection::vec(1u8.., 0..=255),
        name in hostname(),
    ) {
        let ip = if socks4a { [0, 0, 0, ip[3].max(1)] } else { ip };
        let v4a = ip[..3] == [0, 0, 0] && ip[3] != 0;
        let bytes = request4(cmd, port, ip, &user, v4a.then_some(name.as_str()));
        check_prefixes(&bytes, wire::decode_hello);
        let (kind, host) = if v4a {
            (Socks4Kind::V4a, name)
        } else {
            (Socks4Kind::V4, Ipv4Addr::from(ip).to_string())
        };
        let want = Hello::Socks4(Socks4Request { kind, command: cmd, port, host, user_id: user });
        prop_assert_eq!(finish(wire::decode_hello(&bytes)), (want, bytes.len()));
    }
}
