//! sshvpn-proto: the SSH-2 protocol as sshvpn speaks it, sans-IO.
//!
//! Client and server roles of the transport (RFC 4253), user authentication (RFC 4252) and
//! connection protocol (RFC 4254), with the OpenSSH extensions sshvpn relies on. The crate
//! owns no socket, spawns nothing and never reads the clock: [`Connection`] takes bytes and
//! `now`, and gives back bytes, [`Event`]s and the next deadline. See [`conn`] for the
//! calling contract.
#![forbid(unsafe_code)]

pub mod auth;
pub mod conn;
pub mod connection;
pub mod control;
pub mod error;
pub mod event;
pub mod keys;
pub mod rng;
pub mod transport;
pub mod wire;

pub use auth::client::Identity;
pub use conn::{ClientConfig, Connection, ServerConfig, Stats};
pub use connection::{ChannelId, ChannelKind, GlobalRequest, OpenFailure, RequestId, TunMode};
pub use error::Error;
pub use event::Event;
/// The key-file crate, re-exported so the daemon and tests use exactly the same version.
pub use ssh_key;
pub use transport::Role;
pub use transport::hostkey::{Ed25519Key, HostKey, HostKeyAlg, PublicKey};
pub use wire::DisconnectReason;

#[cfg(test)]
mod tests;
