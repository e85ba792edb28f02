//! In-memory client/server pairs with a virtual clock: whole-connection tests without sockets.

mod chunks;
mod hostile;
mod pair;
mod util;
mod windows;
