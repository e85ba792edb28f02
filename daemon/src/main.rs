//! sshvpnd: the daemon binary. Configuration loading and the link supervisor are the next
//! step (see README "Status"); until then this binary only reports its version.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("sshvpnd {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    eprintln!(
        "sshvpnd {}: running from a configuration file is not implemented yet; \
         see README.md (Status) and `cargo run --release -p sshvpn-tests --example quickstart`",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
