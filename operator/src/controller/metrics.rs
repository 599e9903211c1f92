//! Prometheus metrics: reconciles (count, duration, errors by reason) and
//! registry traffic (requests by kind and status, blob bytes).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::oci::client::{Observe, RequestKind};
use crate::status::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    method: String,
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookEvent {
    format: String,
    result: String,
}

pub(crate) struct Metrics {
    registry: Registry,
    webhook: Family<WebhookEvent, Counter>,
    reconciles: Family<Outcome, Counter>,
    failing: Gauge,
    duration: Histogram,
    requests: Family<Request, Counter>,
    blob_bytes: Counter,
    served: Family<Source, Counter>,
    events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ocisync");
        let reconciles = Family::<Outcome, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let requests = Family::<Request, Counter>::default();
        let blob_bytes = Counter::default();
        let failing = Gauge::default();
        let webhook = Family::<WebhookEvent, Counter>::default();
        registry.register("webhook_events", "Registry notifications by format and result", webhook.clone());
        registry.register("reconciles", "Reconciles by result and reason", reconciles.clone());
        registry.register("reconcile_duration_seconds", "Time one reconcile took", duration.clone());
        registry.register("registry_requests", "Registry requests by method, kind and HTTP status", requests.clone());
        registry.register("blob_bytes", "Blob bytes downloaded from registries", blob_bytes.clone());
        registry.register("artifacts_failing", "Artifacts whose last sync failed", failing.clone());
        let served = Family::<Source, Counter>::default();
        registry.register(
            "synced_layer_bytes",
            "Layer bytes of published syncs by where they came from (origin or mirror)",
            served.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "normal_events_dropped",
            "Normal Events not sent: over the operator's budget for them",
            events_dropped.clone(),
        );
        Metrics { registry, webhook, reconciles, failing, duration, requests, blob_bytes, served, events_dropped }
    }
}

impl Metrics {
    /// Both labels come from closed sets (the formats `notify` knows, and
    /// the handler's results).
    pub(crate) fn webhook_event(&self, format: &str, result: &str) {
        self.webhook.get_or_create(&WebhookEvent { format: format.into(), result: result.into() }).inc();
    }

    /// `reason` is `Synced` for a success, the condition reason otherwise.
    pub(crate) fn reconciled(&self, reason: Reason, took: Duration) {
        let result = if reason == Reason::Synced { "success" } else { "error" }.to_string();
        self.reconciles.get_or_create(&Outcome { result, reason: reason.metric_label().to_string() }).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Layer bytes a published sync took from a mirror or the origin.
    pub(crate) fn served(&self, mirror: bool, bytes: u64) {
        let source = if mirror { "mirror" } else { "origin" }.to_string();
        self.served.get_or_create(&Source { source }).inc_by(bytes);
    }

    pub(crate) fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub(crate) fn set_failing(&self, n: usize) {
        self.failing.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("metrics encode to a String");
        out
    }
}

impl Observe for Metrics {
    fn request(&self, method: &str, kind: RequestKind, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        let labels = Request { method: method.to_string(), kind: format!("{kind:?}").to_lowercase(), status };
        self.requests.get_or_create(&labels).inc();
    }

    fn blob_bytes(&self, n: u64) {
        self.blob_bytes.inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::default();
        m.reconciled(Reason::Synced, Duration::from_millis(20));
        m.reconciled(Reason::Unreachable, Duration::from_millis(5));
        m.set_failing(3);
        m.request("HEAD", RequestKind::Manifest, Some(200));
        m.request("GET", RequestKind::Blob, None);
        m.blob_bytes(1234);
        m.served(true, 10);
        m.served(true, 5);
        m.served(false, 7);
        m.event_dropped();
        let text = m.render();
        for line in [
            r#"ocisync_reconciles_total{result="success",reason="Synced"} 1"#,
            r#"ocisync_reconciles_total{result="error",reason="Unreachable"} 1"#,
            r#"ocisync_registry_requests_total{method="HEAD",kind="manifest",status="200"} 1"#,
            r#"ocisync_registry_requests_total{method="GET",kind="blob",status="error"} 1"#,
            "ocisync_blob_bytes_total 1234",
            "ocisync_reconcile_duration_seconds_count 2",
            "ocisync_artifacts_failing 3",
            r#"ocisync_synced_layer_bytes_total{source="mirror"} 15"#,
            r#"ocisync_synced_layer_bytes_total{source="origin"} 7"#,
            "ocisync_normal_events_dropped_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
