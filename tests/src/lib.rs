//! sshvpn-tests: end-to-end and interop tests, and the harness they share.
// test support: failing loudly is the point
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub mod daemon;
pub mod harness;
pub mod netns;
pub mod peers;
