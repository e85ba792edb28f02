//! The driver: the one task that owns an SSH connection's socket and its `proto::Connection`.
//!
//! Everything else talks to it through a [`Handle`] (commands over an mpsc, replies over
//! oneshots) and moves channel bytes through [`ChannelStream`]s. The driver is the only place
//! that `select!`s over the socket, the timer and the command queue, so connection state has
//! exactly one owner. It must not block: policy decisions it cannot make alone (host key,
//! authorized keys) are synchronous calls on its [`Policy`], and incoming channels are handed
//! out as [`Incoming`] for other tasks to accept.

mod send_queue;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sshvpn_proto::{
    ChannelId, ChannelKind, Connection, DisconnectReason, Error, Event, GlobalRequest, HostKey,
    OpenFailure, PublicKey, RequestId,
};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpStream, tcp::OwnedReadHalf};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use send_queue::SendQueue;
pub use stream::{
    ChannelClosed, ChannelReader, ChannelStream, ChannelWriter, Inbound, MEMORY_FREED, Sink, splice,
};

/// Bytes a channel's writer may have queued in the driver beyond what the SSH window took.
const CHANNEL_CREDIT: usize = 1 << 20;
/// Chunks queued towards a channel's reader before the driver stops draining the SSH window.
const INBOUND_CHUNKS: usize = 16;
/// Stop reading the socket while this much output is waiting to be written.
///
/// Channel data from local sockets stops well before, at [`SendQueue::limit`] (a local
/// sender then waits, bounded by its bridge's credit), so channel data queued behind a slow
/// path never stops us reading: the peer's window adjusts and keepalive replies must still be
/// seen, or a busy link on a slow path is declared dead. Only our answers to the peer's own
/// messages can fill the difference, and that is what the read limit bounds.
const MAX_PENDING_OUTPUT: usize = 4 << 20;
/// Channel opens and global requests from the peer waiting for the application. One socket
/// read can carry hundreds of CHANNEL_OPENs (a browser opening a page through SOCKS), all
/// turned into events before the application runs; what does not fit is refused as
/// RESOURCE_SHORTAGE. So the queue holds as many opens as the protocol lets the peer have
/// channels (proto's default `max_channels`); tokio allocates its slots only as they are used.
const INCOMING_QUEUE: usize = 4096;

/// Reads smaller than this are acknowledged soon (see [`quickack`]).
const QUICKACK_BELOW: usize = 4096;
/// How soon: not in the turn that read the data, where the system call (which sends the
/// segment) delays what the turn handed on: `ping`, woken on this CPU by the reply's TUN
/// write, runs only once this thread blocks (seen in scheduler traces). Short against the
/// kernel's 40 ms delayed ACK; and data of ours going out first carries the ACK anyway.
const QUICKACK_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// Asks the kernel to acknowledge what we have read now rather than delay the ACK.
///
/// A peer with Nagle on (OpenSSH's sshd sets TCP_NODELAY only for sessions with a terminal)
/// holds each small write until its previous one is acknowledged. With our ACKs delayed, a
/// 36-byte WINDOW_ADJUST from sshd left every later ping reply in a `-w` tunnel waiting for the
/// next request to carry the ACK: each reply one ping interval (20 ms) late. Bulk reads are
/// left to the kernel's own ACK policy.
fn quickack(socket: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    #[allow(unsafe_code)] // No safe binding for TCP_QUICKACK in std or tokio.
    // SAFETY: a valid socket descriptor, and a pointer and length describing a live c_int.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads what the socket holds into `buf`. A read that does not fill `buf` has emptied the
/// socket's receive queue (a TCP read takes all there is, up to the buffer's size), so the
/// socket is marked not ready at once: the driver then hands on what it read (to a TUN
/// device, a local socket) and waits for the next data, instead of first reading again only
/// to be told `WouldBlock`, a system call in the path of every interactive packet. Data that
/// arrives after the read raises a new readiness event, which is not lost: tokio clears the
/// readiness only if no event came in since it was taken (as its own `poll_read` does).
fn read_draining(socket: &OwnedReadHalf, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut drained = None;
    let result = socket.as_ref().try_io(Interest::READABLE, || {
        let n = socket.try_read(buf)?;
        if 0 < n && n < buf.len() {
            // `WouldBlock` is how `try_io` is told to clear the readiness.
            drained = Some(n);
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match drained {
        Some(n) => Ok(n),
        None => result,
    }
}

/// A slot in a channel reader's queue, or, if the queue is full, `None` and the reader asked
/// to wake the driver (`Room`) when it takes something: whatever waits for the slot (data, the
/// peer's EOF or close) is then tried again.
fn reserve<'a>(
    tx: &'a mpsc::Sender<Inbound>,
    room: &stream::Room,
) -> Option<mpsc::Permit<'a, Inbound>> {
    if let Ok(permit) = tx.try_reserve() {
        return Some(permit);
    }
    room.want();
    // The reader may have taken an item before it could see the request.
    tx.try_reserve().ok()
}

/// Whether a reader holds fewer than `limit` unfinished bytes; if not, the reader is asked to
/// wake the driver (`Room`) when it finishes with some.
fn below(unfinished: &AtomicUsize, limit: usize, room: &stream::Room) -> bool {
    if unfinished.load(Ordering::Acquire) < limit {
        return true;
    }
    room.want();
    // The reader may have finished with its data before it could see the request.
    unfinished.load(Ordering::Acquire) < limit
}

/// Decisions the driver needs from the application, answered synchronously.
pub trait Policy: Send + 'static {
    /// Client: is this the server we meant to reach?
    fn verify_host_key(&mut self, key: &HostKey) -> bool;
    /// Server: may `user` log in with `key` (`signed`: the signature was verified)?
    /// With `certificate`, `key` is the certified key; the certificate is unchecked.
    fn authorize_key(
        &mut self,
        _user: &str,
        _key: &PublicKey,
        _certificate: Option<&sshvpn_proto::ssh_key::Certificate>,
        _signed: bool,
    ) -> bool {
        false
    }
    /// Client: the ssh-agent socket that holds external identities' private keys.
    fn agent_socket(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// Where the connection is, published through a watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Handshaking,
    Authenticated { user: String },
    Closed { error: String },
}

/// A channel the peer asked to open: accept it to get a stream, or reject it.
#[derive(Debug)]
pub struct IncomingChannel {
    pub id: ChannelId,
    pub kind: ChannelKind,
    handle: Handle,
}

impl IncomingChannel {
    pub async fn accept(self) -> Result<ChannelStream, Error> {
        let (tx, rx) = oneshot::channel();
        self.handle
            .send(Cmd::Accept {
                id: self.id,
                reply: tx,
            })
            .await?;
        rx.await.map_err(|_| closed())?
    }

    pub async fn reject(self, reason: OpenFailure, description: &str) {
        let _ = self
            .handle
            .send(Cmd::Reject {
                id: self.id,
                reason,
                description: description.to_owned(),
            })
            .await;
    }
}

/// A global request from the peer; answer it exactly once.
#[derive(Debug)]
pub struct IncomingRequest {
    pub id: RequestId,
    pub request: GlobalRequest,
    handle: Handle,
}

impl IncomingRequest {
    pub async fn reply(self, result: Result<Option<u32>, ()>) {
        let _ = self
            .handle
            .send(Cmd::ReplyGlobal {
                id: self.id,
                result,
            })
            .await;
    }
}

#[derive(Debug)]
pub enum Incoming {
    Channel(IncomingChannel),
    GlobalRequest(IncomingRequest),
}

#[derive(Debug)]
enum Cmd {
    Open {
        kind: ChannelKind,
        reply: oneshot::Sender<Result<ChannelStream, OpenError>>,
    },
    Accept {
        id: ChannelId,
        reply: oneshot::Sender<Result<ChannelStream, Error>>,
    },
    Reject {
        id: ChannelId,
        reason: OpenFailure,
        description: String,
    },
    Data {
        id: ChannelId,
        data: Vec<u8>,
    },
    Eof {
        id: ChannelId,
    },
    Close {
        id: ChannelId,
    },
    Global {
        request: GlobalRequest,
        reply: oneshot::Sender<Result<Option<u32>, ()>>,
    },
    ReplyGlobal {
        id: RequestId,
        result: Result<Option<u32>, ()>,
    },
    Rekey,
    Disconnect {
        description: String,
    },
    Stats {
        reply: oneshot::Sender<ConnectionInfo>,
    },
    Signed {
        signature: Option<Vec<u8>>,
    },
    Request {
        id: ChannelId,
        request: String,
        data: Vec<u8>,
    },
    Sink {
        id: ChannelId,
        sink: Box<dyn Sink>,
    },
}

/// Why a channel could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("channel open refused: {reason}: {description}")]
    Refused {
        reason: OpenFailure,
        description: String,
    },
    #[error("connection is closed")]
    Closed,
    #[error("{0}")]
    Channel(String),
}

/// A snapshot of the connection for status displays.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    pub stats: sshvpn_proto::Stats,
    pub cipher: Option<String>,
    pub kex: Option<String>,
    pub peer_ident: Option<String>,
    pub channels: usize,
    pub channels_by_kind: std::collections::BTreeMap<String, usize>,
    pub rtt: Option<std::time::Duration>,
    /// The server's host key fingerprint (client), or ours (server).
    pub host_key: Option<String>,
}

fn closed() -> Error {
    Error::Closed("the connection's driver has stopped".into())
}

/// Talks to a driver. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    cmd: mpsc::Sender<Cmd>,
    state: watch::Receiver<State>,
}

impl Handle {
    async fn send(&self, cmd: Cmd) -> Result<(), Error> {
        self.cmd.send(cmd).await.map_err(|_| closed())
    }

    /// Waits until authenticated; fails if the connection ends first.
    pub async fn authenticated(&self) -> Result<String, Error> {
        let mut state = self.state.clone();
        loop {
            match &*state.borrow_and_update() {
                State::Authenticated { user } => return Ok(user.clone()),
                State::Closed { error } => return Err(Error::Closed(error.clone())),
                State::Handshaking => {}
            }
            state.changed().await.map_err(|_| closed())?;
        }
    }

    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    pub async fn open(&self, kind: ChannelKind) -> Result<ChannelStream, OpenError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Open { kind, reply: tx })
            .await
            .map_err(|_| OpenError::Closed)?;
        rx.await.map_err(|_| OpenError::Closed)?
    }

    pub async fn global_request(&self, request: GlobalRequest) -> Result<Option<u32>, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Global { request, reply: tx }).await?;
        rx.await
            .map_err(|_| closed())?
            .map_err(|()| Error::Closed("global request refused".into()))
    }

    pub async fn rekey(&self) -> Result<(), Error> {
        self.send(Cmd::Rekey).await
    }

    pub async fn disconnect(&self, description: &str) {
        let _ = self
            .send(Cmd::Disconnect {
                description: description.to_owned(),
            })
            .await;
    }

    pub async fn info(&self) -> Result<ConnectionInfo, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Stats { reply: tx }).await?;
        rx.await.map_err(|_| closed())
    }
}

/// The driver's view of one channel.
#[derive(Debug)]
struct Bridge {
    /// Data from the local side not yet taken by the SSH window.
    outbound: VecDeque<Vec<u8>>,
    credit: Arc<Semaphore>,
    inbound: Option<mpsc::Sender<Inbound>>,
    /// Bytes of data the reader has not finished with (see `ChannelReader`): what the
    /// channel holds beyond its SSH window. Kept to about half the window.
    unfinished: Arc<AtomicUsize>,
    sink: Option<Box<dyn Sink>>,
    /// Where a sent buffer goes back to the writer (see `ChannelWriter::buffer`).
    spent: Arc<stream::Spent>,
    eof_after_outbound: bool,
    close_after_outbound: bool,
    peer_eof: bool,
    peer_closed: bool,
}

/// Lets a map that grew for a burst (a thousand SOCKS connections opened at once) give its
/// memory back once the burst is over: when at most a quarter of its capacity is in use it is
/// rebuilt at twice its length. Each rebuild at least halves the capacity, so its cost stays
/// proportional to the removals that led to it. (proto's channel table does the same.)
fn shrink_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() * 4 <= map.capacity() {
        map.shrink_to(map.len() * 2);
    }
}

/// Starts the driver on a connected socket. Returns the handle, the queue of what the peer
/// asks of us, and the driver's task (its result is why the connection ended).
pub fn spawn(
    socket: TcpStream,
    conn: Connection,
    policy: Box<dyn Policy>,
) -> (
    Handle,
    mpsc::Receiver<Incoming>,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let (state_tx, state_rx) = watch::channel(State::Handshaking);
    let room = Arc::new(stream::Room::default());
    let handle = Handle {
        cmd: cmd_tx,
        state: state_rx,
    };
    let driver = Driver {
        conn,
        policy,
        handle: handle.clone(),
        cmds: cmd_rx,
        incoming: incoming_tx,
        state: state_tx,
        room,
        returned: stream::Returned::default(),
        bridges: HashMap::new(),
        pending_opens: HashMap::new(),
        pending_globals: HashMap::new(),
        rtt: None,
        pump_turn: 0,
        pump_order: Vec::new(),
        queue: SendQueue::new(&socket),
    };
    let task = tokio::spawn(driver.run(socket));
    (handle, incoming_rx, task)
}

struct Driver {
    conn: Connection,
    policy: Box<dyn Policy>,
    handle: Handle,
    cmds: mpsc::Receiver<Cmd>,
    incoming: mpsc::Sender<Incoming>,
    state: watch::Sender<State>,
    room: Arc<stream::Room>,
    /// Buffers the channel readers have written out, for the connection to reuse.
    returned: stream::Returned,
    bridges: HashMap<ChannelId, Bridge>,
    pending_opens: HashMap<ChannelId, oneshot::Sender<Result<ChannelStream, OpenError>>>,
    pending_globals: HashMap<RequestId, oneshot::Sender<Result<Option<u32>, ()>>>,
    rtt: Option<std::time::Duration>,
    /// Which channel `pump` serves first this time (it rotates).
    pump_turn: usize,
    /// The order `pump` serves the channels in, kept to reuse its memory.
    pump_order: Vec<ChannelId>,
    /// How much output may wait, for the socket and in it.
    queue: SendQueue,
}

impl Driver {
    async fn run(mut self, socket: TcpStream) -> Result<(), Error> {
        let _ = socket.set_nodelay(true);
        let (rd, mut wr) = socket.into_split();
        // The timer and the wait for room are kept from one turn to the next, set again only
        // when the deadline moves or after they fire: a turn per packet does not re-register
        // them each time.
        let timer = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let room = self.room.clone();
        let mut room_freed = std::pin::pin!(room.freed());
        // An ACK owed to a peer with Nagle on (see `quickack`), unless our own data carries
        // it first.
        let ack_timer = tokio::time::sleep(std::time::Duration::ZERO);
        tokio::pin!(ack_timer);
        let mut ack_owed = false;
        let result = loop {
            if let Err(e) = self.pump() {
                break Err(e);
            }
            if self.conn.take_released_memory() {
                MEMORY_FREED.notify_one();
            }
            let pending = self.conn.pending_transmit();
            if pending > 0 {
                self.queue.look(rd.as_ref(), Instant::now());
            }
            if self.conn.closed().is_some() {
                // Flush the DISCONNECT (bounded in time), then stop.
                let mut out = Vec::new();
                self.conn.poll_transmit(&mut out);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), wr.write_all(&out))
                    .await;
                break Err(self.conn.closed().cloned().unwrap_or_else(closed));
            }
            let timeout = self.conn.poll_timeout();
            if timeout != armed {
                if let Some(t) = timeout {
                    timer.as_mut().reset(t.into());
                }
                armed = timeout;
            }
            // The socket is read straight into the connection's receive buffer, where the
            // packets are decrypted in place.
            let can_read = pending < MAX_PENDING_OUTPUT && !self.conn.input_space().is_empty();
            tokio::select! {
                // Readiness through the socket's own waker slot, not a waiter list entry
                // added and removed on every turn.
                r = std::future::poll_fn(|cx| rd.as_ref().poll_read_ready(cx)), if can_read => {
                    if r.is_err() {
                        break Err(self.conn.handle_eof());
                    }
                    match read_draining(&rd, self.conn.input_space()) {
                        Ok(0) => break Err(self.conn.handle_eof()),
                        Ok(n) => {
                            // sshvpnd peers write with TCP_NODELAY: nothing to unblock there.
                            if n < QUICKACK_BELOW
                                && !self
                                    .conn
                                    .peer_ident()
                                    .is_some_and(|i| i.starts_with("SSH-2.0-sshvpn_"))
                                && !ack_owed
                            {
                                ack_owed = true;
                                ack_timer
                                    .as_mut()
                                    .reset((Instant::now() + QUICKACK_AFTER).into());
                            }
                            if self.conn.handle_received(n, Instant::now()).is_err() {
                                continue;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break Err(self.conn.handle_eof()),
                    }
                }
                w = wr.write(self.conn.transmit()), if pending > 0 => {
                    match w {
                        Ok(n) => {
                            // The segment carries the ACK.
                            ack_owed = false;
                            self.conn.advance_transmit(n);
                        }
                        Err(_) => break Err(self.conn.handle_eof()),
                    }
                }
                () = &mut ack_timer, if ack_owed => {
                    ack_owed = false;
                    quickack(rd.as_ref());
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every handle is gone: nobody can use this connection any more.
                    None => self.conn.disconnect(DisconnectReason::BY_APPLICATION, "shutting down"),
                },
                () = &mut room_freed => room_freed.set(room.freed()),
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    let _ = self.conn.handle_timeout(Instant::now());
                }
            }
        };
        let error = match &result {
            Ok(()) => "closed".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::debug!(%error, "connection ended");
        let _ = self.state.send(State::Closed { error });
        for (_, b) in self.bridges.drain() {
            if let Some(tx) = b.inbound {
                let _ = tx.try_send(Inbound::Closed);
            }
        }
        for (_, reply) in self.pending_opens.drain() {
            let _ = reply.send(Err(OpenError::Closed));
        }
        result
    }

    fn on_command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Open { kind, reply } => match self.conn.open_channel(kind) {
                Ok(id) => {
                    self.pending_opens.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(OpenError::Channel(e.to_string())));
                }
            },
            Cmd::Accept { id, reply } => {
                let result = self
                    .conn
                    .accept_channel(id)
                    .map_err(|e| Error::Channel(e.to_string()))
                    .map(|()| self.bridge(id));
                let _ = reply.send(result);
            }
            Cmd::Reject {
                id,
                reason,
                description,
            } => {
                let _ = self.conn.reject_channel(id, reason, &description);
            }
            Cmd::Data { id, data } => {
                if let Some(b) = self.bridges.get_mut(&id) {
                    b.outbound.push_back(data);
                }
            }
            Cmd::Eof { id } => {
                if let Some(b) = self.bridges.get_mut(&id) {
                    b.eof_after_outbound = true;
                }
            }
            Cmd::Close { id } => {
                if let Some(b) = self.bridges.get_mut(&id) {
                    b.close_after_outbound = true;
                }
            }
            Cmd::Global { request, reply } => match self.conn.global_request(request) {
                Ok(id) => {
                    self.pending_globals.insert(id, reply);
                }
                Err(_) => {
                    let _ = reply.send(Err(()));
                }
            },
            Cmd::ReplyGlobal { id, result } => self.conn.reply_global_request(id, result),
            Cmd::Rekey => self.conn.rekey(Instant::now()),
            Cmd::Disconnect { description } => self
                .conn
                .disconnect(DisconnectReason::BY_APPLICATION, &description),
            Cmd::Request { id, request, data } => {
                let _ = self.conn.channel_request(id, &request, &data);
            }
            Cmd::Sink { id, sink } => {
                if let Some(b) = self.bridges.get_mut(&id) {
                    b.sink = Some(sink);
                }
            }
            Cmd::Signed { signature } => {
                let _ = self.conn.sign_response(signature, Instant::now());
            }
            Cmd::Stats { reply } => {
                let n = self.conn.negotiated();
                let _ = reply.send(ConnectionInfo {
                    stats: self.conn.stats(),
                    cipher: n.map(|n| n.cipher_c2s.name().to_owned()),
                    kex: n.map(|n| n.kex.name().to_owned()),
                    peer_ident: self.conn.peer_ident().map(str::to_owned),
                    channels: self.conn.channel_count(),
                    channels_by_kind: self
                        .conn
                        .channel_counts()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                    rtt: self.rtt,
                    host_key: self.conn.host_key().map(HostKey::fingerprint),
                });
            }
        }
    }

    fn bridge(&mut self, id: ChannelId) -> ChannelStream {
        let credit = Arc::new(Semaphore::new(CHANNEL_CREDIT));
        let (tx, rx) = mpsc::channel(INBOUND_CHUNKS);
        let unfinished = Arc::new(AtomicUsize::new(0));
        let spent = Arc::new(stream::Spent::default());
        self.bridges.insert(
            id,
            Bridge {
                outbound: VecDeque::new(),
                credit: credit.clone(),
                inbound: Some(tx),
                unfinished: unfinished.clone(),
                sink: None,
                spent: spent.clone(),
                eof_after_outbound: false,
                close_after_outbound: false,
                peer_eof: false,
                peer_closed: false,
            },
        );
        ChannelStream::new(
            id,
            self.handle.cmd.clone(),
            rx,
            stream::Shared {
                credit,
                room: self.room.clone(),
                returned: self.returned.clone(),
                unfinished,
                spent,
            },
        )
    }

    /// Handles events and moves channel bytes both ways until nothing more can move.
    fn pump(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        while let Some(event) = self.conn.poll_event() {
            self.on_event(event, now)?;
        }
        for buf in self.returned.take_all() {
            self.conn.recycle(buf);
        }
        // Once output waits for the socket, the channels pumped first take the room; start
        // with a different one each time so that none starves (a ping in the tunnel behind
        // bulk forwards).
        let mut ids = std::mem::take(&mut self.pump_order);
        ids.extend(self.bridges.keys().copied());
        if !ids.is_empty() {
            let first = self.pump_turn % ids.len();
            ids.rotate_left(first);
            self.pump_turn = self.pump_turn.wrapping_add(1);
        }
        for &id in &ids {
            self.pump_channel(id);
        }
        ids.clear();
        self.pump_order = ids;
        Ok(())
    }

    fn pump_channel(&mut self, id: ChannelId) {
        let Some(b) = self.bridges.get_mut(&id) else {
            return;
        };
        // Local → SSH, as far as the window and the output waiting for the socket allow.
        let limit = self.queue.limit();
        let datagram = matches!(self.conn.channel_kind(id), Some(ChannelKind::Tun { .. }));
        while let Some(front) = b.outbound.front_mut() {
            let pending = self.conn.pending_transmit();
            // A small chunk (a keystroke, a DNS query, a ping) need not wait for a bulk
            // channel that took the room first: small chunks may go past the limit, until
            // `QUEUE_MIN` more waits.
            let small = front.len() <= send_queue::SMALL && pending < limit + send_queue::QUEUE_MIN;
            if pending >= limit && !small {
                break;
            }
            // On a path slow enough that the queue is below its ceiling, a chunk (up to
            // 256 KiB) would overshoot it by a long time: take only what fits. Cutting costs
            // a copy (the rest moves up), cheap at that rate. A datagram channel sends whole
            // messages only, so its first message is always let in: one may overshoot.
            let room = if limit >= send_queue::QUEUE_MAX || small {
                front.len()
            } else if datagram {
                let first = front
                    .first_chunk::<4>()
                    .map_or(0, |len| 4 + u32::from_be_bytes(*len) as usize);
                (limit - pending).max(first)
            } else {
                limit - pending
            };
            match self
                .conn
                .channel_send(id, front.get(..room).unwrap_or(front.as_slice()))
            {
                Ok(0) => break,
                Ok(n) => {
                    b.credit.add_permits(n);
                    if n == front.len() {
                        if let Some(sent) = b.outbound.pop_front() {
                            b.spent.put(sent);
                        }
                    } else {
                        front.drain(..n);
                        break;
                    }
                }
                Err(_) => {
                    // The channel is closing: drop what cannot be sent.
                    let dropped: usize = b.outbound.drain(..).map(|d| d.len()).sum();
                    b.credit.add_permits(dropped);
                    break;
                }
            }
        }
        if b.outbound.is_empty() {
            if std::mem::take(&mut b.eof_after_outbound) {
                let _ = self.conn.channel_eof(id);
            }
            if std::mem::take(&mut b.close_after_outbound) {
                let _ = self.conn.close_channel(id);
                if let Some(tx) = b.inbound.take() {
                    let _ = tx.try_send(Inbound::Closed);
                }
                self.bridges.remove(&id);
                shrink_sparse(&mut self.bridges);
                return;
            }
        }
        // SSH → local, as fast as the reader takes it; what it does not take stays in the
        // window, which is what slows the peer down.
        let mut closed = false;
        // A sink takes data only while nothing waits for the socket (a ping's reply), so a
        // busy link's device writes (the ACKs coming back to an upload) stay in the reader's
        // task and do not lengthen the driver's turn. An upload measured the same either way.
        let quiet = self.conn.pending_transmit() == 0;
        if let Some(tx) = &b.inbound {
            while !self.conn.channel_data(id).is_empty() {
                if quiet
                    && let Some(sink) = b.sink.as_mut()
                    && b.unfinished.load(Ordering::Acquire) == 0
                    && sink.take(self.conn.channel_data(id))
                {
                    if let Some(chunk) = self.conn.channel_take(id) {
                        self.conn.recycle(chunk);
                    }
                    continue;
                }
                let Some(permit) = reserve(tx, &self.room) else {
                    break;
                };
                // Half the window: what a peer makes us hold, in the window and here, stays
                // within 1.5 times the connection's window budget.
                let limit = self.conn.channel_window(id) as usize / 2;
                if !below(&b.unfinished, limit, &self.room) {
                    break;
                }
                let Some(chunk) = self.conn.channel_take(id) else {
                    break;
                };
                b.unfinished.fetch_add(chunk.len(), Ordering::Relaxed);
                permit.send(Inbound::Data(chunk));
            }
            if self.conn.channel_data(id).is_empty() {
                if b.peer_eof
                    && let Some(permit) = reserve(tx, &self.room)
                {
                    permit.send(Inbound::Eof);
                    b.peer_eof = false;
                }
                if b.peer_closed
                    && let Some(permit) = reserve(tx, &self.room)
                {
                    permit.send(Inbound::Closed);
                    closed = true;
                }
            }
        }
        if closed {
            b.inbound = None;
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) -> Result<(), Error> {
        match event {
            Event::VerifyHostKey(key) => {
                let ok = self.policy.verify_host_key(&key);
                self.conn.host_key_verdict(ok, now)?;
            }
            Event::SignRequest { key, data } => {
                let cmd = self.handle.cmd.clone();
                let agent = self.policy.agent_socket();
                tokio::spawn(async move {
                    let signature = match agent {
                        Some(socket) => match crate::agent::sign(&socket, &key, &data).await {
                            Ok(sig) => Some(sig),
                            Err(e) => {
                                tracing::warn!(error = %e, "agent signature failed");
                                None
                            }
                        },
                        None => None,
                    };
                    let _ = cmd.send(Cmd::Signed { signature }).await;
                });
            }
            Event::AuthorizeKey {
                user,
                key,
                certificate,
                signed,
            } => {
                let ok = self
                    .policy
                    .authorize_key(&user, &key, certificate.as_deref(), signed);
                self.conn.authorize_key(ok, now)?;
            }
            Event::Authenticated { user } => {
                tracing::info!(%user, "authenticated");
                let _ = self.state.send(State::Authenticated { user });
            }
            Event::Banner(text) => tracing::info!(banner = %text, "server banner"),
            Event::KeyExchangeDone { initial } => tracing::debug!(initial, "key exchange done"),
            Event::KeepaliveRtt(rtt) => self.rtt = Some(rtt),
            Event::ChannelOpenRequest { id, kind } => {
                let incoming = Incoming::Channel(IncomingChannel {
                    id,
                    kind,
                    handle: self.handle.clone(),
                });
                if self.incoming.try_send(incoming).is_err() {
                    let _ = self
                        .conn
                        .reject_channel(id, OpenFailure::RESOURCE_SHORTAGE, "busy");
                }
            }
            Event::ChannelOpened { id } => {
                let stream = self.bridge(id);
                let reply = self.pending_opens.remove(&id);
                shrink_sparse(&mut self.pending_opens);
                match reply {
                    Some(reply) => {
                        if let Err(Ok(stream)) = reply.send(Ok(stream)) {
                            drop(stream);
                        }
                    }
                    None => {
                        let _ = self.conn.close_channel(id);
                    }
                }
            }
            Event::ChannelOpenFailed {
                id,
                reason,
                description,
            } => {
                let reply = self.pending_opens.remove(&id);
                shrink_sparse(&mut self.pending_opens);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(OpenError::Refused {
                        reason,
                        description,
                    }));
                }
            }
            Event::ChannelReadable { .. } | Event::ChannelWritable { .. } => {}
            Event::ChannelRequest { id, request, data } => {
                if let Some(tx) = self.bridges.get(&id).and_then(|b| b.inbound.as_ref()) {
                    let _ = tx.try_send(Inbound::Request { request, data });
                }
            }
            Event::ChannelEof { id } => {
                if let Some(b) = self.bridges.get_mut(&id) {
                    b.peer_eof = true;
                }
            }
            Event::ChannelClosed { id } => match self.bridges.get_mut(&id) {
                Some(b) => b.peer_closed = true,
                None => {
                    let _ = self.conn.close_channel(id);
                }
            },
            Event::GlobalRequest { id, request } => {
                let incoming = Incoming::GlobalRequest(IncomingRequest {
                    id,
                    request,
                    handle: self.handle.clone(),
                });
                if self.incoming.try_send(incoming).is_err() {
                    self.conn.reply_global_request(id, Err(()));
                }
            }
            Event::GlobalReply { id, result } => {
                if let Some(reply) = self.pending_globals.remove(&id) {
                    let _ = reply.send(result);
                }
            }
        }
        Ok(())
    }
}
