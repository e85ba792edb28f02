//! sshvpnd: runs in the foreground (systemd's way), keeps the configured links up, serves the
//! control socket, reloads on SIGHUP and shuts down in order on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sshvpnd::config::Config;
use sshvpnd::daemon::{Daemon, default_control_socket};
use sshvpnd::link::{LinkPhase, LinkStatus};
use sshvpnd::systemd::{self, Notifier};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "sshvpnd",
    version,
    about = "Always-on SSH tunnels: SOCKS5, port forwards and an SSH server"
)]
struct Args {
    /// The configuration file (TOML).
    #[arg(
        short = 'c',
        long,
        value_name = "FILE",
        default_value = "/etc/sshvpn/sshvpnd.toml"
    )]
    config: PathBuf,
    /// The control socket (overrides `[daemon] control_socket`; templated units use it).
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// The state directory (overrides `[daemon] state_dir`).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Check the configuration and exit: 0 when it is valid.
    #[arg(long)]
    check_config: bool,
    /// Write a new ed25519 key pair (FILE, mode 0600, and FILE.pub) and exit; an existing
    /// FILE is left alone.
    #[arg(long, value_name = "FILE")]
    generate_key: Option<PathBuf>,
    /// Worker threads (default: half the CPUs, at least one). Each connection's driver is one
    /// task; fewer threads mean fewer cross-thread hand-offs per chunk of data, which on small
    /// machines is worth more than parallelism (see BENCHMARKS.md). With one, everything runs
    /// on the main thread (tokio's current-thread scheduler, a shorter path per packet than a
    /// pool of one).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.generate_key {
        return match sshvpnd::server::load_or_generate_host_key(path) {
            Ok(key) => {
                println!("{}: {}", path.display(), key.fingerprint());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sshvpnd: {e}");
                ExitCode::from(1)
            }
        };
    }
    let config = match Config::load(&args.config) {
        Ok(mut c) => {
            if args.control_socket.is_some() {
                c.daemon.control_socket = args.control_socket.clone();
            }
            if args.state_dir.is_some() {
                c.daemon.state_dir = args.state_dir.clone();
            }
            c
        }
        Err(e) => {
            eprintln!("sshvpnd: {e}");
            return ExitCode::from(1);
        }
    };
    if args.check_config {
        println!(
            "{}: ok ({} link(s){})",
            args.config.display(),
            config.links.len(),
            if config.server.is_some() {
                ", server"
            } else {
                ""
            }
        );
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    init_logging(filter);
    systemd::tune_allocator();
    match systemd::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get() / 2)
                    .max(1)
            })
    });
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sshvpnd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sshvpnd: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs to journald with structured fields (link, peer, channel spans) when systemd connected
/// stderr to the journal (JOURNAL_STREAM), to stderr otherwise; colours only on a terminal.
fn init_logging(filter: tracing_subscriber::EnvFilter) {
    use tracing_subscriber::prelude::*;
    let journal = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    match journal {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init(),
        None => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .init();
        }
    }
}

async fn run(config: Config, path: PathBuf) -> Result<(), String> {
    let notifier = Notifier::from_env();
    let socket_path = config
        .daemon
        .control_socket
        .clone()
        .unwrap_or_else(default_control_socket);
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    // Binding every listener happens inside start, so READY=1 below means they are bound.
    let daemon = Daemon::start(config, &path).await?;
    let daemon = std::sync::Arc::new(tokio::sync::Mutex::new(daemon));
    let (control, activated) = match systemd::activated_control_socket() {
        Some(listener) => (
            sshvpnd::control::Server::from_std(listener, &socket_path, daemon.clone())?,
            true,
        ),
        None => (
            sshvpnd::control::Server::bind(&socket_path, daemon.clone()).await?,
            false,
        ),
    };
    tracing::info!(control = %socket_path.display(), activated, "sshvpnd running");
    let control_task = tokio::spawn(control.run());
    let mut last_status = String::new();
    let mut links = status_receivers(&*daemon.lock().await);
    let mut counting_down = publish_status(&daemon, &notifier, &mut last_status).await;
    notifier.ready(&last_status);
    // Memory freed by closed channels (or by a connection gone quiet) goes back to the system
    // a second after, and once more a second later, for what their tasks and the driver's
    // tables let go of just after. Frees in between are taken up by the next round. (When,
    // and trims left.)
    let mut trim: Option<(tokio::time::Instant, u8)> = None;
    let watchdog = systemd::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    // Nothing here runs on a timer while nothing happens: an idle daemon wakes only for its
    // links' own timers (keepalives), as ssh and sshd do.
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                notifier.reloading();
                {
                    let mut d = daemon.lock().await;
                    match d.reload().await {
                        Ok(summary) => tracing::info!(?summary, "configuration reloaded"),
                        Err(e) => tracing::error!(error = %e, "reload rejected; the running configuration is unchanged"),
                    }
                    links = status_receivers(&d);
                }
                // READY=1 below carries the line.
                last_status.clear();
                counting_down = publish_status(&daemon, &notifier, &mut last_status).await;
                notifier.ready(&last_status);
            }
            () = any_changed(&mut links) => {
                counting_down = publish_status(&daemon, &notifier, &mut last_status).await;
            }
            // "backing-off 8s" counts down once a second while a link waits to retry.
            () = tokio::time::sleep(Duration::from_secs(1)), if counting_down => {
                counting_down = publish_status(&daemon, &notifier, &mut last_status).await;
            }
            () = sshvpnd::driver::MEMORY_FREED.notified(), if trim.is_none() => {
                trim = Some((tokio::time::Instant::now() + Duration::from_secs(1), 2));
            }
            () = tokio::time::sleep_until(trim.map_or_else(tokio::time::Instant::now, |t| t.0)), if trim.is_some() => {
                systemd::release_free_memory();
                let left = trim.map_or(0, |t| t.1.saturating_sub(1));
                trim = (left > 0).then(|| (tokio::time::Instant::now() + Duration::from_secs(1), left));
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // Ping only if the daemon's state can still be reached: a wedged daemon
                // stops pinging and systemd restarts it.
                if tokio::time::timeout(Duration::from_secs(1), daemon.lock()).await.is_ok() {
                    notifier.watchdog();
                }
            }
        }
    }
    tracing::info!("shutting down");
    notifier.stopping();
    control_task.abort();
    if !activated {
        let _ = std::fs::remove_file(&socket_path);
    }
    daemon.lock().await.shutdown().await;
    Ok(())
}

/// Every link's status, to wait on.
fn status_receivers(daemon: &Daemon) -> Vec<watch::Receiver<LinkStatus>> {
    daemon.links().map(|l| l.status.clone()).collect()
}

/// Returns once a link's status changed. A link that is gone (removed by a reload) is
/// dropped from the list; with none left, this waits for ever.
async fn any_changed(links: &mut Vec<watch::Receiver<LinkStatus>>) {
    loop {
        if links.is_empty() {
            return std::future::pending().await;
        }
        let (changed, i, _) =
            futures::future::select_all(links.iter_mut().map(|l| Box::pin(l.changed()))).await;
        if changed.is_ok() {
            return;
        }
        links.swap_remove(i);
    }
}

/// Sends STATUS= when the line changed. Returns whether it counts down to a retry, which
/// needs it sent again every second.
async fn publish_status(
    daemon: &tokio::sync::Mutex<Daemon>,
    notifier: &Notifier,
    last: &mut String,
) -> bool {
    let statuses = daemon.lock().await.statuses();
    let line = systemd::status_line(&statuses);
    if line != *last {
        if !last.is_empty() {
            notifier.status(&line);
        }
        *last = line;
    }
    statuses
        .iter()
        .any(|s| s.phase != LinkPhase::Up && s.next_retry.is_some())
}
