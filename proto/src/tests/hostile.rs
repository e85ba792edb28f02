//! Hostile input: each case ends the connection with the matching DISCONNECT reason and never
//! panics.

use super::util::{Pair, host_key};
use crate::conn::{Connection, ServerConfig};
use crate::rng::Random;
use crate::wire::{MsgType, Reader, Writer};
use crate::{DisconnectReason, Error};
use std::time::Instant;

fn server() -> Connection {
    Connection::server_with_random(
        ServerConfig::new(host_key()),
        Random::from_seed([5; 32]),
        Instant::now(),
    )
}

/// Decodes the DISCONNECT at the end of a plaintext transmit buffer.
fn disconnect_reason(out: &[u8]) -> DisconnectReason {
    // Skip the identification line and walk plaintext packets.
    let start = out.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut rest = &out[start..];
    let mut last = None;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let pad = rest[4] as usize;
        let payload = &rest[5..4 + len - pad];
        if payload[0] == MsgType::DISCONNECT.0 {
            last = Some(DisconnectReason(Reader::new(&payload[1..]).u32().unwrap()));
        }
        rest = &rest[4 + len..];
    }
    last.expect("a DISCONNECT was sent")
}

fn feed(conn: &mut Connection, bytes: &[u8]) -> (Error, DisconnectReason) {
    let err = conn.handle_input(bytes, Instant::now()).unwrap_err();
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    (err, disconnect_reason(&out))
}

fn plain_packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut out = Vec::new();
    Writer::new(&mut out)
        .u32((1 + payload.len() + pad) as u32)
        .u8(pad as u8)
        .raw(payload)
        .raw(&vec![0; pad]);
    out
}

#[test]
fn garbage_identification_line() {
    let (err, reason) = feed(&mut server(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(matches!(err, Error::Version(_)));
    assert_eq!(reason, DisconnectReason::PROTOCOL_ERROR);
    let (_, reason) = feed(&mut server(), b"SSH-1.5-old\r\n");
    assert_eq!(reason, DisconnectReason::PROTOCOL_VERSION_NOT_SUPPORTED);
}

#[test]
fn packet_length_of_2_pow_31() {
    let mut input = b"SSH-2.0-evil\r\n".to_vec();
    input.extend_from_slice(&[0x80, 0, 0, 0, 4, 0, 0, 0]);
    let (err, reason) = feed(&mut server(), &input);
    assert!(err.to_string().contains("exceeds"), "{err}");
    assert_eq!(reason, DisconnectReason::PROTOCOL_ERROR);
}

#[test]
fn kexinit_with_no_common_algorithm() {
    let mut payload = Vec::new();
    let mut w = Writer::new(&mut payload);
    w.u8(20)
        .raw(&[0; 16])
        .name_list(&["diffie-hellman-group1-sha1"])
        .name_list(&["ssh-dss"]);
    w.name_list(&["3des-cbc"])
        .name_list(&["3des-cbc"])
        .name_list(&["hmac-md5"])
        .name_list(&["hmac-md5"]);
    w.name_list(&["none"])
        .name_list(&["none"])
        .name_list::<&str>(&[])
        .name_list::<&str>(&[])
        .bool(false)
        .u32(0);
    let mut input = b"SSH-2.0-old\r\n".to_vec();
    input.extend_from_slice(&plain_packet(&payload));
    let (err, reason) = feed(&mut server(), &input);
    assert!(
        err.to_string().contains("no common key exchange algorithm"),
        "{err}"
    );
    assert_eq!(reason, DisconnectReason::KEY_EXCHANGE_FAILED);
}

#[test]
fn channel_message_before_authentication() {
    // A full handshake, then the client sends CHANNEL_OPEN instead of authenticating.
    let (c, s) = Pair::default_configs();
    let mut pair = Pair::new(c, s);
    // Run only until keys are in place: stop the client from authenticating by dropping its
    // SERVICE_REQUEST; then inject a CHANNEL_OPEN through the client's transport.
    for _ in 0..20 {
        pair.step();
        if pair.client.session_id().is_some() && pair.server.session_id().is_some() {
            break;
        }
    }
    assert!(!pair.server.is_authenticated());
    pair.client.transport_mut_for_tests().tx.send(|b| {
        Writer::new(b)
            .u8(MsgType::CHANNEL_OPEN.0)
            .string("session")
            .u32(0)
            .u32(1 << 20)
            .u32(1 << 15);
    });
    pair.run();
    assert!(
        matches!(
            pair.server_error,
            Some(Error::Unexpected {
                msg: MsgType::CHANNEL_OPEN,
                ..
            })
        ),
        "{:?}",
        pair.server_error
    );
    assert!(
        matches!(
            pair.client_error,
            Some(Error::PeerDisconnected {
                reason: DisconnectReason::PROTOCOL_ERROR,
                ..
            })
        ),
        "{:?}",
        pair.client_error
    );
}

#[test]
fn corrupted_tag_after_kex() {
    let mut pair = Pair::connected();
    let cid = pair
        .client
        .open_channel(crate::ChannelKind::Session)
        .unwrap();
    let _ = cid;
    let mut bytes = Vec::new();
    pair.client.poll_transmit(&mut bytes);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let err = pair.server.handle_input(&bytes, pair.now).unwrap_err();
    assert!(matches!(
        err,
        Error::Packet(crate::transport::packet::PacketError::Tag(_))
    ));
    assert_eq!(err.disconnect_reason(), Some(DisconnectReason::MAC_ERROR));
    // The DISCONNECT goes out encrypted; the client decodes it and reports the reason.
    pair.run();
    assert!(
        matches!(
            pair.client_error,
            Some(Error::PeerDisconnected {
                reason: DisconnectReason::MAC_ERROR,
                ..
            })
        ),
        "{:?}",
        pair.client_error
    );
}

#[test]
fn ignore_injected_before_newkeys_breaks_strict_kex() {
    // Terrapin: a message slipped into the initial exchange. With strict kex it is fatal.
    let mut s = server();
    let mut input = b"SSH-2.0-evil\r\n".to_vec();
    input.extend_from_slice(&plain_packet(&[MsgType::IGNORE.0, 0, 0, 0, 0]));
    let mut client_kexinit =
        crate::transport::kex::build_kexinit(&Default::default(), false, true, [0; 16]);
    input.extend_from_slice(&plain_packet(&client_kexinit));
    let (err, reason) = feed(&mut s, &input);
    assert_eq!(err, Error::StrictKex("KEXINIT was not the first packet"));
    assert_eq!(reason, DisconnectReason::PROTOCOL_ERROR);
    // And after KEXINIT, before NEWKEYS.
    let mut s = server();
    let mut input = b"SSH-2.0-evil\r\n".to_vec();
    input.extend_from_slice(&plain_packet(&client_kexinit));
    input.extend_from_slice(&plain_packet(&[MsgType::IGNORE.0, 0, 0, 0, 0]));
    let (err, _) = feed(&mut s, &input);
    assert!(matches!(err, Error::StrictKex(_)), "{err}");
    client_kexinit.clear();
}

#[test]
fn unknown_message_gets_unimplemented_and_connection_survives() {
    let mut pair = Pair::connected();
    pair.client
        .transport_mut_for_tests()
        .tx
        .send(|b| b.extend_from_slice(&[200, 1, 2, 3]));
    pair.run();
    assert!(pair.server_error.is_none() && pair.client_error.is_none());
    let (cid, sid) = pair.open_channel();
    assert_eq!(pair.transfer(cid, sid, b"still here", 100), b"still here");
}

#[test]
fn malformed_channel_open_fails_only_that_channel() {
    let mut pair = Pair::connected();
    // direct-tcpip whose host is not UTF-8.
    pair.client.transport_mut_for_tests().tx.send(|b| {
        Writer::new(b)
            .u8(MsgType::CHANNEL_OPEN.0)
            .string("direct-tcpip")
            .u32(9)
            .u32(1 << 20)
            .u32(1 << 15)
            .string([0xff, 0xfe])
            .u32(80)
            .string("127.0.0.1")
            .u32(1);
    });
    pair.run();
    // The server refused just that channel: its OPEN_FAILURE for channel 9 reached the
    // client (which, having never opened 9, rightly objects). Had the server treated the
    // request as fatal, the client would instead have received a DISCONNECT.
    match &pair.client_error {
        Some(Error::Channel(why)) => assert!(
            why.contains("CHANNEL_OPEN_FAILURE") && why.contains("9"),
            "{why}"
        ),
        other => panic!("expected the client to see an open failure for channel 9, got {other:?}"),
    }
    assert!(
        matches!(pair.server_error, Some(Error::PeerDisconnected { .. })),
        "{:?}",
        pair.server_error
    );
}

/// Logs in half-way: the client offered the authorized key (agent-held), the server said
/// PK_OK, and the client now waits for a signature that never comes.
fn pair_awaiting_auth() -> Pair {
    let (mut c, s) = Pair::default_configs();
    c.identities = vec![crate::Identity::External(super::util::user_key().public())];
    let mut pair = Pair::new(c, s);
    pair.hold_sign_requests = true;
    pair.run();
    assert!(
        pair.client_event(|e| matches!(e, crate::Event::SignRequest { .. }))
            .is_some()
    );
    assert!(!pair.server.is_authenticated());
    assert!(pair.client_error.is_none() && pair.server_error.is_none());
    pair
}

#[test]
fn a_signature_from_another_key_than_the_one_offered_is_refused() {
    // CVE-2024-45337's shape: offer the authorized key, sign with a stranger's.
    let mut pair = pair_awaiting_auth();
    let session_id = pair.server.session_id().unwrap().to_vec();
    let authorized = super::util::user_key();
    let stranger = crate::Ed25519Key::from_seed(&[66; 32]);
    let blob = authorized.public().blob();
    let data = crate::auth::signed_data(&session_id, "alice", "ssh-ed25519", &blob);
    let forged = stranger.sign_blob(&data);
    let mut payload = Vec::new();
    let mut w = Writer::new(&mut payload);
    w.u8(MsgType::USERAUTH_REQUEST.0)
        .string("alice")
        .string("ssh-connection")
        .string("publickey");
    w.bool(true)
        .string("ssh-ed25519")
        .string(&blob)
        .string(&forged);
    pair.client
        .transport_mut_for_tests()
        .tx
        .send(|b| b.extend_from_slice(&payload));
    pair.run();
    // The server answered USERAUTH_FAILURE (which the stalled client, expecting nothing,
    // reports), not SUCCESS.
    assert!(
        matches!(
            &pair.client_error,
            Some(Error::Unexpected {
                msg: MsgType::USERAUTH_FAILURE,
                ..
            })
        ),
        "{:?}",
        pair.client_error
    );
    assert!(
        !pair.server.is_authenticated(),
        "a forged signature must not log in"
    );
    assert!(
        pair.server_event(|e| matches!(e, crate::Event::AuthorizeKey { signed: true, .. }))
            .is_none(),
        "the application is never asked about an unverified key"
    );
}

#[test]
fn window_overrun_and_unknown_channel_are_protocol_errors() {
    for overrun in [true, false] {
        let mut pair = Pair::connected();
        let (_cid, sid) = pair.open_channel();
        let _ = sid;
        // The server's channel id the client addresses is 0; the window is 16 MiB.
        let recipient = if overrun { 0 } else { 77 };
        let len = if overrun { 17 << 20 } else { 10 };
        // Build the message by hand: a real client would never send this.
        let data = vec![0u8; len.min(200_000)];
        for _ in 0..if overrun { 90 } else { 1 } {
            pair.client.transport_mut_for_tests().tx.send(|b| {
                Writer::new(b)
                    .u8(MsgType::CHANNEL_DATA.0)
                    .u32(recipient)
                    .string(&data);
            });
            pair.run();
            if pair.server_error.is_some() {
                break;
            }
        }
        let e = pair
            .server_error
            .clone()
            .unwrap_or_else(|| panic!("overrun={overrun}: no error"));
        assert!(matches!(e, Error::Channel(_)), "{e}");
        assert_eq!(
            e.disconnect_reason(),
            Some(DisconnectReason::PROTOCOL_ERROR)
        );
    }
}

#[test]
fn maximum_packet_size_of_zero_is_refused() {
    let mut pair = Pair::connected();
    pair.client.transport_mut_for_tests().tx.send(|b| {
        let mut w = Writer::new(b);
        w.u8(MsgType::CHANNEL_OPEN.0)
            .string("direct-tcpip")
            .u32(5)
            .u32(1 << 20)
            .u32(0);
        w.string("h").u32(1).string("o").u32(2);
    });
    pair.run();
    // Refused as a channel (OPEN_FAILURE for channel 5, which this hand-made client then
    // rightly objects to), not as a connection, and never offered to the application.
    match &pair.client_error {
        Some(Error::Channel(why)) => assert!(
            why.contains("CHANNEL_OPEN_FAILURE") && why.contains('5'),
            "{why}"
        ),
        other => panic!("expected an open failure for channel 5, got {other:?}"),
    }
    assert!(
        matches!(pair.server_error, Some(Error::PeerDisconnected { .. })),
        "{:?}",
        pair.server_error
    );
    assert!(
        pair.server_event(|e| matches!(e, crate::Event::ChannelOpenRequest { .. }))
            .is_none()
    );
}

/// A user certificate for `key`, signed by a CA made from seed 5.
fn user_certificate(key: &crate::Ed25519Key) -> ssh_key::Certificate {
    let ca = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[5; 32]));
    let certified = key.public().to_ssh_key().key_data().clone();
    let mut b = ssh_key::certificate::Builder::new([1u8; 16], certified, 0, u64::MAX).unwrap();
    b.cert_type(ssh_key::certificate::CertType::User).unwrap();
    b.valid_principal("alice").unwrap();
    b.sign(&ca).unwrap()
}

#[test]
fn a_certified_identity_logs_in_and_the_application_sees_the_certificate() {
    let (mut c, s) = Pair::default_configs();
    let cert = user_certificate(&super::util::user_key());
    c.identities = vec![crate::Identity::certified(super::util::user_key(), &cert).unwrap()];
    let mut pair = Pair::new(c, s);
    pair.run();
    assert!(pair.server.is_authenticated(), "{:?}", pair.server_error);
    assert_eq!(pair.authorize_asked, vec![(true, Some(Box::new(cert)))]);
}

#[test]
fn a_certificate_signed_for_by_another_key_is_refused_before_the_application_is_asked() {
    let mut pair = pair_awaiting_auth();
    let asked_before = pair.authorize_asked.len();
    let session_id = pair.server.session_id().unwrap().to_vec();
    let cert = user_certificate(&super::util::user_key());
    let blob = ssh_key::encoding::Encode::encode_vec(&cert).unwrap();
    let alg = "ssh-ed25519-cert-v01@openssh.com";
    let data = crate::auth::signed_data(&session_id, "alice", alg, &blob);
    let forged = crate::Ed25519Key::from_seed(&[66; 32]).sign_blob(&data);
    // And a truncated certificate, correctly "signed" by the certified key.
    let truncated = blob.get(..blob.len() - 9).unwrap().to_vec();
    let data_t = crate::auth::signed_data(&session_id, "alice", alg, &truncated);
    let sig_t = super::util::user_key().sign_blob(&data_t);
    for (blob, sig) in [(&blob, &forged), (&truncated, &sig_t)] {
        let mut payload = Vec::new();
        let mut w = Writer::new(&mut payload);
        w.u8(MsgType::USERAUTH_REQUEST.0)
            .string("alice")
            .string("ssh-connection")
            .string("publickey");
        w.bool(true).string(alg).string(blob).string(sig);
        pair.client
            .transport_mut_for_tests()
            .tx
            .send(|b| b.extend_from_slice(&payload));
    }
    pair.run();
    assert!(!pair.server.is_authenticated());
    // The server answered USERAUTH_FAILURE, which the stalled client reports.
    assert!(
        matches!(
            &pair.client_error,
            Some(Error::Unexpected {
                msg: MsgType::USERAUTH_FAILURE,
                ..
            })
        ),
        "{:?}",
        pair.client_error
    );
    assert_eq!(
        pair.authorize_asked.len(),
        asked_before,
        "the application is never asked about an unverified certificate"
    );
}

/// An empty CHANNEL_DATA carries nothing. Buffered, it left an empty chunk in front of what
/// followed: the reader saw "nothing buffered" with 20 KiB behind it, and the channel stalled
/// (and an EOF could overtake the data). On a TUN channel each one cost a length prefix, with
/// no window charged, so a peer could grow the buffer without bound.
#[test]
fn empty_channel_data_is_ignored() {
    for tun in [false, true] {
        let mut pair = Pair::connected();
        let (_cid, sid) = if tun {
            pair.open_tun()
        } else {
            pair.open_channel()
        };
        let recipient = 0;
        let data = vec![7u8; 20 * 1024];
        for payload in [&[][..], &[][..], &data[..]] {
            pair.client.transport_mut_for_tests().tx.send(|b| {
                Writer::new(b)
                    .u8(MsgType::CHANNEL_DATA.0)
                    .u32(recipient)
                    .string(payload);
            });
        }
        pair.run();
        assert!(pair.server_error.is_none(), "{:?}", pair.server_error);
        let buffered = pair.server.channel_data(sid);
        let expect = if tun { 4 + data.len() } else { data.len() };
        assert_eq!(
            buffered.len(),
            expect,
            "tun={tun}: the 20 KiB message must be what the reader sees first"
        );
    }
}

/// A peer that never answers the key exchange we started but keeps sending requests that
/// want replies: the replies wait for the exchange to end, and used to pile up without bound.
/// Past 1 MiB of them the connection ends with KEY_EXCHANGE_FAILED.
#[test]
fn requests_during_a_key_exchange_the_peer_never_finishes_end_it() {
    let mut pair = Pair::connected();
    pair.open_channel();
    pair.client.rekey(pair.now);
    // The client's KEXINIT never reaches the server.
    pair.client.poll_transmit(&mut Vec::new());
    let remote = 0; // the client's channel id, as the server addresses it
    let mut ended = None;
    for _ in 0..100 {
        for _ in 0..1000 {
            pair.server.transport_mut_for_tests().tx.send(|b| {
                Writer::new(b)
                    .u8(MsgType::CHANNEL_REQUEST.0)
                    .u32(remote)
                    .string("nonsense@example.com")
                    .u8(1);
            });
        }
        let mut wire = Vec::new();
        pair.server.poll_transmit(&mut wire);
        if let Err(e) = pair.client.handle_input(&wire, pair.now) {
            ended = Some(e);
            break;
        }
    }
    let e = ended.expect("the client must end the connection, not queue replies forever");
    assert!(matches!(e, Error::KexStalled(n) if n > 1 << 20), "{e}");
    assert_eq!(
        e.disconnect_reason(),
        Some(DisconnectReason::KEY_EXCHANGE_FAILED)
    );
}
