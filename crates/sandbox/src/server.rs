//! The HTTP server under every sandbox: a router on an ephemeral port of 127.0.0.1, stopped
//! when the last handle on its sandbox is dropped.

use std::net::{Ipv4Addr, SocketAddr};

use axum::serve::ListenerExt;
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Whether accepted connections get TCP_NODELAY.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nagle {
    Default,
    /// Small request/response pairs on keep-alive connections: without TCP_NODELAY, Nagle and
    /// delayed ACKs can add tens of milliseconds per request and ruin the benchmark.
    Off,
}

impl Server {
    /// Serve `app`; `name` says which sandbox's server stopped, if it stops on an error.
    pub(crate) async fn start(
        app: Router,
        nagle: Nagle,
        name: &'static str,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let signal = cancel.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let served = if nagle == Nagle::Off {
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
            } else {
                axum::serve(listener, app)
                    .with_graceful_shutdown(signal)
                    .await
            };
            if let Err(err) = served {
                tracing::warn!(error = %err, "{name} sandbox server stopped");
            }
        });
        Ok(Self { addr, cancel, task })
    }

    pub(crate) fn stop(&self) {
        // Cancelling lets axum tell open keep-alive connections to close; aborting stops the
        // accept loop (and frees the port) without waiting for in-flight requests such as a
        // Timeout fault.
        self.cancel.cancel();
        self.task.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
