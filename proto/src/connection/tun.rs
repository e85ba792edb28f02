//! Packet framing inside a `tun@openssh.com` channel (OpenSSH PROTOCOL §2.3, and its
//! portable implementation's Linux filters): the channel carries a byte stream of SSH
//! `string`s, each holding a 4-byte address family in OpenBSD numbering followed by one IP
//! packet (point-to-point mode) or Ethernet frame (ethernet mode).
//!
//! Message boundaries of the channel do not matter; `TunDecoder` reassembles packets from any
//! split. Every length is bounded before a packet is buffered.

use crate::wire::{WireError, Writer};

/// OpenBSD's AF_INET, as the wire format uses it.
pub const AF_INET: u32 = 2;
/// OpenBSD's AF_INET6.
pub const AF_INET6: u32 = 24;
/// Largest packet (address family included) we accept: OpenSSH itself reads at most 16 KiB
/// per packet from its tun device, but sshvpnd peers may use a larger MTU.
pub const MAX_TUN_PACKET: usize = 65536 + 4;

/// sshvpn's own channel request on a tun channel, server to client, no reply: the address
/// the server leased to the client (string "10.77.0.2/24") and the server's own (string).
/// OpenSSH clients ignore it, as RFC 4254 §5.4 lets them.
pub const TUN_ADDRESS_REQUEST: &str = "tun-address@sshvpn";

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
    out.reserve(8 + packet.len());
    Writer::new(out)
        .u32((packet.len() + 4) as u32)
        .u32(af)
        .raw(packet);
    true
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
        let Some(len) = rest
            .first_chunk::<4>()
            .map(|b| u32::from_be_bytes(*b) as usize)
        else {
            return Ok(None);
        };
        if !(4..=MAX_TUN_PACKET).contains(&len) {
            return Err(WireError::Invalid {
                field: "tun packet length",
                why: "outside 4..=65540",
            });
        }
        let Some(frame) = rest.get(4..4 + len) else {
            return Ok(None);
        };
        let af = frame
            .first_chunk::<4>()
            .map_or(0, |b| u32::from_be_bytes(*b));
        let begin = self.start + 8;
        self.start += 4 + len;
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
    fn bad_lengths_are_errors() {
        let mut d = TunDecoder::default();
        d.push(&[0, 0, 0, 2]);
        assert!(d.next_packet().is_err());
        let mut d = TunDecoder::default();
        d.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_packet().is_err());
    }

    proptest! {
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
