//! sshvpnd's configuration parser and its semantic checks on arbitrary text: errors, never
//! panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sshvpnd::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
