//! User authentication (RFC 4252): the client's and the server's halves, "publickey" with
//! ssh-ed25519 only (RFC 4252 §7, RFC 8709).
//!
//! Neither half decides trust: the client's host key and the server's authorized_keys are the
//! application's business, asked for through events. The server asks only about a key whose
//! signature it has already verified, or about a key being merely queried (answered with
//! PK_OK, which grants nothing).

pub mod client;
pub mod server;

use crate::wire::{MsgType, Writer};

pub const SERVICE_USERAUTH: &str = "ssh-userauth";
pub const SERVICE_CONNECTION: &str = "ssh-connection";
pub const METHOD_PUBLICKEY: &str = "publickey";
pub const METHOD_NONE: &str = "none";

/// RFC 4252 §7: the data a publickey signature covers.
pub fn signed_data(session_id: &[u8], user: &str, alg: &str, key_blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + key_blob.len());
    let mut w = Writer::new(&mut out);
    w.string(session_id)
        .u8(MsgType::USERAUTH_REQUEST.0)
        .string(user)
        .string(SERVICE_CONNECTION);
    w.string(METHOD_PUBLICKEY)
        .bool(true)
        .string(alg)
        .string(key_blob);
    out
}
