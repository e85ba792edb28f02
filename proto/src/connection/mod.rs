//! The connection protocol (RFC 4254): channels with flow control (§5), TCP/IP forwarding
//! (§7) and `tun@openssh.com` (OpenSSH PROTOCOL §2.3), and global requests (§4).
//!
//! Owns the channel table and the global request queues. Reached only after user
//! authentication: `Connection` refuses these messages before that (the CVE-2025-32433 check).

mod channel;
pub mod global;
pub mod open;
pub mod tun;

use std::collections::{HashMap, VecDeque};

pub use channel::{CHUNK, Phase};
use channel::{Channel, Spare};
pub use global::{GlobalRequest, RequestId};
pub use open::{ChannelKind, OpenFailure, TUN_UNIT_ANY, TunMode};

use crate::error::Error;
use crate::event::Event;
use crate::transport::Tx;
use crate::wire::{MsgType, Reader, Writer};

/// Our local channel number (the "recipient channel" the peer addresses us by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u32);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Consumed bytes are returned to the peer at least this often, however large the window.
/// A peer sending bulk data over a slow path gets nothing else back while its keepalive
/// probes wait behind that data; with adjusts only every half window (8 MiB by default) a
/// 2 MB/s path left it 4 s without input, and a link with a short keepalive window was
/// declared dead in the middle of a transfer.
pub const MAX_ADJUST_STEP: u32 = 1 << 20;

/// A stream channel opened while its connection's windows already add up to
/// [`ChannelConfig::window_budget`] gets this window, and keeps it: enough for one OpenSSH
/// packet (32 KiB) at a time. A peer can then make us hold at most the budget plus this much
/// per channel. (A datagram channel gets twice `max_packet`: its messages cannot be split to
/// fit, and what is consumed goes back once half the window has been.)
pub const FLOOR_WINDOW: u32 = 32 * 1024;

/// A window grows without running dry when twice its size arrives within this long: the
/// channel moves at least twice its window per second, so a larger one would serve a path
/// whose round trip is over half a second. A trickle (a shell, a chat) keeps its first window
/// however much it moves over hours.
pub const BUSY_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Flow-control and resource settings for channels.
///
/// Receive windows adapt: a channel starts at `initial_window`, and each time its peer runs
/// the window dry, or twice its window arrives within [`BUSY_PERIOD`], while the application
/// keeps up (the window, not the reader, holds the peer back) it doubles, up to `window`, as
/// long as the connection's windows together stay within `window_budget`. A quiet channel, or
/// one whose reader is slow, stays small, so a thousand idle SOCKS connections do not each
/// promise a fast link's worth of memory.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Largest window one channel grows to: enough for one channel to fill a fast, distant
    /// link (bandwidth × delay). OpenSSH grants 2 MiB.
    pub window: u32,
    /// The window a channel starts with.
    pub initial_window: u32,
    /// Most the windows of one connection's channels add up to: what its peer can make us
    /// buffer (past it, new channels get [`FLOOR_WINDOW`] and none grows).
    pub window_budget: u64,
    /// Largest data message we accept per channel (RFC 4254 §5.1 "maximum packet size").
    pub max_packet: u32,
    /// Channels one connection may hold at once; further opens get RESOURCE_SHORTAGE.
    pub max_channels: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            window: 16 * 1024 * 1024,
            initial_window: 256 * 1024,
            window_budget: 256 * 1024 * 1024,
            max_packet: 128 * 1024,
            max_channels: 4096,
        }
    }
}

/// The receive windows of a connection's channels, counted against
/// [`ChannelConfig::window_budget`]: each channel's `target` is in `committed` from its
/// allocation to its release.
#[derive(Debug)]
struct Budget {
    limit: u64,
    committed: u64,
}

impl Budget {
    /// The window for a new channel, now counted: `initial`, or past the limit `floor`.
    fn open(&mut self, initial: u32, floor: u32) -> u32 {
        let window = if self.committed + u64::from(initial) <= self.limit {
            initial
        } else {
            initial.min(floor)
        };
        self.committed += u64::from(window);
        window
    }

    /// How much a channel whose window is `target` may grow by (at most double, at most to
    /// `max`, within the limit), now counted.
    fn grow(&mut self, target: u32, max: u32) -> u32 {
        let room = u32::try_from(self.limit.saturating_sub(self.committed)).unwrap_or(u32::MAX);
        let more = target.min(max.saturating_sub(target)).min(room);
        self.committed += u64::from(more);
        more
    }

    fn release(&mut self, target: u32) {
        self.committed = self.committed.saturating_sub(u64::from(target));
    }
}

/// Errors from channel commands the application issues.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("no channel {0}")]
    Unknown(ChannelId),
    #[error("channel {0} is not open")]
    NotOpen(ChannelId),
    #[error("channel {0} was already closed or half-closed for sending")]
    Closed(ChannelId),
    #[error("too many channels open")]
    TooMany,
    #[error("not authenticated yet")]
    NotAuthenticated,
}

#[derive(Debug)]
pub struct Channels {
    config: ChannelConfig,
    table: HashMap<u32, Channel>,
    next_id: u32,
    global: global::Queues,
    /// Emptied receive chunks, shared by all channels.
    spare: Spare,
    budget: Budget,
}

fn protocol(why: impl Into<String>) -> Error {
    Error::Channel(why.into())
}

impl Channels {
    pub fn new(config: ChannelConfig) -> Self {
        Self {
            table: HashMap::new(),
            next_id: 0,
            global: global::Queues::default(),
            spare: Spare::default(),
            budget: Budget {
                limit: config.window_budget,
                committed: 0,
            },
            config,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.table.keys().map(|&k| ChannelId(k))
    }

    pub fn kind(&self, id: ChannelId) -> Option<&ChannelKind> {
        self.table.get(&id.0).map(|c| &c.kind)
    }

    /// Gives `ch` an id and its first window.
    fn alloc(&mut self, mut ch: Channel) -> Result<ChannelId, ChannelError> {
        if self.table.len() >= self.config.max_channels {
            return Err(ChannelError::TooMany);
        }
        let floor = if ch.datagram {
            self.config.max_packet.saturating_mul(2)
        } else {
            FLOOR_WINDOW
        };
        let window = self.budget.open(self.config.initial_window, floor);
        ch.target = window;
        ch.recv_window = window;
        while self.table.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.table.insert(id, ch);
        Ok(ChannelId(id))
    }

    /// Forgets channel `id`. A table that grew for a burst (a thousand SOCKS connections)
    /// gives its memory back once the burst is over: when at most a quarter of its capacity
    /// is in use it is rebuilt at twice its length. Each rebuild at least halves the
    /// capacity, so its cost stays proportional to the removals that led to it.
    fn release(&mut self, id: u32) {
        if let Some(ch) = self.table.remove(&id) {
            self.budget.release(ch.target);
        }
        if self.table.capacity() > 64 && self.table.len() * 4 <= self.table.capacity() {
            self.table.shrink_to(self.table.len() * 2);
        }
    }

    /// Sends SSH_MSG_CHANNEL_OPEN (RFC 4254 §5.1).
    pub fn open(&mut self, kind: ChannelKind, tx: &mut Tx) -> Result<ChannelId, ChannelError> {
        let max_packet = self.config.max_packet;
        let id = self.alloc(Channel::new(kind.clone(), Phase::Opening))?;
        let window = self.window(id);
        tx.send(|b| {
            let mut w = Writer::new(b);
            w.u8(MsgType::CHANNEL_OPEN.0)
                .string(kind.type_name())
                .u32(id.0)
                .u32(window)
                .u32(max_packet);
            kind.encode(&mut w);
        });
        Ok(id)
    }

    pub fn accept(&mut self, id: ChannelId, tx: &mut Tx) -> Result<(), ChannelError> {
        let max_packet = self.config.max_packet;
        let ch = self.table.get_mut(&id.0).ok_or(ChannelError::Unknown(id))?;
        if ch.phase != Phase::PeerOpening {
            return Err(ChannelError::NotOpen(id));
        }
        ch.phase = Phase::Open;
        let window = ch.recv_window;
        let remote = ch.remote_id;
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::CHANNEL_OPEN_CONFIRMATION.0)
                .u32(remote)
                .u32(id.0)
                .u32(window)
                .u32(max_packet);
        });
        Ok(())
    }

    pub fn reject(
        &mut self,
        id: ChannelId,
        reason: OpenFailure,
        description: &str,
        tx: &mut Tx,
    ) -> Result<(), ChannelError> {
        let ch = self.table.get(&id.0).ok_or(ChannelError::Unknown(id))?;
        if ch.phase != Phase::PeerOpening {
            return Err(ChannelError::NotOpen(id));
        }
        let remote = ch.remote_id;
        self.release(id.0);
        send_open_failure(tx, remote, reason, description);
        Ok(())
    }

    /// Sends as much of `data` as the peer's window allows, in messages no larger than its
    /// maximum packet size. Returns the bytes taken; 0 means wait for `ChannelWritable`.
    pub fn send(&mut self, id: ChannelId, data: &[u8], tx: &mut Tx) -> Result<usize, ChannelError> {
        let ch = self.table.get_mut(&id.0).ok_or(ChannelError::Unknown(id))?;
        if ch.phase != Phase::Open {
            return Err(ChannelError::NotOpen(id));
        }
        if ch.sent_eof || ch.sent_close || ch.recv_close {
            return Err(ChannelError::Closed(id));
        }
        if !tx.is_open_for_data() || ch.send_window == 0 {
            ch.blocked = true;
            return Ok(0);
        }
        let chunk_max = (ch.remote_max_packet as usize)
            .min(tx.max_payload() - 9)
            .max(1);
        let sent = if ch.datagram {
            send_datagrams(ch, data, chunk_max, tx)
        } else {
            send_stream(ch, data, chunk_max, tx)
        };
        if sent < data.len() {
            ch.blocked = true;
        }
        Ok(sent)
    }

    pub fn buffered(&self, id: ChannelId) -> &[u8] {
        self.table
            .get(&id.0)
            .map(Channel::buffered)
            .unwrap_or_default()
    }

    /// The application consumed `n` buffered bytes (on a datagram channel, whole messages):
    /// return what the window counted of them once half the window, or [`MAX_ADJUST_STEP`],
    /// has been consumed, so adjusts are few and the pipe stays full.
    pub fn consume(&mut self, id: ChannelId, n: usize, tx: &mut Tx) {
        let Some(ch) = self.table.get_mut(&id.0) else {
            return;
        };
        let counted = ch.counted_in(n);
        let n = ch.consume(n, &mut self.spare);
        let max = self.config.window;
        return_window(ch, counted.min(n), &mut self.budget, max, tx);
    }

    /// Takes the oldest chunk of buffered data by value, as `consume` would.
    pub fn take(&mut self, id: ChannelId, tx: &mut Tx) -> Option<Vec<u8>> {
        let ch = self.table.get_mut(&id.0)?;
        // What the window counted: on a datagram channel, without the length prefixes.
        let n = ch.counted_in(ch.front_len());
        let chunk = ch.take()?;
        let max = self.config.window;
        return_window(ch, n, &mut self.budget, max, tx);
        Some(chunk)
    }

    /// The receive window channel `id` now keeps open for its peer (see [`ChannelConfig`]);
    /// 0 for an unknown channel.
    pub fn window(&self, id: ChannelId) -> u32 {
        self.table.get(&id.0).map_or(0, |ch| ch.target)
    }

    /// What the receive windows of all channels add up to.
    pub fn windows_total(&self) -> u64 {
        self.budget.committed
    }

    /// Hands back a chunk from [`Channels::take`] once the application is done with it.
    pub fn recycle(&mut self, chunk: Vec<u8>) {
        self.spare.put(chunk);
    }

    /// Sends a channel request that wants no reply (RFC 4254 §5.4); `data` is appended as is.
    pub fn send_request(
        &mut self,
        id: ChannelId,
        request: &str,
        data: &[u8],
        tx: &mut Tx,
    ) -> Result<(), ChannelError> {
        let ch = self.table.get_mut(&id.0).ok_or(ChannelError::Unknown(id))?;
        if ch.phase != Phase::Open || ch.sent_close {
            return Err(ChannelError::NotOpen(id));
        }
        let remote = ch.remote_id;
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::CHANNEL_REQUEST.0)
                .u32(remote)
                .string(request)
                .bool(false)
                .raw(data);
        });
        Ok(())
    }

    pub fn send_eof(&mut self, id: ChannelId, tx: &mut Tx) -> Result<(), ChannelError> {
        let ch = self.table.get_mut(&id.0).ok_or(ChannelError::Unknown(id))?;
        if ch.phase != Phase::Open {
            return Err(ChannelError::NotOpen(id));
        }
        if !ch.sent_eof && !ch.sent_close {
            ch.sent_eof = true;
            let remote = ch.remote_id;
            tx.send(|b| {
                Writer::new(b).u8(MsgType::CHANNEL_EOF.0).u32(remote);
            });
        }
        Ok(())
    }

    /// Closes our side (RFC 4254 §5.3) and lets go of the id once the peer's CLOSE is in.
    pub fn close(&mut self, id: ChannelId, tx: &mut Tx) -> Result<(), ChannelError> {
        let ch = self.table.get_mut(&id.0).ok_or(ChannelError::Unknown(id))?;
        match ch.phase {
            Phase::PeerOpening => {
                let remote = ch.remote_id;
                self.release(id.0);
                send_open_failure(tx, remote, OpenFailure::CONNECT_FAILED, "closed");
                return Ok(());
            }
            // The peer has not confirmed yet: we can only close once it does.
            Phase::Opening => ch.app_closed = true,
            Phase::Open => {
                ch.app_closed = true;
                ch.send_close(tx);
            }
        }
        if ch.is_finished() {
            self.release(id.0);
        }
        Ok(())
    }

    /// Channels told to wait for a key exchange may send again.
    pub fn unblock_all(&mut self, events: &mut VecDeque<Event>) {
        for (&id, ch) in &mut self.table {
            if ch.blocked && ch.send_window > 0 {
                ch.blocked = false;
                events.push_back(Event::ChannelWritable { id: ChannelId(id) });
            }
        }
    }

    pub fn global_request(&mut self, request: &GlobalRequest, tx: &mut Tx) -> RequestId {
        self.global.send(request, tx)
    }

    pub fn reply_global(&mut self, id: RequestId, result: Result<Option<u32>, ()>, tx: &mut Tx) {
        self.global.reply(id, result, tx);
    }

    pub fn keepalive(&mut self, tx: &mut Tx, now: std::time::Instant) {
        self.global.keepalive(tx, now);
    }

    /// Channel data the open channels have carried, both ways: what tells a connection in use
    /// from one that only exchanges keepalives.
    pub fn data_bytes(&self) -> u64 {
        self.table.values().map(|c| c.bytes_in + c.bytes_out).sum()
    }

    /// Whether receive chunks are kept for reuse.
    pub fn holds_spare(&self) -> bool {
        self.spare.holds_chunks()
    }

    /// Gives back the receive chunks kept for reuse; whether there were any.
    pub fn release_spare(&mut self) -> bool {
        self.spare.release()
    }

    /// Handles one connection-protocol message from the peer.
    pub fn on_message(
        &mut self,
        payload: &[u8],
        tx: &mut Tx,
        events: &mut VecDeque<Event>,
        now: std::time::Instant,
    ) -> Result<(), Error> {
        let msg = MsgType(payload.first().copied().unwrap_or(0));
        let mut r = Reader::new(payload.get(1..).unwrap_or_default());
        match msg {
            MsgType::GLOBAL_REQUEST => self.global.on_request(&mut r, tx, events),
            MsgType::REQUEST_SUCCESS | MsgType::REQUEST_FAILURE => {
                self.global
                    .on_reply(msg == MsgType::REQUEST_SUCCESS, &mut r, events, now)
            }
            MsgType::CHANNEL_OPEN => self.on_open(&mut r, tx, events),
            MsgType::CHANNEL_OPEN_CONFIRMATION => {
                let id = r.u32()?;
                let ch = self.expect(id, Phase::Opening, msg)?;
                ch.remote_id = r.u32()?;
                ch.send_window = r.u32()?;
                ch.remote_max_packet = r.u32()?;
                if ch.remote_max_packet == 0 {
                    return Err(protocol("peer advertised a maximum packet size of 0"));
                }
                ch.phase = Phase::Open;
                if ch.app_closed {
                    // Closed by the application while the open was in flight.
                    ch.send_close(tx);
                } else {
                    events.push_back(Event::ChannelOpened { id: ChannelId(id) });
                }
                Ok(())
            }
            MsgType::CHANNEL_OPEN_FAILURE => {
                let id = r.u32()?;
                let ch = self.expect(id, Phase::Opening, msg)?;
                let app_closed = ch.app_closed;
                let reason = OpenFailure(r.u32()?);
                let description = String::from_utf8_lossy(r.string()?)
                    .chars()
                    .take(256)
                    .collect();
                self.release(id);
                if !app_closed {
                    events.push_back(Event::ChannelOpenFailed {
                        id: ChannelId(id),
                        reason,
                        description,
                    });
                }
                Ok(())
            }
            MsgType::CHANNEL_WINDOW_ADJUST => {
                let id = r.u32()?;
                let add = r.u32()?;
                let ch = self.expect(id, Phase::Open, msg)?;
                // RFC 4254 §5.2: the window may grow to at most 2^32 - 1.
                ch.send_window = ch.send_window.saturating_add(add);
                if ch.blocked && add > 0 && !ch.sent_close {
                    ch.blocked = false;
                    events.push_back(Event::ChannelWritable { id: ChannelId(id) });
                }
                Ok(())
            }
            MsgType::CHANNEL_DATA | MsgType::CHANNEL_EXTENDED_DATA => {
                let id = r.u32()?;
                if msg == MsgType::CHANNEL_EXTENDED_DATA {
                    r.u32()?;
                }
                let data = r.string()?;
                let max_packet = self.config.max_packet;
                let ch = expect(&mut self.table, id, Phase::Open, msg)?;
                if ch.recv_eof || ch.recv_close {
                    return Err(protocol(format!("data on channel {id} after EOF")));
                }
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                if len > ch.recv_window {
                    return Err(protocol(format!(
                        "channel {id}: peer sent {len} bytes with a window of {}",
                        ch.recv_window
                    )));
                }
                if len > max_packet {
                    return Err(protocol(format!(
                        "channel {id}: {len}-byte data message exceeds our maximum packet size"
                    )));
                }
                ch.recv_window -= len;
                if ch.recv_window < ch.target / 8 {
                    ch.ran_dry = true;
                    ch.emptied = false;
                }
                match ch.period {
                    Some(start) if now.saturating_duration_since(start) <= BUSY_PERIOD => {}
                    _ => {
                        ch.period = Some(now);
                        ch.moved = 0;
                    }
                }
                ch.moved = ch.moved.saturating_add(u64::from(len));
                if ch.sent_close || msg == MsgType::CHANNEL_EXTENDED_DATA {
                    // Nobody will read it (stderr has no meaning for our channel types): it
                    // is consumed as it comes, and its window goes back.
                    let max = self.config.window;
                    return_window(ch, len as usize, &mut self.budget, max, tx);
                    return Ok(());
                }
                if data.is_empty() {
                    // Carries nothing, and costs no window: buffered, it would leave an empty
                    // chunk in front of later data (which readers take as "nothing more"), or
                    // on a TUN channel a length prefix per message, without bound.
                    return Ok(());
                }
                let was_empty = ch.buffered().is_empty();
                ch.push(data, &mut self.spare);
                if was_empty {
                    events.push_back(Event::ChannelReadable { id: ChannelId(id) });
                }
                Ok(())
            }
            MsgType::CHANNEL_EOF => {
                let id = r.u32()?;
                let ch = self.expect(id, Phase::Open, msg)?;
                if !ch.recv_eof {
                    ch.recv_eof = true;
                    events.push_back(Event::ChannelEof { id: ChannelId(id) });
                }
                Ok(())
            }
            MsgType::CHANNEL_CLOSE => {
                let id = r.u32()?;
                let ch = self.expect(id, Phase::Open, msg)?;
                if ch.recv_close {
                    return Err(protocol(format!("channel {id} closed twice")));
                }
                ch.recv_close = true;
                // RFC 4254 §5.3: answer CLOSE with CLOSE unless we already sent one.
                ch.send_close(tx);
                if ch.is_finished() {
                    self.release(id);
                } else {
                    events.push_back(Event::ChannelClosed { id: ChannelId(id) });
                }
                Ok(())
            }
            MsgType::CHANNEL_REQUEST => {
                let id = r.u32()?;
                let request = String::from_utf8_lossy(r.string()?)
                    .chars()
                    .take(64)
                    .collect::<String>();
                let want_reply = r.bool()?;
                let data = r.rest();
                let ch = self.expect(id, Phase::Open, msg)?;
                // Requests that want an answer are refused: none apply to our channel types.
                // Those that do not ("eow@openssh.com", sshvpn's own "tun-address@sshvpn")
                // are handed to the application, bounded by the packet size.
                if want_reply && !ch.sent_close {
                    let remote = ch.remote_id;
                    tx.send(|b| {
                        Writer::new(b).u8(MsgType::CHANNEL_FAILURE.0).u32(remote);
                    });
                } else if !want_reply && !ch.recv_close {
                    events.push_back(Event::ChannelRequest {
                        id: ChannelId(id),
                        request,
                        data: data.to_vec(),
                    });
                }
                Ok(())
            }
            MsgType::CHANNEL_SUCCESS | MsgType::CHANNEL_FAILURE => {
                let id = r.u32()?;
                self.expect(id, Phase::Open, msg)?;
                Ok(())
            }
            _ => Err(Error::Unexpected {
                msg,
                state: "in the connection protocol",
            }),
        }
    }

    fn expect(&mut self, id: u32, phase: Phase, msg: MsgType) -> Result<&mut Channel, Error> {
        expect(&mut self.table, id, phase, msg)
    }

    fn on_open(
        &mut self,
        r: &mut Reader<'_>,
        tx: &mut Tx,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        let type_name = r.string()?;
        let sender = r.u32()?;
        let window = r.u32()?;
        let max_packet = r.u32()?;
        let kind = match ChannelKind::decode(type_name, r) {
            Ok(Some(kind)) => kind,
            Ok(None) => {
                send_open_failure(
                    tx,
                    sender,
                    OpenFailure::UNKNOWN_CHANNEL_TYPE,
                    "unknown channel type",
                );
                return Ok(());
            }
            // A bad open request costs the peer that channel, not the connection.
            Err(e) => {
                let why = format!("malformed open request: {e}");
                send_open_failure(tx, sender, OpenFailure::CONNECT_FAILED, &why);
                return Ok(());
            }
        };
        if max_packet == 0 {
            send_open_failure(
                tx,
                sender,
                OpenFailure::ADMINISTRATIVELY_PROHIBITED,
                "maximum packet size of 0",
            );
            return Ok(());
        }
        let mut ch = Channel::new(kind.clone(), Phase::PeerOpening);
        ch.remote_id = sender;
        ch.send_window = window;
        ch.remote_max_packet = max_packet;
        match self.alloc(ch) {
            Ok(id) => events.push_back(Event::ChannelOpenRequest { id, kind }),
            Err(_) => send_open_failure(
                tx,
                sender,
                OpenFailure::RESOURCE_SHORTAGE,
                "too many channels",
            ),
        }
        Ok(())
    }
}

/// Stream channels: as many bytes as the window allows, in messages of at most `chunk_max`.
fn send_stream(ch: &mut Channel, data: &[u8], chunk_max: usize, tx: &mut Tx) -> usize {
    let budget = data.len().min(ch.send_window as usize);
    let remote = ch.remote_id;
    let mut sent = 0;
    for chunk in data.get(..budget).unwrap_or_default().chunks(chunk_max) {
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::CHANNEL_DATA.0)
                .u32(remote)
                .string(chunk);
        });
        sent += chunk.len();
    }
    ch.send_window -= sent as u32;
    ch.bytes_out += sent as u64;
    sent
}

/// Datagram channels: `data` is a run of SSH strings; each whole one that fits the window
/// goes out as one message. Returns the bytes of `data` consumed (prefixes included). A
/// datagram larger than the peer's maximum packet can never be sent and is dropped.
fn send_datagrams(ch: &mut Channel, data: &[u8], chunk_max: usize, tx: &mut Tx) -> usize {
    let remote = ch.remote_id;
    let mut used = 0;
    loop {
        let rest = data.get(used..).unwrap_or_default();
        let Some(len) = rest
            .first_chunk::<4>()
            .map(|b| u32::from_be_bytes(*b) as usize)
        else {
            break;
        };
        let Some(datagram) = rest.get(4..4 + len) else {
            break;
        };
        if len > chunk_max {
            used += 4 + len;
            continue;
        }
        if len > ch.send_window as usize {
            break;
        }
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::CHANNEL_DATA.0)
                .u32(remote)
                .string(datagram);
        });
        ch.send_window -= len as u32;
        ch.bytes_out += len as u64;
        used += 4 + len;
    }
    used
}

fn expect(
    table: &mut HashMap<u32, Channel>,
    id: u32,
    phase: Phase,
    msg: MsgType,
) -> Result<&mut Channel, Error> {
    match table.get_mut(&id) {
        Some(ch) if ch.phase == phase => Ok(ch),
        Some(_) => Err(protocol(format!(
            "{msg:?} for channel {id} in the wrong state"
        ))),
        None => Err(protocol(format!("{msg:?} for unknown channel {id}"))),
    }
}

/// Returns `n` consumed bytes to the peer's window once half the window, or
/// [`MAX_ADJUST_STEP`], of them have gathered, so adjusts are few and the pipe stays full.
/// If the peer ran the window dry, or twice the window arrived within [`BUSY_PERIOD`], and
/// the application then took everything, the window grows by as much again (at most to
/// `max`, within the budget). Dry windows alone are too rare a sign on a fast path: a 1 MiB
/// window that never ran dry still cost 5% of a forward between two sshvpnd.
fn return_window(ch: &mut Channel, n: usize, budget: &mut Budget, max: u32, tx: &mut Tx) {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    ch.unacked = ch.unacked.saturating_add(n);
    if ch.is_drained() {
        ch.emptied = true;
    }
    let step = (ch.target / 2).min(MAX_ADJUST_STEP);
    if ch.unacked >= step && !ch.recv_eof && !ch.recv_close && !ch.sent_close {
        let mut adjust = ch.unacked;
        ch.unacked = 0;
        let busy = ch.moved >= 2 * u64::from(ch.target);
        if (ch.ran_dry || busy) && ch.emptied {
            ch.ran_dry = false;
            ch.emptied = false;
            ch.moved = 0;
            ch.period = None;
            let more = budget.grow(ch.target, max);
            ch.target += more;
            adjust += more;
        }
        ch.recv_window = ch.recv_window.saturating_add(adjust);
        let remote = ch.remote_id;
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::CHANNEL_WINDOW_ADJUST.0)
                .u32(remote)
                .u32(adjust);
        });
    }
}

fn send_open_failure(tx: &mut Tx, remote: u32, reason: OpenFailure, description: &str) {
    tx.send(|b| {
        Writer::new(b)
            .u8(MsgType::CHANNEL_OPEN_FAILURE.0)
            .u32(remote)
            .u32(reason.0)
            .string(description)
            .string("");
    });
}
