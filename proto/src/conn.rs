//! `Connection`: one SSH connection, client or server, sans-IO.
//!
//! Methods come in four kinds, as in quinn-proto:
//! - getters (`is_authenticated`, `negotiated`, `stats`, …);
//! - `handle_*` inputs: socket bytes (`handle_input`), timer expiry (`handle_timeout`), socket
//!   EOF (`handle_eof`);
//! - mutators: decisions the application owes (`host_key_verdict`, `authorize_key`) and
//!   commands (`open_channel`, `channel_send`, `global_request`, `disconnect`, …);
//! - `poll_*` outputs. After any input or mutator, call in this order: `poll_event` until
//!   `None`, then write `transmit()` to the socket (`advance_transmit` with what was written,
//!   until `transmit()` is empty or the socket is full), then re-arm the timer with
//!   `poll_timeout`.
//!
//! The connection never reads the clock, sleeps or touches a socket: every method that needs
//! the time takes `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::auth::client::{ClientAuth, ClientAuthEvent, Identity};
use crate::auth::server::{KeyQuestion, ServerAuth, ServerAuthEvent};
use crate::connection::{
    ChannelConfig, ChannelError, ChannelId, ChannelKind, Channels, GlobalRequest, OpenFailure,
    RequestId,
};
use crate::error::Error;
use crate::event::Event;
use crate::rng::Random;
use crate::transport::hostkey::{Ed25519Key, HostKey};
use crate::transport::kex::Negotiated;
use crate::transport::{Input, Role, Transport, TransportConfig};
use crate::wire::{DisconnectReason, MsgType};

/// Settings for a client connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub user: String,
    /// Identities tried in order (RFC 4252 §7).
    pub identities: Vec<Identity>,
    pub transport: TransportConfig,
    pub channels: ChannelConfig,
    /// Probe with keepalive@openssh.com after this long without input.
    pub keepalive: Option<Duration>,
    /// Unanswered probes before the peer is declared dead.
    pub keepalive_max: u32,
}

impl ClientConfig {
    pub fn new(user: impl Into<String>, identities: Vec<Ed25519Key>) -> Self {
        Self {
            user: user.into(),
            identities: identities.into_iter().map(Identity::Local).collect(),
            transport: TransportConfig::default(),
            channels: ChannelConfig::default(),
            keepalive: None,
            keepalive_max: 3,
        }
    }
}

/// Settings for a server connection.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host_key: Ed25519Key,
    pub transport: TransportConfig,
    pub channels: ChannelConfig,
    /// Authentication must finish within this time of the connection's start (sshd's
    /// LoginGraceTime).
    pub login_grace: Duration,
    /// Failed authentication attempts before disconnecting (sshd's MaxAuthTries).
    pub max_auth_tries: u32,
    pub keepalive: Option<Duration>,
    pub keepalive_max: u32,
}

impl ServerConfig {
    pub fn new(host_key: Ed25519Key) -> Self {
        Self {
            host_key,
            transport: TransportConfig::default(),
            channels: ChannelConfig::default(),
            login_grace: Duration::from_secs(30),
            max_auth_tries: 6,
            keepalive: None,
            keepalive_max: 3,
        }
    }
}

#[derive(Debug)]
enum Auth {
    Client(ClientAuth),
    Server(ServerAuth),
}

/// Traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Completed key exchanges, the initial one included.
    pub key_exchanges: u64,
}

#[derive(Debug)]
struct Keepalive {
    interval: Duration,
    max: u32,
    outstanding: u32,
    next: Instant,
}

/// One SSH connection. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Connection {
    transport: Transport,
    auth: Auth,
    channels: Channels,
    events: VecDeque<Event>,
    authenticated: bool,
    /// Server: authentication must be done by then.
    login_deadline: Option<Instant>,
    keepalive: Option<Keepalive>,
    closed: Option<Error>,
    /// When to see whether traffic stopped, so grown buffers can be given back.
    quiet: Option<Quiet>,
    /// Buffers were given back (see [`Connection::take_released_memory`]).
    released_memory: bool,
}

/// After this long without traffic a connection gives back the buffers a burst grew.
pub const QUIET_AFTER: Duration = Duration::from_secs(10);

/// A pending check for quiet: at `at`, quiet if the traffic count is still `traffic`.
#[derive(Debug)]
struct Quiet {
    at: Instant,
    traffic: u64,
}

impl Connection {
    /// A client connection; the identification string and first KEXINIT are queued at once.
    pub fn client(config: ClientConfig, now: Instant) -> Result<Self, Error> {
        let rng = Random::from_os().map_err(|e| Error::Closed(format!("no OS randomness: {e}")))?;
        Ok(Self::client_with_random(config, rng, now))
    }

    pub fn server(config: ServerConfig, now: Instant) -> Result<Self, Error> {
        let rng = Random::from_os().map_err(|e| Error::Closed(format!("no OS randomness: {e}")))?;
        Ok(Self::server_with_random(config, rng, now))
    }

    /// With a caller-supplied random source (deterministic tests, fuzzing).
    pub fn client_with_random(config: ClientConfig, rng: Random, now: Instant) -> Self {
        let transport = Transport::new(Role::Client, config.transport, None, rng, now);
        Self::assemble(
            transport,
            Auth::Client(ClientAuth::new(config.user, config.identities)),
            config.channels,
            None,
            keepalive(config.keepalive, config.keepalive_max, now),
        )
    }

    pub fn server_with_random(config: ServerConfig, rng: Random, now: Instant) -> Self {
        let transport = Transport::new(
            Role::Server,
            config.transport,
            Some(config.host_key),
            rng,
            now,
        );
        Self::assemble(
            transport,
            Auth::Server(ServerAuth::new(config.max_auth_tries)),
            config.channels,
            Some(now + config.login_grace),
            keepalive(config.keepalive, config.keepalive_max, now),
        )
    }

    fn assemble(
        transport: Transport,
        auth: Auth,
        channels: ChannelConfig,
        login_deadline: Option<Instant>,
        keepalive: Option<Keepalive>,
    ) -> Self {
        Self {
            transport,
            auth,
            channels: Channels::new(channels),
            events: VecDeque::new(),
            authenticated: false,
            login_deadline,
            keepalive,
            closed: None,
            quiet: None,
            released_memory: false,
        }
    }

    // ---- getters ----

    pub fn role(&self) -> Role {
        self.transport.role()
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The error that ended the connection, once it has ended.
    pub fn closed(&self) -> Option<&Error> {
        self.closed.as_ref()
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.transport.negotiated()
    }

    pub fn peer_ident(&self) -> Option<&str> {
        self.transport.peer_ident()
    }

    /// Client: the server's host key once accepted; server: our own.
    pub fn host_key(&self) -> Option<&HostKey> {
        self.transport.peer_host_key()
    }

    pub fn session_id(&self) -> Option<&[u8]> {
        self.transport.session_id()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            bytes_sent: self.transport.tx.bytes,
            bytes_received: self.transport.rx.bytes,
            packets_sent: self.transport.tx.packets,
            packets_received: self.transport.rx.packets,
            key_exchanges: self.transport.key_exchanges(),
        }
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Open channels counted by type name ("direct-tcpip", "tun@openssh.com", …).
    pub fn channel_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for id in self.channels.ids() {
            if let Some(kind) = self.channels.kind(id) {
                *counts.entry(kind.type_name()).or_insert(0) += 1;
            }
        }
        counts
    }

    pub fn channel_kind(&self, id: ChannelId) -> Option<&ChannelKind> {
        self.channels.kind(id)
    }

    /// The receive window channel `id` keeps open for the peer (it adapts: see
    /// [`ChannelConfig`]); 0 for an unknown channel. What the application holds of the
    /// channel's data beyond it is the application's to bound.
    pub fn channel_window(&self, id: ChannelId) -> u32 {
        self.channels.window(id)
    }

    /// The receive windows of all channels added up: at most
    /// [`ChannelConfig::window_budget`], plus [`FLOOR_WINDOW`](crate::connection::FLOOR_WINDOW)
    /// for each stream channel and `max_packet` for each datagram channel opened past it.
    pub fn channel_windows_total(&self) -> u64 {
        self.channels.windows_total()
    }

    pub fn is_rekeying(&self) -> bool {
        self.transport.is_rekeying()
    }

    // ---- inputs ----

    /// Feeds bytes read from the socket. On error the connection is closed, a DISCONNECT with
    /// the matching reason is queued for transmission, and the error is returned.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), Error> {
        if let Some(e) = &self.closed {
            return Err(e.clone());
        }
        self.transport.receive(data);
        self.on_received(now)
    }

    /// Room to read socket bytes into, so that they land where they will be decrypted (no
    /// copy): read into it, then call [`Connection::handle_received`] with the count. Empty
    /// while enough input waits unprocessed (a host key verdict is pending): do not read then.
    pub fn input_space(&mut self) -> &mut [u8] {
        if self.closed.is_some() {
            return &mut [];
        }
        self.transport.input_space()
    }

    /// `n` bytes were read into [`Connection::input_space`]; otherwise as `handle_input`.
    pub fn handle_received(&mut self, n: usize, now: Instant) -> Result<(), Error> {
        if let Some(e) = &self.closed {
            return Err(e.clone());
        }
        self.transport.received(n);
        self.on_received(now)
    }

    fn on_received(&mut self, now: Instant) -> Result<(), Error> {
        if let Some(k) = &mut self.keepalive {
            k.outstanding = 0;
            k.next = now + k.interval;
        }
        let result = self.process(now);
        self.watch_for_quiet(now);
        self.check(result)
    }

    /// Call when the deadline from `poll_timeout` has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if let Some(e) = &self.closed {
            return Err(e.clone());
        }
        let result = self.on_timeout(now);
        self.check(result)
    }

    /// The peer closed its end of the TCP connection.
    pub fn handle_eof(&mut self) -> Error {
        self.closed.get_or_insert(Error::ConnectionLost).clone()
    }

    fn on_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if self
            .login_deadline
            .is_some_and(|d| !self.authenticated && now >= d)
        {
            return Err(Error::LoginGraceExpired);
        }
        // Before a keepalive probe, which is traffic of its own.
        if let Some(q) = self.quiet.as_ref().filter(|q| now >= q.at) {
            let traffic = self.traffic();
            if traffic == q.traffic {
                self.quiet = None;
                self.release_idle_memory();
            } else {
                self.quiet = Some(Quiet {
                    at: now + QUIET_AFTER,
                    traffic,
                });
            }
        }
        if let Some(k) = self
            .keepalive
            .as_mut()
            .filter(|k| self.authenticated && now >= k.next)
        {
            if k.outstanding >= k.max {
                return Err(Error::KeepaliveTimeout(k.outstanding));
            }
            k.outstanding += 1;
            k.next = now + k.interval;
            self.channels.keepalive(&mut self.transport.tx, now);
        }
        self.transport.maybe_rekey(now, false);
        Ok(())
    }

    fn check(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        if let Err(e) = &result {
            if let Some(reason) = e.disconnect_reason() {
                self.transport.send_disconnect(reason, &e.to_string());
            }
            self.closed = Some(e.clone());
        }
        result
    }

    fn process(&mut self, now: Instant) -> Result<(), Error> {
        while let Some(input) = self.transport.poll_input(now)? {
            self.on_input(input, now)?;
            self.transport.tx.check_queued()?;
        }
        self.transport.maybe_rekey(now, false);
        Ok(())
    }

    /// Once the buffers have grown (a burst of traffic), checks back [`QUIET_AFTER`] later,
    /// and again while traffic goes on. A connection that never grew them, or has given
    /// them back, sets no timer: an idle daemon does not wake for this.
    fn watch_for_quiet(&mut self, now: Instant) {
        if self.quiet.is_none()
            && self.authenticated
            && (self.transport.grown() || self.channels.holds_spare())
        {
            self.quiet = Some(Quiet {
                at: now + QUIET_AFTER,
                traffic: self.traffic(),
            });
        }
    }

    /// What counts as traffic: channel data (keepalives and rekeys do not).
    fn traffic(&self) -> u64 {
        self.channels.data_bytes()
    }

    /// Gives back the memory a burst of traffic left in buffers that hold nothing now (a
    /// few MiB a connection); they grow again when traffic resumes. Called when the
    /// connection has gone quiet, so a daemon serving many idle connections stays small.
    fn release_idle_memory(&mut self) {
        let buffers = self.transport.release_idle_memory();
        let chunks = self.channels.release_spare();
        self.released_memory |= buffers || chunks;
    }

    /// Whether buffers were given back since the last call: a daemon can then return the
    /// memory to the system (glibc keeps freed memory in the heap until trimmed).
    pub fn take_released_memory(&mut self) -> bool {
        std::mem::take(&mut self.released_memory)
    }

    fn on_input(&mut self, input: Input, now: Instant) -> Result<(), Error> {
        match input {
            Input::VerifyHostKey(key) => self.events.push_back(Event::VerifyHostKey(key)),
            Input::KexDone { initial } => {
                if let (true, Auth::Client(auth)) = (initial, &mut self.auth) {
                    auth.start(&mut self.transport.tx);
                }
                self.channels.unblock_all(&mut self.events);
                self.events.push_back(Event::KeyExchangeDone { initial });
            }
            Input::ServerSigAlgs(_) => {}
            Input::Payload(range) => {
                let session_id = self.transport.session_hash();
                let payload = self.transport.rx.payload(range);
                let msg = MsgType(payload.first().copied().unwrap_or(0));
                let tx = &mut self.transport.tx;
                if msg.is_connection() {
                    if !self.authenticated {
                        // CVE-2025-32433: nothing of RFC 4254 before authentication.
                        return Err(Error::Unexpected {
                            msg,
                            state: "before authentication",
                        });
                    }
                    return self.channels.on_message(payload, tx, &mut self.events, now);
                }
                let is_auth_msg = msg.is_userauth()
                    || msg == MsgType::SERVICE_REQUEST
                    || msg == MsgType::SERVICE_ACCEPT;
                if !is_auth_msg {
                    // RFC 4253 §11.4: an unrecognized message gets UNIMPLEMENTED, not a
                    // disconnect (local extensions 128-255 included).
                    self.transport.send_unimplemented();
                    return Ok(());
                }
                match &mut self.auth {
                    Auth::Client(auth) => {
                        match auth.on_message(payload, tx, session_id.as_bytes())? {
                            ClientAuthEvent::None | ClientAuthEvent::PartialSuccess => {}
                            ClientAuthEvent::Banner(text) => {
                                self.events.push_back(Event::Banner(text))
                            }
                            ClientAuthEvent::SignRequest { key, data } => {
                                self.events.push_back(Event::SignRequest { key, data })
                            }
                            ClientAuthEvent::Success => self.on_authenticated(),
                        }
                    }
                    Auth::Server(auth) => {
                        let event = auth.on_message(payload, tx, session_id.as_bytes())?;
                        self.on_server_auth(event);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_server_auth(&mut self, event: ServerAuthEvent) {
        match event {
            ServerAuthEvent::None => {}
            ServerAuthEvent::Ask(q) => {
                let KeyQuestion {
                    user,
                    key,
                    certificate,
                    signed,
                } = *q;
                self.events.push_back(Event::AuthorizeKey {
                    user,
                    key,
                    certificate,
                    signed,
                });
            }
            ServerAuthEvent::Success { .. } => self.on_authenticated(),
        }
    }

    fn on_authenticated(&mut self) {
        self.authenticated = true;
        self.login_deadline = None;
        let user = match &self.auth {
            Auth::Client(a) => a.user().to_owned(),
            Auth::Server(a) => a.user().unwrap_or_default().to_owned(),
        };
        self.events.push_back(Event::Authenticated { user });
    }

    // ---- decisions ----

    /// Client: the verdict on the host key from `Event::VerifyHostKey`.
    pub fn host_key_verdict(&mut self, accept: bool, now: Instant) -> Result<(), Error> {
        let result = (|| {
            if let Some(input) = self.transport.host_key_verdict(accept, now)? {
                self.on_input(input, now)?;
            }
            self.process(now)
        })();
        self.check(result)
    }

    /// Client: the signature asked for by `Event::SignRequest` (an "ssh-ed25519" signature
    /// blob), or `None` if it could not be made (the next identity is tried).
    pub fn sign_response(&mut self, signature: Option<Vec<u8>>, now: Instant) -> Result<(), Error> {
        let result = (|| {
            let session_id = self.transport.session_hash();
            if let Auth::Client(auth) = &mut self.auth {
                auth.signature(signature, &mut self.transport.tx, session_id.as_bytes())?;
            }
            self.process(now)
        })();
        self.check(result)
    }

    /// Server: the answer to `Event::AuthorizeKey`.
    pub fn authorize_key(&mut self, accept: bool, now: Instant) -> Result<(), Error> {
        let result = (|| {
            if let Auth::Server(auth) = &mut self.auth {
                let event = auth.answer(accept, &mut self.transport.tx)?;
                self.on_server_auth(event);
            }
            self.process(now)
        })();
        self.check(result)
    }

    // ---- commands ----

    pub fn open_channel(&mut self, kind: ChannelKind) -> Result<ChannelId, ChannelError> {
        if !self.authenticated {
            return Err(ChannelError::NotAuthenticated);
        }
        self.channels.open(kind, &mut self.transport.tx)
    }

    pub fn accept_channel(&mut self, id: ChannelId) -> Result<(), ChannelError> {
        self.channels.accept(id, &mut self.transport.tx)
    }

    pub fn reject_channel(
        &mut self,
        id: ChannelId,
        reason: OpenFailure,
        description: &str,
    ) -> Result<(), ChannelError> {
        self.channels
            .reject(id, reason, description, &mut self.transport.tx)
    }

    /// Sends what the window allows; returns bytes taken (0: wait for `ChannelWritable`).
    pub fn channel_send(&mut self, id: ChannelId, data: &[u8]) -> Result<usize, ChannelError> {
        let sent = self.channels.send(id, data, &mut self.transport.tx)?;
        // The volume limit must be checked where volume is produced: a one-way bulk sender
        // may receive nothing for a long time.
        self.transport.maybe_rekey_for_volume();
        Ok(sent)
    }

    /// The oldest received data not yet consumed; more may follow once it is consumed.
    /// Empty when nothing is buffered.
    pub fn channel_data(&self, id: ChannelId) -> &[u8] {
        self.channels.buffered(id)
    }

    /// Marks `n` bytes of `channel_data` as consumed, reopening the peer's window.
    pub fn channel_consume(&mut self, id: ChannelId, n: usize) {
        self.channels.consume(id, n, &mut self.transport.tx);
    }

    /// Takes the oldest chunk of received data by value (what `channel_data` shows, at most
    /// [`CHUNK`](crate::connection::CHUNK) bytes unless one message was larger), consuming
    /// it: the way to hand data to another task without copying it. Give the chunk back with
    /// [`Connection::recycle`] when done, and the next one reuses its memory.
    pub fn channel_take(&mut self, id: ChannelId) -> Option<Vec<u8>> {
        self.channels.take(id, &mut self.transport.tx)
    }

    /// Returns a chunk from `channel_take` (or any buffer of about that size) for reuse.
    pub fn recycle(&mut self, chunk: Vec<u8>) {
        self.channels.recycle(chunk);
    }

    /// Sends a channel request that wants no reply, e.g. sshvpn's "tun-address@sshvpn".
    pub fn channel_request(
        &mut self,
        id: ChannelId,
        request: &str,
        data: &[u8],
    ) -> Result<(), ChannelError> {
        self.channels
            .send_request(id, request, data, &mut self.transport.tx)
    }

    pub fn channel_eof(&mut self, id: ChannelId) -> Result<(), ChannelError> {
        self.channels.send_eof(id, &mut self.transport.tx)
    }

    /// Closes the channel and releases its id once the peer has closed too.
    pub fn close_channel(&mut self, id: ChannelId) -> Result<(), ChannelError> {
        self.channels.close(id, &mut self.transport.tx)
    }

    pub fn global_request(&mut self, request: GlobalRequest) -> Result<RequestId, ChannelError> {
        if !self.authenticated {
            return Err(ChannelError::NotAuthenticated);
        }
        Ok(self
            .channels
            .global_request(&request, &mut self.transport.tx))
    }

    /// Answers the peer's `Event::GlobalRequest`; `Ok(Some(port))` for a tcpip-forward that
    /// asked for port 0.
    pub fn reply_global_request(&mut self, id: RequestId, result: Result<Option<u32>, ()>) {
        self.channels
            .reply_global(id, result, &mut self.transport.tx);
    }

    /// Starts a key exchange now (RFC 4253 §9), e.g. on the operator's request.
    pub fn rekey(&mut self, now: Instant) {
        self.transport.maybe_rekey(now, true);
    }

    /// Ends the connection with SSH_MSG_DISCONNECT.
    pub fn disconnect(&mut self, reason: DisconnectReason, description: &str) {
        if self.closed.is_none() {
            self.transport.send_disconnect(reason, description);
            self.closed = Some(Error::Closed(description.to_owned()));
        }
    }

    // ---- outputs ----

    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        // One read can queue a thousand events (CHANNEL_OPENs, CLOSEs); once they are taken,
        // do not keep the room for them.
        if event.is_none() && self.events.capacity() > 64 {
            self.events.shrink_to(64);
        }
        event
    }

    /// The next bytes to write to the socket: the oldest part of what waits
    /// ([`Connection::pending_transmit`] bytes in all). Empty only when nothing waits.
    pub fn transmit(&self) -> &[u8] {
        self.transport.transmit()
    }

    /// `n` bytes of `transmit()` were written; `transmit()` then shows what follows.
    pub fn advance_transmit(&mut self, n: usize) {
        self.transport.advance_transmit(n);
    }

    /// Bytes waiting for the socket, in all.
    pub fn pending_transmit(&self) -> usize {
        self.transport.tx.pending()
    }

    /// Memory the transmit buffers hold.
    #[cfg(test)]
    pub(crate) fn transmit_capacity(&self) -> usize {
        self.transport.tx.capacity()
    }

    /// Whether a check for quiet is pending (a timer the daemon waits on).
    #[cfg(test)]
    pub(crate) fn watching_for_quiet(&self) -> bool {
        self.quiet.is_some()
    }

    /// Memory the receive buffer holds.
    #[cfg(test)]
    pub(crate) fn receive_capacity(&self) -> usize {
        self.transport.rx.capacity()
    }

    /// Moves all pending output into `out` (convenient for tests and simple drivers).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let mut moved = 0;
        loop {
            let data = self.transport.transmit();
            let n = data.len();
            if n == 0 {
                return moved;
            }
            out.extend_from_slice(data);
            self.transport.advance_transmit(n);
            moved += n;
        }
    }

    /// The next instant `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let login = self.login_deadline.filter(|_| !self.authenticated);
        let keepalive = self
            .keepalive
            .as_ref()
            .filter(|_| self.authenticated)
            .map(|k| k.next);
        let quiet = self.quiet.as_ref().map(|q| q.at);
        [login, keepalive, quiet, self.transport.rekey_deadline()]
            .into_iter()
            .flatten()
            .min()
    }
}

fn keepalive(interval: Option<Duration>, max: u32, now: Instant) -> Option<Keepalive> {
    interval.map(|interval| Keepalive {
        interval,
        max: max.max(1),
        outstanding: 0,
        next: now + interval,
    })
}

#[cfg(test)]
impl Connection {
    pub(crate) fn transport_mut_for_tests(&mut self) -> &mut Transport {
        &mut self.transport
    }
}

/// Fuzzing only (`cargo fuzz` sets `cfg(fuzzing)`): lets a harness that completed a real
/// handshake send the peer any payload, sealed with the session's keys, so the fuzzer's bytes
/// reach the userauth and connection decoders behind the encryption.
#[cfg(fuzzing)]
impl Connection {
    pub fn send_raw_payload_for_fuzzing(&mut self, payload: &[u8]) {
        self.transport.tx.send(|b| b.extend_from_slice(payload));
    }
}
