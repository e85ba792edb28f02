//! Channel byte streams handed out by the driver, and `splice`, which joins one to a socket.
//!
//! Flow control in both directions is end to end: a writer must hold credit (a semaphore the
//! driver refills as the SSH window takes data), and the driver only drains the SSH window as
//! fast as the reader takes chunks, so a slow local peer slows the remote one down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};

use sshvpn_proto::ChannelId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, futures::Notified, mpsc};

use super::Cmd;

/// Largest chunk a writer hands the driver at once.
pub const CHUNK: usize = 256 * 1024;
/// What `splice` reads into while a connection is quiet (most of them, most of the time):
/// the buffer is allocated before the read waits, so a thousand idle SOCKS connections hold
/// a thousand of these.
const QUIET_CHUNK: usize = 16 * 1024;

/// Reads up to this size are sent as a copy of their size (see `splice_halves`).
const SMALL_READ: usize = 4096;

/// What the driver delivers to a channel's reader.
#[derive(Debug)]
pub enum Inbound {
    Data(Vec<u8>),
    /// A channel request from the peer that wants no reply.
    Request {
        request: String,
        data: Vec<u8>,
    },
    /// The peer sent EOF: no more data, but the channel stays open for our side.
    Eof,
    /// The channel is gone (peer closed it, or the connection ended).
    Closed,
}

/// Takes a channel's data within the driver's turn, without the hand-off to the reader's task:
/// for a lone packet, whose reply time that hand-off (a queue, a wake-up, another task's turn)
/// is a good part of. What the sink leaves goes to the reader as usual; the driver offers it
/// data only while the reader has finished with everything before, so order holds.
pub trait Sink: Send + std::fmt::Debug + 'static {
    /// Takes the whole of `chunk` (what `Inbound::Data` would carry) and returns true, or
    /// leaves it to the reader and returns false. Must not block: it runs in the driver.
    fn take(&mut self, chunk: &[u8]) -> bool;
}

/// Notified when memory was freed (a channel stream closed, or a quiet connection gave back
/// its buffers): the daemon then returns it to the system (see `main`), without polling
/// while nothing happens.
pub static MEMORY_FREED: Notify = Notify::const_new();

/// Both halves of an open channel.
#[derive(Debug)]
pub struct ChannelStream {
    pub reader: ChannelReader,
    pub writer: ChannelWriter,
}

/// What the driver shares with one channel's stream.
pub(super) struct Shared {
    pub credit: Arc<Semaphore>,
    pub room: Arc<Room>,
    pub returned: Returned,
    pub unfinished: Arc<AtomicUsize>,
    pub spent: Arc<Spent>,
}

impl ChannelStream {
    pub(super) fn new(
        id: ChannelId,
        cmd: mpsc::Sender<Cmd>,
        rx: mpsc::Receiver<Inbound>,
        shared: Shared,
    ) -> Self {
        let Shared {
            credit,
            room,
            returned,
            unfinished,
            spent,
        } = shared;
        Self {
            reader: ChannelReader {
                id,
                rx,
                room,
                returned,
                unfinished,
                holding: 0,
                finished: false,
            },
            writer: ChannelWriter {
                id,
                cmd,
                credit,
                spent,
                closed: false,
            },
        }
    }

    pub fn id(&self) -> ChannelId {
        self.reader.id
    }
}

#[derive(Debug)]
pub struct ChannelReader {
    id: ChannelId,
    rx: mpsc::Receiver<Inbound>,
    room: Arc<Room>,
    returned: Returned,
    /// Bytes of `Inbound::Data` queued to this reader, or returned by `recv` and not yet
    /// finished with (until the next `recv`); the driver only uses a [`Sink`] while this is 0,
    /// and queues no more while it is past the channel's window.
    unfinished: Arc<AtomicUsize>,
    /// The bytes of the data `recv` last returned, counted in `unfinished`.
    holding: usize,
    finished: bool,
}

/// How channel readers wake the driver when it waits for room in one of their queues. The
/// driver asks (`want`) only when it found a queue full; a reader taking from a queue that
/// never filled (a ping, a keystroke) then costs the driver no extra turn.
#[derive(Debug, Default)]
pub(super) struct Room {
    freed: Notify,
    wanted: AtomicBool,
}

impl Room {
    /// Driver: a reader's queue was full; the next reader to take an item says so. Look at the
    /// queue once more after this: the reader may have taken one before it saw the request.
    pub(super) fn want(&self) {
        self.wanted.store(true, Ordering::SeqCst);
        // Pairs with the fence in `took`: either the driver's second look sees the freed
        // slot, or the reader sees the request.
        fence(Ordering::SeqCst);
    }

    /// Reader: an item was taken from a queue, or its data finished with.
    fn took(&self) {
        fence(Ordering::SeqCst);
        if self.wanted.swap(false, Ordering::SeqCst) {
            self.freed.notify_one();
        }
    }

    /// Driver: completes once a reader took an item after `want`.
    pub(super) fn freed(&self) -> Notified<'_> {
        self.freed.notified()
    }
}

/// Data buffers readers are done with, on their way back to the driver for reuse: a busy
/// channel then moves its data through the same few buffers instead of allocating (and, for
/// buffers this large, page-faulting) a new one per chunk.
#[derive(Debug, Clone, Default)]
pub(super) struct Returned(Arc<Mutex<Vec<Vec<u8>>>>);

/// Buffers waiting in [`Returned`]; more are freed.
const RETURNED_MAX: usize = 8;

impl Returned {
    fn put(&self, buf: Vec<u8>) {
        if let Ok(mut q) = self.0.lock()
            && q.len() < RETURNED_MAX
        {
            q.push(buf);
        }
    }

    pub(super) fn take_all(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }
}

impl ChannelReader {
    /// The next event on the channel; after `Eof` or `Closed` it keeps returning `Closed`.
    pub async fn recv(&mut self) -> Inbound {
        let held = std::mem::take(&mut self.holding);
        if held > 0 {
            // Whatever the caller did with it (a write to a device) happens before the driver
            // can see the count fall.
            self.unfinished.fetch_sub(held, Ordering::Release);
            // The driver may wait for that to queue more.
            self.room.took();
        }
        if self.finished {
            return Inbound::Closed;
        }
        let item = self.rx.recv().await.unwrap_or(Inbound::Closed);
        if let Inbound::Data(data) = &item {
            self.holding = data.len();
        }
        // Tell the driver if it waits for room, so it can move more out of the SSH window.
        self.room.took();
        if matches!(item, Inbound::Closed) {
            self.finished = true;
        }
        item
    }

    /// Gives back the buffer of an `Inbound::Data` once its bytes are written, for reuse.
    pub fn recycle(&self, buf: Vec<u8>) {
        self.returned.put(buf);
    }
}

/// The last buffer a writer sent, on its way back from the driver once all of it went out,
/// for writers that send one buffer per packet ([`ChannelWriter::buffer`]). Others never ask,
/// and nothing is kept for them.
#[derive(Debug, Default)]
pub(super) struct Spent {
    wanted: AtomicBool,
    buf: Mutex<Option<Vec<u8>>>,
}

impl Spent {
    /// Driver: `buf` went out whole.
    pub(super) fn put(&self, mut buf: Vec<u8>) {
        if self.wanted.load(Ordering::Relaxed)
            && let Ok(mut slot) = self.buf.lock()
        {
            buf.clear();
            *slot = Some(buf);
        }
    }
}

#[derive(Debug)]
pub struct ChannelWriter {
    id: ChannelId,
    cmd: mpsc::Sender<Cmd>,
    credit: Arc<Semaphore>,
    spent: Arc<Spent>,
    closed: bool,
}

/// The channel or its connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("channel closed")]
pub struct ChannelClosed;

impl ChannelWriter {
    /// An empty buffer with room for `capacity` bytes, for a later `send`: the last one sent,
    /// once the driver is done with it, or a new one. A writer that sends a chunk per packet
    /// (the TUN bridge) then does not allocate one per packet.
    pub fn buffer(&self, capacity: usize) -> Vec<u8> {
        self.spent.wanted.store(true, Ordering::Relaxed);
        let mut buf = self
            .spent
            .buf
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or_default();
        buf.reserve(capacity);
        buf
    }

    /// Whether data this writer sent still waits for the link (more than 16 KiB of it): then
    /// what it queues should be held at its size (see the TUN bridge). A link that keeps up
    /// takes each send before the next.
    pub fn backed_up(&self) -> bool {
        self.credit.available_permits() < super::CHANNEL_CREDIT - 16 * 1024
    }

    /// Queues `data` (at most `CHUNK` bytes) for the channel, waiting for credit.
    pub async fn send(&mut self, data: Vec<u8>) -> Result<(), ChannelClosed> {
        let n = u32::try_from(data.len().min(super::CHANNEL_CREDIT)).map_err(|_| ChannelClosed)?;
        let permit = self
            .credit
            .acquire_many(n)
            .await
            .map_err(|_| ChannelClosed)?;
        permit.forget();
        self.cmd
            .send(Cmd::Data { id: self.id, data })
            .await
            .map_err(|_| ChannelClosed)
    }

    /// Sends a channel request that wants no reply. It goes out when the driver takes it, so
    /// it may overtake data still waiting for window: send it before data when order matters.
    pub async fn request(&mut self, request: &str, data: Vec<u8>) {
        let _ = self
            .cmd
            .send(Cmd::Request {
                id: self.id,
                request: request.to_owned(),
                data,
            })
            .await;
    }

    /// Has the driver offer the channel's received data to `sink` first (see [`Sink`]).
    pub async fn deliver_to(&mut self, sink: Box<dyn Sink>) {
        let _ = self.cmd.send(Cmd::Sink { id: self.id, sink }).await;
    }

    /// Half-closes: sends EOF once everything queued has gone out.
    pub async fn eof(&mut self) {
        let _ = self.cmd.send(Cmd::Eof { id: self.id }).await;
    }

    /// Closes the channel once everything queued has gone out.
    pub async fn close(mut self) {
        self.closed = true;
        let _ = self.cmd.send(Cmd::Close { id: self.id }).await;
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        MEMORY_FREED.notify_one();
        if !self.closed {
            let cmd = self.cmd.clone();
            let id = self.id;
            // The queue may be full; finish the close from a task rather than lose it.
            if let (Err(_), Ok(rt)) = (
                cmd.try_send(Cmd::Close { id }),
                tokio::runtime::Handle::try_current(),
            ) {
                rt.spawn(async move {
                    let _ = cmd.send(Cmd::Close { id }).await;
                });
            }
        }
    }
}

/// Joins a channel to a byte stream (a TCP or Unix socket) until both directions are done or
/// the channel is closed. EOF is propagated each way as a half-close.
pub async fn splice<S>(stream: ChannelStream, socket: S)
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let ChannelStream {
        mut reader,
        mut writer,
    } = stream;
    let (mut rd, mut wr) = tokio::io::split(socket);
    splice_halves(&mut reader, &mut writer, &mut rd, &mut wr).await;
    writer.close().await;
}

async fn splice_halves<R, W>(
    reader: &mut ChannelReader,
    writer: &mut ChannelWriter,
    rd: &mut R,
    wr: &mut W,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let up = async {
        // Reads that fill the buffer mean bulk: read the next in [`CHUNK`]s, so a fast sender
        // costs the driver a quarter of the reads, hand-overs and wake-ups that 64 KiB took
        // (about 20% less CPU per byte in a forward). A short read goes back to small buffers.
        let mut size = QUIET_CHUNK;
        loop {
            // Read into spare capacity: no memset per chunk.
            let mut buf = Vec::with_capacity(size);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    writer.eof().await;
                    return;
                }
                Ok(n) => {
                    size = if n >= size {
                        CHUNK
                    } else {
                        QUIET_CHUNK.max(n.next_power_of_two())
                    };
                    // Credit counts bytes: a small read must not hold a whole buffer while it
                    // waits (a stalled link, a writer dribbling bytes: a million 1-byte reads
                    // in 16 KiB buffers). A copy of its size goes instead. Bulk reads are
                    // larger and go as they are (shrinking them in place cost 5% of a
                    // forward's throughput).
                    if n <= SMALL_READ && buf.capacity() > 4 * n {
                        buf = buf.as_slice().to_vec();
                    }
                    if writer.send(buf).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let down = async {
        loop {
            match reader.recv().await {
                Inbound::Data(data) => {
                    if wr.write_all(&data).await.is_err() {
                        return true;
                    }
                    reader.recycle(data);
                }
                Inbound::Request { .. } => {}
                Inbound::Eof => {
                    let _ = wr.shutdown().await;
                    return false;
                }
                Inbound::Closed => {
                    let _ = wr.shutdown().await;
                    return true;
                }
            }
        }
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            () = &mut up, if !up_done => up_done = true,
            closed = &mut down => {
                if closed || up_done {
                    break;
                }
                // Peer EOF: keep sending until our side is done too.
                (&mut up).await;
                break;
            }
        }
        if up_done {
            // Our side is done; wait for the peer to finish or close.
            let _ = (&mut down).await;
            break;
        }
    }
}
