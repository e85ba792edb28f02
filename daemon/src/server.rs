//! Accepting SSH clients: one driver per connection, serving forwards. The daemon's full
//! server mode (configuration, limits, per-key permissions) grows from here.

use std::sync::Arc;
use std::time::Instant;

use sshvpn_proto::{Connection, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::driver;
use crate::forward::serve_incoming;
use crate::policy::ServerPolicy;

/// Unauthenticated connections allowed at once; more are closed on accept (sshd's MaxStartups).
pub const MAX_STARTUPS: usize = 64;

/// Accepts connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: ServerConfig, policy: ServerPolicy) {
    let startups = Arc::new(Semaphore::new(MAX_STARTUPS));
    loop {
        let Ok((socket, peer)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = startups.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many unauthenticated connections; dropping");
            continue;
        };
        let config = config.clone();
        let policy = policy.clone();
        tokio::spawn(async move {
            let conn = match Connection::server(config, Instant::now()) {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::error!(%e, "cannot start connection");
                    return;
                }
            };
            let (handle, incoming, task) = driver::spawn(socket, conn, Box::new(policy));
            let auth = handle.clone();
            tokio::spawn(async move {
                let _ = auth.authenticated().await;
                drop(permit);
            });
            let serve = tokio::spawn(serve_incoming(handle, incoming));
            let result = task.await;
            serve.abort();
            tracing::info!(%peer, ?result, "client connection ended");
        });
    }
}
