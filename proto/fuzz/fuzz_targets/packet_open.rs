//! The binary packet decoder under each cipher: the first byte picks the cipher, the rest is
//! the stream. Nothing may panic, and a length is never trusted before it is bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sshvpn_proto::transport::cipher::{CipherAlg, OpeningKey};
use sshvpn_proto::transport::packet::Opener;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut opener = Opener::new();
    if let Some(&alg) = CipherAlg::ALL.get(usize::from(pick % 4)) {
        opener.set_key(OpeningKey::new(
            alg,
            &vec![7; alg.key_len()],
            &vec![9; alg.iv_len()],
        ));
    }
    let mut buf = rest.to_vec();
    while let Ok(Some(d)) = opener.open(&mut buf) {
        buf.drain(..d.consumed);
    }
});
