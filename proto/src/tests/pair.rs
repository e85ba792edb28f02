//! Handshake, authentication, channels, windows and re-keying between two in-memory peers.

use std::time::Duration;

use super::util::{Pair, pattern, user_key};
use crate::connection::{ChannelConfig, MAX_ADJUST_STEP};
use crate::transport::cipher::CipherAlg;
use crate::transport::kex::KexAlg;
use crate::{ChannelKind, DisconnectReason, Ed25519Key, Error, Event, GlobalRequest};

#[test]
fn handshake_with_each_cipher_and_kex() {
    for cipher in CipherAlg::ALL {
        for kex in KexAlg::ALL {
            let (mut c, s) = Pair::default_configs();
            c.transport.preferences.ciphers = vec![cipher];
            c.transport.preferences.kex = vec![kex];
            let mut pair = Pair::new(c, s);
            pair.run();
            assert!(
                pair.client.is_authenticated(),
                "{cipher:?}/{kex:?}: {:?}",
                pair.client_error
            );
            let n = pair.client.negotiated().unwrap();
            assert_eq!((n.cipher_c2s, n.cipher_s2c, n.kex), (cipher, cipher, kex));
            assert!(n.strict, "both sides offer strict kex");
            assert_eq!(
                pair.server_event(|e| matches!(e, Event::Authenticated { .. })),
                Some(Event::Authenticated {
                    user: "alice".into()
                })
            );
            let (cid, sid) = pair.open_channel();
            let data = pattern(300_000);
            assert!(
                pair.transfer(cid, sid, &data, 1 << 20) == data,
                "data corrupted"
            );
        }
    }
}

#[test]
fn window_exhaustion_and_refill() {
    let mut pair = Pair::connected_with_windows(64 * 1024, 16 * 1024);
    let (cid, sid) = pair.open_channel();
    // The server does not read: the client may send exactly one window and no more.
    let data = pattern(200_000);
    let mut sent = 0;
    for _ in 0..10 {
        sent += pair.client.channel_send(cid, &data[sent..]).unwrap();
        pair.run();
    }
    assert_eq!(sent, 64 * 1024, "sender stops at the peer's window");
    assert_eq!(pair.server.channel_data(sid).len(), 64 * 1024);
    // Reading half the window returns it to the sender, who is told it may write again.
    pair.server.channel_consume(sid, 32 * 1024);
    pair.run();
    assert!(
        pair.client_event(|e| *e == Event::ChannelWritable { id: cid })
            .is_some()
    );
    let more = pair.client.channel_send(cid, &data[sent..]).unwrap();
    assert_eq!(more, 32 * 1024);
    sent += more;
    // And the whole transfer completes with a slow reader.
    pair.run();
    let mut received = data[..32 * 1024].to_vec();
    while !pair.server.channel_data(sid).is_empty() {
        let chunk = pair.server.channel_data(sid).to_vec();
        pair.server.channel_consume(sid, chunk.len());
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received.len(), sent);
    received.extend_from_slice(&pair.transfer(cid, sid, &data[sent..], 5000));
    assert_eq!(received.len(), data.len());
    assert!(received == data, "data corrupted");
}

#[test]
fn a_large_window_is_returned_in_steps_of_at_most_one_mib() {
    // With a window grown to the default 16 MiB the sender must not wait for half of it to
    // be read before it hears from the receiver (its keepalives would see a silent peer).
    let defaults = ChannelConfig::default();
    let mut pair = Pair::connected_with_windows(defaults.window, defaults.max_packet);
    let (cid, sid) = pair.open_channel();
    let window = ChannelConfig::default().window as usize;
    let data = pattern(window + MAX_ADJUST_STEP as usize);
    let mut sent = 0;
    while sent < window {
        let n = pair.client.channel_send(cid, &data[sent..]).unwrap();
        assert!(n > 0, "the window closed after {sent} bytes");
        sent += n;
        pair.run();
    }
    assert_eq!(sent, window, "sender stops at the peer's window");
    pair.server.channel_consume(sid, MAX_ADJUST_STEP as usize);
    pair.run();
    let more = pair.client.channel_send(cid, &data[sent..]).unwrap();
    assert_eq!(more, MAX_ADJUST_STEP as usize, "one step came back");
}

#[test]
fn rekey_by_volume_under_load_keeps_data_intact() {
    let (mut c, s) = Pair::default_configs();
    c.transport.rekey_bytes = 1 << 20;
    let mut pair = Pair::new(c, s);
    pair.run();
    let (cid, sid) = pair.open_channel();
    let data = pattern(8 << 20);
    assert!(
        pair.transfer(cid, sid, &data, 1 << 20) == data,
        "data corrupted"
    );
    let rekeys = pair
        .client_events
        .iter()
        .filter(|e| **e == Event::KeyExchangeDone { initial: false })
        .count();
    assert!(rekeys >= 6, "expected a re-key per MiB, saw {rekeys}");
    let server_rekeys = pair
        .server_events
        .iter()
        .filter(|e| **e == Event::KeyExchangeDone { initial: false })
        .count();
    assert_eq!(rekeys, server_rekeys);
    let session_id = pair.client.session_id().unwrap().to_vec();
    assert_eq!(
        pair.server.session_id(),
        Some(&session_id[..]),
        "session id survives re-keys"
    );
}

#[test]
fn rekey_by_time_from_the_server_side() {
    let (c, mut s) = Pair::default_configs();
    s.transport.rekey_interval = Duration::from_secs(600);
    let mut pair = Pair::new(c, s);
    pair.run();
    let (cid, sid) = pair.open_channel();
    pair.advance(Duration::from_secs(601));
    assert!(
        pair.server_event(|e| *e == Event::KeyExchangeDone { initial: false })
            .is_some()
    );
    assert!(
        pair.client_event(|e| *e == Event::KeyExchangeDone { initial: false })
            .is_some()
    );
    let data = pattern(100_000);
    assert!(
        pair.transfer(cid, sid, &data, 4096) == data,
        "data corrupted"
    );
}

#[test]
fn channel_traffic_sent_during_rekey_is_delivered_after_it() {
    let mut pair = Pair::connected();
    let (cid, sid) = pair.open_channel();
    pair.client.rekey(pair.now);
    // Mid-exchange the channel refuses bulk data and promises to say when it may continue.
    assert_eq!(pair.client.channel_send(cid, b"during").unwrap(), 0);
    pair.run();
    assert!(
        pair.client_event(|e| *e == Event::ChannelWritable { id: cid })
            .is_some()
    );
    assert_eq!(pair.transfer(cid, sid, b"after", 10), b"after");
}

#[test]
fn concurrent_channel_open_and_close_from_both_sides() {
    let mut pair = Pair::connected();
    let mut pairs = Vec::new();
    for _ in 0..40 {
        let cid = pair
            .client
            .open_channel(ChannelKind::DirectTcpip {
                host: "h".into(),
                port: 1,
                originator: "o".into(),
                originator_port: 2,
            })
            .unwrap();
        pairs.push(cid);
    }
    pair.run();
    let server_ids: Vec<_> = std::iter::from_fn(|| {
        match pair.server_event(|e| matches!(e, Event::ChannelOpenRequest { .. })) {
            Some(Event::ChannelOpenRequest { id, .. }) => Some(id),
            _ => None,
        }
    })
    .collect();
    assert_eq!(server_ids.len(), 40);
    assert_eq!(pair.client.channel_count(), 40);
    // Client closes the even ones, server the odd ones, all before either side hears back.
    for (i, (&cid, &sid)) in pairs.iter().zip(&server_ids).enumerate() {
        if i % 2 == 0 {
            pair.client.close_channel(cid).unwrap()
        } else {
            pair.server.close_channel(sid).unwrap()
        }
    }
    pair.run();
    // Each side learns of the other's closes; closing those releases the rest.
    while let Some(Event::ChannelClosed { id }) =
        pair.client_event(|e| matches!(e, Event::ChannelClosed { .. }))
    {
        pair.client.close_channel(id).unwrap();
    }
    while let Some(Event::ChannelClosed { id }) =
        pair.server_event(|e| matches!(e, Event::ChannelClosed { .. }))
    {
        pair.server.close_channel(id).unwrap();
    }
    pair.run();
    assert_eq!(pair.client.channel_count(), 0);
    assert_eq!(pair.server.channel_count(), 0);
    assert!(pair.client_error.is_none() && pair.server_error.is_none());
}

#[test]
fn eof_then_close() {
    let mut pair = Pair::connected();
    let (cid, sid) = pair.open_channel();
    pair.client.channel_send(cid, b"last words").unwrap();
    pair.client.channel_eof(cid).unwrap();
    pair.run();
    assert!(
        pair.server_event(|e| *e == Event::ChannelEof { id: sid })
            .is_some()
    );
    assert_eq!(pair.server.channel_data(sid), b"last words");
    assert!(
        pair.client.channel_send(cid, b"more").is_err(),
        "no data after our own EOF"
    );
    // The server still talks back after the client's EOF, then closes.
    pair.server.channel_send(sid, b"reply").unwrap();
    pair.server.close_channel(sid).unwrap();
    pair.run();
    assert_eq!(pair.client.channel_data(cid), b"reply");
    assert!(
        pair.client_event(|e| *e == Event::ChannelClosed { id: cid })
            .is_some()
    );
    pair.client.close_channel(cid).unwrap();
    assert_eq!(pair.client.channel_count(), 0);
    assert_eq!(pair.server.channel_count(), 0);
}

#[test]
fn open_rejected_with_reason() {
    let mut pair = Pair::connected();
    pair.accept_channels = false;
    let cid = pair
        .client
        .open_channel(ChannelKind::Tun {
            mode: crate::TunMode::PointToPoint,
            unit: None,
        })
        .unwrap();
    pair.run();
    let Some(Event::ChannelOpenRequest { id, kind }) =
        pair.server_event(|e| matches!(e, Event::ChannelOpenRequest { .. }))
    else {
        panic!()
    };
    assert_eq!(
        kind,
        ChannelKind::Tun {
            mode: crate::TunMode::PointToPoint,
            unit: None
        }
    );
    pair.server
        .reject_channel(
            id,
            crate::OpenFailure::ADMINISTRATIVELY_PROHIBITED,
            "no tunnels for you",
        )
        .unwrap();
    pair.run();
    assert_eq!(
        pair.client_event(|e| matches!(e, Event::ChannelOpenFailed { .. })),
        Some(Event::ChannelOpenFailed {
            id: cid,
            reason: crate::OpenFailure::ADMINISTRATIVELY_PROHIBITED,
            description: "no tunnels for you".into()
        })
    );
    assert_eq!(pair.client.channel_count(), 0);
}

#[test]
fn tcpip_forward_replies_in_order_with_port() {
    let mut pair = Pair::connected();
    let a = pair
        .client
        .global_request(GlobalRequest::TcpipForward {
            address: "127.0.0.1".into(),
            port: 0,
        })
        .unwrap();
    let b = pair
        .client
        .global_request(GlobalRequest::TcpipForward {
            address: "127.0.0.1".into(),
            port: 8080,
        })
        .unwrap();
    pair.run();
    let reqs: Vec<_> = pair
        .server_events
        .iter()
        .filter_map(|e| match e {
            Event::GlobalRequest { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 2);
    // Answer the second first: replies must still go out in request order.
    pair.server.reply_global_request(reqs[1], Err(()));
    pair.run();
    assert!(
        pair.client_event(|e| matches!(e, Event::GlobalReply { .. }))
            .is_none()
    );
    pair.server.reply_global_request(reqs[0], Ok(Some(40000)));
    pair.run();
    assert_eq!(
        pair.client_event(|e| matches!(e, Event::GlobalReply { .. })),
        Some(Event::GlobalReply {
            id: a,
            result: Ok(Some(40000))
        })
    );
    assert_eq!(
        pair.client_event(|e| matches!(e, Event::GlobalReply { .. })),
        Some(Event::GlobalReply {
            id: b,
            result: Err(())
        })
    );
}

#[test]
fn keepalive_measures_rtt_and_detects_dead_peer() {
    let (mut c, s) = Pair::default_configs();
    c.keepalive = Some(Duration::from_secs(15));
    c.keepalive_max = 3;
    let mut pair = Pair::new(c, s);
    pair.run();
    pair.advance(Duration::from_secs(16));
    assert!(
        pair.client_event(|e| matches!(e, Event::KeepaliveRtt(_)))
            .is_some()
    );
    // Now the server goes silent: its bytes are dropped.
    for _ in 0..4 {
        pair.now += Duration::from_secs(16);
        let _ = pair
            .client
            .handle_timeout(pair.now)
            .map_err(|e| pair.client_error = Some(e));
        let mut sink = Vec::new();
        pair.client.poll_transmit(&mut sink);
    }
    assert_eq!(pair.client_error, Some(Error::KeepaliveTimeout(3)));
}

/// A peer that never answers keepalive probes but is not silent either (here an IGNORE after
/// each interval): one probe waits for its answer, and no more are sent (each used to add an
/// entry that only an answer removes).
#[test]
fn keepalives_a_peer_never_answers_do_not_pile_up() {
    let (mut c, s) = Pair::default_configs();
    c.keepalive = Some(Duration::from_secs(15));
    c.keepalive_max = 3;
    let mut pair = Pair::new(c, s);
    pair.run();
    let mut sent_after_first = 0;
    for round in 0..50 {
        pair.now += Duration::from_secs(16);
        pair.client.handle_timeout(pair.now).unwrap();
        let mut out = Vec::new();
        pair.client.poll_transmit(&mut out);
        if round > 0 {
            sent_after_first += out.len();
        }
        // The probe is dropped; the server says something else.
        pair.server
            .transport_mut_for_tests()
            .tx
            .send(|b| b.extend_from_slice(&[2, 0, 0, 0, 0]));
        let mut back = Vec::new();
        pair.server.poll_transmit(&mut back);
        pair.client.handle_input(&back, pair.now).unwrap();
    }
    assert_eq!(sent_after_first, 0, "probes sent while one was unanswered");
}

#[test]
fn unknown_host_key_is_refused() {
    let (c, s) = Pair::default_configs();
    let mut pair = Pair::new(c, s);
    pair.trusted_host_key = Ed25519Key::from_seed(&[99; 32]).public();
    pair.run();
    assert!(matches!(
        pair.client_error,
        Some(Error::HostKeyRejected { .. })
    ));
    assert!(
        matches!(
            pair.server_error,
            Some(Error::PeerDisconnected {
                reason: DisconnectReason::HOST_KEY_NOT_VERIFIABLE,
                ..
            })
        ),
        "{:?}",
        pair.server_error
    );
}

#[test]
fn key_not_authorized_fails_and_second_identity_succeeds() {
    let stranger = Ed25519Key::from_seed(&[77; 32]);
    let (mut c, s) = Pair::default_configs();
    c.identities = vec![stranger.clone().into()];
    let mut pair = Pair::new(c, s);
    pair.run();
    assert_eq!(
        pair.client_error,
        Some(Error::AuthFailed {
            methods: "publickey".into()
        })
    );
    let (mut c, s) = Pair::default_configs();
    c.identities = vec![stranger.into(), user_key().into()];
    let mut pair = Pair::new(c, s);
    pair.run();
    assert!(pair.client.is_authenticated());
}

#[test]
fn login_grace_time_disconnects_idle_unauthenticated_client() {
    let (c, s) = Pair::default_configs();
    let mut pair = Pair::new(c, s);
    // Only the server speaks; the client never answers.
    pair.server.poll_transmit(&mut Vec::new());
    pair.now += Duration::from_secs(31);
    let err = pair.server.handle_timeout(pair.now).unwrap_err();
    assert_eq!(err, Error::LoginGraceExpired);
}

#[test]
fn external_key_is_offered_first_then_signed_on_request() {
    // An "agent" holds the user key; a stranger's agent key comes first and is not accepted.
    let stranger = Ed25519Key::from_seed(&[78; 32]);
    let (mut c, s) = Pair::default_configs();
    c.identities = vec![
        crate::Identity::External(stranger.public()),
        crate::Identity::External(user_key().public()),
    ];
    let mut pair = Pair::new(c, s);
    pair.agent = vec![stranger, user_key()];
    pair.run();
    assert!(pair.client.is_authenticated(), "{:?}", pair.client_error);
    // Only the accepted key was asked to sign: the stranger's was refused at the query.
    assert_eq!(pair.signatures_made, vec![user_key().public()]);
    // A declined signature moves on and, with nothing left, fails cleanly.
    let (mut c, s) = Pair::default_configs();
    c.identities = vec![crate::Identity::External(user_key().public())];
    let mut pair = Pair::new(c, s);
    pair.agent = vec![];
    pair.run();
    assert_eq!(
        pair.client_error,
        Some(Error::AuthFailed {
            methods: "publickey".into()
        })
    );
}

#[test]
fn tun_channels_keep_one_packet_per_message() {
    use crate::connection::tun::{TunDecoder, encode_ip};
    let mut pair = Pair::connected();
    let (cid, sid) = pair.open_tun();
    let mut a = vec![0u8; 60];
    a[0] = 0x45;
    let mut b = vec![0u8; 1400];
    b[0] = 0x60;
    let mut framed = Vec::new();
    encode_ip(&a, &mut framed);
    encode_ip(&b, &mut framed);
    // A trailing partial frame is left for later, not sent.
    framed.extend_from_slice(&[0, 0, 0, 50, 0, 0]);
    let sent = pair.client.channel_send(cid, &framed).unwrap();
    assert_eq!(sent, framed.len() - 6);
    let before = pair.client.stats().packets_sent;
    pair.run();
    let _ = before;
    let mut d = TunDecoder::default();
    d.push(pair.server.channel_data(sid));
    let p1 = d.next_packet().unwrap().unwrap();
    assert_eq!(
        (p1.af, p1.data.len()),
        (crate::connection::tun::AF_INET, 60)
    );
    let p2 = d.next_packet().unwrap().unwrap();
    assert_eq!(
        (p2.af, p2.data.len()),
        (crate::connection::tun::AF_INET6, 1400)
    );
    assert!(d.next_packet().unwrap().is_none());
}
