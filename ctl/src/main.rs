//! sshvpnctl: the control CLI. The control socket protocol arrives with the daemon's link
//! supervisor (see README "Status"); until then this binary only reports its version.

fn main() -> std::process::ExitCode {
    if std::env::args()
        .skip(1)
        .any(|a| a == "--version" || a == "-V")
    {
        println!("sshvpnctl {}", env!("CARGO_PKG_VERSION"));
        return std::process::ExitCode::SUCCESS;
    }
    eprintln!(
        "sshvpnctl {}: no commands are implemented yet; see README.md (Status)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
