//! The copy-saving data path: reading into `input_space` and taking channel data by value.

use super::util::{Pair, pattern};
use crate::Event;
use crate::connection::CHUNK;

/// Moves the client's output to the server through `input_space`/`handle_received`, in reads
/// of at most `read` bytes, as the daemon's driver does.
fn deliver_via_input_space(pair: &mut Pair, read: usize) {
    let mut wire = Vec::new();
    pair.client.poll_transmit(&mut wire);
    let mut pos = 0;
    while pos < wire.len() {
        let space = pair.server.input_space();
        let n = space.len().min(read).min(wire.len() - pos);
        assert!(n > 0, "no room to read into");
        space[..n].copy_from_slice(&wire[pos..pos + n]);
        pos += n;
        pair.server.handle_received(n, pair.now).unwrap();
    }
}

#[test]
fn taken_chunks_carry_the_stream_and_reopen_the_window() {
    let mut pair = Pair::connected_with_windows(256 * 1024, 32 * 1024);
    let (cid, sid) = pair.open_channel();
    let data = pattern(3 << 20);
    let (mut sent, mut received) = (0, Vec::new());
    let mut reads = [7usize, 1000, 65_536, 300_000].into_iter().cycle();
    while received.len() < data.len() {
        let end = data.len().min(sent + 100_000);
        sent += pair.client.channel_send(cid, &data[sent..end]).unwrap();
        deliver_via_input_space(&mut pair, reads.next().unwrap());
        pair.run();
        let mut took = false;
        while let Some(chunk) = pair.server.channel_take(sid) {
            assert!(chunk.len() <= CHUNK, "{} bytes in one chunk", chunk.len());
            received.extend_from_slice(&chunk);
            pair.server.recycle(chunk);
            took = true;
        }
        assert!(
            took || sent < data.len(),
            "transfer stalled at {}",
            received.len()
        );
        pair.run();
    }
    assert!(received == data, "data corrupted");
    assert!(pair.server.channel_data(sid).is_empty());
}

#[test]
fn mixing_consume_and_take_loses_nothing() {
    let mut pair = Pair::connected();
    let (cid, sid) = pair.open_channel();
    let data = pattern(50_000);
    assert_eq!(pair.client.channel_send(cid, &data).unwrap(), data.len());
    pair.run();
    let mut received = pair.server.channel_data(sid)[..123].to_vec();
    pair.server.channel_consume(sid, 123);
    while let Some(chunk) = pair.server.channel_take(sid) {
        received.extend_from_slice(&chunk);
    }
    assert!(received == data, "data corrupted");
}

#[test]
fn taking_datagrams_returns_their_payload_to_the_window() {
    // A tun channel's window counts packets without their length prefixes: taking a chunk
    // of prefixed packets must return exactly the packet bytes, or the windows drift apart.
    let mut pair = Pair::connected_with_windows(64 * 1024, 32 * 1024);
    let (cid, sid) = pair.open_tun();
    let packet = vec![0x45u8; 1000];
    let mut framed = Vec::new();
    for _ in 0..200 {
        framed.extend_from_slice(&(packet.len() as u32).to_be_bytes());
        framed.extend_from_slice(&packet);
    }
    // 200 packets need three windows' worth: the transfer finishes only if each take
    // returns what the window counted.
    let mut used = 0;
    let mut packets = 0;
    for _ in 0..1000 {
        used += pair.client.channel_send(cid, &framed[used..]).unwrap();
        pair.run();
        while let Some(chunk) = pair.server.channel_take(sid) {
            let mut r = crate::wire::Reader::new(&chunk);
            while let Ok(p) = r.string() {
                assert_eq!(p, &packet[..]);
                packets += 1;
            }
        }
        pair.run();
        if packets == 200 {
            break;
        }
    }
    assert_eq!(packets, 200);
}

#[test]
fn input_space_is_bounded_while_input_waits() {
    // The client waits for a host key verdict that never comes; a peer that keeps sending
    // must not make it buffer without bound.
    let (c, s) = Pair::default_configs();
    let mut pair = Pair::new(c, s);
    let mut wire = Vec::new();
    for _ in 0..20 {
        pair.client.poll_transmit(&mut wire);
        if !wire.is_empty() {
            pair.server.handle_input(&wire, pair.now).unwrap();
            wire.clear();
        }
        pair.server.poll_transmit(&mut wire);
        if !wire.is_empty() {
            pair.client.handle_input(&wire, pair.now).unwrap();
            wire.clear();
        }
    }
    assert!(matches!(
        pair.client.poll_event(),
        Some(Event::VerifyHostKey(_))
    ));
    let mut total = 0;
    loop {
        let space = pair.client.input_space();
        if space.is_empty() {
            break;
        }
        let n = space.len();
        space.fill(0);
        pair.client.handle_received(n, pair.now).unwrap();
        total += n;
        assert!(total < 4 << 20, "input space kept growing");
    }
}
