//! sshvpn's own ends of an interop test, built on the daemon library: a client connection to
//! an OpenSSH `sshd`, and an in-process server for OpenSSH's `ssh` to connect to.

use std::time::Duration;

use sshvpn_proto::keys::{authorized_keys, load_private_key_file};
use sshvpn_proto::{ClientConfig, Ed25519Key, ServerConfig};
use sshvpnd::driver::{Handle, Incoming};
use sshvpnd::policy::{AuthorizedKeys, TrustedUserCaKeys};
use sshvpnd::trust::{ClientPolicy, HostKeyTrust, HostKeyVerdict};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::harness::{KeyPair, TestDir};

/// A client connection made by sshvpn's driver.
#[derive(Debug)]
pub struct Client {
    pub handle: Handle,
    pub incoming: mpsc::Receiver<Incoming>,
    pub task: JoinHandle<Result<(), sshvpn_proto::Error>>,
    pub verdict: std::sync::Arc<std::sync::Mutex<Option<HostKeyVerdict>>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `127.0.0.1:port` as root with `identity`, trusting hosts listed in a
/// known_hosts file holding `known_hosts_line`.
pub async fn connect(
    dir: &TestDir,
    port: u16,
    identity: &KeyPair,
    known_hosts_line: &str,
    config: impl FnOnce(&mut ClientConfig),
) -> Client {
    let key = load_private_key_file(&identity.private, None).expect("load identity");
    let key = Ed25519Key::from_ssh_key(&key).expect("ed25519 identity");
    let mut cfg = ClientConfig::new("root", vec![key]);
    config(&mut cfg);
    let known_hosts = dir.unique_path("known_hosts", "txt");
    std::fs::write(&known_hosts, format!("{known_hosts_line}\n")).expect("write known_hosts");
    let trust = HostKeyTrust::from_known_hosts_file(&known_hosts, "127.0.0.1", port)
        .expect("read known_hosts");
    let policy = ClientPolicy::new(trust);
    let verdict = policy.last.clone();
    let (handle, incoming, task) =
        sshvpnd::connect(&format!("127.0.0.1:{port}"), cfg, Box::new(policy))
            .await
            .expect("connect");
    Client {
        handle,
        incoming,
        task,
        verdict,
    }
}

/// sshvpn's server on a free loopback port, serving forwards for authorized keys.
#[derive(Debug)]
pub struct Server {
    pub port: u16,
    pub host_key: Ed25519Key,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start(authorized: &[&KeyPair], config: impl FnOnce(&mut ServerConfig)) -> Server {
        let lines: Vec<String> = authorized.iter().map(|k| k.public_line.clone()).collect();
        Self::start_with(&lines, None, config).await
    }

    /// A server whose authorized_keys is `lines` (options allowed, e.g. `cert-authority`)
    /// and whose `trusted_user_ca_keys` are `user_cas`.
    pub async fn start_with(
        lines: &[String],
        user_cas: Option<Vec<&KeyPair>>,
        config: impl FnOnce(&mut ServerConfig),
    ) -> Server {
        let mut seed = [0u8; 32];
        getrandom_seed(&mut seed);
        let host_key = Ed25519Key::from_seed(&seed);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let user_cas = user_cas.map(|cas| {
            TrustedUserCaKeys::List(
                cas.iter()
                    .map(|k| {
                        sshvpn_proto::ssh_key::PublicKey::from_openssh(&k.public_line)
                            .expect("CA public key")
                    })
                    .collect(),
            )
        });
        let (authorized, errors) = authorized_keys::parse(&text);
        assert!(errors.is_empty(), "authorized_keys: {errors:?}");
        let mut cfg = ServerConfig::new(host_key.clone());
        cfg.login_grace = Duration::from_secs(20);
        config(&mut cfg);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(sshvpnd::server::serve(
            listener,
            cfg,
            AuthorizedKeys::List(authorized),
            user_cas,
            sshvpnd::server::StartupLimits::default(),
            None,
        ));
        Server {
            port,
            host_key,
            task,
        }
    }

    /// The line an OpenSSH client's known_hosts needs to trust this server.
    pub fn known_hosts_line(&self) -> String {
        let public = self
            .host_key
            .public()
            .to_ssh_key()
            .to_openssh()
            .expect("encode host key");
        format!("[127.0.0.1]:{} {public}", self.port)
    }
}

fn getrandom_seed(seed: &mut [u8; 32]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(seed))
        .expect("read /dev/urandom");
}
