//! authorized_keys and known_hosts parsing and matching.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sshvpn_proto::keys::{KnownHosts, authorized_keys};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (keys, _) = authorized_keys::parse(text);
    let (hosts, _) = KnownHosts::parse(text);
    for k in &keys {
        let _ = k.options.permits_open("h", 22);
        let _ = k.options.from_allows(
            "10.0.0.1"
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            None,
        );
        let _ = hosts.check("example.com", 2222, &k.key);
    }
});
