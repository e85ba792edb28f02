//! The control protocol's request parser, the tun channel's packet reassembly, and the
//! checks on an offload frame's virtio-net header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sshvpn_proto::connection::tun::{AF_OFFLOAD, TunDecoder, check_offload};
use sshvpn_proto::control::parse_request;

fuzz_target!(|data: &[u8]| {
    let _ = check_offload(data);
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = parse_request(line);
    }
    let mut d = TunDecoder::default();
    for chunk in data.chunks(13) {
        d.push(chunk);
        while let Ok(Some(p)) = d.next_packet() {
            if p.af == AF_OFFLOAD {
                let _ = check_offload(p.data);
            }
        }
    }
});
