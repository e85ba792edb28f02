//! Tests of `authorized_keys` options, one or more per option of sshd(8).

use std::net::IpAddr;

use super::*;

fn opts(s: &str) -> KeyOptions {
    KeyOptions::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn err(s: &str) -> OptionError {
    KeyOptions::parse(s).expect_err(s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_permit_everything() {
    let o = KeyOptions::default();
    assert!(o.allows_port_forwarding());
    assert!(o.allows_agent_forwarding());
    assert!(o.allows_x11_forwarding());
    assert!(o.allows_pty());
    assert!(o.allows_user_rc());
    assert!(!o.is_restricted());
    assert!(!o.is_cert_authority());
    assert!(o.permits_open("anything", 1));
    assert!(o.permits_listen(None, 0));
    assert!(o.from_allows(ip("192.0.2.1"), None));
    assert!(o.allows_tunnel(Some(7)));
    assert!(!o.is_expired(i64::MAX, 0));
}

#[test]
fn restrict_disables_and_later_flags_reenable() {
    let o = opts("restrict");
    assert!(o.is_restricted());
    assert!(!o.allows_port_forwarding());
    assert!(!o.allows_agent_forwarding());
    assert!(!o.allows_x11_forwarding());
    assert!(!o.allows_pty());
    assert!(!o.allows_user_rc());
    assert!(!o.permits_open("host", 80));
    assert!(!o.permits_listen(Some("localhost"), 8080));

    let o = opts("restrict,port-forwarding,pty,agent-forwarding,X11-forwarding,user-rc");
    assert!(o.allows_port_forwarding());
    assert!(o.allows_pty());
    assert!(o.allows_agent_forwarding());
    assert!(o.allows_x11_forwarding());
    assert!(o.allows_user_rc());
    assert!(o.permits_open("host", 80));

    // Flags apply in order, as in sshd: restrict after port-forwarding wins.
    assert!(!opts("port-forwarding,restrict").allows_port_forwarding());
}

#[test]
fn restrict_does_not_restrict_tunnels() {
    // sshd(8): restrict disables port, agent and X11 forwarding, pty and user-rc; tun
    // forwarding is governed by PermitTunnel and tunnel= only.
    assert!(opts("restrict").allows_tunnel(None));
    assert!(opts("restrict").allows_tunnel(Some(3)));
    assert!(opts("no-port-forwarding").allows_tunnel(Some(3)));
}

#[test]
fn negated_flags() {
    let o = opts("no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty,no-user-rc");
    assert!(!o.allows_port_forwarding());
    assert!(!o.allows_agent_forwarding());
    assert!(!o.allows_x11_forwarding());
    assert!(!o.allows_pty());
    assert!(!o.allows_user_rc());
    assert!(!o.is_restricted());
    assert!(!o.permits_open("h", 1));
    assert!(!o.permits_listen(None, 1));
}

#[test]
fn keywords_are_case_insensitive() {
    let o = opts("NO-PTY,Restrict,Port-Forwarding,PERMITOPEN=\"h:1\"");
    assert!(!o.allows_pty());
    assert!(o.is_restricted());
    assert!(o.allows_port_forwarding());
    assert!(o.permits_open("h", 1));
}

#[test]
fn fido_flags() {
    assert!(!opts("no-touch-required").touch_required());
    assert!(opts("touch-required").touch_required());
    assert!(opts("verify-required").verify_required());
    assert!(!KeyOptions::default().verify_required());
}

#[test]
fn cert_authority_and_principals() {
    let o = opts("cert-authority,principals=\"alice,bob\"");
    assert!(o.is_cert_authority());
    assert_eq!(
        o.principals(),
        Some(&["alice".to_owned(), "bob".to_owned()][..])
    );
    assert_eq!(
        err("principals=\"a\",principals=\"b\""),
        OptionError::Duplicate("principals")
    );
}

#[test]
fn command_with_escaped_quotes() {
    let o = opts(r#"command="echo \"hi there\" \\n""#);
    assert_eq!(o.command(), Some(r#"echo "hi there" \\n"#));
    assert_eq!(
        err("command=\"a\",command=\"b\""),
        OptionError::Duplicate("command")
    );
    assert_eq!(err("command=\"a"), OptionError::MissingEndQuote("command"));
    assert_eq!(err("command=a"), OptionError::MissingStartQuote("command"));
    assert_eq!(err("command"), OptionError::MissingValue("command"));
}

#[test]
fn environment() {
    let o = opts("environment=\"A=1\",environment=\"PATH_2=/x=y\"");
    assert_eq!(
        o.environment(),
        &[
            ("A".to_owned(), "1".to_owned()),
            ("PATH_2".to_owned(), "/x=y".to_owned())
        ]
    );
    assert!(matches!(
        err("environment=\"NOVALUE\""),
        OptionError::Invalid { .. }
    ));
    assert!(matches!(
        err("environment=\"BAD-NAME=1\""),
        OptionError::Invalid { .. }
    ));
    assert!(matches!(
        err("environment=\"=1\""),
        OptionError::Invalid { .. }
    ));
}

#[test]
fn expiry_time() {
    // 2030-01-02T03:04:05Z = 1893553445.
    let o = opts("expiry-time=\"20300102030405Z\"");
    assert_eq!(o.expiry_times()[0].unix_time(0), 1_893_553_445);
    assert!(o.expiry_times()[0].is_utc());
    assert!(
        !o.is_expired(1_893_553_445, 0),
        "sshd refuses only once strictly past"
    );
    assert!(o.is_expired(1_893_553_446, 0));
    assert!(
        !o.is_expired(1_700_000_000, 3600),
        "offset does not apply to Z times"
    );

    // Local time: 2030-01-02 00:00 at UTC+1 is 23:00Z the day before.
    let o = opts("expiry-time=\"20300102\"");
    let t = o.expiry_times()[0];
    assert!(!t.is_utc());
    assert_eq!(t.unix_time(0), 1_893_542_400);
    assert_eq!(t.unix_time(3600), 1_893_542_400 - 3600);

    assert_eq!(
        opts("expiry-time=\"203001020304UTC\"").expiry_times()[0].unix_time(0),
        1_893_553_440
    );
    // Several: the earliest counts.
    let o = opts("expiry-time=\"20400101Z\",expiry-time=\"20300101Z\"");
    assert!(o.is_expired(1_893_456_001, 0));

    for bad in [
        "2030",
        "2030010",
        "20301301",
        "20300132",
        "203001022400",
        "19691231Z",
        "2030-01-02",
        "Z",
    ] {
        assert!(
            matches!(
                err(&format!("expiry-time=\"{bad}\"")),
                OptionError::Invalid { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn permitopen_semantics() {
    let o =
        opts("permitopen=\"db.internal:5432\",permitopen=\"[2001:db8::1]:*\",permitopen=\"*:443\"");
    assert_eq!(
        o.permit_open()[1],
        PermitOpen {
            host: "2001:db8::1".into(),
            port: PortSpec::Any
        }
    );
    assert!(o.permits_open("db.internal", 5432));
    assert!(!o.permits_open("db.internal", 5433));
    assert!(
        !o.permits_open("DB.internal", 5432),
        "literal, case-sensitive comparison"
    );
    assert!(!o.permits_open("other.internal", 5432));
    assert!(o.permits_open("2001:db8::1", 1));
    assert!(o.permits_open("2001:db8::1", 65535));
    assert!(
        o.permits_open("anything.example", 443),
        "* host matches any host"
    );
    assert!(!o.permits_open("anything.example", 444));
    // No pattern matching in permitopen hosts other than a lone *.
    assert!(!opts("permitopen=\"*.internal:80\"").permits_open("db.internal", 80));
    // host/port form.
    assert!(opts("permitopen=\"h/22\"").permits_open("h", 22));
    // permitopen does not override no-port-forwarding.
    assert!(!opts("no-port-forwarding,permitopen=\"h:1\"").permits_open("h", 1));
    assert!(opts("restrict,port-forwarding,permitopen=\"h:1\"").permits_open("h", 1));
}

#[test]
fn permitopen_rejects_bad_specs() {
    for bad in [
        "h", "h:", "h:0", "h:65536", "h:-1", "h:x", ":80", "[::1]", "[::1]x:1", "[::1:1", "::1:22",
    ] {
        assert!(
            matches!(
                err(&format!("permitopen=\"{bad}\"")),
                OptionError::Invalid { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn permitlisten_semantics() {
    let o =
        opts("permitlisten=\"localhost:8080\",permitlisten=\"[::1]:22000\",permitlisten=\"9000\"");
    assert_eq!(
        o.permit_listen()[2],
        PermitListen {
            host: "*".into(),
            port: PortSpec::Port(9000)
        }
    );
    assert!(o.permits_listen(Some("localhost"), 8080));
    assert!(
        o.permits_listen(Some("LOCALHOST"), 8080),
        "requested host is lowercased"
    );
    assert!(
        !o.permits_listen(Some("127.0.0.1"), 8080),
        "localhost is not 127.0.0.1"
    );
    assert!(!o.permits_listen(Some("localhost"), 8081));
    assert!(o.permits_listen(Some("::1"), 22000));
    assert!(
        o.permits_listen(Some("0.0.0.0"), 9000),
        "bare port: any address"
    );
    assert!(o.permits_listen(None, 9000));
    assert!(!o.permits_listen(None, 0), "port 0 needs a * port");

    let o = opts("permitlisten=\"*.example.com:*\"");
    assert!(o.permits_listen(Some("a.example.com"), 0));
    assert!(!o.permits_listen(Some("example.org"), 1));
    assert!(!opts("restrict,permitlisten=\"1\"").permits_listen(None, 1));
}

#[test]
fn tunnel_semantics() {
    let o = opts("tunnel=\"5\"");
    assert_eq!(o.tunnel(), Some(TunnelDevice::Unit(5)));
    assert_eq!(o.tunnel_unit(), Some(5));
    assert!(
        o.allows_tunnel(None),
        "a request for any unit gets the forced one"
    );
    assert!(o.allows_tunnel(Some(5)));
    assert!(!o.allows_tunnel(Some(6)));

    let any = opts("tunnel=\"ANY\"");
    assert_eq!(any.tunnel(), Some(TunnelDevice::Any));
    assert_eq!(any.tunnel_unit(), None);
    assert!(any.allows_tunnel(None));
    assert!(!any.allows_tunnel(Some(0)));

    assert_eq!(
        opts("tunnel=\"2147483645\"").tunnel_unit(),
        Some(0x7fff_fffd)
    );
    for bad in ["", "-1", "+1", "x", "2147483646", "99999999999"] {
        assert!(
            matches!(
                err(&format!("tunnel=\"{bad}\"")),
                OptionError::Invalid { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn from_patterns() {
    let o = opts("from=\"*.example.com,!bad.example.com,10.0.0.0/8,!10.6.6.6,192.0.2.?\"");
    assert!(o.from_allows(ip("203.0.113.1"), Some("host.example.com")));
    assert!(o.from_allows(ip("203.0.113.1"), Some("HOST.Example.COM")));
    assert!(!o.from_allows(ip("203.0.113.1"), Some("bad.example.com")));
    assert!(
        !o.from_allows(ip("10.1.1.1"), Some("bad.example.com")),
        "negated name vetoes"
    );
    assert!(o.from_allows(ip("10.1.1.1"), Some("whatever.org")));
    assert!(o.from_allows(ip("10.1.1.1"), None));
    assert!(
        !o.from_allows(ip("10.6.6.6"), Some("host.example.com")),
        "negated address vetoes"
    );
    assert!(o.from_allows(ip("192.0.2.7"), None));
    assert!(!o.from_allows(ip("192.0.2.17"), None));
    assert!(!o.from_allows(ip("203.0.113.1"), None));
    assert!(
        o.from_allows(ip("::ffff:10.2.3.4"), None),
        "v4-mapped matched as v4"
    );

    let v6 = opts("from=\"2001:db8::/32\"");
    assert!(v6.from_allows(ip("2001:db8::5"), None));
    assert!(!v6.from_allows(ip("2001:db9::5"), None));

    assert_eq!(err("from=\"a\",from=\"b\""), OptionError::Duplicate("from"));
    for bad in ["", "a,,b", "10.0.0.1/8", "10.0.0.0/33", "!"] {
        assert!(
            matches!(err(&format!("from=\"{bad}\"")), OptionError::Invalid { .. }),
            "{bad}"
        );
    }
}

#[test]
fn unknown_and_malformed_options_are_errors() {
    assert_eq!(err("frobnicate"), OptionError::Unknown("frobnicate".into()));
    assert_eq!(
        err("no-restrict"),
        OptionError::Unknown("no-restrict".into())
    );
    assert_eq!(err("ptyx"), OptionError::Unknown("ptyx".into()));
    assert_eq!(err("frob=\"1\""), OptionError::Unknown("frob".into()));
    assert_eq!(err("pty=\"1\""), OptionError::UnexpectedValue("pty".into()));
    assert_eq!(err("restrict,"), OptionError::TrailingComma);
    assert_eq!(err("restrict,,pty"), OptionError::Unknown(String::new()));
    assert_eq!(err("command=\"x\"y"), OptionError::Unknown("y".into()));
    assert_eq!(err(""), OptionError::Unknown(String::new()));
}
