//! In-memory client/server pairs with a virtual clock: whole-connection tests without sockets.

mod hostile;
mod pair;
mod util;
