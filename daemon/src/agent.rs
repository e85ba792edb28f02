//! A minimal ssh-agent client (draft-miller-ssh-agent §4.4, §4.5): list identities and ask
//! for a signature. Used for links without an `identity` file; the key never leaves the agent.

use std::path::Path;

use sshvpn_proto::PublicKey;
use sshvpn_proto::wire::{Reader, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
/// Largest agent reply we read.
const MAX_REPLY: usize = 256 * 1024;

async fn call(socket: &Path, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot reach ssh-agent at {}: {e}", socket.display()))?;
    let mut framed = Vec::with_capacity(4 + request.len());
    Writer::new(&mut framed).string(request);
    s.write_all(&framed)
        .await
        .map_err(|e| format!("ssh-agent: {e}"))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .await
        .map_err(|e| format!("ssh-agent: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_REPLY {
        return Err(format!("ssh-agent: reply of {len} bytes refused"));
    }
    let mut reply = vec![0u8; len];
    s.read_exact(&mut reply)
        .await
        .map_err(|e| format!("ssh-agent: {e}"))?;
    Ok(reply)
}

/// The agent's ssh-ed25519 keys (others are skipped: sshvpn signs with ed25519 only).
pub async fn list_ed25519(socket: &Path) -> Result<Vec<PublicKey>, String> {
    let reply = call(socket, &[REQUEST_IDENTITIES]).await?;
    let mut r = Reader::new(&reply);
    if r.u8().map_err(|e| e.to_string())? != IDENTITIES_ANSWER {
        return Err("ssh-agent refused to list its keys".into());
    }
    let n = r.u32().map_err(|e| e.to_string())?;
    let mut keys = Vec::new();
    for _ in 0..n {
        let blob = r.string().map_err(|e| e.to_string())?;
        r.string().map_err(|e| e.to_string())?; // comment
        if let Ok(key) = PublicKey::from_blob(blob) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// An "ssh-ed25519" signature blob over `data` by `key`.
pub async fn sign(socket: &Path, key: &PublicKey, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut req = Vec::with_capacity(data.len() + 64);
    Writer::new(&mut req)
        .u8(SIGN_REQUEST)
        .string(key.blob())
        .string(data)
        .u32(0);
    let reply = call(socket, &req).await?;
    let mut r = Reader::new(&reply);
    if r.u8().map_err(|e| e.to_string())? != SIGN_RESPONSE {
        return Err(format!(
            "ssh-agent declined to sign with {}",
            key.fingerprint()
        ));
    }
    let sig = r.string().map_err(|e| e.to_string())?.to_vec();
    // Check it before sending it: a wrong signature would only cost an auth attempt, but an
    // agent answering with garbage deserves a clear message.
    key.verify_blob(data, &sig)
        .map_err(|e| format!("ssh-agent returned a bad signature: {e}"))?;
    Ok(sig)
}
