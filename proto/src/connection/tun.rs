//! Packet framing inside a `tun@openssh.com` channel (OpenSSH PROTOCOL §2.3, and its
//! portable implementation's Linux filters): the channel carries a byte stream of SSH
//! `string`s, each holding a 4-byte address family in OpenBSD numbering followed by one IP
//! packet (point-to-point mode) or Ethernet frame (ethernet mode).
//!
//! Message boundaries of the channel do not matter; `TunDecoder` reassembles packets from any
//! split. Every length is bounded before a packet is buffered.
//!
//! Between two sshvpnd, a side whose device works in super-packets says so with the
//! [`TUN_OFFLOAD_REQUEST`] channel request; from then on its peer may send it offload frames:
//! address family [`AF_OFFLOAD`], then a 10-byte virtio-net header (Linux `virtio_net_hdr`,
//! little-endian as virtio 1.0 defines it) and one IP packet of up to 64 KiB that the header
//! describes (e.g. a TCP segment the receiving kernel will cut at `gso_size`). One SSH message
//! then moves up to 64 KiB, not one MTU. OpenSSH never says it, so it never sees such a frame.

use crate::wire::{WireError, Writer};

/// OpenBSD's AF_INET, as the wire format uses it.
pub const AF_INET: u32 = 2;
/// OpenBSD's AF_INET6.
pub const AF_INET6: u32 = 24;
/// sshvpn's own address family for an offload frame (virtio-net header + IP packet). Far
/// from any OpenBSD AF_* value, so no OpenSSH frame can be mistaken for one.
pub const AF_OFFLOAD: u32 = 0x5356_4e48;
/// Length of the virtio-net header at the start of an offload frame.
pub const VNET_HDR_LEN: usize = 10;
/// Largest packet (address family included) we accept: OpenSSH itself reads at most 16 KiB
/// per packet from its tun device, but sshvpnd peers may use a larger MTU.
pub const MAX_TUN_PACKET: usize = 65536 + 4;
/// Largest frame (address family included) the decoder accepts: an offload frame's header
/// and a whole 64 KiB IP packet.
pub const MAX_TUN_FRAME: usize = 4 + VNET_HDR_LEN + 65535;

/// sshvpn's own channel request on a tun channel, server to client, no reply: the address
/// the server leased to the client (string "10.77.0.2/24") and the server's own (string).
/// OpenSSH clients ignore it, as RFC 4254 §5.4 lets them.
pub const TUN_ADDRESS_REQUEST: &str = "tun-address@sshvpn";

/// sshvpn's own channel request on a tun channel, either way, no reply, no data: "I take
/// offload frames". OpenSSH ignores it (RFC 4254 §5.4), so it keeps getting plain packets.
pub const TUN_OFFLOAD_REQUEST: &str = "tun-offload@sshvpn";

/// The address family header for an IP packet, from its version nibble.
pub fn address_family(packet: &[u8]) -> Option<u32> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Some(AF_INET),
        Some(6) => Some(AF_INET6),
        _ => None,
    }
}

/// Appends one framed IP packet to `out`. Returns false (and appends nothing) for a packet
/// that is neither IPv4 nor IPv6, or too large.
pub fn encode_ip(packet: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(af) = address_family(packet) else {
        return false;
    };
    if packet.len() + 4 > MAX_TUN_PACKET {
        return false;
    }
    push_frame(af, packet, out);
    true
}

/// Appends one frame, `body` after its length and address family.
fn push_frame(af: u32, body: &[u8], out: &mut Vec<u8>) {
    out.reserve(8 + body.len());
    Writer::new(out)
        .u32((body.len() + 4) as u32)
        .u32(af)
        .raw(body);
}

/// Appends one offload frame to `out`: `raw` is a virtio-net header and an IP packet, as an
/// offload TUN device returns them. Returns false (and appends nothing) when `raw` is too
/// short, too long, or its packet is neither IPv4 nor IPv6.
pub fn encode_offload(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let ip = raw.get(VNET_HDR_LEN..).unwrap_or_default();
    if address_family(ip).is_none() || raw.len() + 4 > MAX_TUN_FRAME {
        return false;
    }
    push_frame(AF_OFFLOAD, raw, out);
    true
}

/// virtio-net header flag: the checksum from `csum_start` on is still to be computed.
const VNET_F_NEEDS_CSUM: u8 = 1;
/// virtio-net header flag: the checksum is known to be good.
const VNET_F_DATA_VALID: u8 = 2;
/// virtio-net GSO types: none, TCP over IPv4, TCP over IPv6, UDP (IPv4 or IPv6); the ECN bit
/// may be set on the TCP ones.
const VNET_GSO_NONE: u8 = 0;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;
const VNET_GSO_UDP_L4: u8 = 5;
const VNET_GSO_ECN: u8 = 0x80;

/// What the receiving side needs of a checked offload frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Offload<'a> {
    /// The IP packet after the header.
    pub ip: &'a [u8],
    /// How many packets the kernel will make of it (1 when it is not a GSO packet).
    pub segments: u64,
}

/// Checks an offload frame's header (`frame` is what follows the address family) before its
/// bytes go to a TUN device: a known GSO type that matches the IP version, offsets inside the
/// packet, a non-zero segment size. The kernel checks again; this keeps a peer's nonsense from
/// reaching it at all, and names what was wrong.
pub fn check_offload(frame: &[u8]) -> Result<Offload<'_>, &'static str> {
    let Some((hdr, ip)) = frame.split_first_chunk::<VNET_HDR_LEN>() else {
        return Err("shorter than its virtio-net header");
    };
    let [flags, gso_type, h0, h1, g0, g1, s0, s1, o0, o1] = *hdr;
    let le16 = |lo: u8, hi: u8| usize::from(u16::from_le_bytes([lo, hi]));
    let (hdr_len, gso_size) = (le16(h0, h1), le16(g0, g1));
    let (csum_start, csum_offset) = (le16(s0, s1), le16(o0, o1));
    let version = ip.first().map(|b| b >> 4);
    if !matches!(version, Some(4 | 6)) {
        return Err("not an IPv4 or IPv6 packet");
    }
    if flags & !(VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID) != 0 {
        return Err("unknown virtio-net flags");
    }
    if flags & VNET_F_NEEDS_CSUM != 0 && csum_start + csum_offset + 2 > ip.len() {
        return Err("checksum offsets outside the packet");
    }
    let segments = match (gso_type & !VNET_GSO_ECN, version) {
        (VNET_GSO_NONE, _) if gso_type == VNET_GSO_NONE => return Ok(Offload { ip, segments: 1 }),
        (VNET_GSO_TCPV4, Some(4)) | (VNET_GSO_TCPV6, Some(6)) => gso_size,
        (VNET_GSO_UDP_L4, _) if gso_type == VNET_GSO_UDP_L4 => gso_size,
        _ => return Err("unknown GSO type, or one that does not match the IP version"),
    };
    if segments == 0 || hdr_len > ip.len() {
        return Err("GSO segment size is zero or headers longer than the packet");
    }
    Ok(Offload {
        ip,
        segments: (ip.len() - hdr_len).div_ceil(segments).max(1) as u64,
    })
}

/// The packet framed at the start of `bytes`, and the frame's length, if it is all there.
fn first_frame(bytes: &[u8]) -> Result<Option<(TunPacket<'_>, usize)>, WireError> {
    let Some(len) = bytes
        .first_chunk::<4>()
        .map(|b| u32::from_be_bytes(*b) as usize)
    else {
        return Ok(None);
    };
    if !(4..=MAX_TUN_FRAME).contains(&len) {
        return Err(WireError::Invalid {
            field: "tun packet length",
            why: "outside 4..=65549",
        });
    }
    let Some(frame) = bytes.get(4..4 + len) else {
        return Ok(None);
    };
    let af = frame
        .first_chunk::<4>()
        .map_or(0, |b| u32::from_be_bytes(*b));
    let data = frame.get(4..).unwrap_or_default();
    Ok(Some((TunPacket { af, data }, 4 + len)))
}

/// The packet `bytes` holds if they are exactly one whole frame: a lone packet (a ping, a
/// keystroke) that needs no reassembly.
pub fn lone_packet(bytes: &[u8]) -> Option<TunPacket<'_>> {
    match first_frame(bytes) {
        Ok(Some((packet, len))) if len == bytes.len() => Some(packet),
        _ => None,
    }
}

/// Reassembles framed packets from a channel's byte stream.
#[derive(Debug, Default)]
pub struct TunDecoder {
    buf: Vec<u8>,
    start: usize,
}

/// One decoded packet: its address family and where it sits in the decoder's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct TunPacket<'a> {
    pub af: u32,
    pub data: &'a [u8],
}

impl TunDecoder {
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && (self.start == self.buf.len() || self.start > 64 * 1024) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete packet, if any. An oversized or undersized frame is an error: the
    /// stream cannot be resynchronised after it, so the channel must be closed.
    pub fn next_packet(&mut self) -> Result<Option<TunPacket<'_>>, WireError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let Some((packet, len)) = first_frame(rest)? else {
            return Ok(None);
        };
        let af = packet.af;
        let begin = self.start + 8;
        self.start += len;
        Ok(Some(TunPacket {
            af,
            data: self.buf.get(begin..self.start).unwrap_or_default(),
        }))
    }

    /// Bytes held that do not yet form a whole packet.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ipv4(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len.max(20)];
        p[0] = 0x45;
        p
    }

    #[test]
    fn framing_matches_openssh() {
        let mut out = Vec::new();
        assert!(encode_ip(&ipv4(20), &mut out));
        assert_eq!(&out[..8], &[0, 0, 0, 24, 0, 0, 0, 2]);
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        out.clear();
        assert!(encode_ip(&v6, &mut out));
        assert_eq!(&out[4..8], &[0, 0, 0, 24]);
        assert!(!encode_ip(&[0x10; 30], &mut out), "not IP");
    }

    #[test]
    fn a_lone_packet_is_exactly_one_whole_frame() {
        let mut one = Vec::new();
        assert!(encode_ip(&ipv4(84), &mut one));
        let p = lone_packet(&one).expect("one whole frame");
        assert_eq!((p.af, p.data), (AF_INET, &ipv4(84)[..]));
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(lone_packet(&two), None, "two frames");
        assert_eq!(lone_packet(&one[..one.len() - 1]), None, "a partial frame");
        assert_eq!(lone_packet(&[0xff, 0xff, 0xff, 0xff]), None, "a bad length");
        assert_eq!(lone_packet(&[]), None);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut d = TunDecoder::default();
        d.push(&[0, 0, 0, 2]);
        assert!(d.next_packet().is_err());
        let mut d = TunDecoder::default();
        d.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_packet().is_err());
    }

    /// A TCP-over-IPv4 super-packet as an offload device returns it: 40 bytes of headers and
    /// `payload` bytes cut at 1448.
    fn tso4(payload: usize) -> Vec<u8> {
        let mut raw = vec![0u8; VNET_HDR_LEN];
        raw[0] = VNET_F_NEEDS_CSUM;
        raw[1] = VNET_GSO_TCPV4;
        raw[2..4].copy_from_slice(&40u16.to_le_bytes());
        raw[4..6].copy_from_slice(&1448u16.to_le_bytes());
        raw[6..8].copy_from_slice(&20u16.to_le_bytes());
        raw[8..10].copy_from_slice(&16u16.to_le_bytes());
        raw.extend(ipv4(40 + payload));
        raw
    }

    #[test]
    fn offload_frames_round_trip_and_count_segments() {
        let raw = tso4(64_000);
        let mut out = Vec::new();
        assert!(encode_offload(&raw, &mut out));
        let mut d = TunDecoder::default();
        d.push(&out);
        let p = d.next_packet().unwrap().unwrap();
        assert_eq!(p.af, AF_OFFLOAD);
        assert_eq!(p.data, &raw[..]);
        let o = check_offload(p.data).unwrap();
        assert_eq!((o.ip.len(), o.segments), (64_040, 45));
        let plain = [&[0u8; VNET_HDR_LEN][..], &ipv4(60)].concat();
        assert_eq!(check_offload(&plain).unwrap().segments, 1);
        assert!(!encode_offload(&[0u8; 12], &mut out), "not IP");
        assert!(!encode_offload(&[0u8; MAX_TUN_FRAME], &mut out), "too long");
    }

    #[test]
    fn bad_offload_headers_are_named() {
        let good = tso4(3000);
        let bad = |at: usize, v: u8| {
            let mut f = good.clone();
            f[at] = v;
            check_offload(&f).unwrap_err()
        };
        assert!(bad(0, 0x10).contains("flags"));
        assert!(
            bad(1, VNET_GSO_TCPV6).contains("GSO type"),
            "IPv6 GSO on IPv4"
        );
        assert!(bad(1, 3).contains("GSO type"), "UFO");
        assert!(bad(7, 0xff).contains("checksum"));
        let mut zero = good.clone();
        zero[4..6].copy_from_slice(&[0, 0]);
        assert!(check_offload(&zero).unwrap_err().contains("segment size"));
        assert!(check_offload(&good[..4]).is_err());
        assert!(check_offload(&[&good[..VNET_HDR_LEN], &[0x10u8; 40][..]].concat()).is_err());
    }

    proptest! {
        #[test]
        fn check_offload_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = check_offload(&data);
        }

        #[test]
        fn any_split_yields_the_same_packets(
            sizes in proptest::collection::vec(20usize..2000, 1..8),
            cuts in proptest::collection::vec(1usize..700, 1..20),
        ) {
            let packets: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| {
                let mut p = ipv4(n);
                p[n - 1] = i as u8;
                p
            }).collect();
            let mut stream = Vec::new();
            for p in &packets {
                prop_assert!(encode_ip(p, &mut stream));
            }
            let mut d = TunDecoder::default();
            let mut got = Vec::new();
            let mut pos = 0;
            for c in cuts.iter().cycle() {
                if pos >= stream.len() { break; }
                let end = (pos + c).min(stream.len());
                d.push(&stream[pos..end]);
                pos = end;
                while let Some(p) = d.next_packet().unwrap() {
                    prop_assert_eq!(p.af, AF_INET);
                    got.push(p.data.to_vec());
                }
            }
            prop_assert_eq!(got, packets);
            prop_assert_eq!(d.pending(), 0);
        }

        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = TunDecoder::default();
            d.push(&data);
            while let Ok(Some(_)) = d.next_packet() {}
        }
    }
}
