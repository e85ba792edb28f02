//! The control socket server: a Unix socket (mode 0600; only root and the daemon's own user
//! may connect), JSON lines per `sshvpn_proto::control`. A malformed request gets an error
//! reply and the connection keeps being served.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sshvpn_proto::control::{self, ForwardInfo, LinkInfo, Request, Response, TunInfo};

use crate::tun::TunCounters;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::daemon::Daemon;
use crate::link::{ForwardState, LinkCmd, LinkPhase};

#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    daemon: Arc<Mutex<Daemon>>,
}

impl Server {
    pub async fn bind(path: &Path, daemon: Arc<Mutex<Daemon>>) -> Result<Server, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(format!(
                "another sshvpnd is already listening on {}",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .map_err(|e| format!("cannot create control socket {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
        Ok(Server {
            listener,
            path: path.to_owned(),
            daemon,
        })
    }

    /// Serves a socket handed over by socket activation (the unit owns its path and mode).
    pub fn from_std(
        listener: std::os::unix::net::UnixListener,
        path: &Path,
        daemon: Arc<Mutex<Daemon>>,
    ) -> Result<Server, String> {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("activated control socket: {e}"))?;
        let listener = UnixListener::from_std(listener)
            .map_err(|e| format!("activated control socket: {e}"))?;
        Ok(Server {
            listener,
            path: path.to_owned(),
            daemon,
        })
    }

    pub async fn run(self) {
        let me = crate::daemon::uid();
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    crate::pause_after_accept_error("control", &error).await;
                    continue;
                }
            };
            let peer_uid = stream.peer_cred().map(|c| c.uid()).ok();
            if !matches!(peer_uid, Some(u) if u == 0 || u == me) {
                tracing::warn!(?peer_uid, socket = %self.path.display(), "control connection from another user refused");
                continue;
            }
            tokio::spawn(serve(stream, self.daemon.clone()));
        }
    }
}

async fn serve(stream: UnixStream, daemon: Arc<Mutex<Daemon>>) {
    let (rd, mut wr) = stream.into_split();
    let mut reader = BufReader::new(rd);
    loop {
        // Each line is read through a limit, so a client cannot make us buffer without end.
        let mut line = Vec::new();
        let limit = control::MAX_LINE as u64 + 1;
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = !line.ends_with(b"\n") && line.len() > control::MAX_LINE;
        let response = match (too_long, std::str::from_utf8(&line)) {
            (true, _) => Response::Error {
                message: format!("request longer than {} bytes", control::MAX_LINE),
            },
            (false, Err(_)) => Response::Error {
                message: "request is not UTF-8".into(),
            },
            (false, Ok(text)) => match control::parse_request(text.trim_end()) {
                Ok(request) => handle(request, &daemon).await,
                Err(message) => Response::Error { message },
            },
        };
        if wr
            .write_all(control::to_line(&response).as_bytes())
            .await
            .is_err()
            || too_long
        {
            return;
        }
    }
}

async fn handle(request: Request, daemon: &Mutex<Daemon>) -> Response {
    match request {
        Request::Hello { version } if version == control::VERSION => Response::Hello {
            version: control::VERSION,
            daemon: format!("sshvpnd {}", env!("CARGO_PKG_VERSION")),
        },
        Request::Hello { version } => Response::Error {
            message: format!(
                "control protocol version {version} is not supported (sshvpnd speaks {})",
                control::VERSION
            ),
        },
        Request::Status => Response::Status {
            links: status(&*daemon.lock().await).await,
        },
        Request::Up { link } => match daemon.lock().await.command(&link, LinkCmd::Up).await {
            Ok(()) => Response::Ok {
                message: format!("link {link}: connecting"),
            },
            Err(message) => Response::Error { message },
        },
        Request::Down { link } => match daemon.lock().await.command(&link, LinkCmd::Down).await {
            Ok(()) => Response::Ok {
                message: format!("link {link}: going down"),
            },
            Err(message) => Response::Error { message },
        },
        Request::ForwardAdd {
            link,
            kind,
            listen,
            connect,
        } => {
            match daemon
                .lock()
                .await
                .forward_add(&link, &kind, &listen, connect.as_deref())
                .await
            {
                Ok(message) => Response::Ok { message },
                Err(message) => Response::Error { message },
            }
        }
        Request::ForwardRemove { link, listen } => {
            match daemon.lock().await.forward_remove(&link, &listen).await {
                Ok(message) => Response::Ok { message },
                Err(message) => Response::Error { message },
            }
        }
        Request::Reload => match daemon.lock().await.reload().await {
            Ok(s) => Response::Ok {
                message: format!(
                    "reloaded: {} kept, {} restarted, {} added, {} removed",
                    s.kept.len(),
                    s.restarted.len(),
                    s.added.len(),
                    s.removed.len()
                ),
            },
            Err(message) => Response::Error {
                message: format!("reload rejected, configuration unchanged: {message}"),
            },
        },
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn status(daemon: &Daemon) -> Vec<LinkInfo> {
    let mut out = Vec::new();
    for link in daemon.links() {
        let s = link.status.borrow().clone();
        let mut info = LinkInfo {
            name: s.name.clone(),
            state: s.phase.as_str().to_owned(),
            since: unix(s.since),
            server: s.server.clone(),
            server_host_key: s.server_host_key.clone(),
            last_error: s.last_error.clone(),
            next_retry: s.next_retry.map(unix),
            ..LinkInfo::default()
        };
        info.forwards = s
            .listeners
            .iter()
            .chain(&s.remote_forwards)
            .map(|f| {
                let (state, error) = match &f.state {
                    ForwardState::Pending => ("pending", None),
                    ForwardState::Active => ("active", None),
                    ForwardState::Failed(e) => ("failed", Some(e.clone())),
                };
                ForwardInfo {
                    kind: f.kind.to_owned(),
                    listen: f.listen.clone(),
                    connect: f.connect.clone(),
                    state: state.into(),
                    error,
                }
            })
            .collect();
        info.tun = s.tun.as_ref().map(|t| {
            let mut ti = TunInfo {
                device: t.device.clone(),
                addresses: t.addresses.clone(),
                routes: t.routes.clone(),
                channel_open: t.channel_open,
                error: t.error.clone(),
                ..TunInfo::default()
            };
            if let Some(lt) = link.tun.lock().ok().and_then(|t| t.clone()) {
                ti.offload = lt.bridge.peer_offload();
                let c = &lt.bridge.counters;
                ti.packets_out = TunCounters::get(&c.packets_out);
                ti.bytes_out = TunCounters::get(&c.bytes_out);
                ti.packets_in = TunCounters::get(&c.packets_in);
                ti.bytes_in = TunCounters::get(&c.bytes_in);
                ti.dropped_link_down = TunCounters::get(&c.dropped_link_down);
                ti.dropped_invalid = TunCounters::get(&c.dropped_invalid);
                ti.dropped_device = TunCounters::get(&c.dropped_device);
            }
            ti
        });
        let handle = link.handle().filter(|_| s.phase == LinkPhase::Up);
        if let Some(Ok(c)) = match handle {
            Some(h) => Some(h.info().await),
            None => None,
        } {
            info.kex = c.kex;
            info.cipher = c.cipher;
            info.rtt_ms = c.rtt.map(|d| d.as_secs_f64() * 1000.0);
            info.bytes_sent = c.stats.bytes_sent;
            info.bytes_received = c.stats.bytes_received;
            info.packets_sent = c.stats.packets_sent;
            info.packets_received = c.stats.packets_received;
            info.channels = c.channels as u64;
            info.channels_by_kind = c
                .channels_by_kind
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect();
        }
        out.push(info);
    }
    out
}
