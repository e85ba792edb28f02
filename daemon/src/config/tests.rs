use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const LINK: &str = r#"
[[link]]
name = "office"
host = "vpn.example.com"
user = "alice"
identity = "/etc/sshvpn/id_ed25519"
known_hosts = "/etc/sshvpn/known_hosts"
"#;

#[test]
fn design_example_parses() {
    let text = r#"
[daemon]
control_socket = "/run/sshvpn/control.sock"
state_dir = "/var/lib/sshvpn"

[server]
listen = ["0.0.0.0:2222"]
host_keys = ["/etc/sshvpn/ssh_host_ed25519_key"]
authorized_keys = "/etc/sshvpn/authorized_keys"
tun_pool = "10.77.0.0/24"

[[link]]
name = "office"
host = "vpn.example.com"
port = 22
user = "alice"
identity = "~/.ssh/id_ed25519"
known_hosts = "~/.ssh/known_hosts"
ciphers = ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"]
kex = ["curve25519-sha256"]
keepalive = "15s"
keepalive_max = 3
reconnect_min = "1s"
reconnect_max = "60s"

[[link.socks]]
listen = "127.0.0.1:1080"

[[link.forward]]
listen = "127.0.0.1:15432"
connect = "db.internal:5432"

[[link.remote_forward]]
listen = "127.0.0.1:8080"
connect = "127.0.0.1:3000"
"#;
    let c = parse(text).unwrap();
    let link = &c.links[0];
    assert_eq!(link.name(), "office");
    assert_eq!(link.keepalive.0, std::time::Duration::from_secs(15));
    assert_eq!(
        link.forward[0].connect,
        HostPort {
            host: "db.internal".into(),
            port: 5432
        }
    );
    assert_eq!(c.server.unwrap().listen[0].0.port(), 2222);
}

#[test]
fn bad_duration_names_file_line_and_key() {
    let text = format!("{LINK}keepalive = \"15x\"\n");
    let e = err(&text);
    assert!(e.starts_with("test.toml:8: link.keepalive: "), "{e}");
    assert!(e.contains("no unit"), "{e}");
}

#[test]
fn unknown_key_is_an_error() {
    let text = format!("{LINK}keepalive_interval = \"15s\"\n");
    let e = err(&text);
    assert!(
        e.starts_with("test.toml:8: link.keepalive_interval: "),
        "{e}"
    );
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn bad_forward_address() {
    let text = format!("{LINK}\n[[link.forward]]\nlisten = \"localhost\"\nconnect = \"db:5432\"\n");
    let e = err(&text);
    assert!(e.starts_with("test.toml:10: link.forward.listen: "), "{e}");
}

#[test]
fn duplicate_link_and_missing_trust() {
    let e = err(&format!("{LINK}{LINK}"));
    assert!(
        e.contains("defined twice") && e.contains(":10: link.name"),
        "{e}"
    );
    let e = err("[[link]]\nname = \"x\"\nhost = \"h\"\nuser = \"u\"\n");
    assert!(e.contains("no way to verify the server"), "{e}");
}

#[test]
fn unknown_cipher_points_at_the_value() {
    let e = err(&format!("{LINK}ciphers = [\"aes128-ctr\"]\n"));
    assert!(
        e.starts_with("test.toml:8: link.ciphers: unknown cipher \"aes128-ctr\""),
        "{e}"
    );
}

#[test]
fn intervals_and_host_ports() {
    assert_eq!("500ms".parse::<Interval>().unwrap().0.as_millis(), 500);
    assert_eq!("2h".parse::<Interval>().unwrap().0.as_secs(), 7200);
    assert!("15".parse::<Interval>().is_err());
    assert_eq!(
        "[::1]:22".parse::<HostPort>().unwrap(),
        HostPort {
            host: "::1".into(),
            port: 22
        }
    );
    assert!("host".parse::<HostPort>().is_err());
    assert_eq!(
        "/run/x.sock".parse::<Endpoint>().unwrap(),
        Endpoint::Unix("/run/x.sock".into())
    );
}

#[test]
fn shipped_example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("@DIR@", "/tmp/x");
            Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "expected the example configurations in {}",
        dir.display()
    );
}

#[test]
fn tun_section_is_validated() {
    let ok = parse(&format!(
        "{LINK}\n[link.tun]\nlocal = \"10.77.0.2/24\"\nroutes = [\"default\", \"10.1.0.0/16\"]\n"
    ))
    .unwrap();
    assert_eq!(ok.links[0].tun.as_ref().unwrap().get_ref().mtu, 1400);
    // Without an address the server assigns one.
    assert!(parse(&format!("{LINK}\n[link.tun]\nroutes = [\"default\"]\n")).is_ok());
    let e = err(&format!(
        "{LINK}\n[link.tun]\nlocal = \"10.77.0.2/24\"\ndns = [\"10.0.0.53\"]\n"
    ));
    assert!(e.contains("not supported"), "{e}");
    let e = err(&format!("{LINK}\n[link.tun]\nlocal = \"10.77.0.2\"\n"));
    assert!(
        e.contains("link.tun.local") && e.contains("prefix length"),
        "{e}"
    );
}

#[test]
fn certificate_keys_parse() {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:2222\"]\nauthorized_keys = \"/etc/sshvpn/authorized_keys\"\ntrusted_user_ca_keys = \"/etc/sshvpn/user_ca.pub\"\n{LINK}certificate = \"/etc/sshvpn/id_ed25519-cert.pub\"\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.links[0].certificate.as_deref(),
        Some(Path::new("/etc/sshvpn/id_ed25519-cert.pub"))
    );
    assert_eq!(
        c.server.unwrap().trusted_user_ca_keys.as_deref(),
        Some(Path::new("/etc/sshvpn/user_ca.pub"))
    );
    // Without the key, the link falls back to <identity>-cert.pub at connect time.
    assert_eq!(parse(LINK).unwrap().links[0].certificate, None);
}

#[test]
fn rekey_limit_takes_binary_units_and_a_floor() {
    assert_eq!("512K".parse::<ByteCount>().unwrap().0, 512 << 10);
    assert_eq!("64M".parse::<ByteCount>().unwrap().0, 64 << 20);
    assert_eq!("1G".parse::<ByteCount>().unwrap().0, 1 << 30);
    assert_eq!("4096".parse::<ByteCount>().unwrap().0, 4096);
    assert!("12T".parse::<ByteCount>().is_err());
    assert!("99999999999999G".parse::<ByteCount>().is_err());
    let ok = parse(&format!("{LINK}rekey_limit = \"16M\"\n")).unwrap();
    assert_eq!(ok.links[0].rekey_limit, Some(ByteCount(16 << 20)));
    let e = err(&format!("{LINK}rekey_limit = \"64K\"\n"));
    assert!(
        e.contains("link.rekey_limit") && e.contains("at least 1M"),
        "{e}"
    );
    let e = err(&format!("{LINK}rekey_limit = \"lots\"\n"));
    assert!(e.contains("not an amount of data"), "{e}");
}
