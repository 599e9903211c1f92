//! `POST /v1/notify`: registries tell the operator about pushes. A bearer
//! token (compared in constant time) guards it, bodies are capped, and each
//! repository is looked at no more than once a second: a burst of pushes
//! becomes one reconcile now and, if more came, one at the end of the
//! second. Only the leader acts; a follower answers 503 so that the
//! sender retries (and, behind a Service, reaches the leader).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use tokio::sync::mpsc;

use super::metrics::Metrics;
use super::notify::{self, Notice};

const MAX_BODY: usize = 1 << 20;
/// One look per repository per this long.
const PACE: Duration = Duration::from_secs(1);
const MAX_PACED: usize = 4096;

pub(crate) struct Webhook {
    token: Vec<u8>,
    tx: mpsc::Sender<Notice>,
    pub(crate) leading: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    paced: Mutex<HashMap<Notice, (Instant, bool)>>,
}

impl Webhook {
    pub(crate) fn new(token: Vec<u8>, tx: mpsc::Sender<Notice>, metrics: Arc<Metrics>) -> Arc<Webhook> {
        Arc::new(Webhook { token, tx, leading: Arc::default(), metrics, paced: Mutex::default() })
    }

    /// Forward `notice` now, or once its repository's second is over.
    fn pace(self: &Arc<Self>, notice: Notice) {
        let now = Instant::now();
        let wait = {
            let mut paced = self.paced.lock().expect("pace poisoned");
            if paced.len() > MAX_PACED {
                paced.retain(|_, (last, pending)| *pending || now.duration_since(*last) < PACE);
            }
            match paced.get_mut(&notice) {
                Some((_, true)) => return, // already scheduled: it will cover this one
                Some((last, pending)) if now.duration_since(*last) < PACE => {
                    *pending = true;
                    PACE - now.duration_since(*last)
                }
                _ => {
                    paced.insert(notice.clone(), (now, false));
                    Duration::ZERO
                }
            }
        };
        if wait.is_zero() {
            let _ = self.tx.try_send(notice);
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            me.paced.lock().expect("pace poisoned").insert(notice.clone(), (Instant::now(), false));
            let _ = me.tx.try_send(notice);
        });
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(given.as_bytes(), &self.token)
    }
}

/// Equal, in a time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn serve(addr: SocketAddr, hook: Arc<Webhook>) -> std::io::Result<()> {
    let app =
        Router::new().route("/v1/notify", post(notify_handler)).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(hook);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving POST /v1/notify");
    axum::serve(listener, app).await
}

async fn notify_handler(State(hook): State<Arc<Webhook>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let count = |format: &str, result: &str| hook.metrics.webhook_event(format, result);
    if !hook.authorized(&headers) {
        count("unknown", "unauthorized");
        return (StatusCode::UNAUTHORIZED, "a valid bearer token is required\n".into());
    }
    if !hook.leading.load(Ordering::Relaxed) {
        count("unknown", "not_leader");
        return (StatusCode::SERVICE_UNAVAILABLE, "not the leader; retry\n".into());
    }
    match notify::parse(&body) {
        Ok((format, notices)) => {
            count(format.as_str(), "accepted");
            let n = notices.len();
            for notice in notices {
                hook.pace(notice);
            }
            (StatusCode::ACCEPTED, format!("{{\"repositories\":{n}}}\n"))
        }
        Err(e) => {
            count("unknown", "malformed");
            (StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for bad in [&b"secreT"[..], b"secre", b"secrets", b""] {
            assert!(!constant_time_eq(bad, b"secret"), "{bad:?}");
        }
        assert!(!constant_time_eq(b"", b""), "an empty token never matches");
    }

    #[tokio::test]
    async fn a_burst_becomes_one_look_now_and_one_at_the_end_of_the_second() {
        let (tx, mut rx) = mpsc::channel(16);
        let hook = Webhook::new(b"t".to_vec(), tx, Arc::new(Metrics::default()));
        let n = Notice { registry: Some("r".into()), repository: "a".into() };
        let other = Notice { registry: Some("r".into()), repository: "b".into() };
        for _ in 0..10 {
            hook.pace(n.clone());
        }
        hook.pace(other.clone());
        assert_eq!(rx.recv().await.unwrap(), n);
        assert_eq!(rx.recv().await.unwrap(), other, "another repository is not held back");
        assert!(rx.try_recv().is_err(), "the rest of the burst waits");
        let late = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap();
        assert_eq!(late, n, "one more look once the second is over");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(rx.try_recv().is_err(), "and no more");
    }
}
