//! Adaptive receive windows: a channel's window grows while its peer is held back by it and
//! the reader keeps up, and all of a connection's windows stay within its budget.

use super::util::{Pair, pattern};
use crate::ChannelId;
use crate::connection::{ChannelConfig, FLOOR_WINDOW};

const KIB: u32 = 1024;

/// One round of a sender that always has data: the client sends all the window allows
/// (at most `data`), the server reads up to `read` bytes of it. Returns the bytes sent.
fn round(pair: &mut Pair, cid: ChannelId, sid: ChannelId, data: &[u8], read: usize) -> usize {
    let sent = pair.client.channel_send(cid, data).unwrap();
    pair.run();
    let mut left = read;
    while left > 0 && !pair.server.channel_data(sid).is_empty() {
        let n = pair.server.channel_data(sid).len().min(left);
        pair.server.channel_consume(sid, n);
        left -= n;
    }
    pair.run();
    sent
}

#[test]
fn a_window_grows_while_the_reader_keeps_up_and_not_for_a_slow_reader() {
    let defaults = ChannelConfig::default();
    let mut pair = Pair::connected();
    let (cid, sid) = pair.open_channel();
    assert_eq!(pair.server.channel_window(sid), defaults.initial_window);
    let data = pattern(32 << 20);

    // The sender fills whatever window it has, and the reader takes all of it at once: the
    // window is what holds the sender back, so it doubles up to the largest.
    let mut sent_per_round = Vec::new();
    for _ in 0..16 {
        sent_per_round.push(round(&mut pair, cid, sid, &data, usize::MAX));
    }
    assert_eq!(pair.server.channel_window(sid), defaults.window);
    assert!(
        sent_per_round.last() > sent_per_round.first(),
        "each round sent: {sent_per_round:?}"
    );

    // A reader that takes 16 KiB per round holds the sender back itself: a larger window
    // would only fill our memory, so it stays as it began.
    let (cid, sid) = pair.open_channel();
    for _ in 0..200 {
        round(&mut pair, cid, sid, &data, 16 * 1024);
    }
    assert_eq!(pair.server.channel_window(sid), defaults.initial_window);
}

#[test]
fn a_connections_windows_stay_within_its_budget() {
    let limits = ChannelConfig {
        window: 1024 * KIB,
        initial_window: 256 * KIB,
        window_budget: 2048 * 1024,
        max_packet: 32 * KIB,
        max_channels: 64,
    };
    let mut pair = Pair::connected_with_channels(limits.clone());
    // Eight channels take the budget; the rest get the floor.
    let channels: Vec<_> = (0..12).map(|_| pair.open_channel()).collect();
    let windows: Vec<u32> = channels
        .iter()
        .map(|&(_, sid)| pair.server.channel_window(sid))
        .collect();
    assert_eq!(windows[..8], [256 * KIB; 8]);
    assert_eq!(windows[8..], [FLOOR_WINDOW; 4]);
    assert_eq!(
        pair.server.channel_windows_total(),
        limits.window_budget + 4 * u64::from(FLOOR_WINDOW)
    );

    // A peer that fills every window, with nothing read, gets exactly that much buffered.
    let data = pattern(1 << 20);
    let mut sent = 0;
    for &(cid, _) in &channels {
        sent += pair.client.channel_send(cid, &data).unwrap() as u64;
    }
    pair.run();
    let buffered: usize = channels
        .iter()
        .map(|&(_, sid)| pair.server.channel_data(sid).len())
        .sum();
    assert_eq!(sent, pair.server.channel_windows_total());
    assert_eq!(buffered as u64, sent);

    // With no budget left, a channel whose reader keeps up does not grow...
    let (cid, sid) = channels[0];
    for _ in 0..8 {
        round(&mut pair, cid, sid, &data, usize::MAX);
    }
    assert_eq!(pair.server.channel_window(sid), 256 * KIB);

    // ...until other channels close and give theirs back.
    for &(cid, sid) in &channels[4..] {
        pair.client.close_channel(cid).unwrap();
        pair.run();
        pair.server.close_channel(sid).unwrap();
        pair.run();
    }
    assert_eq!(
        pair.server.channel_windows_total(),
        4 * 256 * u64::from(KIB)
    );
    for _ in 0..8 {
        round(&mut pair, cid, sid, &data, usize::MAX);
    }
    assert_eq!(pair.server.channel_window(sid), limits.window);
    assert_eq!(
        pair.server.channel_windows_total(),
        u64::from(limits.window) + 3 * 256 * u64::from(KIB)
    );
}

#[test]
fn a_trickle_keeps_its_first_window_however_much_it_moves() {
    // 64 KiB a second for 10 minutes: 37 MiB, but never twice the window within a second.
    let defaults = ChannelConfig::default();
    let mut pair = Pair::connected();
    let (cid, sid) = pair.open_channel();
    let data = pattern(64 * 1024);
    for _ in 0..600 {
        let received = pair.transfer(cid, sid, &data, usize::MAX);
        assert!(received == data, "data corrupted");
        pair.advance(std::time::Duration::from_secs(1));
    }
    assert_eq!(pair.server.channel_window(sid), defaults.initial_window);
}

#[test]
fn a_busy_channel_grows_its_window_without_running_it_dry() {
    // A sender that writes 64 KiB at a time to a reader that keeps up never runs a 256 KiB
    // window dry here; on a real path, scheduling delays do, now and then. A channel that
    // moves twice its window grows it anyway.
    let defaults = ChannelConfig::default();
    let mut pair = Pair::connected();
    let (cid, sid) = pair.open_channel();
    let data = pattern(64 << 20);
    let received = pair.transfer(cid, sid, &data, usize::MAX);
    assert!(received == data, "data corrupted");
    assert_eq!(pair.server.channel_window(sid), defaults.window);
    // A channel that moves little keeps the window it began with.
    let (cid, sid) = pair.open_channel();
    let small = pattern(256 * 1024);
    pair.transfer(cid, sid, &small, usize::MAX);
    assert_eq!(pair.server.channel_window(sid), defaults.initial_window);
}

#[test]
fn a_tun_channel_past_the_budget_still_takes_its_largest_message() {
    // A datagram cannot be split to fit a window: a tun channel opened once the budget is
    // spent gets twice the largest message we accept (what is consumed goes back once half
    // the window has been), so the peer's biggest packet (an offload super-packet) is never
    // stuck behind a window too small for it.
    let limits = ChannelConfig {
        window: 1024 * KIB,
        initial_window: 256 * KIB,
        window_budget: 256 * 1024,
        max_packet: 80 * KIB,
        max_channels: 8,
    };
    let mut pair = Pair::connected_with_channels(limits.clone());
    let (_, first) = pair.open_channel();
    let (_, stream) = pair.open_channel();
    let (ctun, tun) = pair.open_tun();
    assert_eq!(pair.server.channel_window(first), 256 * KIB);
    assert_eq!(pair.server.channel_window(stream), FLOOR_WINDOW);
    assert_eq!(pair.server.channel_window(tun), 2 * limits.max_packet);
    // A datagram that leaves just under half the window unreturned, then datagrams of the
    // largest size: each still fits what is left (with a window of `max_packet` the first
    // large one would wait for an adjust that never comes).
    let mut framed = Vec::new();
    for len in [40 * 1024 - 10, 80 * 1024, 80 * 1024, 80 * 1024] {
        framed.extend_from_slice(&(len as u32).to_be_bytes());
        framed.extend_from_slice(&pattern(len));
    }
    let payload = framed.len() - 4 * 4;
    let mut received = 0;
    for _ in 0..20 {
        let mut sent = 0;
        for _ in 0..100 {
            if sent == framed.len() {
                break;
            }
            sent += pair.client.channel_send(ctun, &framed[sent..]).unwrap();
            pair.run();
            while let Some(chunk) = pair.server.channel_take(tun) {
                received += chunk.len() - 4 * chunk_messages(&chunk);
            }
            pair.run();
        }
        assert_eq!(sent, framed.len(), "the tun channel stalled");
    }
    assert_eq!(received, 20 * payload);
}

/// How many length-prefixed messages a tun channel's chunk holds.
fn chunk_messages(chunk: &[u8]) -> usize {
    let (mut at, mut n) = (0, 0);
    while let Some(len) = chunk.get(at..at + 4) {
        at += 4 + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        n += 1;
    }
    n
}
