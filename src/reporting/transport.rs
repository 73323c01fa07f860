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
        let client = crate::http_client::builder()
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

#[cfg(test)]
mod tests {
    //! The transport against a fake Sentry on 127.0.0.1 whose answers the test scripts.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use tokio::sync::watch;

    use super::*;

    /// What the fake answers, and what it saw.
    struct Fake {
        received: AtomicUsize,
        /// Requests currently held by `gate`.
        waiting: watch::Sender<usize>,
        /// While true, requests wait before being answered.
        gate: watch::Sender<bool>,
        answer: Mutex<(StatusCode, Vec<(&'static str, String)>)>,
    }

    impl Fake {
        async fn start() -> (Arc<Fake>, Dsn) {
            let fake = Arc::new(Fake {
                received: AtomicUsize::new(0),
                waiting: watch::Sender::new(0),
                gate: watch::Sender::new(false),
                answer: Mutex::new((StatusCode::OK, Vec::new())),
            });
            let state = fake.clone();
            let app = axum::Router::new().route(
                "/api/{project}/envelope/",
                post(move || {
                    let fake = state.clone();
                    async move {
                        fake.received.fetch_add(1, Ordering::SeqCst);
                        fake.waiting.send_modify(|n| *n += 1);
                        let mut gate = fake.gate.subscribe();
                        let _ = gate.wait_for(|&closed| !closed).await;
                        fake.waiting.send_modify(|n| *n -= 1);
                        let (status, headers) = fake.answer.lock().unwrap().clone();
                        let mut map = HeaderMap::new();
                        for (name, value) in headers {
                            map.insert(name, value.parse().unwrap());
                        }
                        (status, map, "{}")
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let dsn: Dsn = format!("http://public@{addr}/1").parse().unwrap();
            (fake, dsn)
        }

        fn received(&self) -> usize {
            self.received.load(Ordering::SeqCst)
        }

        fn answer(&self, status: StatusCode, headers: &[(&'static str, &str)]) {
            *self.answer.lock().unwrap() = (
                status,
                headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            );
        }
    }

    fn envelope() -> Envelope {
        Envelope::from(sentry::protocol::Event::default())
    }

    /// `flush` blocks its thread; the fake server runs on the test's runtime. Called on the
    /// transport itself: sentry's `impl Transport for Arc<T>` does not forward `flush`.
    async fn flush(transport: &Arc<HttpTransport>) -> bool {
        let t = transport.clone();
        tokio::task::spawn_blocking(move || HttpTransport::flush(&t, Duration::from_secs(30)))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_drops_envelopes_instead_of_blocking_or_growing() {
        let (fake, dsn) = Fake::start().await;
        let transport = Arc::new(HttpTransport::new(&dsn).unwrap());
        // Sentry hangs: the first envelope is in flight and held there.
        fake.gate.send_replace(true);
        transport.send_envelope(envelope());
        let mut waiting = fake.waiting.subscribe();
        tokio::time::timeout(Duration::from_secs(30), waiting.wait_for(|&n| n == 1))
            .await
            .expect("the first envelope reaches the fake Sentry")
            .unwrap();
        // Meanwhile an error storm: the queue takes QUEUE of them, the rest are dropped at once
        // (send_envelope never blocks its caller).
        for _ in 0..3 * QUEUE {
            transport.send_envelope(envelope());
        }
        fake.gate.send_replace(false);
        assert!(flush(&transport).await, "flushed once Sentry answers");
        assert_eq!(
            fake.received(),
            1 + QUEUE,
            "the one in flight and a full queue; the rest were dropped"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_429_with_retry_after_stops_sending_until_then() {
        let (fake, dsn) = Fake::start().await;
        let transport = Arc::new(HttpTransport::new(&dsn).unwrap());
        fake.answer(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "3600")]);
        transport.send_envelope(envelope());
        assert!(flush(&transport).await);
        assert_eq!(fake.received(), 1);
        // For the next hour, envelopes are dropped without a request.
        fake.answer(StatusCode::OK, &[]);
        for _ in 0..10 {
            transport.send_envelope(envelope());
            assert!(flush(&transport).await);
        }
        assert_eq!(fake.received(), 1, "nothing is sent during Retry-After");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sending_resumes_once_retry_after_has_passed() {
        let (fake, dsn) = Fake::start().await;
        let transport = Arc::new(HttpTransport::new(&dsn).unwrap());
        fake.answer(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "1")]);
        let before_429 = Instant::now();
        transport.send_envelope(envelope());
        assert!(flush(&transport).await);
        fake.answer(StatusCode::OK, &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while fake.received() == 1 {
            assert!(Instant::now() < deadline, "sending never resumed");
            transport.send_envelope(envelope());
            assert!(flush(&transport).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A lower bound only: not before the second Sentry asked for.
        assert!(before_429.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_429_without_headers_pauses_and_rate_limit_headers_are_honoured() {
        // A bare 429: Sentry's default pause (60 s), so the next envelopes are dropped.
        let (fake, dsn) = Fake::start().await;
        let transport = Arc::new(HttpTransport::new(&dsn).unwrap());
        fake.answer(StatusCode::TOO_MANY_REQUESTS, &[]);
        transport.send_envelope(envelope());
        assert!(flush(&transport).await);
        fake.answer(StatusCode::OK, &[]);
        for _ in 0..5 {
            transport.send_envelope(envelope());
        }
        assert!(flush(&transport).await);
        assert_eq!(fake.received(), 1);

        // X-Sentry-Rate-Limits for the error category, even on a 200, stops errors too.
        let (fake, dsn) = Fake::start().await;
        let transport = Arc::new(HttpTransport::new(&dsn).unwrap());
        fake.answer(StatusCode::OK, &[("x-sentry-rate-limits", "60:error:key")]);
        transport.send_envelope(envelope());
        assert!(flush(&transport).await);
        for _ in 0..5 {
            transport.send_envelope(envelope());
        }
        assert!(flush(&transport).await);
        assert_eq!(fake.received(), 1);
    }
}
