//! A client and a server that completed a real handshake (fixed keys and seeds), then send each
//! other the fuzzer's payloads sealed with the session keys, so the bytes reach the decoders
//! behind the encryption: with the first input byte even, the server is still authenticating
//! the client (the userauth decoders); odd, both are authenticated (every connection-protocol
//! decoder, in both roles: channels, windows, requests, tun framing, global requests).
//!
//! After the first byte the input is a sequence of [direction, length (2 bytes), payload]:
//! direction bit 0 clear sends the payload to the server, set to the client.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sshvpn_proto::rng::Random;
use sshvpn_proto::transport::kex::KexAlg;
use sshvpn_proto::{ClientConfig, Connection, Ed25519Key, Event, Identity, ServerConfig};

struct Session {
    client: Connection,
    server: Connection,
    now: Instant,
    authenticate: bool,
    failed: bool,
}

impl Session {
    fn new(authenticate: bool) -> Self {
        let now = Instant::now();
        let user = Ed25519Key::from_seed(&[22; 32]);
        // Before authentication the client's key lives in an "agent" that never answers, so
        // the server stays in the userauth phase.
        let identity = if authenticate {
            Identity::Local(user)
        } else {
            Identity::External(user.public())
        };
        let mut client_config = ClientConfig::new("fuzz", Vec::new());
        client_config.identities = vec![identity];
        // The cheapest method: the fuzzer's time belongs after the handshake.
        client_config.transport.preferences.kex = vec![KexAlg::Curve25519Sha256];
        let server_config = ServerConfig::new(Ed25519Key::from_seed(&[11; 32]));
        let client = Connection::client_with_random(client_config, Random::from_seed([1; 32]), now);
        let server = Connection::server_with_random(server_config, Random::from_seed([2; 32]), now);
        let mut s = Self {
            client,
            server,
            now,
            authenticate,
            failed: false,
        };
        s.pump();
        s
    }

    /// Moves bytes both ways and answers decisions until nothing changes; false once either
    /// side has failed.
    fn pump(&mut self) -> bool {
        let mut buf = Vec::new();
        for _ in 0..1000 {
            let mut progress = false;
            buf.clear();
            self.client.poll_transmit(&mut buf);
            if !buf.is_empty() {
                progress = true;
                if self.server.handle_input(&buf, self.now).is_err() {
                    self.failed = true;
                }
            }
            buf.clear();
            self.server.poll_transmit(&mut buf);
            if !buf.is_empty() {
                progress = true;
                if self.client.handle_input(&buf, self.now).is_err() {
                    self.failed = true;
                }
            }
            while let Some(ev) = self.client.poll_event() {
                progress = true;
                match ev {
                    Event::VerifyHostKey(_) => {
                        let _ = self.client.host_key_verdict(true, self.now);
                    }
                    Event::ChannelOpenRequest { id, .. } => {
                        let _ = self.client.accept_channel(id);
                    }
                    Event::ChannelReadable { id } => {
                        let n = self.client.channel_data(id).len();
                        self.client.channel_consume(id, n);
                    }
                    _ => {}
                }
            }
            while let Some(ev) = self.server.poll_event() {
                progress = true;
                match ev {
                    Event::AuthorizeKey { .. } => {
                        let _ = self.server.authorize_key(self.authenticate, self.now);
                    }
                    Event::ChannelOpenRequest { id, .. } => {
                        let _ = self.server.accept_channel(id);
                    }
                    Event::ChannelReadable { id } => {
                        let n = self.server.channel_data(id).len();
                        self.server.channel_consume(id, n);
                    }
                    _ => {}
                }
            }
            if self.failed {
                return false;
            }
            if !progress {
                return true;
            }
        }
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&stage, mut rest)) = data.split_first() else {
        return;
    };
    let mut s = Session::new(stage & 1 == 1);
    if s.failed {
        return;
    }
    while let [direction, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        if direction & 1 == 0 {
            s.client.send_raw_payload_for_fuzzing(payload);
        } else {
            s.server.send_raw_payload_for_fuzzing(payload);
        }
        if !s.pump() {
            break;
        }
    }
    s.now += Duration::from_secs(60);
    let _ = s.server.handle_timeout(s.now);
    let _ = s.client.handle_timeout(s.now);
});
