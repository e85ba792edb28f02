//! How much of what we send on the SSH connection may wait for the path.
//!
//! Two queues hold it: the connection's output waiting for the socket (channel data is taken
//! from local sockets only while it is short) and the kernel's unsent bytes
//! (`TCP_NOTSENT_LOWAT`). A keystroke, a ping in the tunnel or a keepalive joins both queues
//! behind whatever a bulk transfer put there, so each is kept to what the path sends in
//! [`QUEUE_TIME`]: enough that the kernel never runs out between two of our writes, little
//! enough that on a slow path nothing waits long. The path's rate is TCP's own estimate (its
//! pacing rate: the congestion window over the round trip), read every [`LOOK_EVERY`] while
//! there is output.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// The most the kernel may hold of what we send, sent and not yet acknowledged or not yet
/// sent (the kernel counts twice what is asked). Linux tunes a socket's send buffer by itself,
/// but only up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default: over a 40 ms path that
/// caps any TCP connection at about 0.7 Gbit/s, below what our channel windows allow
/// (BENCHMARKS.md, thirteenth measurement). Needs CAP_NET_ADMIN (`SO_SNDBUFFORCE`).
pub(super) const SEND_BUFFER: libc::c_int = 16 << 20;

/// How long the path takes to send what may wait in each queue. The driver writes again as
/// soon as the kernel's unsent bytes fall below their mark, which takes well under a
/// millisecond, or a few on a loaded machine: with a fixed 256 KiB mark, a 25 ms path with 1%
/// loss lost 29% of its throughput to those gaps (BENCHMARKS.md, thirteenth measurement).
const QUEUE_TIME: Duration = Duration::from_millis(20);

/// Each queue's size, whatever the rate: a slow path still takes a full SSH packet or two per
/// write, and a fast one keeps what a fixed 1 MiB mark kept, which the fast rows of the
/// benchmark were measured with.
pub(super) const QUEUE_MIN: usize = 32 << 10;
pub(super) const QUEUE_MAX: usize = 1 << 20;

/// Channel data this small is interactive (a keystroke, a DNS query, a ping in the tunnel):
/// it may join the output past the limit, so that it does not wait for the next turn behind
/// a bulk channel that took the room first.
pub(super) const SMALL: usize = 4096;

/// How often the rate is read while there is output: a `getsockopt` each time.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The two queues' size for one connection, following the path's rate.
#[derive(Debug)]
pub(super) struct SendQueue {
    limit: usize,
    next_look: Option<Instant>,
}

impl SendQueue {
    /// Sets up `socket` for a connection: a send buffer for long, fast paths (with
    /// CAP_NET_ADMIN) and the first unsent mark, [`QUEUE_MAX`] until the rate is known.
    pub(super) fn new(socket: &impl AsRawFd) -> Self {
        let fd = socket.as_raw_fd();
        let widened = set(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SEND_BUFFER);
        let queue = Self {
            limit: QUEUE_MAX,
            next_look: None,
        };
        if !queue.set_low_water(fd) && widened {
            // A kernel without TCP_NOTSENT_LOWAT (before 3.12): a buffer no larger than the
            // kernel's own default limit, since all of it could wait unsent.
            set(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 2 << 20);
        }
        queue
    }

    /// Output waiting for the socket beyond which no more channel data is taken, and the
    /// kernel's unsent mark: both this many bytes.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Reads the path's rate and resizes the queues, at most once per [`LOOK_EVERY`].
    pub(super) fn look(&mut self, socket: &impl AsRawFd, now: Instant) {
        if self.next_look.is_some_and(|t| now < t) {
            return;
        }
        self.next_look = Some(now + LOOK_EVERY);
        let fd = socket.as_raw_fd();
        let Some(rate) = pacing_rate(fd) else {
            return;
        };
        let limit = limit_for(rate);
        if limit != self.limit {
            tracing::debug!(
                queue_kib = limit >> 10,
                path_mbit_s = rate.saturating_mul(8) / 1_000_000,
                "send queue resized to the path's rate"
            );
            self.limit = limit;
            self.set_low_water(fd);
        }
    }

    fn set_low_water(&self, fd: RawFd) -> bool {
        let mark = libc::c_int::try_from(self.limit).unwrap_or(libc::c_int::MAX);
        set(fd, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, mark)
    }
}

/// What the path sends in [`QUEUE_TIME`] at `rate` bytes per second, rounded down to a
/// power of two (so that the mark moves only when the rate has really changed), within
/// [`QUEUE_MIN`]..=[`QUEUE_MAX`].
pub(super) fn limit_for(rate: u64) -> usize {
    let bytes = rate.saturating_mul(QUEUE_TIME.as_millis() as u64) / 1000;
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX).max(1);
    (1usize << bytes.ilog2()).clamp(QUEUE_MIN, QUEUE_MAX)
}

/// TCP's pacing rate for the socket, in bytes per second: its congestion window over its
/// smoothed round trip, times 1.2 (twice that in slow start), computed on every ACK whether or
/// not pacing is in use. So the queues hold about 24 ms of what the path delivers.
fn pacing_rate(fd: RawFd) -> Option<u64> {
    // SAFETY: `tcp_info` is plain integers, for which all zeroes is a valid value.
    #[allow(unsafe_code)] // No safe binding for TCP_INFO in std or tokio.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    #[allow(unsafe_code)]
    // SAFETY: a valid socket descriptor, and a pointer and length describing a live tcp_info;
    // the kernel writes at most `len` bytes and sets `len` to what it wrote.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    // A kernel older than 3.15 has no pacing rate in its tcp_info (and writes less).
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_pacing_rate) + 8;
    (r == 0 && len as usize >= needed && info.tcpi_pacing_rate != u64::MAX)
        .then_some(info.tcpi_pacing_rate)
}

/// Sets an integer socket option; false if the kernel refused it (no capability, an old
/// kernel), which leaves the kernel's default in place.
fn set(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    #[allow(unsafe_code)] // No safe binding for these options in std or tokio.
    // SAFETY: a valid socket descriptor, and a pointer and length describing a live c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_path_queues_little_and_a_fast_one_what_a_fixed_mark_did() {
        // 8 Mbit/s: 20 ms of it is 20 kB, less than the floor.
        assert_eq!(limit_for(1_000_000), QUEUE_MIN);
        // 100 Mbit/s: 250 kB, rounded down.
        assert_eq!(limit_for(12_500_000), 128 << 10);
        assert_eq!(limit_for(13_107_200), 256 << 10);
        // 1 Gbit/s and more: the ceiling.
        assert_eq!(limit_for(125_000_000), QUEUE_MAX);
        assert_eq!(limit_for(u64::MAX), QUEUE_MAX);
        assert_eq!(limit_for(0), QUEUE_MIN);
    }
}
