//! `Pair`: a client and a server `Connection` wired back to back, with simulated time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::conn::{ClientConfig, Connection, ServerConfig};
use crate::rng::Random;
use crate::{ChannelId, Ed25519Key, Error, Event, HostKey, PublicKey};

pub fn host_key() -> Ed25519Key {
    Ed25519Key::from_seed(&[11; 32])
}

pub fn user_key() -> Ed25519Key {
    Ed25519Key::from_seed(&[22; 32])
}

pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    pub client_events: VecDeque<Event>,
    pub server_events: VecDeque<Event>,
    /// Host key the client trusts.
    pub trusted_host_key: PublicKey,
    /// Keys the server authorizes.
    pub authorized: Vec<PublicKey>,
    /// Server accepts every channel open when true.
    pub accept_channels: bool,
    pub client_error: Option<Error>,
    pub server_error: Option<Error>,
    /// Keys the client's "agent" holds, for `Event::SignRequest`.
    pub agent: Vec<Ed25519Key>,
    /// Leave `SignRequest`s unanswered (in `client_events`): the client then waits mid-auth.
    pub hold_sign_requests: bool,
    /// Keys the agent was asked to sign with.
    pub signatures_made: Vec<PublicKey>,
    /// Every `AuthorizeKey` the server's application was asked: (signed, certificate).
    pub authorize_asked: Vec<(bool, Option<Box<ssh_key::Certificate>>)>,
    /// Bytes in flight, so tests can tamper with them.
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
}

impl Pair {
    pub fn new(client: ClientConfig, server: ServerConfig) -> Self {
        let now = Instant::now();
        let trusted_host_key = server.host_key.public();
        Self {
            client: Connection::client_with_random(client, Random::from_seed([1; 32]), now),
            server: Connection::server_with_random(server, Random::from_seed([2; 32]), now),
            now,
            client_events: VecDeque::new(),
            server_events: VecDeque::new(),
            trusted_host_key,
            authorized: vec![user_key().public()],
            accept_channels: true,
            agent: Vec::new(),
            hold_sign_requests: false,
            signatures_made: Vec::new(),
            authorize_asked: Vec::new(),
            client_error: None,
            server_error: None,
            to_server: Vec::new(),
            to_client: Vec::new(),
        }
    }

    pub fn default_configs() -> (ClientConfig, ServerConfig) {
        (
            ClientConfig::new("alice", vec![user_key()]),
            ServerConfig::new(host_key()),
        )
    }

    /// Moves bytes and answers decisions until nothing changes.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("pair did not settle");
    }

    pub fn step(&mut self) -> bool {
        let mut progress = false;
        self.client.poll_transmit(&mut self.to_server);
        self.server.poll_transmit(&mut self.to_client);
        if !self.to_server.is_empty() && self.server_error.is_none() {
            let data = std::mem::take(&mut self.to_server);
            if let Err(e) = self.server.handle_input(&data, self.now) {
                self.server_error = Some(e);
            }
            progress = true;
        }
        if !self.to_client.is_empty() && self.client_error.is_none() {
            let data = std::mem::take(&mut self.to_client);
            if let Err(e) = self.client.handle_input(&data, self.now) {
                self.client_error = Some(e);
            }
            progress = true;
        }
        while let Some(ev) = self.client.poll_event() {
            progress = true;
            match ev {
                Event::VerifyHostKey(key) => {
                    let ok = key == HostKey::from(self.trusted_host_key);
                    if let Err(e) = self.client.host_key_verdict(ok, self.now) {
                        self.client_error = Some(e);
                    }
                }
                Event::SignRequest { key, data } if !self.hold_sign_requests => {
                    let signer = self.agent.iter().find(|k| k.public() == key);
                    let sig = signer.map(|k| k.sign_blob(&data));
                    if sig.is_some() {
                        self.signatures_made.push(key);
                    }
                    if let Err(e) = self.client.sign_response(sig, self.now) {
                        self.client_error = Some(e);
                    }
                }
                other => self.client_events.push_back(other),
            }
        }
        while let Some(ev) = self.server.poll_event() {
            progress = true;
            match ev {
                Event::AuthorizeKey {
                    key,
                    certificate,
                    signed,
                    ..
                } => {
                    self.authorize_asked.push((signed, certificate));
                    let ok = self.authorized.contains(&key);
                    if let Err(e) = self.server.authorize_key(ok, self.now) {
                        self.server_error = Some(e);
                    }
                }
                Event::ChannelOpenRequest { id, .. } if self.accept_channels => {
                    self.server.accept_channel(id).unwrap();
                    self.server_events.push_back(Event::ChannelOpenRequest {
                        id,
                        kind: self.server.channel_kind(id).unwrap().clone(),
                    });
                }
                other => self.server_events.push_back(other),
            }
        }
        progress
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        for (conn, err) in [
            (&mut self.client, &mut self.client_error),
            (&mut self.server, &mut self.server_error),
        ] {
            let due = conn.poll_timeout().is_some_and(|t| t <= self.now) && err.is_none();
            if let (true, Err(e)) = (due, conn.handle_timeout(self.now)) {
                *err = Some(e);
            }
        }
        self.run();
    }

    /// A connected pair whose both sides advertise `window` and `max_packet` per channel.
    /// Windows start at their largest, so they do not grow.
    pub fn connected_with_windows(window: u32, max_packet: u32) -> Self {
        Self::connected_with_channels(crate::connection::ChannelConfig {
            window,
            initial_window: window,
            window_budget: u64::MAX,
            max_packet,
            max_channels: 16,
        })
    }

    /// A connected pair whose both sides use `limits` for their channels.
    pub fn connected_with_channels(limits: crate::connection::ChannelConfig) -> Self {
        let (mut c, mut s) = Self::default_configs();
        c.channels = limits.clone();
        s.channels = limits;
        let mut pair = Self::new(c, s);
        pair.run();
        pair
    }

    pub fn connected() -> Self {
        let (c, s) = Self::default_configs();
        let mut pair = Self::new(c, s);
        pair.run();
        assert!(
            pair.client.is_authenticated(),
            "client: {:?}",
            pair.client_error
        );
        assert!(
            pair.server.is_authenticated(),
            "server: {:?}",
            pair.server_error
        );
        pair
    }

    /// Finds and removes the first client event matching `f`.
    pub fn client_event(&mut self, f: impl Fn(&Event) -> bool) -> Option<Event> {
        let i = self.client_events.iter().position(f)?;
        self.client_events.remove(i)
    }

    pub fn server_event(&mut self, f: impl Fn(&Event) -> bool) -> Option<Event> {
        let i = self.server_events.iter().position(f)?;
        self.server_events.remove(i)
    }

    /// Opens a direct-tcpip channel from the client and returns (client id, server id).
    pub fn open_channel(&mut self) -> (ChannelId, ChannelId) {
        self.open(crate::ChannelKind::DirectTcpip {
            host: "echo".into(),
            port: 7,
            originator: "127.0.0.1".into(),
            originator_port: 1234,
        })
    }

    /// Opens a point-to-point tun channel from the client and returns (client id, server id).
    pub fn open_tun(&mut self) -> (ChannelId, ChannelId) {
        self.open(crate::ChannelKind::Tun {
            mode: crate::TunMode::PointToPoint,
            unit: None,
        })
    }

    fn open(&mut self, kind: crate::ChannelKind) -> (ChannelId, ChannelId) {
        let cid = self.client.open_channel(kind).unwrap();
        self.run();
        let Some(Event::ChannelOpenRequest { id: sid, .. }) =
            self.server_event(|e| matches!(e, Event::ChannelOpenRequest { .. }))
        else {
            panic!("server saw no open request: {:?}", self.server_events)
        };
        assert!(
            self.client_event(|e| *e == Event::ChannelOpened { id: cid })
                .is_some()
        );
        (cid, sid)
    }

    /// Sends `data` client → server through the channel, with the server reading in chunks of
    /// `read_chunk`; returns what the server received.
    pub fn transfer(
        &mut self,
        cid: ChannelId,
        sid: ChannelId,
        data: &[u8],
        read_chunk: usize,
    ) -> Vec<u8> {
        let mut sent = 0;
        let mut received = Vec::with_capacity(data.len());
        let mut idle = 0;
        while received.len() < data.len() {
            if sent < data.len() {
                // Like a driver reading a socket: at most 64 KiB at a time.
                let end = data.len().min(sent + 65536);
                sent += self.client.channel_send(cid, &data[sent..end]).unwrap();
            }
            let progressed = self.step();
            let buffered = self.server.channel_data(sid);
            let n = buffered.len().min(read_chunk);
            if n > 0 {
                received.extend_from_slice(&buffered[..n]);
                self.server.channel_consume(sid, n);
            } else if !progressed {
                idle += 1;
                assert!(
                    idle < 1000,
                    "transfer stalled at {} of {} bytes",
                    received.len(),
                    data.len()
                );
            }
            assert!(
                self.client_error.is_none() && self.server_error.is_none(),
                "{:?} {:?}",
                self.client_error,
                self.server_error
            );
        }
        received
    }
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}
