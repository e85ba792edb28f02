//! Network namespaces for tests: hosts joined by veth pairs. Each namespace gets a unique
//! name and is deleted (with every process in it) on drop, also when a test fails.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Fails the test, naming what is missing, unless we can make namespaces and TUN devices.
pub fn require_netns() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    assert!(
        root,
        "network namespace tests need root (CI runs them as root)"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "network namespace tests need /dev/net/tun"
    );
    crate::harness::require("ip");
    crate::harness::require("ping");
}

fn run(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One namespace (a "host").
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sv{}{}-{tag}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        run(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME …`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&run(&full).stdout).into_owned()
    }

    /// Runs a command inside the namespace (bounded by `timeout`), returning its output.
    pub fn exec(&self, cmd: &[&str], timeout: Duration) -> Output {
        let secs = format!("{}", timeout.as_secs().max(1));
        let mut args = vec!["netns", "exec", &self.name, "timeout", &secs];
        args.extend_from_slice(cmd);
        Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// Starts a long-running command inside the namespace (killed on drop of the child, and
    /// with the namespace).
    pub fn spawn(&self, program: &Path, args: &[&str], log: &Path) -> tokio::process::Child {
        let log_file = std::fs::File::create(log).expect("log file");
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn in namespace")
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        let out = self.exec(
            &["sysctl", "-q", "-w", &format!("{key}={value}")],
            Duration::from_secs(5),
        );
        assert!(
            out.status.success(),
            "sysctl {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ping` from this namespace; true when at least one reply came back.
    pub fn ping(&self, target: &str, count: u32) -> bool {
        let c = count.to_string();
        self.exec(
            &["ping", "-c", &c, "-i", "0.2", "-W", "1", target],
            Duration::from_secs(u64::from(count) + 5),
        )
        .status
        .success()
    }

    /// The median round trip, in milliseconds, of `count` pings 20 ms apart (`None` if none
    /// came back).
    pub fn ping_median_ms(&self, target: &str, count: u32) -> Option<f64> {
        let c = count.to_string();
        let out = self.exec(
            &["ping", "-c", &c, "-i", "0.02", "-W", "1", target],
            Duration::from_secs(u64::from(count) / 10 + 5),
        );
        let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1))
            .filter_map(|t| t.trim_end_matches(" ms").parse().ok())
            .collect();
        rtts.sort_by(f64::total_cmp);
        rtts.get(rtts.len() / 2).copied()
    }

    /// Waits until an interface whose name starts with `prefix` exists; returns its name.
    pub fn wait_link(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.ip(&["-o", "link", "show"]);
            if let Some(name) = out
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n))
                .find(|n| n.starts_with(prefix))
            {
                return name.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix}* interface in {} after {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Netns {
    /// Waits until exactly one interface starting with `prefix` exists; returns its name.
    pub fn wait_single_link(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.ip(&["-o", "link", "show"]);
            let names: Vec<String> = out
                .lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n).to_owned())
                .filter(|n| n.starts_with(prefix))
                .collect();
            if let [only] = names.as_slice() {
                return only.clone();
            }
            assert!(
                Instant::now() < deadline,
                "expected one {prefix}* interface in {}, have {names:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, then remove the namespace (its veths go with it).
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Joins two namespaces with a veth pair and addresses each end (CIDR strings, any number).
pub fn veth(a: &Netns, a_addrs: &[&str], b: &Netns, b_addrs: &[&str]) -> (String, String) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let (ia, ib) = (
        format!("va{}x{n}", std::process::id() % 10_000),
        format!("vb{}x{n}", std::process::id() % 10_000),
    );
    run(&[
        "link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns", &b.name,
    ]);
    for addr in a_addrs {
        a.ip(&["addr", "add", addr, "dev", &ia, "nodad"]);
    }
    for addr in b_addrs {
        b.ip(&["addr", "add", addr, "dev", &ib, "nodad"]);
    }
    a.ip(&["link", "set", &ia, "up"]);
    b.ip(&["link", "set", &ib, "up"]);
    (ia, ib)
}

/// A router namespace between two hosts whose wire delays and drops packets as a wide-area
/// path does: `netprobe delay` (tc netem's delay and loss in user space; this machine's kernel
/// has no sch_netem). Dropping it removes the router and the delay box with it.
#[derive(Debug)]
pub struct DelayRouter {
    pub ns: Netns,
    /// The hosts' ends of their veths to the router.
    pub a_if: String,
    pub b_if: String,
    /// The router's end of its veth to `b`: a queueing discipline there (a rate limit) acts on
    /// what goes from `a` to `b` after the delay, as a slow link at the far end would.
    pub to_b: String,
    _delay: tokio::process::Child,
}

/// Joins `a` and `b` through a [`DelayRouter`]: `a` gets `a_addr` and `b` gets `b_addr`, each
/// a host in its own /24 (for example "10.209.0.1/24"), where the router is .254 and each host's
/// route to the other /24. Every packet the router forwards waits `one_way` and is dropped
/// with probability `loss_percent` / 100, both ways. `log` receives the delay box's output.
/// Call it within a tokio runtime (the delay box is a `tokio::process` child); it blocks the
/// thread until the box is ready, at most 10 s.
pub fn join_through_delay(
    a: &Netns,
    a_addr: &str,
    b: &Netns,
    b_addr: &str,
    one_way: Duration,
    loss_percent: f64,
    log: &Path,
) -> DelayRouter {
    // "10.209.0.1/24" → ("10.209.0.0/24", "10.209.0.254")
    let split = |cidr: &str| {
        let host = cidr.split('/').next().unwrap_or(cidr);
        let net = host.rsplit_once('.').map_or(host, |(net, _)| net);
        (format!("{net}.0/24"), format!("{net}.254"))
    };
    let ((a_net, a_gw), (b_net, b_gw)) = (split(a_addr), split(b_addr));
    let ns = Netns::new("rtr");
    let (a_if, ra) = veth(a, &[a_addr], &ns, &[&format!("{a_gw}/24")]);
    let (rb, b_if) = veth(&ns, &[&format!("{b_gw}/24")], b, &[b_addr]);
    a.ip(&["route", "add", &b_net, "via", &a_gw]);
    b.ip(&["route", "add", &a_net, "via", &b_gw]);
    for (key, value) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
    ] {
        ns.sysctl(key, value);
    }
    let ms = format!("{}", one_way.as_secs_f64() * 1000.0);
    let loss = format!("{loss_percent}");
    let delay = ns.spawn(
        &crate::daemon::binary("netprobe"),
        &["delay", "dly", "1500", &ms, &loss],
        log,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(
            Instant::now() < deadline,
            "netprobe delay did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // What the router forwards goes into the delay box (table 100); what comes back out of it
    // goes on by the main table.
    ns.ip(&["link", "set", "dly", "up"]);
    ns.sysctl("net.ipv4.conf.dly.rp_filter", "0");
    ns.ip(&["route", "add", "default", "dev", "dly", "table", "100"]);
    ns.ip(&["rule", "add", "iif", &ra, "lookup", "100", "pref", "100"]);
    ns.ip(&["rule", "add", "iif", &rb, "lookup", "100", "pref", "101"]);
    DelayRouter {
        ns,
        a_if,
        b_if,
        to_b: rb,
        _delay: delay,
    }
}
