//! The Debian package and the systemd units, as an operator gets them: built from the
//! workspace, checked by systemd-analyze, installed with dpkg and removed without a trace.
//! Needs root (CI runs as root) and Debian's dpkg and systemd.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under the places the package may touch.
fn snapshot() -> BTreeSet<String> {
    let dirs = [
        "/usr/sbin",
        "/usr/bin",
        "/lib/systemd/system",
        "/etc/systemd/system",
        "/usr/share/doc/sshvpn",
        "/usr/share/man/man1",
        "/usr/share/man/man5",
        "/usr/share/man/man8",
        "/usr/share/bash-completion/completions",
        "/usr/share/zsh/vendor-completions",
        "/usr/share/fish/vendor_completions.d",
        "/etc/sshvpn",
        "/var/lib/sshvpn",
    ];
    let mut all = BTreeSet::new();
    for d in dirs {
        let out = Command::new("find").arg(d).output().unwrap();
        all.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    all
}

/// Purges the package even when the test fails half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "sshvpn"]).output();
    }
}

#[test]
fn debian_package_builds_verifies_installs_and_removes_cleanly() {
    sshvpn_tests::harness::require("dpkg-deb");
    sshvpn_tests::harness::require("systemd-analyze");
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap();
    assert!(
        root,
        "the packaging test installs a package: it needs root (CI runs as root)"
    );
    let target = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let deb = run(Command::new("bash")
        .arg(repo().join("packaging/build-deb.sh"))
        .env("PROFILE", "debug")
        .env("CARGO_TARGET_DIR", &target));
    let deb = deb.trim().lines().last().unwrap().to_owned();

    let files = run(Command::new("dpkg-deb").args(["-c", &deb]));
    for want in [
        "./usr/sbin/sshvpnd",
        "./usr/bin/sshvpnctl",
        "./lib/systemd/system/sshvpnd.service",
        "./lib/systemd/system/sshvpnd@.service",
        "./lib/systemd/system/sshvpnd.socket",
        "./usr/share/man/man8/sshvpnd.8.gz",
        "./usr/share/man/man1/sshvpnctl.1.gz",
        "./usr/share/man/man5/sshvpnd.toml.5.gz",
        "./usr/share/bash-completion/completions/sshvpnctl",
        "./usr/share/zsh/vendor-completions/_sshvpnctl",
        "./usr/share/fish/vendor_completions.d/sshvpnctl.fish",
        "./usr/share/doc/sshvpn/examples/socks-client.toml",
        "./usr/share/doc/sshvpn/examples/site-a.toml",
        "./usr/share/doc/sshvpn/examples/site-b.toml",
        "./usr/share/doc/sshvpn/copyright",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(want)),
            "{want} missing from the package:\n{files}"
        );
    }

    let before = snapshot();
    let guard = Installed;
    run(Command::new("dpkg").args(["-i", &deb]));
    assert!(run(Command::new("/usr/sbin/sshvpnd").arg("--version")).starts_with("sshvpnd "));
    // Every shipped example passes --check-config with the installed binary.
    for ex in std::fs::read_dir("/usr/share/doc/sshvpn/examples").unwrap() {
        let path = ex.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("@DIR@", "/tmp");
        let tmp = std::env::temp_dir().join(format!(
            "sshvpn-example-{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&tmp, text).unwrap();
        run(Command::new("/usr/sbin/sshvpnd")
            .arg("--check-config")
            .arg("-c")
            .arg(&tmp));
        let _ = std::fs::remove_file(tmp);
    }

    // systemd-analyze: the units verify, and the service is rated OK or better.
    let instance = std::env::temp_dir().join("sshvpnd@site-b.service");
    std::fs::copy("/lib/systemd/system/sshvpnd@.service", &instance).unwrap();
    let verify = Command::new("systemd-analyze")
        .args([
            "verify",
            "/lib/systemd/system/sshvpnd.service",
            "/lib/systemd/system/sshvpnd.socket",
        ])
        .arg(&instance)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    // man(1) may be absent on minimal systems; anything else is a real complaint.
    let real: Vec<&str> = complaints
        .lines()
        .filter(|l| !l.contains("Command 'man "))
        .collect();
    assert!(
        verify.status.success() || real.is_empty(),
        "systemd-analyze verify:\n{complaints}"
    );
    assert!(real.is_empty(), "systemd-analyze verify:\n{complaints}");
    let instance_path = instance.to_str().unwrap().to_owned();
    for unit in [
        "/lib/systemd/system/sshvpnd.service",
        instance_path.as_str(),
    ] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", unit])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("{text}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            score < 5.0 && (line.contains("OK") || line.contains("SAFE")),
            "{unit}: {line}"
        );
    }

    let _ = std::fs::remove_file(&instance);
    run(Command::new("dpkg").args(["--purge", "sshvpn"]));
    std::mem::forget(guard);
    let after = snapshot();
    let stray: Vec<_> = after.symmetric_difference(&before).collect();
    assert!(
        stray.is_empty(),
        "installing and purging changed: {stray:?}"
    );
}
