//! Writes seed corpora for proto/fuzz from real packets: `cargo run -p sshvpn-proto --example
//! fuzz_seeds -- DIR` (proto/fuzz/run.sh does this).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use std::path::PathBuf;
use std::time::Instant;

use sshvpn_proto::rng::Random;
use sshvpn_proto::transport::cipher::{CipherAlg, SealingKey};
use sshvpn_proto::transport::kex::{Preferences, build_kexinit};
use sshvpn_proto::transport::packet::Sealer;
use sshvpn_proto::wire::Writer;
use sshvpn_proto::{ClientConfig, Connection, Ed25519Key};

fn write(dir: &std::path::Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), data).unwrap();
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("corpus dir"));
    // A real client's first flight (identification + KEXINIT), minus its identification line
    // (server_session adds one).
    let mut client = Connection::client_with_random(
        ClientConfig::new("u", vec![Ed25519Key::from_seed(&[3; 32])]),
        Random::from_seed([4; 32]),
        Instant::now(),
    );
    let mut first = Vec::new();
    client.poll_transmit(&mut first);
    let after_ident = first.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    write(
        &dir,
        "server_session",
        "client_first_flight",
        &first[after_ident..],
    );
    for server in [false, true] {
        write(
            &dir,
            "kexinit",
            &format!("ours_server_{server}"),
            &build_kexinit(&Preferences::default(), server, true, [0; 16]),
        );
    }
    for (i, alg) in [
        None,
        Some(CipherAlg::ChaCha20Poly1305),
        Some(CipherAlg::Aes128Gcm),
        Some(CipherAlg::Aes256Gcm),
    ]
    .into_iter()
    .enumerate()
    {
        let mut sealer = Sealer::new();
        if let Some(alg) = alg {
            sealer.set_key(SealingKey::new(
                alg,
                &vec![7; alg.key_len()],
                &vec![9; alg.iv_len()],
            ));
        }
        let mut out = vec![i as u8];
        let mut rng = Random::from_seed([5; 32]);
        for payload in [
            &b"\x05\x00\x00\x00\x0cssh-userauth"[..],
            &[94, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
        ] {
            sealer.seal_with(&mut out, &mut rng, |b| b.extend_from_slice(payload));
        }
        write(&dir, "packet_open", &format!("cipher_{i}"), &out);
    }
    // session: [stage] then [direction, length, payload] frames of real messages.
    let frame = |seed: &mut Vec<u8>, to_client: bool, build: &dyn Fn(&mut Writer<'_>)| {
        let mut payload = Vec::new();
        build(&mut Writer::new(&mut payload));
        seed.push(u8::from(to_client));
        seed.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        seed.extend_from_slice(&payload);
    };
    let user_key = Ed25519Key::from_seed(&[22; 32]).public().blob();
    let mut auth = vec![0u8];
    frame(&mut auth, false, &|w| {
        w.u8(50)
            .string("fuzz")
            .string("ssh-connection")
            .string("none");
    });
    frame(&mut auth, false, &|w| {
        w.u8(50)
            .string("fuzz")
            .string("ssh-connection")
            .string("publickey")
            .bool(false)
            .string("ssh-ed25519")
            .string(&user_key);
    });
    write(&dir, "session", "userauth", &auth);
    let mut conn = vec![1u8];
    for to_client in [false, true] {
        frame(&mut conn, to_client, &|w| {
            w.u8(90)
                .string("direct-tcpip")
                .u32(5)
                .u32(1 << 20)
                .u32(32768)
                .string("127.0.0.1")
                .u32(22)
                .string("10.0.0.1")
                .u32(4000);
        });
        frame(&mut conn, to_client, &|w| {
            w.u8(90)
                .string("tun@openssh.com")
                .u32(6)
                .u32(1 << 20)
                .u32(32768)
                .u32(1)
                .u32(0x7fff_ffff);
        });
        frame(&mut conn, to_client, &|w| {
            w.u8(94).u32(0).string(b"hello");
        });
        frame(&mut conn, to_client, &|w| {
            w.u8(93).u32(0).u32(4096);
        });
        frame(&mut conn, to_client, &|w| {
            w.u8(98).u32(0).string("eow@openssh.com").bool(false);
        });
        frame(&mut conn, to_client, &|w| {
            w.u8(80)
                .string("tcpip-forward")
                .bool(true)
                .string("127.0.0.1")
                .u32(8080);
        });
        frame(&mut conn, to_client, &|w| {
            w.u8(96).u32(0);
        });
        frame(&mut conn, to_client, &|w| {
            w.u8(97).u32(0);
        });
    }
    write(&dir, "session", "connection", &conn);
    for example in [
        "quickstart",
        "full-tunnel",
        "server",
        "site-a",
        "socks-client",
    ] {
        let path = format!("{}/../configs/{example}.toml", env!("CARGO_MANIFEST_DIR"));
        if let Ok(text) = std::fs::read(&path) {
            write(&dir, "config_file", example, &text);
        }
    }
    write(&dir, "key_files", "lines", b"restrict,permitopen=\"db:5432\",from=\"10.0.0.0/8\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArtZCXFKxNjBffVNGQ0lf0HvqMjMLt6XXXA3y2b+dyi c\n[example.com]:2222,*.x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArtZCXFKxNjBffVNGQ0lf0HvqMjMLt6XXXA3y2b+dyi\n@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArtZCXFKxNjBffVNGQ0lf0HvqMjMLt6XXXA3y2b+dyi\n");
    write(&dir, "control_and_tun", "request", b"{\"request\":\"forward-add\",\"link\":\"a\",\"kind\":\"local\",\"listen\":\"127.0.0.1:1\",\"connect\":\"h:2\"}");
    write(
        &dir,
        "control_and_tun",
        "tun",
        &[
            0, 0, 0, 24, 0, 0, 0, 2, 0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0,
            0, 2,
        ],
    );
}
