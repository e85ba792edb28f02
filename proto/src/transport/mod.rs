//! The SSH transport layer (RFC 4253): identification, binary packets, key exchange and
//! re-keying. Owns the socket byte streams' state in both directions and every key; hands
//! upper-layer payloads (user authentication, connection protocol) to `Connection`.
//!
//! It must not interpret messages numbered 50 and up: those belong to the layers above.

pub mod cipher;
pub mod hostkey;
pub mod kex;
pub mod packet;
pub mod version;

mod exchange;

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::rng::Random;
use crate::wire::{DisconnectReason, MsgType, Reader, Writer};
use exchange::Exchange;
pub use exchange::KexOutcome;
use hostkey::{Ed25519Key, HostKey};
use kex::hash::HashValue;
use kex::{Negotiated, Preferences};
use packet::{Opener, Sealer};
use version::{IdentScanner, OUR_IDENT, Scan};

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Transport settings shared by both roles.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub preferences: Preferences,
    /// Re-key after this many bytes in either direction (RFC 4253 §9 recommends 1 GiB).
    pub rekey_bytes: u64,
    /// Re-key after this much time (RFC 4253 §9 recommends one hour).
    pub rekey_interval: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            preferences: Preferences::default(),
            rekey_bytes: 1 << 30,
            rekey_interval: Duration::from_secs(3600),
        }
    }
}

/// What the transport hands up after processing input.
#[derive(Debug)]
pub enum Input {
    /// An upper-layer message: its payload is `rx.payload(range)`.
    Payload(Range<usize>),
    /// First key exchange: the server's host key awaits the application's verdict
    /// ([`Transport::host_key_verdict`]); input processing is paused until then.
    VerifyHostKey(HostKey),
    /// A key exchange completed; `initial` for the first one.
    KexDone { initial: bool },
    /// The server sent SSH_MSG_EXT_INFO (RFC 8308 §2.3) with its signature algorithms.
    ServerSigAlgs(Vec<String>),
}

/// The receiving half: raw bytes from the socket and the opening key.
///
/// The socket is read straight into `buf` ([`Transport::input_space`]) and packets are
/// decrypted where they landed, so received bytes are copied only when a partial packet is
/// moved to the front to make room.
#[derive(Debug, Default)]
pub struct Rx {
    /// Initialized (zeroed once, when it grows); `start..end` is received and unprocessed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How much room the next read is offered: doubles while reads fill what they are offered.
    read_hint: usize,
    opener: Opener,
    pub bytes: u64,
    pub packets: u64,
    bytes_since_kex: u64,
}

/// The first reads are offered this much room: a handshake needs no more.
const MIN_READ: usize = 16 * 1024;
/// Reads are offered at most this much room. Together with one partial packet of at most
/// `MAX_PACKET_LEN` this bounds the receive buffer.
const MAX_READ: usize = 512 * 1024;

impl Rx {
    pub fn payload(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }

    fn unprocessed(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Room after the unprocessed bytes: at least `min` bytes, and `want` if the buffer can
    /// be arranged to give it. The unprocessed bytes (one partial packet, usually) are moved
    /// to the front only when the room behind them runs short, so with large reads that copy
    /// is rare and small.
    fn space(&mut self, want: usize, min: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let live = self.end - self.start;
        // The packet at the front must fit whole.
        let min = min.max(self.opener.pending_total().saturating_sub(live));
        let want = want.max(min);
        if self.buf.len() - self.end < min || self.buf.len() - live < want {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = live;
            }
            if self.buf.len() - self.end < want {
                // A fresh zeroed allocation (calloc: pages not touched yet cost nothing)
                // rather than growing in place and zeroing by hand.
                let mut grown = vec![0u8; live + want];
                if let (Some(dst), Some(src)) = (grown.get_mut(..live), self.buf.get(..live)) {
                    dst.copy_from_slice(src);
                }
                self.buf = grown;
            }
        }
        self.buf.get_mut(self.end..).unwrap_or_default()
    }

    /// Memory the receive buffer holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives back the buffer if it holds nothing (the next read starts small again); whether
    /// it did.
    fn release_idle(&mut self) -> bool {
        if self.start != self.end || self.buf.capacity() <= MIN_READ {
            return false;
        }
        self.buf = Vec::new();
        self.start = 0;
        self.end = 0;
        self.read_hint = MIN_READ;
        true
    }

    /// `n` bytes were written into the room [`Rx::space`] returned.
    fn filled(&mut self, n: usize, offered: usize) {
        self.end = (self.end + n).min(self.buf.len());
        if n >= offered {
            self.read_hint = (self.read_hint * 2).clamp(MIN_READ, MAX_READ);
        }
    }
}

/// What the first transmit buffer starts with, and shrinks back to on a quiet connection.
const INITIAL_OUT: usize = 64 * 1024;

/// Messages that may wait for a key exchange to end, in bytes. Ours are a few window adjusts
/// and replies; 1 MiB is far more than a well-behaved peer makes us queue.
const MAX_QUEUED_DURING_KEX: usize = 1 << 20;

/// The sending half: the transmit buffers and the sealing key. Upper layers send through it.
///
/// Sealed packets wait in two buffers, written to the socket in order: `out`, from
/// `out_start`, then `next`. Packets are appended to `out` until the socket has taken part of
/// it, and to `next` after that; once `out` is all written the two swap. Neither ever holds
/// bytes already written, so what they hold is bounded by what the driver lets wait, however
/// long the socket stays busy, and no byte is moved to make room.
#[derive(Debug)]
pub struct Tx {
    sealer: Sealer,
    out: Vec<u8>,
    out_start: usize,
    next: Vec<u8>,
    pub(crate) rng: Random,
    /// We sent KEXINIT and not yet NEWKEYS: RFC 4253 §7.1 allows only transport messages now,
    /// so upper-layer messages wait in `queued`.
    in_kex: bool,
    queued: VecDeque<Vec<u8>>,
    /// Memory `queued` holds, about: bounded by [`MAX_QUEUED_DURING_KEX`].
    queued_bytes: usize,
    pub bytes: u64,
    pub packets: u64,
    bytes_since_kex: u64,
}

impl Tx {
    fn new(rng: Random) -> Self {
        Self {
            sealer: Sealer::new(),
            out: Vec::with_capacity(INITIAL_OUT),
            out_start: 0,
            next: Vec::new(),
            rng,
            in_kex: false,
            queued: VecDeque::new(),
            queued_bytes: 0,
            bytes: 0,
            packets: 0,
            bytes_since_kex: 0,
        }
    }

    /// Sends an upper-layer message built by `build` (which appends the payload, message
    /// number first). Queued while a key exchange is in progress.
    pub fn send(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        if self.in_kex {
            let mut payload = Vec::new();
            build(&mut payload);
            // What it holds: its allocation, and about as much again for the queue entry
            // and the allocator's header.
            self.queued_bytes += payload.capacity() + 32;
            self.queued.push_back(payload);
        } else {
            self.seal(build);
        }
    }

    /// Whether bulk data may be sent now without being queued (no key exchange running).
    pub fn is_open_for_data(&self) -> bool {
        !self.in_kex
    }

    /// Bytes sealed and waiting for the socket.
    pub fn pending(&self) -> usize {
        self.out.len() - self.out_start + self.next.len()
    }

    /// Gives back what the transmit buffers grew to beyond what they hold; whether there was
    /// any. Both keep up to `INITIAL_OUT`: they swap, and a quiet connection's keepalives
    /// must not free and regrow one each time.
    fn release_idle(&mut self) -> bool {
        let before = self.out.capacity() + self.next.capacity();
        self.out.shrink_to(INITIAL_OUT);
        self.next.shrink_to(INITIAL_OUT);
        self.out.capacity() + self.next.capacity() < before
    }

    /// Memory the transmit buffers hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.out.capacity() + self.next.capacity()
    }

    /// The oldest bytes waiting for the socket; empty only when nothing waits.
    fn transmit(&self) -> &[u8] {
        self.out.get(self.out_start..).unwrap_or_default()
    }

    /// `n` bytes of [`Tx::transmit`] were written.
    fn advance(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
            std::mem::swap(&mut self.out, &mut self.next);
        }
    }

    /// Largest payload one packet may carry, given our packet length bound.
    pub fn max_payload(&self) -> usize {
        packet::MAX_PACKET_LEN as usize - 64
    }

    fn seal(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        let Self {
            sealer,
            out,
            out_start,
            next,
            rng,
            ..
        } = self;
        // Behind everything waiting: `out` until the socket has taken part of it.
        let tail = if *out_start == 0 { out } else { next };
        let n = sealer.seal_with(tail, rng, build) as u64;
        self.bytes += n;
        self.bytes_since_kex += n;
        self.packets += 1;
    }

    /// Ends the connection once messages waiting for a key exchange to end pass
    /// [`MAX_QUEUED_DURING_KEX`]: a peer that keeps asking (channel or global requests
    /// wanting replies) but never finishes the exchange we started would otherwise grow the
    /// queue without bound.
    pub(crate) fn check_queued(&self) -> Result<(), Error> {
        if self.queued_bytes > MAX_QUEUED_DURING_KEX {
            return Err(Error::KexStalled(self.queued_bytes));
        }
        Ok(())
    }

    fn flush_queued(&mut self) {
        self.queued_bytes = 0;
        while let Some(p) = self.queued.pop_front() {
            self.seal(|b| b.extend_from_slice(&p));
        }
    }
}

#[derive(Debug)]
enum Ident {
    Waiting(IdentScanner),
    Done(String),
}

/// The transport layer state machine for one connection.
#[derive(Debug)]
pub struct Transport {
    role: Role,
    config: TransportConfig,
    host_key: Option<Ed25519Key>,
    ident: Ident,
    pub rx: Rx,
    pub tx: Tx,
    exchange: Option<Exchange>,
    /// The first exchange's hash (RFC 4253 §7.2); fixed for the connection's life.
    session_id: Option<HashValue>,
    /// The server host key from the first exchange; re-keys must present the same one.
    peer_host_key: Option<HostKey>,
    negotiated: Option<Negotiated>,
    strict_kex: bool,
    last_kex: Instant,
    /// Input is held while the application decides on the host key.
    paused: bool,
    /// An incorrectly guessed kex packet is to be skipped (RFC 4253 §7).
    skip_next_kex_packet: bool,
    peer_ident: Option<String>,
    key_exchanges: u64,
}

impl Transport {
    pub fn new(
        role: Role,
        config: TransportConfig,
        host_key: Option<Ed25519Key>,
        rng: Random,
        now: Instant,
    ) -> Self {
        let mut t = Self {
            role,
            config,
            host_key,
            ident: Ident::Waiting(IdentScanner::default()),
            rx: Rx::default(),
            tx: Tx::new(rng),
            exchange: None,
            session_id: None,
            peer_host_key: None,
            negotiated: None,
            strict_kex: false,
            last_kex: now,
            paused: false,
            skip_next_kex_packet: false,
            peer_ident: None,
            key_exchanges: 0,
        };
        // Nothing has been written yet, so this goes first.
        t.tx.out.extend_from_slice(OUR_IDENT.as_bytes());
        t.tx.out.extend_from_slice(b"\r\n");
        // Sending KEXINIT before the peer's identification arrives saves a round trip and is
        // what OpenSSH does.
        t.start_kex();
        t
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn session_id(&self) -> Option<&[u8]> {
        self.session_id.as_ref().map(HashValue::as_bytes)
    }

    /// The session identifier by value, so it can be held across a borrow of the transport.
    pub fn session_hash(&self) -> HashValue {
        self.session_id.unwrap_or(HashValue::EMPTY)
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn peer_ident(&self) -> Option<&str> {
        self.peer_ident.as_deref()
    }

    pub fn peer_host_key(&self) -> Option<&HostKey> {
        self.peer_host_key.as_ref()
    }

    pub fn is_initial_kex_done(&self) -> bool {
        self.session_id.is_some() && self.exchange.is_none()
    }

    pub fn key_exchanges(&self) -> u64 {
        self.key_exchanges
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Appends received socket bytes.
    pub fn receive(&mut self, data: &[u8]) {
        let n = data.len();
        if let Some(dst) = self.rx.space(n, n).get_mut(..n) {
            dst.copy_from_slice(data);
        }
        self.rx.filled(n, usize::MAX);
    }

    /// Room to read socket bytes into; report what was read with [`Transport::received`].
    /// Empty while the buffer is at its bound (input is paused for a host key verdict and
    /// the peer keeps sending): stop reading then.
    pub fn input_space(&mut self) -> &mut [u8] {
        if self.rx.end - self.rx.start >= MAX_READ {
            return &mut [];
        }
        let want = self.rx.read_hint.max(MIN_READ);
        self.rx.space(want, MIN_READ)
    }

    /// `n` bytes were read into [`Transport::input_space`].
    pub fn received(&mut self, n: usize) {
        let offered = self.rx.buf.len() - self.rx.end;
        self.rx.filled(n, offered);
    }

    /// The oldest bytes waiting for the socket (more may follow once they are written; see
    /// [`Tx::pending`]).
    pub fn transmit(&self) -> &[u8] {
        self.tx.transmit()
    }

    /// Whether the buffers hold more memory than a quiet connection needs.
    pub fn grown(&self) -> bool {
        self.tx.out.capacity() + self.tx.next.capacity() > 2 * INITIAL_OUT
            || self.rx.buf.capacity() > MIN_READ
    }

    /// Gives back buffer memory a burst left behind (what the buffers do not hold now);
    /// whether there was any.
    pub fn release_idle_memory(&mut self) -> bool {
        let tx = self.tx.release_idle();
        let rx = self.rx.release_idle();
        tx || rx
    }

    /// Marks `n` bytes of [`Transport::transmit`] as written to the socket.
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx.advance(n);
    }

    /// Processes buffered input until an upper-layer payload or a transport event is ready.
    pub fn poll_input(&mut self, now: Instant) -> Result<Option<Input>, Error> {
        if self.paused {
            return Ok(None);
        }
        if let Ident::Waiting(scanner) = &mut self.ident {
            let buf = self.rx.unprocessed();
            match scanner.scan(buf, self.role == Role::Client)? {
                Scan::Incomplete { consumed } => {
                    self.rx.start += consumed;
                    return Ok(None);
                }
                Scan::Found { ident, consumed } => {
                    self.rx.start += consumed;
                    self.peer_ident = Some(ident.clone());
                    self.ident = Ident::Done(ident);
                }
            }
        }
        loop {
            let Some(buf) = self.rx.buf.get_mut(self.rx.start..self.rx.end) else {
                return Ok(None);
            };
            let Some(decoded) = self.rx.opener.open(buf)? else {
                return Ok(None);
            };
            let base = self.rx.start;
            self.rx.start += decoded.consumed;
            self.rx.bytes += decoded.consumed as u64;
            self.rx.bytes_since_kex += decoded.consumed as u64;
            self.rx.packets += 1;
            let range = base + decoded.payload.start..base + decoded.payload.end;
            if let Some(input) = self.dispatch(range, now)? {
                return Ok(Some(input));
            }
        }
    }

    /// Handles transport-layer messages itself; returns upper-layer ones.
    fn dispatch(&mut self, range: Range<usize>, now: Instant) -> Result<Option<Input>, Error> {
        let payload = self.rx.payload(range.clone());
        let msg = MsgType(payload.first().copied().unwrap_or(0));
        let initial = self.session_id.is_none();
        if initial && self.strict_kex_pending_violation(msg) {
            return Err(Error::StrictKex(
                "only key exchange messages are allowed before the first NEWKEYS",
            ));
        }
        if self.skip_next_kex_packet && msg.is_kex() && msg != MsgType::KEXINIT {
            self.skip_next_kex_packet = false;
            return Ok(None);
        }
        match msg {
            MsgType::DISCONNECT => {
                let mut r = Reader::new(payload.get(1..).unwrap_or_default());
                let reason = DisconnectReason(r.u32()?);
                let description = String::from_utf8_lossy(r.string()?)
                    .chars()
                    .take(512)
                    .collect();
                Err(Error::PeerDisconnected {
                    reason,
                    description,
                })
            }
            MsgType::IGNORE | MsgType::DEBUG | MsgType::UNIMPLEMENTED => Ok(None),
            MsgType::KEXINIT => self.on_kexinit(range, now),
            MsgType::NEWKEYS => self.on_newkeys(now),
            MsgType::EXT_INFO if self.role == Role::Client && !initial => {
                exchange::parse_ext_info(payload).map(|algs| Some(Input::ServerSigAlgs(algs)))
            }
            m if m.is_kex() => {
                let Some(ex) = self.exchange.as_mut() else {
                    return Err(Error::Unexpected {
                        msg: m,
                        state: "outside a key exchange",
                    });
                };
                let outcome = ex.on_message(
                    payload,
                    &mut self.tx,
                    self.host_key.as_ref(),
                    self.session_id.as_ref(),
                )?;
                self.apply(outcome, now)
            }
            m if initial => Err(Error::Unexpected {
                msg: m,
                state: "before the first key exchange completed",
            }),
            m if m.is_transport()
                && m != MsgType::SERVICE_REQUEST
                && m != MsgType::SERVICE_ACCEPT =>
            {
                self.send_unimplemented();
                Ok(None)
            }
            _ => {
                if self
                    .exchange
                    .as_ref()
                    .is_some_and(Exchange::peer_kexinit_seen)
                {
                    // RFC 4253 §7.1: after its KEXINIT the peer may send only kex messages.
                    return Err(Error::Unexpected {
                        msg,
                        state: "during key exchange",
                    });
                }
                Ok(Some(Input::Payload(range)))
            }
        }
    }

    /// OpenSSH PROTOCOL §1.10: with strict kex, any message other than those of the key
    /// exchange itself before the first NEWKEYS is fatal, and KEXINIT must come first.
    fn strict_kex_pending_violation(&self, msg: MsgType) -> bool {
        let strict = self.exchange.as_ref().is_some_and(|e| e.strict());
        strict && !msg.is_kex() && msg != MsgType::DISCONNECT
    }

    fn on_kexinit(&mut self, range: Range<usize>, now: Instant) -> Result<Option<Input>, Error> {
        if self.exchange.is_none() {
            self.start_kex();
        }
        let first_packet = self.rx.packets == 1;
        let payload = self.rx.payload(range).to_vec();
        let Some(ex) = self.exchange.as_mut() else {
            return Err(Error::Unexpected {
                msg: MsgType::KEXINIT,
                state: "internal: no exchange",
            });
        };
        let peer_ident = self.peer_ident.clone().unwrap_or_default();
        let outcome = ex.on_kexinit(payload, &mut self.tx, &peer_ident)?;
        if ex.strict() && self.session_id.is_none() && !first_packet {
            return Err(Error::StrictKex("KEXINIT was not the first packet"));
        }
        self.skip_next_kex_packet = ex.negotiated().is_some_and(|n| n.ignore_guessed_packet);
        self.apply(outcome, now)
    }

    fn on_newkeys(&mut self, now: Instant) -> Result<Option<Input>, Error> {
        let Some(ex) = self.exchange.as_mut() else {
            return Err(Error::Unexpected {
                msg: MsgType::NEWKEYS,
                state: "outside a key exchange",
            });
        };
        let (key, we_sent_newkeys) = ex.take_opening_key()?;
        self.rx.opener.set_key(key);
        // OpenSSH PROTOCOL §1.9: with strict kex the sequence number restarts at zero after
        // every NEWKEYS, for the whole connection, not only the first.
        if self.strict_kex || ex.strict() {
            self.rx.opener.seq = 0;
        }
        self.rx.bytes_since_kex = 0;
        if we_sent_newkeys {
            return Ok(Some(self.finish_kex(now)));
        }
        Ok(None)
    }

    fn apply(&mut self, outcome: KexOutcome, now: Instant) -> Result<Option<Input>, Error> {
        match outcome {
            KexOutcome::Continue => Ok(None),
            KexOutcome::VerifyHostKey(key) => {
                if let Some(known) = &self.peer_host_key {
                    // Re-key: the server must keep proving the key the user already accepted.
                    if *known != key {
                        return Err(Error::HostKeyChanged {
                            was: known.fingerprint(),
                            now: key.fingerprint(),
                        });
                    }
                    self.send_newkeys()?;
                    return self.after_newkeys_sent(now);
                }
                self.paused = true;
                Ok(Some(Input::VerifyHostKey(key)))
            }
            KexOutcome::SentNewKeys => self.after_newkeys_sent(now),
        }
    }

    /// The application's verdict on the host key of the first exchange.
    pub fn host_key_verdict(&mut self, accept: bool, now: Instant) -> Result<Option<Input>, Error> {
        if !self.paused {
            return Ok(None);
        }
        self.paused = false;
        let Some(ex) = self.exchange.as_ref() else {
            return Ok(None);
        };
        let Some(key) = ex.peer_host_key() else {
            return Ok(None);
        };
        if !accept {
            return Err(Error::HostKeyRejected {
                fingerprint: key.fingerprint(),
            });
        }
        self.peer_host_key = Some(key.clone());
        self.send_newkeys()?;
        self.after_newkeys_sent(now)
    }

    fn send_newkeys(&mut self) -> Result<(), Error> {
        let Some(ex) = self.exchange.as_mut() else {
            return Ok(());
        };
        ex.send_newkeys(&mut self.tx)
    }

    fn after_newkeys_sent(&mut self, now: Instant) -> Result<Option<Input>, Error> {
        let Some(ex) = self.exchange.as_mut() else {
            return Ok(None);
        };
        let key = ex.take_sealing_key()?;
        self.tx.sealer.set_key(key);
        if self.strict_kex || ex.strict() {
            self.tx.sealer.seq = 0;
        }
        self.tx.bytes_since_kex = 0;
        if ex.newkeys_received() {
            return Ok(Some(self.finish_kex(now)));
        }
        Ok(None)
    }

    fn finish_kex(&mut self, now: Instant) -> Input {
        let initial = self.session_id.is_none();
        if let Some(ex) = self.exchange.take() {
            if initial {
                self.session_id = ex.exchange_hash();
                self.strict_kex = ex.strict();
                if self.role == Role::Server {
                    self.peer_host_key = self.host_key.as_ref().map(|k| HostKey::from(k.public()));
                }
            }
            self.negotiated = ex.negotiated().copied();
            // RFC 8308 §2.4: the server sends EXT_INFO right after its first NEWKEYS.
            if initial
                && self.role == Role::Server
                && ex.negotiated().is_some_and(|n| n.peer_wants_ext_info)
            {
                self.tx.seal(exchange::build_ext_info);
            }
        }
        self.last_kex = now;
        self.key_exchanges += 1;
        self.tx.in_kex = false;
        self.tx.flush_queued();
        Input::KexDone { initial }
    }

    fn start_kex(&mut self) {
        let cookie = self.tx.rng.array();
        let initial = self.session_id.is_none();
        let ex = Exchange::start(
            self.role,
            self.config.preferences.clone(),
            initial,
            cookie,
            &mut self.tx,
            match &self.ident {
                Ident::Done(peer) => Some(peer.clone()),
                Ident::Waiting(_) => None,
            },
        );
        self.exchange = Some(ex);
    }

    /// Starts a re-key if the volume or time limit has been reached (RFC 4253 §9), or if
    /// `force` is set.
    pub fn maybe_rekey(&mut self, now: Instant, force: bool) {
        if self.exchange.is_some() || self.session_id.is_none() {
            return;
        }
        let volume =
            self.tx.bytes_since_kex.max(self.rx.bytes_since_kex) >= self.config.rekey_bytes;
        let time = now.saturating_duration_since(self.last_kex) >= self.config.rekey_interval;
        if force || volume || time {
            self.start_kex();
        }
    }

    /// Starts a re-key if the volume limit has been reached.
    pub fn maybe_rekey_for_volume(&mut self) {
        if self.exchange.is_none()
            && self.session_id.is_some()
            && self.tx.bytes_since_kex.max(self.rx.bytes_since_kex) >= self.config.rekey_bytes
        {
            self.start_kex();
        }
    }

    /// When the time-based re-key falls due.
    pub fn rekey_deadline(&self) -> Option<Instant> {
        self.session_id
            .map(|_| self.last_kex + self.config.rekey_interval)
    }

    pub fn is_rekeying(&self) -> bool {
        self.exchange.is_some()
    }

    /// RFC 4253 §11.4: answers the packet just received with UNIMPLEMENTED and its sequence
    /// number. Allowed mid-kex: it is a transport message.
    pub fn send_unimplemented(&mut self) {
        let seq = self.rx.opener.seq.wrapping_sub(1);
        self.tx.seal(|b| {
            Writer::new(b).u8(MsgType::UNIMPLEMENTED.0).u32(seq);
        });
    }

    /// Queues SSH_MSG_DISCONNECT (RFC 4253 §11.1). Sent even mid-kex: it is a transport message.
    pub fn send_disconnect(&mut self, reason: DisconnectReason, description: &str) {
        self.tx.seal(|b| {
            Writer::new(b)
                .u8(MsgType::DISCONNECT.0)
                .u32(reason.0)
                .string(description)
                .string("");
        });
    }
}
