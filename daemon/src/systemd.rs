//! Life under systemd: `Type=notify` readiness, a STATUS= line kept current, watchdog pings,
//! RELOADING=1/READY=1 around a reload, STOPPING=1 on shutdown, and the control socket handed
//! over by socket activation. Every call is a no-op when NOTIFY_SOCKET is not set.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::link::{LinkPhase, LinkStatus};

#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }

    /// Startup finished: the control socket listens and every listener is bound.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// Before re-reading the configuration (systemd ≥ 253 needs the monotonic timestamp).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// How often to ping the watchdog: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .map(|d| d / 2)
        .filter(|d| !d.is_zero())
}

/// The control socket passed by socket activation (LISTEN_FDS), if any.
pub fn activated_control_socket() -> Option<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd;
    let fd = sd_notify::listen_fds().ok()?.next()?;
    #[allow(unsafe_code)] // Adopting an inherited descriptor has no safe API.
    // SAFETY: the descriptor comes from the service manager for this process (LISTEN_PID
    // matched) and is owned by nobody else; it is a listening AF_UNIX socket per the unit.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    Some(listener)
}

/// One line for STATUS=: "2/3 links up; office: backing-off 8s (connection refused)".
pub fn status_line(links: &[LinkStatus]) -> String {
    if links.is_empty() {
        return "no links; serving".into();
    }
    let up = links.iter().filter(|l| l.phase == LinkPhase::Up).count();
    let mut line = format!("{up}/{} links up", links.len());
    for l in links.iter().filter(|l| l.phase != LinkPhase::Up) {
        line.push_str(&format!("; {}: {}", l.name, l.phase.as_str()));
        if let Some(t) = l
            .next_retry
            .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        {
            line.push_str(&format!(" {}s", t.as_secs().max(1)));
        }
    }
    line
}

/// Returns memory freed by closed connections to the system. glibc's allocator keeps freed
/// heap otherwise, and RSS would stay at its peak after a burst of connections: the freed
/// chunks of a worker thread's arena stay resident, and `free` only shrinks an arena from its
/// top. malloc_trim also releases the free pages in the middle (madvise). It is called at most
/// once a second and only after channels closed (see `main`), so it costs nothing under steady
/// load. Bounding the arenas (MALLOC_ARENA_MAX=1) or lowering the trim threshold was measured
/// and changed nothing: what stayed after a burst was memory still allocated, now freed where
/// it is held (finished SOCKS tasks, channel tables keeping their peak capacity).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)] // No safe binding exists for malloc_trim.
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists; it takes no
    // pointers from us and is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps glibc's allocator from returning memory to the kernel on every free of a data-path
/// buffer. By default, buffers of 128 KiB (channel data chunks) are mmap'd and unmapped each
/// time, and the heap is trimmed whenever 256 KiB at its top is free; on a busy connection
/// that meant tens of thousands of page faults a second (measured: 86,000 in 5 s on a
/// forward's receiving end). Buffers up to 4 MiB now stay in the heap, which is trimmed from
/// 16 MiB of free top (32 MiB cut the faults further but left a server with 500 idle clients
/// 13 MiB larger); [`release_free_memory`] still gives everything back after closes.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)] // No safe binding exists for mallopt.
    // SAFETY: mallopt only sets the allocator's parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// Raises the soft limit on open files to the hard limit and returns the new soft limit.
/// Every client connection, SOCKS client and forwarded connection costs a descriptor, and the
/// usual soft limit (1024, also systemd's default) would cap a busy daemon far below the hard
/// limit (524288 under systemd). sshvpnd uses epoll only, never select(2), so descriptors
/// above 1024 are safe.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)] // No safe binding for getrlimit/setrlimit among our dependencies.
    // SAFETY: getrlimit writes one `rlimit` into the struct we own and pass by pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        #[allow(unsafe_code)] // As above.
        // SAFETY: setrlimit only reads the `rlimit` we own and pass by pointer.
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        if set != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}
