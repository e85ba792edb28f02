//! One channel's state (RFC 4254 §5): its windows in both directions, its receive buffer,
//! and where it is in its open/EOF/close life.

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
    /// Consumed by the application, not yet returned to the peer with WINDOW_ADJUST.
    pub unacked: u32,
    recv_buf: Vec<u8>,
    recv_start: usize,
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
    pub fn new(kind: ChannelKind, phase: Phase, recv_window: u32) -> Self {
        let datagram = matches!(kind, ChannelKind::Tun { .. });
        Self {
            kind,
            phase,
            remote_id: 0,
            send_window: 0,
            remote_max_packet: 0,
            recv_window,
            unacked: 0,
            recv_buf: Vec::new(),
            recv_start: 0,
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

    pub fn buffered(&self) -> &[u8] {
        self.recv_buf.get(self.recv_start..).unwrap_or_default()
    }

    /// Stores received data. The caller has checked it against `recv_window`, so the buffer
    /// never holds more than the window we advertised.
    pub fn push(&mut self, data: &[u8]) {
        if self.recv_start > 0 && self.recv_start == self.recv_buf.len() {
            self.recv_buf.clear();
            self.recv_start = 0;
        } else if self.recv_start > self.recv_buf.len() / 2 {
            self.recv_buf.drain(..self.recv_start);
            self.recv_start = 0;
        }
        if self.datagram {
            self.recv_buf
                .extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
        }
        self.recv_buf.extend_from_slice(data);
        self.bytes_in += data.len() as u64;
    }

    /// Marks `n` buffered bytes as consumed; returns how many were.
    pub fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.buffered().len());
        self.recv_start += n;
        if self.recv_start == self.recv_buf.len() {
            self.recv_buf.clear();
            self.recv_start = 0;
        }
        n
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
