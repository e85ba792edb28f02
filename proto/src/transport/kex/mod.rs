//! Algorithm negotiation (RFC 4253 §7.1) and the pseudo-algorithms that ride in KEXINIT:
//! strict key exchange (OpenSSH PROTOCOL §1.10, the Terrapin fix) and ext-info (RFC 8308 §2.1).

pub mod curve25519;
pub mod hash;
pub mod hybrid;
pub mod method;

use crate::transport::cipher::CipherAlg;
use crate::transport::hostkey::HostKeyAlg;
use crate::wire::{MsgType, NameList, Reader, WireError, Writer};

pub const KEX_STRICT_CLIENT: &str = "kex-strict-c-v00@openssh.com";
pub const KEX_STRICT_SERVER: &str = "kex-strict-s-v00@openssh.com";
pub const EXT_INFO_CLIENT: &str = "ext-info-c";
pub const EXT_INFO_SERVER: &str = "ext-info-s";

/// Key exchange methods this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KexAlg {
    /// ML-KEM-768 with x25519 (draft-ietf-sshm-mlkem-hybrid-kex), OpenSSH 9.9's default.
    MlKem768X25519Sha256,
    /// Streamlined NTRU Prime with x25519 (draft-josefsson-ntruprime-ssh).
    Sntrup761X25519Sha512,
    /// The same method under the name OpenSSH 9.0 made its default.
    Sntrup761X25519Sha512OpenSsh,
    /// RFC 8731.
    Curve25519Sha256,
    /// The pre-RFC name of the same method.
    Curve25519Sha256Libssh,
}

impl KexAlg {
    /// In order of preference: post-quantum hybrids first, so a recorded session cannot be
    /// decrypted later by a quantum computer.
    pub const ALL: [KexAlg; 5] = [
        KexAlg::MlKem768X25519Sha256,
        KexAlg::Sntrup761X25519Sha512,
        KexAlg::Sntrup761X25519Sha512OpenSsh,
        KexAlg::Curve25519Sha256,
        KexAlg::Curve25519Sha256Libssh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KexAlg::MlKem768X25519Sha256 => "mlkem768x25519-sha256",
            KexAlg::Sntrup761X25519Sha512 => "sntrup761x25519-sha512",
            KexAlg::Sntrup761X25519Sha512OpenSsh => "sntrup761x25519-sha512@openssh.com",
            KexAlg::Curve25519Sha256 => "curve25519-sha256",
            KexAlg::Curve25519Sha256Libssh => "curve25519-sha256@libssh.org",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// MACs are never used: every cipher we offer is an AEAD. The list must still be non-empty.
const MAC_ALGS: [&str; 1] = ["hmac-sha2-256-etm@openssh.com"];
const COMPRESSION: [&str; 1] = ["none"];

/// The algorithm preferences one side puts in its KEXINIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    pub kex: Vec<KexAlg>,
    pub ciphers: Vec<CipherAlg>,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            kex: KexAlg::ALL.to_vec(),
            ciphers: CipherAlg::ALL.to_vec(),
        }
    }
}

/// A parsed SSH_MSG_KEXINIT (RFC 4253 §7.1), borrowing its name-lists from the payload.
#[derive(Debug, Clone)]
pub struct KexInit<'a> {
    pub kex: NameList<'a>,
    pub host_key: NameList<'a>,
    pub cipher_c2s: NameList<'a>,
    pub cipher_s2c: NameList<'a>,
    pub mac_c2s: NameList<'a>,
    pub mac_s2c: NameList<'a>,
    pub comp_c2s: NameList<'a>,
    pub comp_s2c: NameList<'a>,
    pub first_kex_packet_follows: bool,
}

impl<'a> KexInit<'a> {
    /// Parses a KEXINIT payload, message number included.
    pub fn parse(payload: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        if r.u8()? != MsgType::KEXINIT.0 {
            return Err(WireError::Invalid {
                field: "KEXINIT",
                why: "wrong message number",
            });
        }
        r.take(16)?; // cookie
        let msg = KexInit {
            kex: r.name_list("kex_algorithms")?,
            host_key: r.name_list("server_host_key_algorithms")?,
            cipher_c2s: r.name_list("encryption_algorithms_client_to_server")?,
            cipher_s2c: r.name_list("encryption_algorithms_server_to_client")?,
            mac_c2s: r.name_list("mac_algorithms_client_to_server")?,
            mac_s2c: r.name_list("mac_algorithms_server_to_client")?,
            comp_c2s: r.name_list("compression_algorithms_client_to_server")?,
            comp_s2c: r.name_list("compression_algorithms_server_to_client")?,
            first_kex_packet_follows: {
                r.name_list("languages_client_to_server")?;
                r.name_list("languages_server_to_client")?;
                r.bool()?
            },
        };
        r.u32()?; // reserved
        Ok(msg)
    }
}

/// Builds our KEXINIT payload. `initial` adds the pseudo-algorithms that only the first key
/// exchange may carry (strict kex, ext-info).
pub fn build_kexinit(
    prefs: &Preferences,
    is_server: bool,
    initial: bool,
    cookie: [u8; 16],
) -> Vec<u8> {
    let mut kex: Vec<&str> = prefs.kex.iter().map(|k| k.name()).collect();
    if initial {
        if is_server {
            kex.extend([EXT_INFO_SERVER, KEX_STRICT_SERVER]);
        } else {
            kex.extend([EXT_INFO_CLIENT, KEX_STRICT_CLIENT]);
        }
    }
    let ciphers: Vec<&str> = prefs.ciphers.iter().map(|c| c.name()).collect();
    let mut out = Vec::with_capacity(512);
    let mut w = Writer::new(&mut out);
    w.u8(MsgType::KEXINIT.0)
        .raw(&cookie)
        .name_list(&kex)
        .name_list(&host_key_names(is_server));
    w.name_list(&ciphers).name_list(&ciphers);
    w.name_list(&MAC_ALGS).name_list(&MAC_ALGS);
    w.name_list(&COMPRESSION).name_list(&COMPRESSION);
    w.name_list::<&str>(&[])
        .name_list::<&str>(&[])
        .bool(false)
        .u32(0);
    out
}

/// Host key algorithms we offer, by role (`HostKeyAlg::CLIENT`, `HostKeyAlg::SERVER`).
fn host_key_names(is_server: bool) -> Vec<&'static str> {
    let algs: &[HostKeyAlg] = if is_server {
        &HostKeyAlg::SERVER
    } else {
        &HostKeyAlg::CLIENT
    };
    algs.iter().map(|a| a.name()).collect()
}

/// What the two KEXINITs agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub kex: KexAlg,
    pub host_key: HostKeyAlg,
    pub cipher_c2s: CipherAlg,
    pub cipher_s2c: CipherAlg,
    /// Both sides offered strict kex (only meaningful in the initial exchange).
    pub strict: bool,
    /// The peer would accept SSH_MSG_EXT_INFO from us (RFC 8308 §2.1).
    pub peer_wants_ext_info: bool,
    /// The peer's guessed first kex packet is wrong and must be ignored (RFC 4253 §7).
    pub ignore_guessed_packet: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no common {what} algorithm: we offer [{ours}], the peer offers [{theirs}]")]
pub struct NoCommonAlgorithm {
    pub what: &'static str,
    pub ours: String,
    pub theirs: String,
}

/// RFC 4253 §7.1: "the chosen algorithm MUST be the first algorithm on the client's name-list
/// that is also on the server's name-list."
fn choose_name<'a>(client: NameList<'a>, server: NameList<'_>) -> Option<&'a str> {
    client.iter().find(|c| server.contains(c))
}

fn choose_cipher(client: NameList<'_>, server: NameList<'_>) -> Option<CipherAlg> {
    client
        .iter()
        .filter_map(CipherAlg::from_name)
        .find(|c| server.contains(c.name()))
}

/// Negotiates from our preferences and the peer's KEXINIT. Only algorithms we implement are
/// ever chosen, whichever side is the client.
pub fn negotiate(
    is_server: bool,
    ours: &KexInit<'_>,
    theirs: &KexInit<'_>,
) -> Result<Negotiated, NoCommonAlgorithm> {
    let (client, server) = if is_server {
        (theirs, ours)
    } else {
        (ours, theirs)
    };
    let fail = |what, mine: NameList<'_>, peer: NameList<'_>| NoCommonAlgorithm {
        what,
        ours: mine.0.to_owned(),
        theirs: peer.0.to_owned(),
    };
    // Only names we implement can be chosen: this also keeps the pseudo-algorithms
    // (ext-info-*, kex-strict-*) out of the choice even if both sides list one.
    let kex = client
        .kex
        .iter()
        .filter_map(KexAlg::from_name)
        .find(|k| server.kex.contains(k.name()))
        .ok_or_else(|| fail("key exchange", ours.kex, theirs.kex))?;
    let host_key = client
        .host_key
        .iter()
        .filter_map(HostKeyAlg::from_name)
        .find(|a| server.host_key.contains(a.name()))
        .ok_or_else(|| fail("host key", ours.host_key, theirs.host_key))?;
    let cipher_c2s = choose_cipher(client.cipher_c2s, server.cipher_c2s).ok_or_else(|| {
        fail(
            "cipher (client to server)",
            ours.cipher_c2s,
            theirs.cipher_c2s,
        )
    })?;
    let cipher_s2c = choose_cipher(client.cipher_s2c, server.cipher_s2c).ok_or_else(|| {
        fail(
            "cipher (server to client)",
            ours.cipher_s2c,
            theirs.cipher_s2c,
        )
    })?;
    choose_name(client.comp_c2s, server.comp_c2s).ok_or_else(|| {
        fail(
            "compression (client to server)",
            ours.comp_c2s,
            theirs.comp_c2s,
        )
    })?;
    choose_name(client.comp_s2c, server.comp_s2c).ok_or_else(|| {
        fail(
            "compression (server to client)",
            ours.comp_s2c,
            theirs.comp_s2c,
        )
    })?;
    let strict = client.kex.contains(KEX_STRICT_CLIENT) && server.kex.contains(KEX_STRICT_SERVER);
    let peer_wants_ext_info = if is_server {
        theirs.kex.contains(EXT_INFO_CLIENT)
    } else {
        theirs.kex.contains(EXT_INFO_SERVER)
    };
    // RFC 4253 §7: a guess is wrong if the preferred kex or host key algorithm differs.
    let ignore_guessed_packet = theirs.first_kex_packet_follows
        && (client.kex.iter().next() != server.kex.iter().next()
            || client.host_key.iter().next() != server.host_key.iter().next());
    Ok(Negotiated {
        kex,
        host_key,
        cipher_c2s,
        cipher_s2c,
        strict,
        peer_wants_ext_info,
        ignore_guessed_packet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kexinit_with(kex: &[&str], ciphers: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.u8(20)
            .raw(&[0; 16])
            .name_list(kex)
            .name_list(&["ssh-ed25519"]);
        w.name_list(ciphers)
            .name_list(ciphers)
            .name_list(&["hmac-sha2-256"])
            .name_list(&["hmac-sha2-256"]);
        w.name_list(&["none"])
            .name_list(&["none"])
            .name_list::<&str>(&[])
            .name_list::<&str>(&[])
            .bool(false)
            .u32(0);
        out
    }

    #[test]
    fn client_preference_order_wins() {
        let prefs = Preferences::default();
        let ours = build_kexinit(&prefs, true, true, [0; 16]);
        let theirs = kexinit_with(
            &[
                "curve25519-sha256@libssh.org",
                "curve25519-sha256",
                KEX_STRICT_CLIENT,
            ],
            &["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"],
        );
        let n = negotiate(
            true,
            &KexInit::parse(&ours).unwrap(),
            &KexInit::parse(&theirs).unwrap(),
        )
        .unwrap();
        assert_eq!(n.kex, KexAlg::Curve25519Sha256Libssh);
        assert_eq!(n.cipher_c2s, CipherAlg::Aes128Gcm);
        assert!(n.strict);
        assert!(!n.peer_wants_ext_info);
    }

    #[test]
    fn nothing_in_common_names_both_lists() {
        let prefs = Preferences::default();
        let ours = build_kexinit(&prefs, false, true, [0; 16]);
        let theirs = kexinit_with(&["diffie-hellman-group14-sha1"], &["aes128-ctr"]);
        let err = negotiate(
            false,
            &KexInit::parse(&ours).unwrap(),
            &KexInit::parse(&theirs).unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.what, "key exchange");
        assert!(err.theirs.contains("diffie-hellman-group14-sha1"));
        assert!(err.to_string().contains("no common key exchange algorithm"));
    }

    #[test]
    fn pseudo_algorithms_are_never_chosen() {
        let prefs = Preferences::default();
        let ours = build_kexinit(&prefs, false, true, [0; 16]);
        let theirs = kexinit_with(
            &["ext-info-c", KEX_STRICT_SERVER],
            &["aes128-gcm@openssh.com"],
        );
        assert!(
            negotiate(
                false,
                &KexInit::parse(&ours).unwrap(),
                &KexInit::parse(&theirs).unwrap()
            )
            .is_err()
        );
    }
}
