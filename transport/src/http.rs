//! HTTP listeners bounded for strangers: every HTTP surface of the commons (the member
//! API, `/metrics`, the member page) is served through [`serve`], which caps the
//! connections held at once, closes a connection whose request head is not in within
//! [`HEAD_READ_MS`] (a slow or silent client, or an idle keep-alive), and bounds the
//! bytes a head may take. A body is read by the handler that wants it, after it has
//! checked the head (see the member API's authentication), under its own deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once by one listener; past it, a new connection waits in the
/// kernel's backlog until one closes.
pub const CONNECTIONS_MAX: usize = 512;
/// How long a connection may take to send a request head, counted from when the
/// connection is ready for one (so an idle keep-alive connection goes after it too).
pub const HEAD_READ_MS: u64 = 5_000;
/// The bytes a connection buffers for a request head.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Binds `listen` and serves `app` on it from a task; the address bound and the task
/// (aborting it stops the listener). `what` names the surface in errors and logs.
pub async fn serve(
    listen: SocketAddr,
    app: axum::Router,
    what: &'static str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = bind(listen, what).await?;
    let addr = listener.local_addr()?;
    Ok((addr, spawn(listener, app, what)))
}

/// Binds `listen` for [`spawn`], for a caller that needs the address first.
pub async fn bind(listen: SocketAddr, what: &'static str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen for {what} on {listen}: {e}")))
}

/// Serves `app` on `listener` from a task.
pub fn spawn(listener: TcpListener, app: axum::Router, what: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(accept_loop(listener, app, what))
}

/// Which connection a request came on: every request carries it as an extension, so a
/// handler can keep per-connection state (a rate limit) without trusting anything the
/// client says. Numbered from 0 per listener, never reused while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

async fn accept_loop(listener: TcpListener, app: axum::Router, what: &'static str) {
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut next_id = 0u64;
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: the listener stays, and tries again shortly.
                tracing::warn!(error = %e, surface = what, "could not accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectionId(next_id))));
        tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(HEAD_READ_MS))
                .max_buf_size(HEAD_BYTES_MAX)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, surface = what, "an HTTP connection ended with an error");
            }
        });
    }
}
