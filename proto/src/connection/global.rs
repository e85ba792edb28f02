//! Global requests (RFC 4254 §4): `tcpip-forward` and `cancel-tcpip-forward` (§7.1), and
//! OpenSSH's `keepalive@openssh.com`. Replies carry no request id, so both directions are
//! matched in order: ours by a FIFO of what we asked, theirs by answering strictly in turn
//! even when the application answers out of order.

use std::collections::VecDeque;
use std::time::Instant;

use crate::error::Error;
use crate::event::Event;
use crate::transport::Tx;
use crate::wire::{MsgType, Reader, Writer};

/// Identifies one global request, ours or the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// The global requests sshvpn makes or serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalRequest {
    /// RFC 4254 §7.1: listen on `address:port` on the server; port 0 picks one.
    TcpipForward {
        address: String,
        port: u32,
    },
    CancelTcpipForward {
        address: String,
        port: u32,
    },
}

/// Bounds on what a peer can make us hold: unanswered requests of the peer's.
const MAX_PENDING_PEER_REQUESTS: usize = 256;

#[derive(Debug)]
enum Ours {
    App(RequestId),
    Keepalive(Instant),
}

#[derive(Debug)]
struct Theirs {
    id: RequestId,
    want_reply: bool,
    /// tcpip-forward with port 0: the success reply carries the bound port (§7.1).
    reply_with_port: bool,
    answer: Option<Result<Option<u32>, ()>>,
}

#[derive(Debug, Default)]
pub struct Queues {
    next_id: u64,
    ours: VecDeque<Ours>,
    theirs: VecDeque<Theirs>,
}

impl Queues {
    fn next(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    pub fn send(&mut self, request: &GlobalRequest, tx: &mut Tx) -> RequestId {
        let id = self.next();
        let (name, address, port) = match request {
            GlobalRequest::TcpipForward { address, port } => ("tcpip-forward", address, port),
            GlobalRequest::CancelTcpipForward { address, port } => {
                ("cancel-tcpip-forward", address, port)
            }
        };
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::GLOBAL_REQUEST.0)
                .string(name)
                .bool(true)
                .string(address)
                .u32(*port);
        });
        self.ours.push_back(Ours::App(id));
        id
    }

    /// Sends a keepalive probe, unless one is still unanswered: a peer that never answers
    /// them but keeps the link busy otherwise would make `ours` grow by one per interval,
    /// and the one outstanding is enough to measure the round trip.
    pub fn keepalive(&mut self, tx: &mut Tx, now: Instant) {
        if self.ours.iter().any(|o| matches!(o, Ours::Keepalive(_))) {
            return;
        }
        tx.send(|b| {
            Writer::new(b)
                .u8(MsgType::GLOBAL_REQUEST.0)
                .string("keepalive@openssh.com")
                .bool(true);
        });
        self.ours.push_back(Ours::Keepalive(now));
    }

    pub fn on_reply(
        &mut self,
        success: bool,
        r: &mut Reader<'_>,
        events: &mut VecDeque<Event>,
        now: Instant,
    ) -> Result<(), Error> {
        match self.ours.pop_front() {
            Some(Ours::App(id)) => {
                // A success reply to tcpip-forward with port 0 carries the port; others carry
                // nothing. We cannot tell which it was without remembering, and need not.
                let port = if success && r.remaining() >= 4 {
                    Some(r.u32()?)
                } else {
                    None
                };
                let result = if success { Ok(port) } else { Err(()) };
                events.push_back(Event::GlobalReply { id, result });
                Ok(())
            }
            Some(Ours::Keepalive(sent)) => {
                events.push_back(Event::KeepaliveRtt(now.saturating_duration_since(sent)));
                Ok(())
            }
            None => Err(Error::Channel(
                "global request reply with no request outstanding".into(),
            )),
        }
    }

    pub fn on_request(
        &mut self,
        r: &mut Reader<'_>,
        tx: &mut Tx,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        let name = r.string()?;
        let want_reply = r.bool()?;
        let request = match name {
            b"tcpip-forward" | b"cancel-tcpip-forward" => {
                let address = r.utf8("address to bind")?.to_owned();
                let port = r.u32()?;
                Some(if name == b"tcpip-forward" {
                    GlobalRequest::TcpipForward { address, port }
                } else {
                    GlobalRequest::CancelTcpipForward { address, port }
                })
            }
            // keepalive@openssh.com, hostkeys-00@openssh.com, no-more-sessions@openssh.com and
            // anything unknown: refused if a reply is wanted (RFC 4254 §4), which is also how
            // OpenSSH answers keepalives.
            _ => None,
        };
        if self.theirs.len() >= MAX_PENDING_PEER_REQUESTS {
            return Err(Error::Channel("too many unanswered global requests".into()));
        }
        let id = self.next();
        let reply_with_port = matches!(request, Some(GlobalRequest::TcpipForward { port: 0, .. }));
        let answer = if request.is_none() {
            Some(Err(()))
        } else {
            None
        };
        self.theirs.push_back(Theirs {
            id,
            want_reply,
            reply_with_port,
            answer,
        });
        if let Some(request) = request {
            events.push_back(Event::GlobalRequest { id, request });
        }
        self.flush(tx);
        Ok(())
    }

    pub fn reply(&mut self, id: RequestId, result: Result<Option<u32>, ()>, tx: &mut Tx) {
        if let Some(t) = self
            .theirs
            .iter_mut()
            .find(|t| t.id == id && t.answer.is_none())
        {
            t.answer = Some(result);
        }
        self.flush(tx);
    }

    /// Sends answers in the order the requests came.
    fn flush(&mut self, tx: &mut Tx) {
        while let Some(front) = self.theirs.front() {
            let Some(answer) = front.answer else { break };
            if front.want_reply {
                let with_port = front.reply_with_port;
                tx.send(|b| match answer {
                    Ok(port) => {
                        let mut w = Writer::new(b);
                        w.u8(MsgType::REQUEST_SUCCESS.0);
                        if let (true, Some(port)) = (with_port, port) {
                            w.u32(port);
                        }
                    }
                    Err(()) => b.push(MsgType::REQUEST_FAILURE.0),
                });
            }
            self.theirs.pop_front();
        }
    }
}
