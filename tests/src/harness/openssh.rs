//! The stock OpenSSH server and client, run from generated configs on loopback.
//!
//! Owns the `sshd` and `ssh` child processes and their config, key and log files. Each process
//! is killed on drop; its stderr goes to a file in the test dir so a failing test can print it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{KeyPair, TestDir, free_port, keygen_at, loopback, require, run_tool, wait_for_tcp};

/// How long sshd may take to start listening.
const SSHD_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports to try when another process takes the one picked for sshd.
const SSHD_START_ATTEMPTS: usize = 3;

/// Settings that vary between tests; everything else in the generated sshd_config is fixed.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// `PermitTunnel`: "no", "yes", "point-to-point" or "ethernet".
    pub permit_tunnel: String,
    /// `Ciphers`, when set (e.g. "aes256-gcm@openssh.com").
    pub ciphers: Option<String>,
    /// `KexAlgorithms`, when set (e.g. "curve25519-sha256").
    pub kex_algorithms: Option<String>,
    /// `RekeyLimit`, when set (e.g. "16M 0" or "1M 5s").
    pub rekey_limit: Option<String>,
    /// Further `Keyword value` lines, appended verbatim.
    pub extra: Vec<(String, String)>,
    /// An existing private key (with its `.pub` beside it) to serve as the only host key,
    /// instead of a freshly generated ed25519 one: an RSA key, or one a CA has certified.
    pub host_key: Option<PathBuf>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            permit_tunnel: "no".to_owned(),
            ciphers: None,
            kex_algorithms: None,
            rekey_limit: None,
            extra: Vec::new(),
            host_key: None,
        }
    }
}

/// A running `sshd -D` listening on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    port: u16,
    log: PathBuf,
    authorized_keys: PathBuf,
    host_key: KeyPair,
}

impl Sshd {
    /// Generates a host key and config in a fresh subdirectory of `dir`, checks the config
    /// with `sshd -t` and starts sshd, returning once its port accepts TCP connections.
    pub async fn start(dir: &TestDir, opts: SshdOptions) -> Sshd {
        let sshd = require("sshd");
        ensure_privsep_dir();
        let home = dir.unique_path("sshd", "");
        std::fs::create_dir(&home).expect("create sshd dir");
        let host_key = match &opts.host_key {
            Some(private) => KeyPair::existing(private),
            None => keygen_at(&home.join("ssh_host_ed25519_key"), "sshd-host", "").await,
        };
        let authorized_keys = home.join("authorized_keys");
        std::fs::write(&authorized_keys, "").expect("create authorized_keys");
        let config = home.join("sshd_config");
        let log = home.join("sshd.log");

        for _ in 0..SSHD_START_ATTEMPTS {
            let port = free_port();
            let text = sshd_config(port, &host_key.private, &authorized_keys, &opts);
            std::fs::write(&config, text).expect("write sshd_config");

            let check = run_tool(Command::new(&sshd).arg("-t").arg("-f").arg(&config)).await;
            assert!(
                check.status.success(),
                "sshd -t rejected {}: {}",
                config.display(),
                String::from_utf8_lossy(&check.stderr)
            );

            let log_file = std::fs::File::create(&log).expect("create sshd log");
            let mut child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", sshd.display()));

            let deadline = tokio::time::Instant::now() + SSHD_START_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().expect("poll sshd") {
                    let text = read_log(&log);
                    if text.contains("Address already in use") {
                        break; // lost the port race; try another port
                    }
                    panic!("sshd exited during start-up ({status}):\n{text}");
                }
                if wait_for_tcp(loopback(port), Duration::ZERO).await {
                    return Sshd {
                        child,
                        port,
                        log,
                        authorized_keys,
                        host_key,
                    };
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "sshd did not listen on port {port} within {SSHD_START_TIMEOUT:?}:\n{}",
                    read_log(&log)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("sshd could not bind a free port in {SSHD_START_ATTEMPTS} attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host key's `.pub` line: `ssh-ed25519 AAAA… sshd-host`.
    pub fn host_key_public_line(&self) -> &str {
        &self.host_key.public_line
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it: `SHA256:…`.
    pub async fn host_key_fingerprint(&self) -> String {
        let output = run_tool(
            Command::new(require("ssh-keygen"))
                .arg("-lf")
                .arg(&self.host_key.public),
        )
        .await;
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .find(|token| token.starts_with("SHA256:"))
            .unwrap_or_else(|| panic!("no SHA256 fingerprint in ssh-keygen -lf output: {text}"))
            .to_owned()
    }

    /// The line a client's known_hosts needs: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "[127.0.0.1]:{} {}",
            self.port,
            self.host_key.key_type_and_blob()
        )
    }

    /// Lets `key` log in (as any user; tests use root).
    pub fn authorize(&self, key: &KeyPair) {
        self.authorize_line(&key.public_line);
    }

    /// Lets `key` log in under authorized_keys `options` (e.g. `restrict,port-forwarding`).
    pub fn authorize_with_options(&self, options: &str, key: &KeyPair) {
        self.authorize_line(&format!("{options} {}", key.public_line));
    }

    fn authorize_line(&self, line: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .expect("open authorized_keys");
        writeln!(file, "{line}").expect("append to authorized_keys");
    }

    /// Everything sshd has logged so far (LogLevel DEBUG2), for failure messages.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// The sshd listener's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// sshd refuses to start as root without its privilege-separation directory.
fn ensure_privsep_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).expect("create /run/sshd");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod /run/sshd");
    }
}

fn sshd_config(port: u16, host_key: &Path, authorized_keys: &Path, opts: &SshdOptions) -> String {
    let mut lines = vec![
        ("Port", port.to_string()),
        ("ListenAddress", "127.0.0.1".to_owned()),
        ("AddressFamily", "inet".to_owned()),
        ("HostKey", host_key.display().to_string()),
        ("AuthorizedKeysFile", authorized_keys.display().to_string()),
        ("PubkeyAuthentication", "yes".to_owned()),
        ("PasswordAuthentication", "no".to_owned()),
        ("KbdInteractiveAuthentication", "no".to_owned()),
        ("PermitRootLogin", "prohibit-password".to_owned()),
        ("UsePAM", "no".to_owned()),
        ("StrictModes", "no".to_owned()),
        ("PidFile", "none".to_owned()),
        ("AllowTcpForwarding", "yes".to_owned()),
        ("GatewayPorts", "no".to_owned()),
        ("PermitTunnel", opts.permit_tunnel.clone()),
        ("X11Forwarding", "no".to_owned()),
        ("PrintMotd", "no".to_owned()),
        ("LogLevel", "DEBUG2".to_owned()),
        ("MaxStartups", "100:30:200".to_owned()),
        ("MaxSessions", "100".to_owned()),
        ("LoginGraceTime", "30".to_owned()),
    ];
    if let Some(ciphers) = &opts.ciphers {
        lines.push(("Ciphers", ciphers.clone()));
    }
    if let Some(kex) = &opts.kex_algorithms {
        lines.push(("KexAlgorithms", kex.clone()));
    }
    if let Some(limit) = &opts.rekey_limit {
        lines.push(("RekeyLimit", limit.clone()));
    }
    let mut text = String::new();
    for (keyword, value) in lines {
        let _ = writeln!(text, "{keyword} {value}");
    }
    for (keyword, value) in &opts.extra {
        let _ = writeln!(text, "{keyword} {value}");
    }
    text
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The key exchange methods the installed OpenSSH implements (`ssh -Q kex`), so interop tests
/// cover every method both sides know without failing on one an older OpenSSH lacks.
pub fn openssh_kex_methods() -> Vec<String> {
    let out = std::process::Command::new("ssh")
        .args(["-Q", "kex"])
        .output()
        .expect("run `ssh -Q kex` (openssh-client is a test prerequisite)");
    assert!(out.status.success(), "`ssh -Q kex` failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Builder for a stock `ssh` client run: `-F /dev/null`, batch mode, strict host key checking
/// against a known_hosts file of the test's own, one identity, verbose log to a file.
///
/// `-o` options given here come first on the command line; ssh uses the first value it sees
/// for each keyword, so they override the builder's defaults.
#[derive(Debug)]
pub struct Ssh<'a> {
    dir: &'a TestDir,
    port: u16,
    user: String,
    identity: Option<PathBuf>,
    known_hosts: Vec<String>,
    options: Vec<(String, String)>,
    forwards: Vec<(&'static str, String)>,
}

/// What a finished `ssh` run printed.
#[derive(Debug)]
pub struct SshOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl<'a> Ssh<'a> {
    /// Port 22, user root, no identity, empty known_hosts: set what the test needs.
    pub fn new(dir: &'a TestDir) -> Ssh<'a> {
        Ssh {
            dir,
            port: 22,
            user: "root".to_owned(),
            identity: None,
            known_hosts: Vec::new(),
            options: Vec::new(),
            forwards: Vec::new(),
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }

    pub fn identity(mut self, key: &KeyPair) -> Self {
        self.identity = Some(key.private.clone());
        self
    }

    /// Adds a line to this client's known_hosts (e.g. [`Sshd::known_hosts_line`]).
    pub fn known_hosts_line(mut self, line: &str) -> Self {
        self.known_hosts.push(line.to_owned());
        self
    }

    /// `-o Ciphers=…` when `Some`.
    pub fn cipher(self, cipher: Option<&str>) -> Self {
        match cipher {
            Some(c) => self.option("Ciphers", c),
            None => self,
        }
    }

    /// `-o KexAlgorithms=…` when `Some`.
    pub fn kex(self, kex: Option<&str>) -> Self {
        match kex {
            Some(k) => self.option("KexAlgorithms", k),
            None => self,
        }
    }

    /// `-o keyword=value`; overrides the builder's default for the same keyword.
    pub fn option(mut self, keyword: &str, value: &str) -> Self {
        self.options.push((keyword.to_owned(), value.to_owned()));
        self
    }

    /// `-L spec`, e.g. `127.0.0.1:LPORT:HOST:HPORT`.
    pub fn local_forward(mut self, spec: &str) -> Self {
        self.forwards.push(("-L", spec.to_owned()));
        self
    }

    /// `-R spec`, e.g. `127.0.0.1:RPORT:HOST:HPORT`.
    pub fn remote_forward(mut self, spec: &str) -> Self {
        self.forwards.push(("-R", spec.to_owned()));
        self
    }

    /// `-D spec`, e.g. `127.0.0.1:DPORT`.
    pub fn dynamic(mut self, spec: &str) -> Self {
        self.forwards.push(("-D", spec.to_owned()));
        self
    }

    /// Starts `ssh -N …` in the background; use [`SshProcess::wait_for_port`] to know when
    /// a forward is up.
    pub fn spawn(self) -> SshProcess {
        let log = self.dir.unique_path("ssh", ".log");
        let log_file = std::fs::File::create(&log).expect("create ssh log");
        let mut command = self.command();
        command
            .arg("-N")
            .arg(self.destination())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        SshProcess { child, log }
    }

    /// Runs `ssh … destination remote_command` to completion (e.g. to see authentication
    /// fail); panics if it takes longer than `timeout`.
    pub async fn run(self, remote_command: &str, timeout: Duration) -> SshOutput {
        let mut command = self.command();
        command
            .arg(self.destination())
            .arg(remote_command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("{command:?}");
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Ok(result) => result.unwrap_or_else(|e| panic!("run {description}: {e}")),
            Err(_) => panic!("{description} did not finish within {timeout:?}"),
        };
        SshOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// Everything but the destination and what follows it.
    fn command(&self) -> Command {
        let known_hosts = self.dir.unique_path("known_hosts", "");
        let mut text = self.known_hosts.join("\n");
        text.push('\n');
        std::fs::write(&known_hosts, text).expect("write known_hosts");

        let mut options = self.options.clone();
        let mut default = |keyword: &str, value: String| {
            options.push((keyword.to_owned(), value));
        };
        default("BatchMode", "yes".to_owned());
        default("StrictHostKeyChecking", "yes".to_owned());
        default("UserKnownHostsFile", known_hosts.display().to_string());
        default("GlobalKnownHostsFile", "/dev/null".to_owned());
        default("IdentitiesOnly", "yes".to_owned());
        default("IdentityAgent", "none".to_owned());
        if let Some(identity) = &self.identity {
            default("IdentityFile", identity.display().to_string());
        }
        default("ExitOnForwardFailure", "yes".to_owned());
        default("ServerAliveInterval", "5".to_owned());
        default("ServerAliveCountMax", "3".to_owned());
        default("ConnectTimeout", "10".to_owned());
        default("AddressFamily", "inet".to_owned());

        let mut command = Command::new(require("ssh"));
        command.args(["-F", "/dev/null", "-v"]);
        for (keyword, value) in &options {
            command.arg("-o").arg(format!("{keyword}={value}"));
        }
        command.arg("-p").arg(self.port.to_string());
        for (flag, spec) in &self.forwards {
            command.arg(flag).arg(spec);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }
}

/// A running `ssh` client; killed on drop.
#[derive(Debug)]
pub struct SshProcess {
    child: Child,
    log: PathBuf,
}

impl SshProcess {
    /// Waits until 127.0.0.1:`port` accepts TCP connections (a `-L`/`-D` listener of this
    /// client, or the server's `-R` listener). Panics with ssh's log if ssh exits first or
    /// `timeout` passes.
    pub async fn wait_for_port(&mut self, port: u16, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll ssh") {
                panic!(
                    "ssh exited ({status}) before port {port} was up:\n{}",
                    self.stderr()
                );
            }
            if wait_for_tcp(loopback(port), Duration::ZERO).await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "port {port} not up within {timeout:?}; ssh log:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status if ssh exits within `timeout`, else `None` (it keeps running).
    pub async fn exit_status_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Some(status.expect("wait for ssh")),
            Err(_) => None,
        }
    }

    /// Everything ssh has written to stderr so far (`-v` debug output included).
    pub fn stderr(&self) -> String {
        read_log(&self.log)
    }

    /// Kills ssh now and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
