//! The operator's metrics: each family with its type, labels and meaning.
//! The table is checked against what `/metrics` actually registers, so a
//! new metric does not pass the tests until it is described here.

/// (name as exposed, type, labels and their values, meaning).
pub(crate) const METRICS: &[(&str, &str, &str, &str)] = &[
    (
        "ocisync_reconciles_total",
        "counter",
        "`result` (`success`, `error`), `reason` (a [condition reason](reasons.md))",
        "Reconciles by outcome.",
    ),
    ("ocisync_reconcile_duration_seconds", "histogram", "—", "Time one reconcile took (buckets from 5 ms, doubling)."),
    (
        "ocisync_registry_requests_total",
        "counter",
        "`method` (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`), `kind` (`manifest`, `blob`, `tags`, `referrers`, `token`), `status` (the HTTP status, or `error` when there was no response)",
        "Requests to registries.",
    ),
    ("ocisync_blob_bytes_total", "counter", "—", "Blob bytes downloaded from registries and mirrors."),
    ("ocisync_artifacts_failing", "gauge", "—", "Artifacts whose last sync failed."),
    (
        "ocisync_synced_layer_bytes_total",
        "counter",
        "`source` (`origin`, `mirror`)",
        "Layer bytes of published syncs by where they came from.",
    ),
    (
        "ocisync_webhook_events_total",
        "counter",
        "`format` (the notification's format), `result` (what was done with it)",
        "Registry push notifications received on `/v1/notify`.",
    ),
    (
        "ocisync_normal_events_dropped_total",
        "counter",
        "—",
        "Normal Events not sent because they were over the operator's budget (Warnings are never dropped).",
    ),
];

pub(crate) fn page() -> String {
    let mut out = String::from(
        "# Metrics\n\n\
         Served by the operator at `/metrics` on `--metrics-addr` (default `0.0.0.0:8080`; the chart's \
         `metrics.port`), in the OpenMetrics text format, beside `/healthz` and `/readyz`. Every label comes \
         from a closed set, so the number of series is bounded.\n\n\
         | metric | type | labels | meaning |\n| --- | --- | --- | --- |\n",
    );
    for (name, kind, labels, meaning) in METRICS {
        out.push_str(&format!("| `{name}` | {kind} | {labels} | {meaning} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_registered_metric_is_described() {
        use crate::oci::client::{Observe as _, RequestKind};
        // a family without a sample is not rendered: one of each
        let m = crate::controller::metrics::Metrics::default();
        m.reconciled(crate::status::Reason::Synced, std::time::Duration::from_millis(1));
        m.request("GET", RequestKind::Blob, Some(200));
        m.served(false, 1);
        m.webhook_event("distribution", "accepted");
        let text = m.render();
        let mut registered: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, kind) = l.split_once(' ').unwrap();
                if kind == "counter" { format!("{name}_total") } else { name.to_string() }
            })
            .collect();
        registered.sort();
        let mut described: Vec<String> = super::METRICS.iter().map(|m| m.0.to_string()).collect();
        described.sort();
        assert_eq!(registered, described);
    }
}
