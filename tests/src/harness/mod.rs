//! Test harness: runs the real OpenSSH programs and small TCP peers on loopback.
//!
//! Owns temporary directories, generated keys, child processes and helper servers, and cleans
//! all of them up on drop: every child is spawned with `kill_on_drop(true)`, every spawned task
//! is aborted, every temp dir removed. Every wait is bounded by a timeout. A missing program
//! is a panic naming the package to install, never a silent skip.
//!
//! It must not reach anything but 127.0.0.1 and must not depend on the code under test.

mod net;
mod openssh;
mod socks;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use net::{
    EchoServer, SinkReport, SinkServer, fill_pattern, pattern_sha256, transfer_echo,
    transfer_echo_on, write_pattern,
};
pub use openssh::{Ssh, SshOutput, SshProcess, Sshd, SshdOptions, openssh_kex_methods};
pub use socks::{Socks5Error, reply_meaning, socks5_connect};

/// How long a helper program (ssh-keygen, `sshd -t`) may take before the test fails.
const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// Raises this process's soft limit on open files to its hard limit (holding thousands of
/// connections needs more than the usual 1024).
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)] // No safe binding for getrlimit/setrlimit among our dependencies.
    // SAFETY: getrlimit writes one `rlimit` into the struct we own and pass by pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", std::io::Error::last_os_error());
    limit.rlim_cur = limit.rlim_max;
    #[allow(unsafe_code)] // As above.
    // SAFETY: setrlimit only reads the `rlimit` we own and pass by pointer.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(set, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Finds `program` on `PATH` or in the sbin directories, or panics naming the package to
/// install. Tests never skip because a prerequisite is missing.
pub fn require(program: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path_var)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "{program} not found: install {} (tests/run.sh does this)",
        debian_package(program)
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn debian_package(program: &str) -> &str {
    match program {
        "sshd" => "openssh-server",
        "ssh" | "ssh-keygen" | "ssh-agent" | "ssh-add" => "openssh-client",
        "ip" | "tc" => "iproute2",
        "nft" => "nftables",
        other => other,
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, release it).
/// Another process can take it in between; callers that bind it must tolerate a rare retry.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A temporary directory for one test's configs, keys and logs; removed on drop.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
    /// Makes file names unique when one test writes several of the same kind.
    counter: AtomicUsize,
}

/// An OpenSSH key pair on disk, as written by `ssh-keygen`.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
    /// The `.pub` file's single line, without the trailing newline: `ssh-ed25519 AAAA… name`.
    pub public_line: String,
}

impl KeyPair {
    /// A key pair already on disk: `private` and `private.pub`.
    pub fn existing(private: &Path) -> KeyPair {
        let mut public = private.as_os_str().to_owned();
        public.push(".pub");
        let public = PathBuf::from(public);
        let public_line = std::fs::read_to_string(&public)
            .unwrap_or_else(|e| panic!("read {}: {e}", public.display()))
            .trim_end()
            .to_owned();
        KeyPair {
            private: private.to_owned(),
            public,
            public_line,
        }
    }

    /// `ssh-ed25519 AAAA…` without the comment, as known_hosts and authorized_keys match it.
    pub fn key_type_and_blob(&self) -> String {
        self.public_line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("sshvpn-test-")
            .tempdir()
            .expect("create temp dir");
        TestDir {
            dir,
            counter: AtomicUsize::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the directory that no other call has returned: `<stem>-<n><ext>`.
    pub fn unique_path(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.path().join(format!("{stem}-{n}{ext}"))
    }

    /// Generates an unencrypted ed25519 key pair named `name` (also its comment).
    pub async fn keygen(&self, name: &str) -> KeyPair {
        self.keygen_with_passphrase(name, "").await
    }

    /// Generates an ed25519 key pair whose private key is encrypted with `passphrase`
    /// (an empty passphrase leaves it unencrypted).
    pub async fn keygen_with_passphrase(&self, name: &str, passphrase: &str) -> KeyPair {
        keygen_at(&self.path().join(name), name, passphrase).await
    }

    /// Generates an unencrypted key pair of another type: `type_args` are ssh-keygen's, e.g.
    /// `["-t", "rsa", "-b", "3072"]`.
    pub async fn keygen_typed(&self, name: &str, type_args: &[&str]) -> KeyPair {
        keygen_args(&self.path().join(name), name, "", type_args).await
    }

    /// Signs `key` with the CA key `ca` (`ssh-keygen -s ca -I id args… key.pub`) and returns
    /// the certificate file, `key-cert.pub` (overwritten if it exists). `args` give the
    /// certificate's type, principals and validity, e.g. `["-h", "-n", "localhost", "-V", "+1h"]`.
    pub async fn sign_key(&self, ca: &KeyPair, key: &KeyPair, id: &str, args: &[&str]) -> PathBuf {
        let output = run_tool(
            tokio::process::Command::new(require("ssh-keygen"))
                .arg("-q")
                .arg("-s")
                .arg(&ca.private)
                .args(["-I", id])
                .args(args)
                .arg(&key.public),
        )
        .await;
        assert!(
            output.status.success(),
            "ssh-keygen -s for {} failed: {}",
            key.public.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut cert = key.private.as_os_str().to_owned();
        cert.push("-cert.pub");
        PathBuf::from(cert)
    }
}

/// Runs `ssh-keygen -t ed25519` writing `private` and `private.pub`.
async fn keygen_at(private: &Path, comment: &str, passphrase: &str) -> KeyPair {
    keygen_args(private, comment, passphrase, &["-t", "ed25519"]).await
}

async fn keygen_args(
    private: &Path,
    comment: &str,
    passphrase: &str,
    type_args: &[&str],
) -> KeyPair {
    assert!(
        !private.exists(),
        "key {} already exists",
        private.display()
    );
    let output = run_tool(
        tokio::process::Command::new(require("ssh-keygen"))
            .arg("-q")
            .args(type_args)
            .args(["-N", passphrase, "-C", comment, "-f"])
            .arg(private),
    )
    .await;
    assert!(
        output.status.success(),
        "ssh-keygen for {} failed: {}",
        private.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut public = private.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    let public_line = std::fs::read_to_string(&public)
        .expect("read generated public key")
        .trim_end()
        .to_owned();
    KeyPair {
        private: private.to_owned(),
        public,
        public_line,
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

/// Runs a short-lived helper program to completion, killing it if it outlives
/// [`TOOL_TIMEOUT`].
async fn run_tool(command: &mut tokio::process::Command) -> std::process::Output {
    command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let description = format!("{command:?}");
    match tokio::time::timeout(TOOL_TIMEOUT, command.output()).await {
        Ok(result) => result.unwrap_or_else(|e| panic!("run {description}: {e}")),
        Err(_) => panic!("{description} did not finish within {TOOL_TIMEOUT:?}"),
    }
}

/// Polls until a TCP connection to `addr` succeeds, or the deadline passes.
async fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
