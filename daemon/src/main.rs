//! sshvpnd: runs in the foreground (systemd's way), keeps the configured links up, serves the
//! control socket, reloads on SIGHUP and shuts down in order on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sshvpnd::config::Config;
use sshvpnd::daemon::{Daemon, default_control_socket};
use tokio::signal::unix::{SignalKind, signal};

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
    /// Check the configuration and exit: 0 when it is valid.
    #[arg(long)]
    check_config: bool,
    /// Write a new ed25519 key pair (FILE, mode 0600, and FILE.pub) and exit; an existing
    /// FILE is left alone.
    #[arg(long, value_name = "FILE")]
    generate_key: Option<PathBuf>,
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
        Ok(c) => c,
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
    // Colours only for a person at a terminal, never in files or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
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

async fn run(config: Config, path: PathBuf) -> Result<(), String> {
    let socket_path = config
        .daemon
        .control_socket
        .clone()
        .unwrap_or_else(default_control_socket);
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let daemon = Daemon::start(config, &path).await?;
    let daemon = std::sync::Arc::new(tokio::sync::Mutex::new(daemon));
    let control = sshvpnd::control::Server::bind(&socket_path, daemon.clone()).await?;
    tracing::info!(control = %socket_path.display(), "sshvpnd running");
    let control_task = tokio::spawn(control.run());
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let mut d = daemon.lock().await;
                match d.reload().await {
                    Ok(summary) => tracing::info!(?summary, "configuration reloaded"),
                    Err(e) => tracing::error!(error = %e, "reload rejected; the running configuration is unchanged"),
                }
            }
        }
    }
    tracing::info!("shutting down");
    control_task.abort();
    let _ = std::fs::remove_file(&socket_path);
    daemon.lock().await.shutdown().await;
    Ok(())
}
