//! Real `sshvpnd` and `sshvpnctl` processes for end-to-end tests: built once per test process
//! with the same cargo, started from a generated configuration, killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sshvpn_proto::control::LinkInfo;
use tokio::process::{Child, Command};

use crate::harness::TestDir;

/// One "Field:  N kB" line of /proc/PID/status (VmRSS, VmHWM, RssAnon…), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Path to a binary of this workspace, built (once per test process) if needed.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // Test executables live in <target>/<profile>/deps; build the binaries beside them.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir")
            .to_owned();
        let target_dir = profile_dir.parent().expect("target dir").to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "sshvpnd",
                "-p",
                "sshvpnctl",
                "--bins",
            ])
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .expect("run cargo build for sshvpnd and sshvpnctl");
        assert!(
            status.success(),
            "building sshvpnd, sshvpnctl and netprobe failed"
        );
        target_dir.join("debug")
    });
    dir.join(name)
}

/// A running sshvpnd.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    pub name: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    log: PathBuf,
}

/// When a test fails, each of its daemons prints what it said: every warning and error, and
/// its last lines (the logs are at debug level and go with the test's directory).
impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", log_excerpt(&self.name, &self.log()));
        }
    }
}

/// The parts of a daemon log that explain a failure: up to 60 warnings and errors (the last
/// ones), then the last 40 lines.
fn log_excerpt(name: &str, log: &str) -> String {
    const PROBLEMS: usize = 60;
    const TAIL: usize = 40;
    let lines: Vec<&str> = log.lines().collect();
    let problems: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let mut out = format!(
        "---- sshvpnd {name}: {} log lines, {} warnings and errors",
        lines.len(),
        problems.len()
    );
    if problems.len() > PROBLEMS {
        out += &format!(" (the last {PROBLEMS})");
    }
    out += ":\n";
    for l in &problems[problems.len().saturating_sub(PROBLEMS)..] {
        out += l;
        out.push('\n');
    }
    out += &format!("---- sshvpnd {name}: the last {TAIL} lines:\n");
    for l in &lines[lines.len().saturating_sub(TAIL)..] {
        out += l;
        out.push('\n');
    }
    out
}

impl Daemon {
    /// The `[daemon]` section every test daemon uses: its own socket and state directory.
    pub fn daemon_section(dir: &TestDir, name: &str) -> String {
        format!(
            "[daemon]\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n",
            dir.path().join(format!("{name}.sock")).display(),
            dir.path().join(format!("{name}-state")).display()
        )
    }

    /// Writes `body` (after a `[daemon]` section) to `<name>.toml` and starts sshvpnd on it,
    /// waiting until its control socket answers.
    pub async fn start(dir: &TestDir, name: &str, body: &str) -> Daemon {
        Self::start_env(dir, name, body, &[]).await
    }

    /// As `start`, with extra environment variables for the daemon.
    pub async fn start_env(dir: &TestDir, name: &str, body: &str, env: &[(&str, &Path)]) -> Daemon {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("{}\n{body}", Self::daemon_section(dir, name)),
        )
        .expect("write config");
        Self::spawn(dir, name, config, env).await
    }

    /// Starts sshvpnd on an existing configuration file (e.g. after a restart).
    pub async fn start_with(dir: &TestDir, name: &str, config: PathBuf) -> Daemon {
        Self::spawn(dir, name, config, &[]).await
    }

    /// As `start`, but inside a network namespace.
    pub async fn start_in(
        netns: &crate::netns::Netns,
        dir: &TestDir,
        name: &str,
        body: &str,
    ) -> Daemon {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("{}\n{body}", Self::daemon_section(dir, name)),
        )
        .expect("write config");
        Self::spawn_in(Some(&netns.name), dir, name, config, &[]).await
    }

    /// As `start`, with the open files limit (soft and hard) set to `nofile`, so a test can
    /// make the daemon run out of file descriptors.
    pub async fn start_with_nofile(dir: &TestDir, name: &str, body: &str, nofile: u64) -> Daemon {
        Self::start_with_ulimit(dir, name, body, &format!("-n {nofile}")).await
    }

    /// As `start`, with the shell's `ulimit ARGS` (e.g. "-Sn 256") applied to sshvpnd.
    pub async fn start_with_ulimit(dir: &TestDir, name: &str, body: &str, args: &str) -> Daemon {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!("{}\n{body}", Self::daemon_section(dir, name)),
        )
        .expect("write config");
        Self::spawn_with(None, Some(args), dir, name, config, &[]).await
    }

    async fn spawn(dir: &TestDir, name: &str, config: PathBuf, env: &[(&str, &Path)]) -> Daemon {
        Self::spawn_in(None, dir, name, config, env).await
    }

    async fn spawn_in(
        netns: Option<&str>,
        dir: &TestDir,
        name: &str,
        config: PathBuf,
        env: &[(&str, &Path)],
    ) -> Daemon {
        Self::spawn_with(netns, None, dir, name, config, env).await
    }

    async fn spawn_with(
        netns: Option<&str>,
        ulimit: Option<&str>,
        dir: &TestDir,
        name: &str,
        config: PathBuf,
        env: &[(&str, &Path)],
    ) -> Daemon {
        let log = dir.path().join(format!("{name}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = match (netns, ulimit) {
            (Some(ns), _) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary("sshvpnd"));
                c
            }
            // The shell sets the limit and then becomes sshvpnd (same pid).
            (None, Some(args)) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit {args} && exec \"$0\" \"$@\""))
                    .arg(binary("sshvpnd"));
                c
            }
            (None, None) => Command::new(binary("sshvpnd")),
        };
        let child = cmd
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg("debug")
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start sshvpnd");
        let d = Daemon {
            child,
            name: name.to_owned(),
            config,
            socket: dir.path().join(format!("{name}.sock")),
            state_dir: dir.path().join(format!("{name}-state")),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if d.ctl(&["status"]).await.0 {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "sshvpnd {name} did not answer on its control socket; log:\n{}",
            d.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("sshvpnd pid")
    }

    /// A server daemon's host key as a known_hosts line wants it ("ssh-ed25519 AAAA…"), read
    /// from the key it generated in its state directory.
    pub fn host_key_blob(&self) -> String {
        let public = std::fs::read_to_string(self.state_dir.join("ssh_host_ed25519_key.pub"))
            .expect("the server wrote its host key");
        public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// One "Field:  N kB" line of the daemon's /proc status (VmRSS, VmHWM, RssAnon…), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.pid(), field)
    }

    /// Runs sshvpnctl against this daemon: (success, stdout, stderr).
    pub async fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(binary("sshvpnctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run sshvpnctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn status(&self) -> Vec<LinkInfo> {
        let (ok, stdout, stderr) = self.ctl(&["--json", "status"]).await;
        assert!(ok, "sshvpnctl status failed: {stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
        serde_json::from_value(v["links"].clone()).expect("links")
    }

    pub async fn link(&self, name: &str) -> LinkInfo {
        self.status()
            .await
            .into_iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("no link {name}"))
    }

    /// Waits until `link` is in `state`, or panics with the status and the log.
    pub async fn wait_link(&self, link: &str, state: &str, timeout: Duration) -> LinkInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.link(link).await;
            if info.state == state {
                return info;
            }
            if Instant::now() > deadline {
                panic!(
                    "link {link} is {:?} (last error {:?}), not {state}, after {timeout:?}; log:\n{}",
                    info.state,
                    info.last_error,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM and wait; returns the exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => panic!(
                "sshvpnd {} did not exit within 10s of SIGTERM; log:\n{}",
                self.name,
                self.log()
            ),
        }
    }
}
