//! The copy-saving data path: reading into `input_space` and taking channel data by value.

use super::util::{Pair, pattern};
use crate::Event;
use crate::conn::QUIET_AFTER;
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
fn consuming_datagrams_returns_their_payload_to_the_window() {
    // As with taking: consuming whole messages returns the packet bytes, not their length
    // prefixes. Otherwise each round hands the peer 4 bytes per packet more than it sent, and
    // the window stops bounding what it may send.
    consume_datagrams_in_pieces_of(usize::MAX);
}

#[test]
fn consuming_datagrams_in_pieces_that_cut_them_returns_their_payload() {
    // A consumer that reads a length prefix, then the packet, or any cut in between.
    consume_datagrams_in_pieces_of(37);
    consume_datagrams_in_pieces_of(4);
}

fn consume_datagrams_in_pieces_of(piece: usize) {
    const WINDOW: usize = 64 * 1024;
    const PACKET: usize = 100;
    /// Half the window: when consumed bytes go back (`adjust_step`).
    const STEP: usize = WINDOW / 2;
    let mut pair = Pair::connected_with_windows(WINDOW as u32, 32 * 1024);
    let (cid, sid) = pair.open_tun();
    let mut framed = Vec::new();
    for _ in 0..4000 {
        framed.extend_from_slice(&(PACKET as u32).to_be_bytes());
        framed.extend_from_slice(&[0x45u8; PACKET]);
    }
    let (mut sent, mut consumed) = (0, 0);
    for round in 0..5 {
        // The client sends until the window is spent...
        loop {
            let n = pair.client.channel_send(cid, &framed[sent..]).unwrap();
            if n == 0 {
                break;
            }
            sent += n;
            pair.run();
        }
        // It may send what the window granted plus what was returned, which is all that was
        // consumed but for less than one adjust step still gathering.
        let sent_payload = sent / (PACKET + 4) * PACKET;
        assert!(
            sent_payload <= WINDOW + consumed && sent_payload + STEP + PACKET > WINDOW + consumed,
            "pieces of {piece}, round {round}: the peer sent {sent_payload} packet bytes with a \
             window of {WINDOW} and {consumed} consumed"
        );
        // ...and the server consumes all of it, `piece` bytes at a time.
        loop {
            let n = pair.server.channel_data(sid).len().min(piece);
            if n == 0 {
                break;
            }
            pair.server.channel_consume(sid, n);
        }
        consumed = sent_payload;
        pair.run();
    }
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

/// A socket that never takes all that waits (a link slower than the sender): each turn it
/// takes a third of `transmit()`, and the sender tops the output up again, as the driver
/// does. Bytes written must not stay in memory: the transmit buffers hold what waits, not
/// what has gone out, however long the socket stays busy (they used to keep every byte until
/// the socket took all of it at once, and grew by what went out). Order and content hold.
#[test]
fn output_held_for_a_slow_socket_stays_bounded() {
    const WAITING: usize = 256 * 1024;
    const SEND: usize = 64 * 1024;
    let mut pair = Pair::connected_with_windows(1 << 20, 32 * 1024);
    let (cid, sid) = pair.open_channel();
    let data = pattern(24 << 20);
    let (mut sent, mut received) = (0, Vec::new());
    let mut most_held = 0;
    while received.len() < data.len() {
        if sent < data.len() && pair.client.pending_transmit() < WAITING {
            let end = data.len().min(sent + SEND);
            sent += pair.client.channel_send(cid, &data[sent..end]).unwrap();
        }
        let out = pair.client.transmit();
        let n = out.len().div_ceil(3);
        let wire = out[..n].to_vec();
        pair.client.advance_transmit(n);
        pair.server.handle_input(&wire, pair.now).unwrap();
        while let Some(chunk) = pair.server.channel_take(sid) {
            received.extend_from_slice(&chunk);
            pair.server.recycle(chunk);
        }
        // Window adjusts back to the client.
        let mut back = Vec::new();
        pair.server.poll_transmit(&mut back);
        pair.client.handle_input(&back, pair.now).unwrap();
        most_held = most_held.max(pair.client.transmit_capacity());
    }
    assert!(received == data, "data corrupted or reordered");
    // Each of the two buffers holds at most what may wait plus one send, in a Vec whose
    // capacity is at most twice its length.
    assert!(
        most_held <= 2 * 2 * (WAITING + SEND),
        "transmit buffers grew to {most_held} bytes while at most {WAITING} waited"
    );
}

#[test]
fn a_quiet_connection_gives_back_what_a_burst_grew() {
    // A burst grows the transmit and receive buffers, and finished chunks are kept for reuse.
    // Once the connection has been quiet for `QUIET_AFTER`, both ends give that memory back;
    // a daemon serving many connections that each had a burst once must not keep their peaks.
    // Keepalives go on meanwhile, and are not traffic.
    let (mut c, s) = Pair::default_configs();
    c.keepalive = Some(QUIET_AFTER / 4);
    let mut pair = Pair::new(c, s);
    pair.run();
    let (cid, sid) = pair.open_channel();
    // A handshake grows nothing, so an idle connection has no timer for this.
    assert!(!pair.client.watching_for_quiet() && !pair.server.watching_for_quiet());
    let data = pattern(1 << 20);
    for _ in 0..8 {
        let mut sent = 0;
        while sent < data.len() {
            sent += pair.client.channel_send(cid, &data[sent..]).unwrap();
            pair.server.channel_send(sid, &data).unwrap();
            pair.run();
            while let Some(chunk) = pair.server.channel_take(sid) {
                pair.server.recycle(chunk);
            }
            while let Some(chunk) = pair.client.channel_take(cid) {
                pair.client.recycle(chunk);
            }
            pair.run();
        }
    }
    let held = |p: &Pair| {
        [
            p.client.transmit_capacity() + p.client.receive_capacity(),
            p.server.transmit_capacity() + p.server.receive_capacity(),
        ]
    };
    let burst = held(&pair);
    assert!(
        burst.iter().all(|&b| b > 1 << 20),
        "the burst grew the buffers (client, server): {burst:?}"
    );

    pair.advance(QUIET_AFTER / 2);
    assert!(!pair.client.take_released_memory() && !pair.server.take_released_memory());
    // Checked QUIET_AFTER after the burst began, and again after that while it went on.
    for _ in 0..8 {
        pair.advance(QUIET_AFTER / 4);
    }
    // The daemon is told, so that it can return the memory to the system.
    assert!(pair.client.take_released_memory() && pair.server.take_released_memory());
    let quiet = held(&pair);
    // Only once: a connection that stays quiet has nothing more to give back, and the daemon
    // is not told again.
    for _ in 0..8 {
        pair.advance(QUIET_AFTER / 4);
    }
    assert!(
        !pair.client.take_released_memory() && !pair.server.take_released_memory(),
        "released again on a quiet connection"
    );
    assert!(!pair.client.watching_for_quiet() && !pair.server.watching_for_quiet());
    assert!(
        // What a quiet connection keeps: two 64 KiB transmit buffers (they swap) and a
        // small read buffer.
        quiet.iter().all(|&q| q <= 2 * 64 * 1024 + 16 * 1024),
        "buffers after a keepalive interval of quiet (client, server): {quiet:?}, after the \
         burst {burst:?}"
    );
    // They grow again when traffic resumes.
    let (mut sent, mut received) = (0, 0);
    while received < data.len() {
        sent += pair.client.channel_send(cid, &data[sent..]).unwrap();
        pair.run();
        while let Some(chunk) = pair.server.channel_take(sid) {
            received += chunk.len();
        }
        pair.run();
    }
    assert_eq!(received, data.len());
}
