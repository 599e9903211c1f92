//! The operator end to end: a real kube-apiserver, the real registry,
//! artifacts pushed with oras, and `ocisync operator` running as its own
//! process under the RBAC that config/rbac ships.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::cluster::{ControlPlane, Env, Operator, Spec, pull_secret};
use crate::support::tarball::{Item::*, TAR, tar};
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn syncs_into_a_config_map_and_follows_the_tag() {
    let e = Env::new("sync-basic").await;
    let reg = Distribution::start();
    let files = [
        File("app.yaml", b"replicas: 1\n"),
        File("conf/log.toml", b"level = 1\n"),
        File("logo.bin", &[0, 159, 146, 150]),
        File("README.md", b"no"),
    ];
    let v1 = push_layers(&reg.host(), "app:stable", &[(TAR, tar(&files))]);
    let spec = Spec::new(&reg.host(), "app")
        .tag("stable")
        .interval("2s")
        .set("select", json!({"exclude": ["*.md"]}))
        .config_map(json!({"labels": {"team": "a"}}));
    e.apply("app", &spec).await;
    let st = e.synced("app", &v1).await;
    assert_eq!(st["revision"], format!("stable@{v1}"));
    assert_eq!(st["files"]["count"], 3);
    let cm = e.config_map("app").await.unwrap();
    let data = cm.data.clone().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["app.yaml", "conf__log.toml"]);
    assert_eq!(data["app.yaml"], "replicas: 1\n");
    assert_eq!(cm.binary_data.clone().unwrap()["logo.bin"].0, [0, 159, 146, 150]);
    assert_eq!(cm.labels()["team"], "a");
    assert_eq!(cm.labels()["app.kubernetes.io/managed-by"], "ocisync");
    assert_eq!(cm.annotations()["ocisync.dev/digest"], v1);
    let owner = &cm.owner_references()[0];
    let art = e.artifacts().get("app").await.unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.controller, Some(&owner.uid)),
        ("Artifact", Some(true), art.metadata.uid.as_ref())
    );
    assert_eq!(e.condition("app", "Ready").await.unwrap().0, "True");

    // a new version on the same tag: content follows, a removed file's key goes
    let v2 = push_layers(&reg.host(), "app:stable", &[(TAR, tar(&[File("app.yaml", b"replicas: 2\n")]))]);
    e.synced("app", &v2).await;
    let cm = e.config_map("app").await.unwrap();
    assert_eq!(
        cm.data.clone().unwrap().into_iter().collect::<Vec<_>>(),
        [("app.yaml".to_string(), "replicas: 2\n".to_string())]
    );
    assert!(cm.binary_data.as_ref().is_none_or(|b| b.is_empty()), "pruned: {:?}", cm.binary_data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_digest_stays_and_reports_the_moved_tag() {
    let e = Env::new("sync-pinned").await;
    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"one")]))]);
    push_layers(&reg.host(), "app:stable", &[(TAR, tar(&[File("a", b"one")]))]);
    e.apply("pinned", &Spec::new(&reg.host(), "app").pinned(&v1, "stable")).await;
    e.ready("pinned", true).await;
    assert!(e.status("pinned").await.get("drift").is_none());
    let v2 = push_layers(&reg.host(), "app:stable", &[(TAR, tar(&[File("a", b"two")]))]);
    let st =
        eventually("drift", 60, async || Some(e.status("pinned").await).filter(|s| s.get("drift").is_some())).await;
    assert_eq!(st["drift"], json!({"pinned": v1, "latest": v2, "tag": "stable"}));
    assert_eq!(st["digest"], v1.as_str(), "the pin is served");
    assert_eq!(e.config_map("pinned").await.unwrap().data.unwrap()["a"], "one", "content stays");
    let (_, _, message) = e.condition("pinned", "Ready").await.unwrap();
    assert!(message.contains("pinned, while stable is now"), "{message}");
    let (status, reason, message) = e.condition("pinned", "Drifted").await.unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "TagMoved"));
    assert!(message.contains(&v2), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_another_namespace_is_not_read() {
    let e = Env::new("sync-secrets").await;
    let other = Env::new("other-team").await;
    let (reg, _) = private_registry();
    other.create_secret(pull_secret("pull", &reg.host(), "wonderland")).await;
    e.apply("private", &Spec::new(&reg.host(), "private").tag("v1").secret("pull")).await;
    let (reason, message) = e.ready("private", false).await;
    assert_eq!(reason, "CredentialsUnavailable");
    assert!(message.contains("Secret sync-secrets/pull not found"), "{message}");
    assert!(e.config_map("private").await.is_none());
    // the same Secret in the Artifact's own namespace is used, and the
    // Secret's creation alone triggers the sync
    e.create_secret(pull_secret("pull", &reg.host(), "wonderland")).await;
    let cm = eventually("the ConfigMap", 60, async || e.config_map("private").await).await;
    assert_eq!(cm.data.unwrap()["f.txt"], "private");
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_reconciles_cost_at_most_a_head_and_no_reads_or_writes() {
    let e = Env::new("sync-steady").await;
    let (reg, d) = private_registry();
    e.create_secret(pull_secret("pull", &reg.host(), "wonderland")).await;
    e.apply("steady", &Spec::new(&reg.host(), "private").tag("v1").secret("pull")).await;
    e.synced("steady", &d).await;
    // let the write of the status settle, then watch a few intervals
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rv = |o: &kube::api::ObjectMeta| o.resource_version.clone().unwrap();
    let art_rv = rv(&e.artifacts().get("steady").await.unwrap().metadata);
    let cm_rv = rv(&e.config_map("steady").await.unwrap().metadata);
    let ours = |log: Vec<String>| log.into_iter().filter(|l| l.contains("ocisync/")).collect::<Vec<_>>();
    let secret_reads = || {
        e.cp.operator_requests()
            .into_iter()
            .filter(|(verb, res, ns, _)| verb == "get" && res == "secrets" && ns == "sync-steady")
            .count()
    };
    let (before, reads_before, started) = (ours(reg.access_log()).len(), secret_reads(), std::time::Instant::now());
    // at least three unchanged reconciles, however slowly they come
    let during = eventually("three HEADs", 60, async || {
        Some(ours(reg.access_log())[before..].to_vec()).filter(|d| d.len() >= 3)
    })
    .await;
    let heads = during.iter().filter(|l| l.contains("\"HEAD /v2/private/manifests/v1 ")).count();
    assert_eq!(heads, during.len(), "nothing but HEADs, no blob or manifest GETs: {during:?}");
    // one HEAD per 1 s interval at most (the shared resolution keeps it so)
    let intervals = started.elapsed().as_secs() + 1;
    assert!(heads as u64 <= intervals, "{heads} HEADs in {intervals} intervals");
    assert_eq!(secret_reads(), reads_before, "the pull secret is not read again while it is unchanged");
    assert_eq!(rv(&e.artifacts().get("steady").await.unwrap().metadata), art_rv, "no status write");
    assert_eq!(rv(&e.config_map("steady").await.unwrap().metadata), cm_rv, "no ConfigMap write");
    // a new password in the Secret is read once, and used
    let reads = secret_reads();
    let mut changed = pull_secret("pull", &reg.host(), "wrong");
    changed["metadata"]["namespace"] = json!("sync-steady");
    e.secrets().replace("pull", &PostParams::default(), &serde_json::from_value(changed).unwrap()).await.unwrap();
    let requested = json!({"ocisync.dev/requested-at": "after-the-secret-changed"});
    e.apply_with("steady", &Spec::new(&reg.host(), "private").tag("v1").secret("pull"), requested).await;
    let (reason, _) = e.ready("steady", false).await;
    assert_eq!(reason, "Unauthorized");
    assert!(secret_reads() > reads, "the changed Secret was read");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_semver_range_follows_the_highest_matching_tag() {
    let e = Env::new("sync-semver").await;
    let reg = Distribution::start();
    for (tag, body) in
        [("1.0.0", "one"), ("v1.2.0", "one-two"), ("2.0.0", "two"), ("1.3.0-rc.1", "rc"), ("latest", "x")]
    {
        push_layers(&reg.host(), &format!("app:{tag}"), &[(TAR, tar(&[File("v", body.as_bytes())]))]);
    }
    e.apply("ranged", &Spec::new(&reg.host(), "app").semver(">=1.0.0 <2")).await;
    let st = eventually("synced", 60, async || Some(e.status("ranged").await).filter(|s| s["tag"].is_string())).await;
    assert_eq!(st["tag"], "v1.2.0");
    assert_eq!(e.config_map("ranged").await.unwrap().data.unwrap()["v"], "one-two");
    push_layers(&reg.host(), "app:1.4.1", &[(TAR, tar(&[File("v", b"one-four")]))]);
    eventually("the new highest", 60, async || (e.status("ranged").await["tag"] == "1.4.1").then_some(())).await;
    eventually("its content", 60, async || Some(e.config_map("ranged").await?.data?).filter(|d| d["v"] == "one-four"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_outage_keeps_the_last_good_content_and_recovers() {
    let e = Env::new("sync-outage").await;
    let mut reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"good")]))]);
    e.apply("outage", &Spec::new(&reg.host(), "app").tag("v1")).await;
    e.synced("outage", &v1).await;
    let before = e.config_map("outage").await.unwrap();
    reg.stop();
    let (reason, message) = e.ready("outage", false).await;
    assert_eq!(reason, "Unreachable", "{message}");
    assert_eq!(e.condition("outage", "Reconciling").await.unwrap().0, "True");
    assert_eq!(e.condition("outage", "Resolved").await.unwrap().0, "False");
    let during = e.config_map("outage").await.unwrap();
    assert_eq!(during.data, before.data);
    assert_eq!(during.metadata.resource_version, before.metadata.resource_version, "not written at all");
    reg.restart();
    e.ready("outage", true).await;
    assert!(e.condition("outage", "Reconciling").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_stops_syncing() {
    let e = Env::new("sync-suspend").await;
    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let spec = |suspend: bool| Spec::new(&reg.host(), "app").tag("v1").set("suspend", suspend);
    e.apply("paused", &spec(false)).await;
    e.synced("paused", &v1).await;
    e.apply("paused", &spec(true)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v2 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"2")]))]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(e.config_map("paused").await.unwrap().data.unwrap()["a"], "1", "suspended: no sync");
    e.apply("paused", &spec(false)).await;
    e.synced("paused", &v2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_that_cannot_be_a_config_map_stalls_without_touching_anything() {
    let e = Env::new("sync-refused").await;
    let reg = Distribution::start();
    // someone else's ConfigMap of the same name is never taken over
    let theirs: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "taken"}, "data": {"mine": "yes"}})).unwrap();
    e.config_maps().create(&PostParams::default(), &theirs).await.unwrap();
    push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    e.apply("taken", &Spec::new(&reg.host(), "app").tag("v1")).await;
    let (reason, _) = e.ready("taken", false).await;
    assert_eq!(reason, "ConfigMapNotOwned");
    assert_eq!(e.condition("taken", "Stalled").await.unwrap().0, "True");
    assert_eq!(e.config_map("taken").await.unwrap().data.unwrap()["mine"], "yes");
    assert!(
        !reg.access_log().iter().any(|l| l.contains("ocisync/") && l.contains("/blobs/")),
        "nothing is downloaded for a target that cannot be written"
    );
    // once the owner removes theirs, the Artifact takes the name
    e.config_maps().delete("taken", &Default::default()).await.unwrap();
    e.ready("taken", true).await;

    let big = vec![b'x'; 600 * 1024];
    push_layers(&reg.host(), "big:v1", &[(TAR, tar(&[File("a", &big), File("b", &big)]))]);
    e.apply("big", &Spec::new(&reg.host(), "big").tag("v1")).await;
    let (reason, message) = e.ready("big", false).await;
    assert_eq!(reason, "ContentTooLarge", "{message}");
    assert_eq!(e.condition("big", "Published").await.unwrap().0, "False");
    assert!(e.config_map("big").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_metrics_are_served() {
    let e = Env::new("sync-metrics").await;
    let op = Operator::shared(ControlPlane::shared());
    let reg = Distribution::start();
    let d = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    e.apply("metered", &Spec::new(&reg.host(), "app").tag("v1")).await;
    e.synced("metered", &d).await;
    let get = async |path: &str| {
        let res = reqwest::get(format!("http://{}{path}", op.metrics)).await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(get("/readyz").await, (200, "ok".to_string()));
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(op.metric(r#"ocisync_reconciles_total{result="success",reason="Synced"}"#).await >= 1.0, "{text}");
    let head = r#"ocisync_registry_requests_total{method="HEAD",kind="manifest",status="200"}"#;
    assert!(op.metric(head).await >= 1.0, "{text}");
    assert!(op.metric(r#"ocisync_registry_requests_total{method="GET",kind="blob",status="200"}"#).await >= 1.0);
    assert!(op.metric("ocisync_blob_bytes_total").await >= 1.0, "{text}");
    assert!(op.metric("ocisync_reconcile_duration_seconds_count").await >= 1.0, "{text}");
    assert!(text.contains("ocisync_artifacts_failing "), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_following_one_tag_share_its_resolution_across_namespaces() {
    let reg = Distribution::start();
    let d = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let mut envs = Vec::new();
    for ns in ["shared-a", "shared-b", "shared-c"] {
        envs.push(Env::new(ns).await);
    }
    let spec = Spec::new(&reg.host(), "app").tag("v1").interval("2s");
    for (i, e) in envs.iter().enumerate() {
        for j in 0..2 {
            e.apply(&format!("follower-{i}-{j}"), &spec).await;
        }
    }
    for (i, e) in envs.iter().enumerate() {
        for j in 0..2 {
            e.synced(&format!("follower-{i}-{j}"), &d).await;
        }
    }
    let heads = || {
        reg.access_log().iter().filter(|l| l.contains("ocisync/") && l.contains("\"HEAD /v2/app/manifests/v1 ")).count()
    };
    let before = heads();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = heads() - before;
    // six followers in three namespaces, four intervals: about four HEADs,
    // not twelve (per namespace) or twenty-four (per Artifact); fewer when a
    // busy machine stretches the intervals
    assert!((1..=6).contains(&during), "{during} HEADs in 8 s for 6 Artifacts in 3 namespaces at a 2 s interval");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_requested_at_annotation_syncs_now() {
    let e = Env::new("sync-requested").await;
    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let spec = Spec::new(&reg.host(), "app").tag("v1").interval("1h");
    e.apply("now", &spec).await;
    e.synced("now", &v1).await;
    let v2 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"2")]))]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(e.status("now").await["lastSyncedDigest"], v1.as_str(), "an hour's interval: not yet");
    e.apply_with("now", &spec, json!({"ocisync.dev/requested-at": "2026-11-23T01:00:00Z"})).await;
    let st = e.synced("now", &v2).await;
    assert_eq!(st["lastHandledRequestedAt"], "2026-11-23T01:00:00Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_and_a_service_accounts_pull_secret_works() {
    let e = Env::new("sync-auth").await;
    let (reg, _) = private_registry();
    e.create_secret(pull_secret("wrong", &reg.host(), "nope")).await;
    e.create_secret(pull_secret("right", &reg.host(), "wonderland")).await;
    e.apply("wrong", &Spec::new(&reg.host(), "private").tag("v1").secret("wrong")).await;
    let (reason, message) = e.ready("wrong", false).await;
    assert_eq!(reason, "Unauthorized", "{message}");
    assert!(message.contains("credentials given were rejected"), "{message}");
    assert!(!message.contains("alice") && !message.contains("nope"), "nothing from the Secret: {message}");
    // the failure is also an Event on the Artifact
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(e.admin.clone(), &e.ns);
    let warned = eventually("a Warning event", 60, async || {
        let list = events.list(&Default::default()).await.unwrap();
        list.items.into_iter().find(|ev| {
            ev.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("wrong")
                && ev.reason.as_deref() == Some("Unauthorized")
        })
    })
    .await;
    assert_eq!(warned.type_.as_deref(), Some("Warning"));

    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "right"}]}))
            .unwrap();
    Api::namespaced(e.admin.clone(), &e.ns).create(&PostParams::default(), &sa).await.unwrap();
    e.apply("via-sa", &Spec::new(&reg.host(), "private").tag("v1").set("serviceAccountName", "puller")).await;
    let cm = eventually("the ConfigMap", 60, async || e.config_map("via-sa").await).await;
    assert_eq!(cm.data.unwrap()["f.txt"], "private");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_from_cert_secret_ref() {
    let e = Env::new("sync-tls").await;
    let pki = Pki::new();
    let reg = Distribution::start_with(DistributionOptions {
        tls: Some((pki.server_cert.clone(), pki.server_key.clone())),
        ..Default::default()
    });
    push_files(&reg.host(), "tls:v1", &[("f.txt", b"over tls")], &["--ca-file", pki.ca_cert.to_str().unwrap()]);
    let spec = Spec::new(&reg.host(), "tls").tag("v1").set("insecure", false);
    e.apply("tls", &spec).await;
    let (reason, message) = e.ready("tls", false).await;
    assert_eq!(reason, "Unreachable", "an unknown CA: {message}");
    e.create_secret(json!({
        "metadata": {"name": "registry-ca"},
        "stringData": {"ca.crt": std::fs::read_to_string(&pki.ca_cert).unwrap()}
    }))
    .await;
    e.apply("tls", &spec.set("certSecretRef", json!({"name": "registry-ca"}))).await;
    let cm = eventually("the ConfigMap", 60, async || e.config_map("tls").await).await;
    assert_eq!(cm.data.unwrap()["f.txt"], "over tls");
}

/// Push-triggered sync: distribution 2.8 notifies the operator's webhook;
/// with a one-hour interval, a push still reaches the ConfigMap in seconds.
/// Wrong tokens and garbage are refused and counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_notification_syncs_a_push_at_once() {
    use crate::support::registry::DistributionOptions;
    let cp = ControlPlane::shared();
    let hook_port = free_port();
    let token_file = cp.dir.join("webhook-token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let addr = format!("127.0.0.1:{hook_port}");
    let op = Operator::dedicated(
        cp,
        "op-webhook",
        &["--webhook-addr", &addr, "--webhook-token-file", token_file.to_str().unwrap()],
    );
    let e = Env::dedicated("webhook", "op-webhook").await;
    let url = format!("http://{addr}/v1/notify");
    let reg = Distribution::start_with(DistributionOptions {
        notify: Some((url.clone(), "s3cret-token".into())),
        ..Default::default()
    });
    let d1 = push_files(&reg.host(), "app:live", &[("app.yaml", b"one\n")], &["--plain-http"]);
    e.apply("app", &Spec::new(&reg.host(), "app").tag("live").interval("1h")).await;
    e.synced("app", &d1).await;
    let pushed = std::time::Instant::now();
    let d2 = push_files(&reg.host(), "app:live", &[("app.yaml", b"two\n")], &["--plain-http"]);
    e.synced("app", &d2).await;
    let took = pushed.elapsed();
    assert!(took < Duration::from_secs(20), "a push reached the ConfigMap in {took:?}, with a 1h interval");
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["app.yaml"], "two\n");

    // Refused: no token, a wrong one, not JSON; a generic body is read.
    let client = reqwest::Client::new();
    let post = |token: &'static str, body: &'static str| {
        client.post(&url).header("Authorization", format!("Bearer {token}")).body(body).send()
    };
    assert_eq!(client.post(&url).body("{}").send().await.unwrap().status(), 401);
    assert_eq!(post("wrong", r#"{"repository": "app"}"#).await.unwrap().status(), 401);
    assert_eq!(post("s3cret-token", "not json").await.unwrap().status(), 400);
    assert_eq!(post("s3cret-token", r#"{"repository": "app", "tag": "live"}"#).await.unwrap().status(), 202);
    let too_big = client.post(&url).header("Authorization", "Bearer s3cret-token").body(vec![b' '; 2 << 20]);
    assert_eq!(too_big.send().await.unwrap().status(), 413);
    let m = op.metrics_text().await;
    let count =
        |line: &str| m.lines().find(|l| l.starts_with(line)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(
        count(r#"ocisync_webhook_events_total{format="distribution",result="accepted"}"#).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert_eq!(count(r#"ocisync_webhook_events_total{format="unknown",result="unauthorized"}"#), Some(2.0), "{m}");
    assert_eq!(count(r#"ocisync_webhook_events_total{format="unknown",result="malformed"}"#), Some(1.0), "{m}");
    assert_eq!(count(r#"ocisync_webhook_events_total{format="generic",result="accepted"}"#), Some(1.0), "{m}");
}
