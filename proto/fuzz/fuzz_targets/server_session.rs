//! A whole server connection fed arbitrary bytes after a valid identification line, in
//! arbitrary splits: version exchange, framing, KEXINIT and the key exchange messages.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sshvpn_proto::rng::Random;
use sshvpn_proto::{Connection, Ed25519Key, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut conn = Connection::server_with_random(
        ServerConfig::new(Ed25519Key::from_seed(&[1; 32])),
        Random::from_seed([2; 32]),
        now,
    );
    let mut input = b"SSH-2.0-fuzz\r\n".to_vec();
    input.extend_from_slice(data);
    let mut out = Vec::new();
    for (i, chunk) in input.chunks(97).enumerate() {
        if conn
            .handle_input(chunk, now + Duration::from_millis(i as u64))
            .is_err()
        {
            break;
        }
        while conn.poll_event().is_some() {}
        conn.poll_transmit(&mut out);
    }
    let _ = conn.handle_timeout(now + Duration::from_secs(3600));
});
