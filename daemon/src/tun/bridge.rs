//! Moving packets between the TUN device and the link's current `tun@openssh.com` channel.
//!
//! One task reads the device and one drains the channel; both stay alive across outages.
//! The device is opened with offload (see `device`), so the kernel works in TCP super-packets:
//! Device → channel: one read returns up to 64 KiB, split here into MTU-sized IP packets, which
//! are framed (SSH string of address family + packet) and written to the channel together, so a
//! burst costs one channel write, not one per packet. Channel → device: the packets of one
//! channel read are coalesced back (GRO) and written with as few writes as the flows allow;
//! a lone packet (a ping) is written by the driver itself, in the turn that decrypted it
//! (`LonePackets`).
//! On the wire each IP packet is one tun@openssh.com message, as OpenSSH expects.
//!
//! Between two sshvpnd the super-packets themselves cross: each side announces that it takes
//! offload frames (`TUN_OFFLOAD_REQUEST`) when a channel starts, and once the peer has, the
//! device's reads go out as they are, header and all, and the peer writes them to its device
//! as they are. No splitting, no per-packet checksums, no coalescing, and one SSH message (one
//! seal, one open) per 64 KiB instead of per MTU.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};
use sshvpn_proto::connection::tun::{
    AF_OFFLOAD, TUN_OFFLOAD_REQUEST, TunDecoder, check_offload, encode_ip, encode_offload,
    lone_packet,
};
use tokio::sync::{Mutex, watch};
use tun_rs::{GROTable, VIRTIO_NET_HDR_LEN};

use super::device::TunDevice;
use crate::driver::{ChannelReader, ChannelStream, ChannelWriter, Inbound, Sink};

/// Largest coalesced write to the channel.
const BATCH: usize = 60 * 1024;
/// Largest run of offload frames read in one go (each may be a 64 KiB super-packet).
const OFFLOAD_BATCH: usize = 256 * 1024;
/// A super-packet from the device: the virtio header and up to 64 KiB of IP packet.
const SUPER_PACKET: usize = VIRTIO_NET_HDR_LEN + 65535;
/// Packets one super-packet may split into, and packets coalesced per device write.
const SEGMENTS: usize = 128;
/// Largest chunk from the peer written to the device as a lone packet (see `LonePackets`):
/// an MTU-sized packet and its framing. Anything larger is bulk.
const LONE_MAX: usize = 2048;

/// Packet and byte counters, with drops by cause.
#[derive(Debug, Default)]
pub struct TunCounters {
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Read from the device while the link was down.
    pub dropped_link_down: AtomicU64,
    /// Not IPv4 or IPv6, or too large to frame.
    pub dropped_invalid: AtomicU64,
    /// The device refused a packet from the peer.
    pub dropped_device: AtomicU64,
    /// From the peer with a source address that is not the peer's (server side).
    pub dropped_spoofed: AtomicU64,
}

impl TunCounters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The running bridge of one link's device.
#[derive(Debug)]
pub struct TunBridge {
    pub name: String,
    pub counters: Arc<TunCounters>,
    /// Hands the bridge a new channel after each reconnect (`None` while down).
    channel: watch::Sender<Option<Arc<ChannelSlot>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// One channel's halves, shared by the two directions.
#[derive(Debug)]
struct ChannelSlot {
    writer: Mutex<Option<ChannelWriter>>,
    reader: Mutex<Option<ChannelReader>>,
    /// Fired when the peer stops sending on this channel.
    done: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The peer said it takes offload frames (`TUN_OFFLOAD_REQUEST`).
    peer_offload: AtomicBool,
}

/// Which source addresses the peer may use; empty: any (the client side trusts its server).
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    pub allowed: Vec<IpAddr>,
}

impl SourceFilter {
    /// Whether `packet` (an IP packet; for an offload frame, the packet after its header,
    /// whose source every segment the kernel cuts from it shares) may enter the device.
    fn permits(&self, packet: &[u8]) -> bool {
        if self.allowed.is_empty() {
            return true;
        }
        let source = match packet.first().map(|b| b >> 4) {
            Some(4) => Ipv4HeaderSlice::from_slice(packet)
                .ok()
                .map(|h| IpAddr::V4(h.source_addr())),
            Some(6) => Ipv6HeaderSlice::from_slice(packet)
                .ok()
                .map(|h| IpAddr::V6(h.source_addr())),
            _ => None,
        };
        source.is_some_and(|s| self.allowed.contains(&s))
    }
}

impl TunBridge {
    pub fn start(device: TunDevice) -> TunBridge {
        Self::start_filtered(device, SourceFilter::default())
    }

    /// As `start`, dropping (and counting) packets from the peer whose source address the
    /// filter does not allow: the server's anti-spoofing.
    pub fn start_filtered(device: TunDevice, filter: SourceFilter) -> TunBridge {
        let device = Arc::new(device);
        let counters = Arc::new(TunCounters::default());
        let (tx, rx) = watch::channel(None::<Arc<ChannelSlot>>);
        let up = tokio::spawn(device_to_channel(
            device.clone(),
            rx.clone(),
            counters.clone(),
        ));
        let down = tokio::spawn(channel_to_device(
            device.clone(),
            rx,
            counters.clone(),
            filter,
        ));
        TunBridge {
            name: device.name.clone(),
            counters,
            channel: tx,
            tasks: vec![up, down],
        }
    }

    /// Uses `stream` from now on (after a (re)connect). The returned receiver completes when
    /// the channel ends: closed by the peer, the connection lost, closed by us because its
    /// framing broke, or replaced by another.
    pub fn attach(&self, stream: ChannelStream) -> tokio::sync::oneshot::Receiver<()> {
        let ChannelStream { reader, writer } = stream;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let slot = ChannelSlot {
            writer: Mutex::new(Some(writer)),
            reader: Mutex::new(Some(reader)),
            done: std::sync::Mutex::new(Some(done_tx)),
            peer_offload: AtomicBool::new(false),
        };
        let _ = self.channel.send(Some(Arc::new(slot)));
        done_rx
    }

    /// Whether the current channel's peer takes offload frames.
    pub fn peer_offload(&self) -> bool {
        self.channel
            .borrow()
            .as_ref()
            .is_some_and(|s| s.peer_offload.load(Ordering::Relaxed))
    }

    /// The link is down: drop packets until the next `attach`.
    pub fn detach(&self) {
        let _ = self.channel.send(None);
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for TunBridge {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn device_to_channel(
    device: Arc<TunDevice>,
    slot: watch::Receiver<Option<Arc<ChannelSlot>>>,
    counters: Arc<TunCounters>,
) {
    let mut raw = vec![0u8; SUPER_PACKET];
    let segment = usize::from(device.mtu).max(1500) + 64;
    let mut segments = vec![vec![0u8; segment]; SEGMENTS];
    let mut sizes = vec![0usize; SEGMENTS];
    let mut batch = Vec::with_capacity(BATCH + 2048);
    loop {
        // Whether this read's super-packets may cross as they are: decided before reading,
        // from the channel in use now.
        let offload = slot
            .borrow()
            .as_ref()
            .is_some_and(|s| s.peer_offload.load(Ordering::Relaxed));
        let read = if offload {
            read_offload_frames(&device, &mut raw, &mut batch, &counters).await
        } else {
            read_split_packets(
                &device,
                &mut raw,
                &mut segments,
                &mut sizes,
                &mut batch,
                &counters,
            )
            .await
        };
        let Some(Read { pending, waited }) = read else {
            // The device is gone (or the descriptor broke): nothing more will come.
            return;
        };
        if pending == 0 {
            continue;
        }
        let current = slot.borrow().clone();
        let sent = match current {
            // Offload frames read for a channel that has since gone, to a peer that may not
            // take them: dropped, as anything read while the link changes.
            Some(slot) if !offload || slot.peer_offload.load(Ordering::Relaxed) => {
                let mut guard = slot.writer.lock().await;
                match guard.as_mut() {
                    Some(w) => {
                        let bytes = batch.len() as u64;
                        let capacity = if offload { OFFLOAD_BATCH } else { BATCH } + 2048;
                        // While the link is backed up, a batch that fills little of its
                        // buffer (a lone packet, a few) goes as a copy of its own size, and the
                        // buffer stays for the next read: the channel's credit counts bytes,
                        // so each queued packet would otherwise hold a whole 64 KiB (or
                        // 256 KiB) buffer, thousands of them. Otherwise the buffer goes as it
                        // is and comes back once sent (`buffer`): no allocation per packet.
                        let full = if w.backed_up() && batch.len() < batch.capacity() / 4 {
                            batch.clone()
                        } else {
                            std::mem::replace(&mut batch, w.buffer(capacity))
                        };
                        if w.send(full).await.is_ok() {
                            TunCounters::add(&counters.bytes_out, bytes);
                            true
                        } else {
                            *guard = None;
                            false
                        }
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if sent {
            TunCounters::add(&counters.packets_out, pending);
        } else {
            TunCounters::add(&counters.dropped_link_down, pending);
        }
        batch.clear();
        if waited {
            // A packet that came alone (a ping, a keystroke): let the driver seal and send it
            // before the device is read again, which would only say there is nothing more.
            tokio::task::yield_now().await;
        }
    }
}

/// What one turn of reading the device gave.
struct Read {
    /// Packets framed into the batch.
    pending: u64,
    /// The device was empty when the turn began: the read waited for this packet.
    waited: bool,
}

/// One device read split into MTU-sized packets, framed for any peer. Returns the packets
/// framed into `batch`, or `None` once the device is gone.
async fn read_split_packets(
    device: &TunDevice,
    raw: &mut [u8],
    segments: &mut [Vec<u8>],
    sizes: &mut [usize],
    batch: &mut Vec<u8>,
    counters: &TunCounters,
) -> Option<Read> {
    let mut waited = false;
    let read = match device.device.try_recv_multiple(raw, segments, sizes, 0) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            waited = true;
            device.device.recv_multiple(raw, segments, sizes, 0).await
        }
        read => read,
    };
    let count = match read {
        Ok(count) => count,
        Err(e) if e.raw_os_error().is_some() => return None,
        // A super-packet that could not be split: drop it, keep reading.
        Err(e) => {
            tracing::debug!(error = %e, "dropping a packet from the TUN device");
            TunCounters::add(&counters.dropped_invalid, 1);
            return Some(Read { pending: 0, waited });
        }
    };
    let mut pending = 0u64;
    for (buf, &size) in segments.iter().zip(sizes.iter()).take(count) {
        if encode_ip(buf.get(..size).unwrap_or_default(), batch) {
            pending += 1;
        } else {
            TunCounters::add(&counters.dropped_invalid, 1);
        }
    }
    Some(Read { pending, waited })
}

/// Device reads taken as they are (header and super-packet) into offload frames: what is
/// queued, up to `OFFLOAD_BATCH` (a burst of small packets such as ACKs goes out in one
/// channel write), or if nothing is, the next packet as soon as it comes. Returns the packets
/// the frames will make on the peer's side, or `None` once the device is gone.
async fn read_offload_frames(
    device: &TunDevice,
    raw: &mut [u8],
    batch: &mut Vec<u8>,
    counters: &TunCounters,
) -> Option<Read> {
    let mut pending = 0u64;
    let mut waited = false;
    while batch.len() + raw.len() <= OFFLOAD_BATCH && !waited {
        let read = match device.device.try_recv(raw) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && batch.is_empty() => {
                waited = true;
                device.device.recv(raw).await
            }
            read => read,
        };
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) if !batch.is_empty() => break,
            Err(_) => return None,
        };
        let frame = raw.get(..n).unwrap_or_default();
        match check_offload(frame) {
            Ok(o) if encode_offload(frame, batch) => pending += o.segments,
            _ => TunCounters::add(&counters.dropped_invalid, 1),
        }
    }
    Some(Read { pending, waited })
}

async fn channel_to_device(
    device: Arc<TunDevice>,
    mut slot: watch::Receiver<Option<Arc<ChannelSlot>>>,
    counters: Arc<TunCounters>,
    filter: SourceFilter,
) {
    loop {
        let current = slot.borrow_and_update().clone();
        let Some(current) = current else {
            if slot.changed().await.is_err() {
                return;
            }
            continue;
        };
        let Some(mut reader) = current.reader.lock().await.take() else {
            if slot.changed().await.is_err() {
                return;
            }
            continue;
        };
        if let Some(w) = current.writer.lock().await.as_mut() {
            // Our device works in super-packets: say we take them as they are.
            w.request(TUN_OFFLOAD_REQUEST, Vec::new()).await;
            w.deliver_to(Box::new(LonePackets {
                device: device.clone(),
                filter: filter.clone(),
                counters: counters.clone(),
                frame: Vec::new(),
            }))
            .await;
        }
        let mut decoder = TunDecoder::default();
        let mut gro = GROTable::default();
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(SEGMENTS);
        loop {
            let item = tokio::select! {
                item = reader.recv() => item,
                changed = slot.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            };
            let data = match item {
                Inbound::Data(data) => data,
                Inbound::Request { request, .. } if request == TUN_OFFLOAD_REQUEST => {
                    current.peer_offload.store(true, Ordering::Relaxed);
                    continue;
                }
                Inbound::Request { .. } => continue,
                Inbound::Eof | Inbound::Closed => break,
            };
            decoder.push(&data);
            let mut bad_framing = false;
            loop {
                match decoder.next_packet() {
                    Ok(Some(p)) if p.af == AF_OFFLOAD => match check_offload(p.data) {
                        Ok(o) if !filter.permits(o.ip) => {
                            TunCounters::add(&counters.dropped_spoofed, o.segments);
                        }
                        Ok(o) => {
                            // Packets coalesced so far go first: order within a flow holds.
                            write_packets(&device, &mut gro, &mut out, &counters).await;
                            write_offload(&device, p.data, o.ip.len(), o.segments, &counters).await;
                        }
                        Err(why) => {
                            tracing::debug!(why, "dropping an offload frame from the peer");
                            TunCounters::add(&counters.dropped_invalid, 1);
                        }
                    },
                    Ok(Some(p)) if !filter.permits(p.data) => {
                        TunCounters::add(&counters.dropped_spoofed, 1);
                    }
                    Ok(Some(p)) => {
                        // Room for the virtio header in front, which the coalescing fills in.
                        let mut buf = Vec::with_capacity(VIRTIO_NET_HDR_LEN + p.data.len());
                        buf.resize(VIRTIO_NET_HDR_LEN, 0);
                        buf.extend_from_slice(p.data);
                        out.push(buf);
                        if out.len() == SEGMENTS {
                            write_packets(&device, &mut gro, &mut out, &counters).await;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "bad framing on the tun channel; closing it");
                        bad_framing = true;
                        break;
                    }
                }
            }
            write_packets(&device, &mut gro, &mut out, &counters).await;
            if bad_framing {
                // Nothing after a broken frame can be trusted to be one. Close the channel
                // (rather than stop reading it and leave it open, which stalls the tunnel
                // while the link looks up): the peer hears, and the owner of the channel
                // sees it end (`attach`'s receiver).
                if let Some(w) = current.writer.lock().await.take() {
                    w.close().await;
                }
                break;
            }
        }
        drop(reader);
        if let Some(done) = current.done.lock().ok().and_then(|mut d| d.take()) {
            let _ = done.send(());
        }
        // This channel is finished; wait for the next one.
        if slot
            .borrow()
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &current))
            && slot.changed().await.is_err()
        {
            return;
        }
    }
}

/// Writes a lone packet from the peer (a ping, a keystroke: a chunk that is one small frame)
/// to the device within the driver's turn, the reply's shortest way in. Anything else (a
/// burst, which wants coalescing; a device that would block) is left to `channel_to_device`.
#[derive(Debug)]
struct LonePackets {
    device: Arc<TunDevice>,
    filter: SourceFilter,
    counters: Arc<TunCounters>,
    /// The device write: a virtio-net header, then the packet.
    frame: Vec<u8>,
}

impl Sink for LonePackets {
    fn take(&mut self, chunk: &[u8]) -> bool {
        if chunk.len() > LONE_MAX {
            return false;
        }
        let Some(p) = lone_packet(chunk) else {
            return false;
        };
        let (frame, ip, segments) = if p.af == AF_OFFLOAD {
            match check_offload(p.data) {
                Ok(o) => (p.data, o.ip, o.segments),
                Err(_) => return false,
            }
        } else if p.data.is_empty() {
            return false;
        } else {
            // A plain packet: a zeroed header says there is nothing for the kernel to do.
            self.frame.clear();
            self.frame.resize(VIRTIO_NET_HDR_LEN, 0);
            self.frame.extend_from_slice(p.data);
            (&self.frame[..], p.data, 1)
        };
        if !self.filter.permits(ip) {
            TunCounters::add(&self.counters.dropped_spoofed, segments);
            return true;
        }
        match self.device.device.try_send(frame) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            written => {
                count_written(written, segments, ip.len(), &self.counters);
                true
            }
        }
    }
}

/// Writes one checked offload frame (virtio-net header and super-packet) to the device as it is.
async fn write_offload(
    device: &TunDevice,
    frame: &[u8],
    ip_len: usize,
    segments: u64,
    counters: &TunCounters,
) {
    let written = device.device.send(frame).await;
    count_written(written, segments, ip_len, counters);
}

/// Counts a device write of `packets` packets (`bytes` of IP) as delivered or dropped.
fn count_written<T>(
    written: std::io::Result<T>,
    packets: u64,
    bytes: usize,
    counters: &TunCounters,
) {
    match written {
        Ok(_) => {
            TunCounters::add(&counters.packets_in, packets);
            TunCounters::add(&counters.bytes_in, bytes as u64);
        }
        Err(e) => {
            tracing::debug!(error = %e, packets, "TUN device refused packets");
            TunCounters::add(&counters.dropped_device, packets);
        }
    }
}

/// Writes `packets` (each with virtio header room in front) to the device, coalescing TCP and
/// UDP flows into super-packets, and empties the list.
async fn write_packets(
    device: &TunDevice,
    gro: &mut GROTable,
    packets: &mut Vec<Vec<u8>>,
    counters: &TunCounters,
) {
    if packets.is_empty() {
        return;
    }
    let count = packets.len() as u64;
    let bytes: usize = packets.iter().map(|p| p.len() - VIRTIO_NET_HDR_LEN).sum();
    let written = device
        .device
        .send_multiple(gro, packets, VIRTIO_NET_HDR_LEN)
        .await;
    count_written(written, count, bytes, counters);
    packets.clear();
}
