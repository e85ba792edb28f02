//! The control protocol's request parser and the tun channel's packet reassembly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sshvpn_proto::connection::tun::TunDecoder;
use sshvpn_proto::control::parse_request;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = parse_request(line);
    }
    let mut d = TunDecoder::default();
    for chunk in data.chunks(13) {
        d.push(chunk);
        while let Ok(Some(_)) = d.next_packet() {}
    }
});
