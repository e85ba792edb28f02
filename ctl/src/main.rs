//! sshvpnctl: talks to a running sshvpnd over its control socket (JSON lines, see
//! `sshvpn_proto::control`). Errors are one line on stderr and a non-zero exit.

mod table;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use sshvpn_proto::control::{self, LinkInfo, Request, Response};

#[derive(Debug, Parser)]
#[command(name = "sshvpnctl", version, about = "Control a running sshvpnd")]
struct Args {
    /// The daemon's control socket.
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's answer as JSON (stable; see the README).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every link: state, server, cipher, traffic, forwards, last error.
    Status,
    /// Connect a link now (also: retry now while it backs off).
    Up { link: String },
    /// Disconnect a link and keep it down until `up`.
    Down { link: String },
    /// Re-read the configuration file; unchanged links keep their connections.
    Reload,
    /// Add or remove a forward on a running link (like `ssh -O forward` / `-O cancel`).
    #[command(subcommand)]
    Forward(ForwardCommand),
    /// Run one program with its proxy environment pointed at the link's SOCKS port.
    Exec {
        link: String,
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, …).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
enum ForwardCommand {
    /// socks LISTEN | local LISTEN HOST:PORT | remote LISTEN HOST:PORT
    Add {
        link: String,
        #[arg(value_parser = ["socks", "local", "remote"])]
        kind: String,
        listen: String,
        connect: Option<String>,
    },
    /// Remove the forward listening on LISTEN.
    Remove { link: String, listen: String },
}

fn default_socket() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if uid == 0 {
        return PathBuf::from("/run/sshvpn/control.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("sshvpn/control.sock"),
        None => PathBuf::from(format!("/tmp/sshvpn-{uid}/control.sock")),
    }
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    fn connect(path: &PathBuf) -> Result<Client, String> {
        let stream = UnixStream::connect(path).map_err(|e| {
            format!(
                "cannot reach sshvpnd at {}: {e}: is it running?",
                path.display()
            )
        })?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
        };
        match client.call(&Request::Hello {
            version: control::VERSION,
        })? {
            Response::Hello { .. } => Ok(client),
            Response::Error { message } => Err(message),
            other => Err(format!("unexpected answer to hello: {other:?}")),
        }
    }

    fn call(&mut self, request: &Request) -> Result<Response, String> {
        self.writer
            .write_all(control::to_line(request).as_bytes())
            .map_err(|e| format!("control socket: {e}"))?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("control socket: {e}"))?;
        if line.is_empty() {
            return Err("sshvpnd closed the control connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("unreadable answer from sshvpnd: {e}"))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sshvpnctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    let socket = args.socket.clone().unwrap_or_else(default_socket);
    let request = match &args.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "sshvpnctl",
                &mut std::io::stdout(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Exec { link, command } => return exec(&socket, link, command),
        Command::Status => Request::Status,
        Command::Up { link } => Request::Up { link: link.clone() },
        Command::Down { link } => Request::Down { link: link.clone() },
        Command::Reload => Request::Reload,
        Command::Forward(ForwardCommand::Add {
            link,
            kind,
            listen,
            connect,
        }) => Request::ForwardAdd {
            link: link.clone(),
            kind: kind.clone(),
            listen: listen.clone(),
            connect: connect.clone(),
        },
        Command::Forward(ForwardCommand::Remove { link, listen }) => Request::ForwardRemove {
            link: link.clone(),
            listen: listen.clone(),
        },
    };
    let response = Client::connect(&socket)?.call(&request)?;
    if args.json {
        print!("{}", control::to_line(&response));
        return Ok(if matches!(response, Response::Error { .. }) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    match response {
        Response::Status { links } => print!("{}", table::status(&links)),
        Response::Ok { message } => println!("{message}"),
        Response::Error { message } => return Err(message),
        Response::Hello { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `command` with ALL_PROXY and friends pointing at the link's first SOCKS listener
/// (socks5h: names are resolved on the far side).
fn exec(socket: &PathBuf, link: &str, command: &[String]) -> Result<ExitCode, String> {
    let Response::Status { links } = Client::connect(socket)?.call(&Request::Status)? else {
        return Err("unexpected answer to status".into());
    };
    let info: &LinkInfo = links
        .iter()
        .find(|l| l.name == link)
        .ok_or_else(|| format!("no link named {link:?}"))?;
    let socks = info
        .forwards
        .iter()
        .find(|f| f.kind == "socks" && f.state == "active")
        .ok_or_else(|| format!("link {link:?} has no active SOCKS listener"))?;
    let proxy = format!("socks5h://{}", socks.listen);
    let (program, rest) = command.split_first().ok_or("no command given")?;
    let status = std::process::Command::new(program)
        .args(rest)
        .env("ALL_PROXY", &proxy)
        .env("all_proxy", &proxy)
        .env("HTTPS_PROXY", &proxy)
        .env("https_proxy", &proxy)
        .env("HTTP_PROXY", &proxy)
        .env("http_proxy", &proxy)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}
