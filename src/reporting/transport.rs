//! Sends Sentry envelopes with the reqwest 0.12 + rustls client stagecast already uses for Meta
//! (the sentry crate's own transports would add a second HTTP/TLS stack, see Cargo.toml).
//!
//! Envelopes go through a bounded queue to one background thread with its own small runtime:
//! `send_envelope` is called from jobs, panic hooks and threads outside any runtime, and must
//! never block or fail them. When the queue is full (Sentry slow or unreachable) envelopes are
//! dropped. Bodies are sent uncompressed, one POST per envelope, honouring Sentry's rate limits.

use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use sentry::transports::{RateLimiter, RateLimitingCategory};
use sentry::types::Dsn;
use sentry::{Envelope, Transport};
use tokio::sync::mpsc;
use tracing::warn;

use super::ReportingError;

/// Envelopes waiting to be sent; more are dropped (an error storm must not grow memory).
const QUEUE: usize = 64;
/// One envelope POST; Sentry answers in milliseconds when healthy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

enum Command {
    Envelope(Box<Envelope>),
    /// Answered once every envelope queued before it has been sent (or given up on).
    Flush(std_mpsc::SyncSender<()>),
}

pub struct HttpTransport {
    /// `None` after shutdown, which ends the sending thread.
    queue: Mutex<Option<mpsc::Sender<Command>>>,
}

impl HttpTransport {
    pub fn new(dsn: &Dsn) -> Result<Self, ReportingError> {
        let user_agent = concat!("stagecast/", env!("CARGO_PKG_VERSION"));
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(user_agent)
            .build()
            .map_err(|e| ReportingError::Transport(e.to_string()))?;
        let url = dsn.envelope_api_url().to_string();
        let auth = HeaderValue::from_str(&dsn.to_auth(Some(user_agent)).to_string())
            .map_err(|e| ReportingError::Transport(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ReportingError::Transport(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sentry-transport".into())
            .spawn(move || runtime.block_on(send_loop(client, url, auth, rx)))
            .map_err(|e| ReportingError::Transport(e.to_string()))?;
        Ok(Self {
            queue: Mutex::new(Some(tx)),
        })
    }

    fn sender(&self) -> Option<mpsc::Sender<Command>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Transport for HttpTransport {
    fn send_envelope(&self, envelope: Envelope) {
        if let Some(tx) = self.sender() {
            // Full or closed: drop it rather than block the caller.
            let _ = tx.try_send(Command::Envelope(Box::new(envelope)));
        }
    }

    fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = self.sender() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = std_mpsc::sync_channel(1);
        let mut command = Command::Flush(done_tx);
        // Poll instead of `blocking_send`, which panics when called on a runtime thread.
        loop {
            match tx.try_send(command) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(c)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    command = c;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        // Dropping the last sender ends the thread once the queue is empty.
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        flushed
    }
}

async fn send_loop(
    client: reqwest::Client,
    url: String,
    auth: HeaderValue,
    mut rx: mpsc::Receiver<Command>,
) {
    let mut limits = RateLimiter::new();
    let mut failing = false;
    while let Some(command) = rx.recv().await {
        let envelope = match command {
            Command::Flush(done) => {
                let _ = done.send(());
                continue;
            }
            Command::Envelope(envelope) => *envelope,
        };
        // Only events are sent from here (no sessions, transactions or attachments).
        if limits.is_disabled(RateLimitingCategory::Error).is_some() {
            continue;
        }
        let mut body = Vec::new();
        if envelope.to_writer(&mut body).is_err() {
            continue;
        }
        let sent = client
            .post(&url)
            .header("X-Sentry-Auth", auth.clone())
            .header(CONTENT_TYPE, "application/x-sentry-envelope")
            .body(body)
            .send()
            .await;
        // Only a change of state is logged, at WARN: an ERROR would itself become an event.
        match sent {
            Ok(response) => {
                let headers = response.headers();
                if let Some(h) = headers
                    .get("x-sentry-rate-limits")
                    .and_then(|h| h.to_str().ok())
                {
                    limits.update_from_sentry_header(h);
                } else if let Some(h) = headers.get(RETRY_AFTER).and_then(|h| h.to_str().ok()) {
                    limits.update_from_retry_after(h);
                } else if response.status().as_u16() == 429 {
                    limits.update_from_429();
                }
                let ok = response.status().is_success();
                if !ok && !failing {
                    warn!(
                        status = response.status().as_u16(),
                        "Sentry rejected an event"
                    );
                }
                failing = !ok;
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "could not send an event to Sentry");
                }
                failing = true;
            }
        }
    }
}
