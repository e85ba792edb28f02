//! The one source of randomness in `proto`: a ChaCha20 CSPRNG seeded once from the OS (or from a
//! fixed seed in tests), so the protocol code itself never makes a fallible system call.

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Cryptographically secure random bytes for cookies, padding and ephemeral keys.
pub struct Random(ChaCha20Rng);

impl std::fmt::Debug for Random {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Random")
    }
}

impl Random {
    /// Seeded from the operating system.
    pub fn from_os() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        Ok(Self::from_seed(seed))
    }

    /// Deterministic, for tests and fuzzing only.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill_bytes(buf);
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        self.fill(&mut out);
        out
    }
}
