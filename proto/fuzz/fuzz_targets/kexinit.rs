//! KEXINIT parsing and negotiation against our own offer, in both roles.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sshvpn_proto::transport::kex::{KexInit, Preferences, build_kexinit, negotiate};

fuzz_target!(|data: &[u8]| {
    let Ok(theirs) = KexInit::parse(data) else {
        return;
    };
    for server in [false, true] {
        let ours = build_kexinit(&Preferences::default(), server, true, [0; 16]);
        if let Ok(ours) = KexInit::parse(&ours) {
            let _ = negotiate(server, &ours, &theirs);
        }
    }
});
