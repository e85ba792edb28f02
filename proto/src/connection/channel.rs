//! One channel's state (RFC 4254 §5): its windows in both directions, its receive buffer,
//! and where it is in its open/EOF/close life.

use std::collections::VecDeque;

use super::ChannelKind;
use crate::transport::Tx;
use crate::wire::{MsgType, Writer};

/// Where a channel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// We sent CHANNEL_OPEN and wait for the answer.
    Opening,
    /// The peer asked to open it; the application has not answered yet.
    PeerOpening,
    Open,
}

#[derive(Debug)]
pub struct Channel {
    pub kind: ChannelKind,
    pub phase: Phase,
    pub remote_id: u32,
    /// Bytes the peer still lets us send (RFC 4254 §5.2).
    pub send_window: u32,
    pub remote_max_packet: u32,
    /// Bytes we still let the peer send before it must wait for an adjust.
    pub recv_window: u32,
    /// The window we keep open for the peer: `recv_window`, plus what is buffered, plus
    /// `unacked`. Counted in the connection's window budget; grows, never shrinks.
    pub target: u32,
    /// The peer ran `recv_window` nearly dry since the window last grew...
    pub ran_dry: bool,
    /// ...or twice the window arrived within [`BUSY_PERIOD`](super::BUSY_PERIOD) (`moved`);
    /// and after that the application took everything buffered. Then the window, not the
    /// application, holds the peer back, or soon may.
    pub emptied: bool,
    /// Bytes arrived since `period` began: a period starts with the first data after the
    /// window grew, and again with the first data once `BUSY_PERIOD` has passed.
    pub moved: u64,
    pub period: Option<std::time::Instant>,
    /// Consumed by the application, not yet returned to the peer with WINDOW_ADJUST.
    pub unacked: u32,
    /// Received data not yet consumed, in chunks the application can take by value
    /// ([`Channel::take`]): small messages share a chunk, so a chunk is as large as what
    /// arrived together, up to [`CHUNK`] (or one larger message).
    recv: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already consumed.
    recv_front: usize,
    pub sent_eof: bool,
    pub recv_eof: bool,
    pub sent_close: bool,
    pub recv_close: bool,
    /// The application called `close_channel`: the id is released once the peer's CLOSE is in.
    pub app_closed: bool,
    /// The application was told it could not send; tell it when it can.
    pub blocked: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Message boundaries carry meaning (`tun@openssh.com`: one packet per message, as
    /// OpenSSH's datagram channels). The application sees each message as an SSH `string`
    /// (length-prefixed) in the receive buffer, and hands `send` a run of such strings.
    pub datagram: bool,
}

impl Channel {
    /// A channel without a window yet (the channel table gives it one).
    pub fn new(kind: ChannelKind, phase: Phase) -> Self {
        let datagram = matches!(kind, ChannelKind::Tun { .. });
        Self {
            kind,
            phase,
            remote_id: 0,
            send_window: 0,
            remote_max_packet: 0,
            recv_window: 0,
            target: 0,
            ran_dry: false,
            emptied: false,
            moved: 0,
            period: None,
            unacked: 0,
            recv: VecDeque::new(),
            recv_front: 0,
            sent_eof: false,
            recv_eof: false,
            sent_close: false,
            recv_close: false,
            app_closed: false,
            blocked: false,
            bytes_in: 0,
            bytes_out: 0,
            datagram,
        }
    }

    /// The oldest received bytes not yet consumed (more may follow once they are).
    pub fn buffered(&self) -> &[u8] {
        self.recv
            .front()
            .and_then(|c| c.get(self.recv_front..))
            .unwrap_or_default()
    }

    /// Nothing received is left unconsumed.
    pub fn is_drained(&self) -> bool {
        self.recv.is_empty()
    }

    /// Stores received data. The caller has checked it against `recv_window`, so the chunks
    /// never hold more than the window we advertised (plus one partly filled chunk, no
    /// larger than the window).
    pub fn push(&mut self, data: &[u8], spare: &mut Spare) {
        let prefix = if self.datagram { 4 } else { 0 };
        let need = prefix + data.len();
        let fits = self
            .recv
            .back()
            .is_some_and(|c| c.capacity() - c.len() >= need);
        if !fits {
            self.recv.push_back(spare.take(need, self.target as usize));
        }
        if let Some(chunk) = self.recv.back_mut() {
            if self.datagram {
                chunk.extend_from_slice(
                    &u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes(),
                );
            }
            chunk.extend_from_slice(data);
        }
        self.bytes_in += data.len() as u64;
    }

    /// Marks `n` buffered bytes as consumed; returns how many were.
    pub fn consume(&mut self, n: usize, spare: &mut Spare) -> usize {
        let mut done = 0;
        while done < n {
            let Some(front) = self.recv.front() else {
                break;
            };
            let left = front.len() - self.recv_front;
            if n - done < left {
                self.recv_front += n - done;
                done = n;
            } else {
                done += left;
                self.recv_front = 0;
                if let Some(chunk) = self.recv.pop_front() {
                    spare.put(chunk);
                }
            }
        }
        done
    }

    /// What the window counted for the first `n` buffered bytes: on a datagram channel, the
    /// message bytes among them without the length prefixes (also where `n` or an earlier
    /// consume cut a message); otherwise `n`.
    pub fn counted_in(&self, n: usize) -> usize {
        if !self.datagram {
            return n;
        }
        let mut from = self.recv_front;
        let mut left = n;
        let mut counted = 0;
        for chunk in &self.recv {
            if left == 0 {
                break;
            }
            let to = chunk.len().min(from.saturating_add(left));
            counted += payload_within(chunk, from, to);
            left -= to.saturating_sub(from);
            from = 0;
        }
        counted
    }

    /// Bytes of the front chunk not yet consumed.
    pub fn front_len(&self) -> usize {
        self.recv
            .front()
            .map_or(0, |c| c.len().saturating_sub(self.recv_front))
    }

    /// Takes the oldest chunk of received data, consuming it.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        let mut chunk = self.recv.pop_front()?;
        chunk.drain(..std::mem::take(&mut self.recv_front).min(chunk.len()));
        Some(chunk)
    }

    /// Sends CHANNEL_CLOSE (RFC 4254 §5.3) unless it went out already.
    pub fn send_close(&mut self, tx: &mut Tx) {
        if !self.sent_close {
            self.sent_close = true;
            let remote = self.remote_id;
            tx.send(|b| {
                Writer::new(b).u8(MsgType::CHANNEL_CLOSE.0).u32(remote);
            });
        }
    }

    /// Once neither side will send anything more, and the application has let go.
    pub fn is_finished(&self) -> bool {
        self.sent_close && self.recv_close && self.app_closed
    }
}

/// Received data is gathered in chunks of this size: large enough that a reader gets a few big
/// pieces rather than many small ones (256 KiB took 4–6% less server CPU per byte than 128 KiB
/// in a forward). That is above glibc's default mmap threshold: sshvpnd raises the threshold
/// so that chunks stay in the heap.
pub const CHUNK: usize = 256 * 1024;
/// Messages shorter than this start a chunk of `SMALL_CHUNK` bytes.
const SMALL_MESSAGE: usize = 1024;
const SMALL_CHUNK: usize = 16 * 1024;
/// Emptied chunks kept for reuse, per connection (1 MiB).
const SPARE_CHUNKS: usize = 4;

/// Emptied receive chunks kept for reuse, so a busy channel allocates nothing per message.
#[derive(Debug, Default)]
pub struct Spare {
    chunks: Vec<Vec<u8>>,
    /// One small chunk: a ping or a keystroke at a time reuses it instead of allocating one
    /// per message (16 KiB is past glibc's per-thread cache, so each took the allocator's
    /// slow path).
    small: Option<Vec<u8>>,
}

impl Spare {
    /// An empty chunk with room for at least `need` bytes, for a channel whose window is
    /// `window`. A small message starts a small chunk: a quiet channel should not hold a large
    /// one for a few bytes; nor should a channel with a small window.
    fn take(&mut self, need: usize, window: usize) -> Vec<u8> {
        if need < SMALL_MESSAGE {
            return self
                .small
                .take()
                .unwrap_or_else(|| Vec::with_capacity(SMALL_CHUNK));
        }
        // A channel with a small window takes no standard chunk either: a peer could park
        // one on each of thousands of them.
        if need <= CHUNK
            && window >= CHUNK
            && let Some(chunk) = self.chunks.pop()
        {
            return chunk;
        }
        Vec::with_capacity(need.max(CHUNK.min(window)))
    }

    /// Whether standard chunks are kept for reuse.
    pub fn holds_chunks(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// Gives back the standard chunks kept for reuse (a burst's worth; the small one stays);
    /// whether there were any.
    pub fn release(&mut self) -> bool {
        !std::mem::take(&mut self.chunks).is_empty()
    }

    /// Keeps `chunk` for reuse if it is a standard or a small chunk and there is room.
    pub fn put(&mut self, mut chunk: Vec<u8>) {
        let capacity = chunk.capacity();
        if self.chunks.len() < SPARE_CHUNKS && (CHUNK..2 * CHUNK).contains(&capacity) {
            chunk.clear();
            self.chunks.push(chunk);
        } else if self.small.is_none() && (SMALL_CHUNK..2 * SMALL_CHUNK).contains(&capacity) {
            chunk.clear();
            self.small = Some(chunk);
        }
    }
}

/// The payload bytes within `from..to` of a datagram chunk: a run of messages (SSH strings)
/// from its start, as the channel stored them.
fn payload_within(chunk: &[u8], from: usize, to: usize) -> usize {
    let mut at = 0;
    let mut counted = 0;
    while at < to {
        let Some(&[a, b, c, d]) = chunk.get(at..at + 4) else {
            break;
        };
        let start = at + 4;
        let end = start
            .saturating_add(u32::from_be_bytes([a, b, c, d]) as usize)
            .min(chunk.len());
        counted += end.min(to).saturating_sub(start.max(from));
        at = end;
    }
    counted
}
