//! The operator end to end: a real kube-apiserver, the real registry,
//! artifacts pushed with oras, and `ocisync operator` running as its own
//! process under the RBAC that config/rbac ships.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use ocisync::api::Artifact;
use serde_json::json;
use support::control_plane::ControlPlane;
use support::operator::Operator;
use support::tarball::{Item::*, TAR, tar};
use support::*;

struct Env {
    admin: kube::Client,
    ns: String,
    op: &'static Operator,
}

async fn env(ns: &str) -> Env {
    let cp = ControlPlane::shared();
    let op = Operator::shared(cp).await;
    let admin = cp.admin().await;
    cp.namespace(&admin, ns).await;
    Env { admin, ns: ns.into(), op }
}

impl Env {
    fn artifacts(&self) -> Api<Artifact> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    async fn apply(&self, name: &str, spec: serde_json::Value) {
        let a =
            json!({"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "metadata": {"name": name}, "spec": spec});
        self.artifacts().patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&a)).await.unwrap();
    }

    /// Poll until `check` returns Some, or fail with the operator's log.
    async fn until<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n--- operator log (tail):\n{}", tail(&self.op.logs(), 40));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn status(&self, name: &str) -> serde_json::Value {
        serde_json::to_value(self.artifacts().get(name).await.unwrap().status).unwrap()
    }

    async fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let st = self.status(name).await;
        let c = st["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
        Some((c["status"].as_str()?.into(), c["reason"].as_str()?.into(), c["message"].as_str()?.into()))
    }
}

/// A `kubernetes.io/dockerconfigjson` Secret with alice's credentials for `host`.
fn pull_secret(name: &str, namespace: &str, host: &str, password: &str) -> Secret {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json!({"auths": {host: {"auth": auth}}}).to_string()}
    }))
    .unwrap()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn syncs_into_a_config_map_and_follows_the_tag() {
    let e = env("sync-basic").await;
    let reg = Distribution::start();
    let v1 = push_layers(
        &reg.host(),
        "app:stable",
        &[(
            TAR,
            tar(&[
                File("app.yaml", b"replicas: 1\n"),
                File("conf/log.toml", b"level = 1\n"),
                File("logo.bin", &[0, 159, 146, 150]),
                File("README.md", b"no"),
            ]),
        )],
    );
    e.apply(
        "app",
        json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "stable"}, "insecure": true, "interval": "2s",
               "select": {"exclude": ["*.md"]}, "target": {"configMap": {"labels": {"team": "a"}}}}),
    )
    .await;
    let cm = e
        .until("the ConfigMap", async || {
            let cm = e.config_maps().get_opt("app").await.unwrap()?;
            (cm.annotations().get("ocisync.dev/digest") == Some(&v1)).then_some(cm)
        })
        .await;
    use kube::ResourceExt;
    let data = cm.data.clone().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["app.yaml", "conf__log.toml"]);
    assert_eq!(data["app.yaml"], "replicas: 1\n");
    assert_eq!(cm.binary_data.clone().unwrap()["logo.bin"].0, [0, 159, 146, 150]);
    assert_eq!(cm.labels()["team"], "a");
    assert_eq!(cm.labels()["app.kubernetes.io/managed-by"], "ocisync");
    let owner = &cm.owner_references()[0];
    let art = e.artifacts().get("app").await.unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.controller, Some(&owner.uid)),
        ("Artifact", Some(true), art.metadata.uid.as_ref())
    );
    // the ConfigMap is written first, the status after it
    let st = e.until("the status", async || Some(e.status("app").await).filter(|s| s["digest"] == v1.as_str())).await;
    assert_eq!(st["revision"], format!("stable@{v1}"));
    assert_eq!(st["files"]["count"], 3);
    assert_eq!(e.condition("app", "Ready").await.unwrap().0, "True");

    // a new version on the same tag: content follows, a removed file's key goes
    let v2 = push_layers(&reg.host(), "app:stable", &[(TAR, tar(&[File("app.yaml", b"replicas: 2\n")]))]);
    let cm = e
        .until("the new version", async || {
            let cm = e.config_maps().get("app").await.unwrap();
            (cm.annotations().get("ocisync.dev/digest") == Some(&v2)).then_some(cm)
        })
        .await;
    assert_eq!(
        cm.data.clone().unwrap().into_iter().collect::<Vec<_>>(),
        [("app.yaml".to_string(), "replicas: 2\n".to_string())]
    );
    assert!(cm.binary_data.as_ref().is_none_or(|b| b.is_empty()), "pruned: {:?}", cm.binary_data);
    e.until("the status", async || (e.status("app").await["digest"] == v2.as_str()).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_digest_stays_and_reports_the_moved_tag() {
    let e = env("sync-pinned").await;
    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"one")]))]);
    push_layers(&reg.host(), "app:stable", &[(TAR, tar(&[File("a", b"one")]))]);
    e.apply("pinned", json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "stable", "digest": v1}, "insecure": true, "interval": "1s"}))
        .await;
    e.until("synced", async || (e.condition("pinned", "Ready").await?.0 == "True").then_some(())).await;
    assert!(e.status("pinned").await.get("drift").is_none());
    let v2 = push_layers(&reg.host(), "app:stable", &[(TAR, tar(&[File("a", b"two")]))]);
    let st = e.until("drift", async || Some(e.status("pinned").await).filter(|s| s.get("drift").is_some())).await;
    assert_eq!(st["drift"], json!({"pinned": v1, "latest": v2, "tag": "stable"}));
    assert_eq!(st["digest"], v1.as_str(), "the pin is served");
    assert_eq!(e.config_maps().get("pinned").await.unwrap().data.unwrap()["a"], "one", "content stays");
    let (_, _, message) = e.condition("pinned", "Ready").await.unwrap();
    assert!(message.contains("pinned, while stable is now"), "{message}");
    let (status, reason, message) = e.condition("pinned", "Drifted").await.unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "TagMoved"));
    assert!(message.contains(&v2), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_another_namespace_is_not_read() {
    let e = env("sync-secrets").await;
    let cp = ControlPlane::shared();
    cp.namespace(&e.admin, "other-team").await;
    let reg = private_registry();
    let secret = |ns: &str| pull_secret("pull", ns, &reg.host(), "wonderland");
    Api::<Secret>::namespaced(e.admin.clone(), "other-team")
        .create(&PostParams::default(), &secret("other-team"))
        .await
        .unwrap();
    let spec = json!({"url": format!("oci://{}/private", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s", "secretRef": {"name": "pull"}});
    e.apply("private", spec).await;
    let (status, reason, message) =
        e.until("a failure", async || e.condition("private", "Ready").await.filter(|c| c.0 == "False")).await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "CredentialsUnavailable"));
    assert!(message.contains("Secret sync-secrets/pull not found"), "{message}");
    assert!(e.config_maps().get_opt("private").await.unwrap().is_none());
    // the same Secret in the Artifact's own namespace is used, and the
    // Secret's creation alone triggers the sync
    Api::<Secret>::namespaced(e.admin.clone(), &e.ns).create(&PostParams::default(), &secret(&e.ns)).await.unwrap();
    let cm = e.until("the ConfigMap", async || e.config_maps().get_opt("private").await.unwrap()).await;
    assert_eq!(cm.data.unwrap()["f.txt"], "private");
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_reconciles_cost_one_head_and_no_writes() {
    let e = env("sync-steady").await;
    let reg = Distribution::start();
    let d = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    e.apply(
        "steady",
        json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s"}),
    )
    .await;
    e.until("synced", async || (e.status("steady").await["lastSyncedDigest"] == d.as_str()).then_some(())).await;
    // let the write of the status settle, then watch a few intervals
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rv = |o: &kube::api::ObjectMeta| o.resource_version.clone().unwrap();
    let art_rv = rv(&e.artifacts().get("steady").await.unwrap().metadata);
    let cm_rv = rv(&e.config_maps().get("steady").await.unwrap().metadata);
    let ours = |log: Vec<String>| log.into_iter().filter(|l| l.contains("ocisync/")).collect::<Vec<_>>();
    let reconciles =
        || e.op.logs().lines().filter(|l| l.contains("reconcile started") && l.contains("artifact=steady")).count();
    let (before, rec_before) = (ours(reg.access_log()).len(), reconciles());
    // at least three unchanged reconciles, however slowly they come
    let during =
        e.until("three HEADs", async || Some(ours(reg.access_log())[before..].to_vec()).filter(|d| d.len() >= 3)).await;
    let heads = during.iter().filter(|l| l.contains("\"HEAD /v2/app/manifests/v1 ")).count();
    assert_eq!(heads, during.len(), "nothing but HEADs, no blob or manifest GETs: {during:?}");
    assert!(heads <= reconciles() - rec_before, "at most one HEAD per reconcile");
    assert_eq!(rv(&e.artifacts().get("steady").await.unwrap().metadata), art_rv, "no status write");
    assert_eq!(rv(&e.config_maps().get("steady").await.unwrap().metadata), cm_rv, "no ConfigMap write");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_semver_range_follows_the_highest_matching_tag() {
    let e = env("sync-semver").await;
    let reg = Distribution::start();
    for (tag, body) in
        [("1.0.0", "one"), ("v1.2.0", "one-two"), ("2.0.0", "two"), ("1.3.0-rc.1", "rc"), ("latest", "x")]
    {
        push_layers(&reg.host(), &format!("app:{tag}"), &[(TAR, tar(&[File("v", body.as_bytes())]))]);
    }
    let spec = json!({"url": format!("oci://{}/app", reg.host()), "ref": {"semver": ">=1.0.0 <2"}, "insecure": true, "interval": "1s"});
    e.apply("ranged", spec).await;
    let st = e.until("synced", async || Some(e.status("ranged").await).filter(|s| s["tag"].is_string())).await;
    assert_eq!(st["tag"], "v1.2.0");
    assert_eq!(e.config_maps().get("ranged").await.unwrap().data.unwrap()["v"], "one-two");
    push_layers(&reg.host(), "app:1.4.1", &[(TAR, tar(&[File("v", b"one-four")]))]);
    e.until("the new highest", async || (e.status("ranged").await["tag"] == "1.4.1").then_some(())).await;
    e.until("its content", async || {
        Some(e.config_maps().get("ranged").await.unwrap().data?).filter(|d| d["v"] == "one-four")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_outage_keeps_the_last_good_content_and_recovers() {
    let e = env("sync-outage").await;
    let mut reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"good")]))]);
    e.apply(
        "outage",
        json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s"}),
    )
    .await;
    e.until("synced", async || (e.status("outage").await["lastSyncedDigest"] == v1.as_str()).then_some(())).await;
    let before = e.config_maps().get("outage").await.unwrap();
    reg.stop();
    let (_, reason, message) =
        e.until("the outage to show", async || e.condition("outage", "Ready").await.filter(|c| c.0 == "False")).await;
    assert_eq!(reason, "Unreachable", "{message}");
    assert_eq!(e.condition("outage", "Reconciling").await.unwrap().0, "True");
    assert_eq!(e.condition("outage", "Resolved").await.unwrap().0, "False");
    let during = e.config_maps().get("outage").await.unwrap();
    assert_eq!(during.data, before.data);
    assert_eq!(during.metadata.resource_version, before.metadata.resource_version, "not written at all");
    reg.restart();
    e.until("recovery", async || e.condition("outage", "Ready").await.filter(|c| c.0 == "True")).await;
    assert!(e.condition("outage", "Reconciling").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_stops_syncing() {
    let e = env("sync-suspend").await;
    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let spec = |suspend: bool| json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s", "suspend": suspend});
    e.apply("paused", spec(false)).await;
    e.until("synced", async || (e.status("paused").await["lastSyncedDigest"] == v1.as_str()).then_some(())).await;
    e.apply("paused", spec(true)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v2 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"2")]))]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(e.config_maps().get("paused").await.unwrap().data.unwrap()["a"], "1", "suspended: no sync");
    e.apply("paused", spec(false)).await;
    e.until("resumed", async || (e.status("paused").await["lastSyncedDigest"] == v2.as_str()).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_that_cannot_be_a_config_map_stalls_without_touching_anything() {
    let e = env("sync-refused").await;
    let reg = Distribution::start();
    // someone else's ConfigMap of the same name is never taken over
    let theirs: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "taken"}, "data": {"mine": "yes"}})).unwrap();
    e.config_maps().create(&PostParams::default(), &theirs).await.unwrap();
    push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    e.apply(
        "taken",
        json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s"}),
    )
    .await;
    let (_, reason, _) =
        e.until("refusal", async || e.condition("taken", "Ready").await.filter(|c| c.0 == "False")).await;
    assert_eq!(reason, "ConfigMapNotOwned");
    assert_eq!(e.condition("taken", "Stalled").await.unwrap().0, "True");
    assert_eq!(e.config_maps().get("taken").await.unwrap().data.unwrap()["mine"], "yes");

    let big = vec![b'x'; 600 * 1024];
    push_layers(&reg.host(), "big:v1", &[(TAR, tar(&[File("a", &big), File("b", &big)]))]);
    e.apply(
        "big",
        json!({"url": format!("oci://{}/big", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s"}),
    )
    .await;
    let (_, reason, message) =
        e.until("refusal", async || e.condition("big", "Ready").await.filter(|c| c.0 == "False")).await;
    assert_eq!(reason, "ContentTooLarge", "{message}");
    assert_eq!(e.condition("big", "Published").await.unwrap().0, "False");
    assert!(e.config_maps().get_opt("big").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_and_metrics_are_served() {
    let e = env("sync-metrics").await;
    let reg = Distribution::start();
    let d = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    e.apply(
        "metered",
        json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s"}),
    )
    .await;
    e.until("synced", async || (e.status("metered").await["lastSyncedDigest"] == d.as_str()).then_some(())).await;
    let get = async |path: &str| {
        let res = reqwest::get(format!("http://{}{path}", e.op.metrics)).await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(get("/readyz").await, (200, "ok".to_string()));
    let (status, text) = get("/metrics").await;
    assert_eq!(status, 200);
    let value = |prefix: &str| -> f64 {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
    };
    assert!(value(r#"ocisync_reconciles_total{result="success",reason="Synced"}"#) >= 1.0, "{text}");
    assert!(value(r#"ocisync_registry_requests_total{method="HEAD",kind="manifest",status="200"}"#) >= 1.0, "{text}");
    assert!(value(r#"ocisync_registry_requests_total{method="GET",kind="blob",status="200"}"#) >= 1.0, "{text}");
    assert!(value("ocisync_blob_bytes_total") >= 1.0, "{text}");
    assert!(value("ocisync_reconcile_duration_seconds_count") >= 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_following_one_tag_share_its_resolution() {
    let e = env("sync-shared").await;
    let reg = Distribution::start();
    let d = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let names: Vec<String> = (0..5).map(|i| format!("follower-{i}")).collect();
    for n in &names {
        e.apply(n, json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "2s"})).await;
    }
    for n in &names {
        e.until("synced", async || (e.status(n).await["lastSyncedDigest"] == d.as_str()).then_some(())).await;
    }
    let heads = || {
        reg.access_log().iter().filter(|l| l.contains("ocisync/") && l.contains("\"HEAD /v2/app/manifests/v1 ")).count()
    };
    let before = heads();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = heads() - before;
    // five followers, four intervals: at most about four HEADs, not twenty
    // (fewer when a busy machine stretches the intervals)
    assert!((1..=6).contains(&during), "{during} HEADs in 8 s for 5 Artifacts at a 2 s interval");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_requested_at_annotation_syncs_now() {
    let e = env("sync-requested").await;
    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let spec =
        json!({"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1h"});
    e.apply("now", spec.clone()).await;
    e.until("synced", async || (e.status("now").await["lastSyncedDigest"] == v1.as_str()).then_some(())).await;
    let v2 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"2")]))]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(e.status("now").await["lastSyncedDigest"], v1.as_str(), "an hour's interval: not yet");
    let a = json!({"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact",
                   "metadata": {"name": "now", "annotations": {"ocisync.dev/requested-at": "2026-11-23T01:00:00Z"}}, "spec": spec});
    e.artifacts().patch("now", &PatchParams::apply("test").force(), &Patch::Apply(&a)).await.unwrap();
    let st = e
        .until("the requested sync", async || {
            Some(e.status("now").await).filter(|s| s["lastSyncedDigest"] == v2.as_str())
        })
        .await;
    assert_eq!(st["lastHandledRequestedAt"], "2026-11-23T01:00:00Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_and_a_service_accounts_pull_secret_works() {
    let e = env("sync-auth").await;
    let reg = private_registry();
    let secret = |name: &str, password: &str| pull_secret(name, &e.ns, &reg.host(), password);
    let secrets = Api::<Secret>::namespaced(e.admin.clone(), &e.ns);
    secrets.create(&PostParams::default(), &secret("wrong", "nope")).await.unwrap();
    secrets.create(&PostParams::default(), &secret("right", "wonderland")).await.unwrap();
    let url = format!("oci://{}/private", reg.host());
    e.apply(
        "wrong",
        json!({"url": url, "ref": {"tag": "v1"}, "insecure": true, "interval": "1s", "secretRef": {"name": "wrong"}}),
    )
    .await;
    let (_, reason, message) =
        e.until("refusal", async || e.condition("wrong", "Ready").await.filter(|c| c.0 == "False")).await;
    assert_eq!(reason, "Unauthorized", "{message}");
    assert!(message.contains("\"alice\" were rejected") && !message.contains("nope"), "{message}");
    // the failure is also an Event on the Artifact
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(e.admin.clone(), &e.ns);
    let warned = e
        .until("a Warning event", async || {
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
    e.apply(
        "via-sa",
        json!({"url": url, "ref": {"tag": "v1"}, "insecure": true, "interval": "1s", "serviceAccountName": "puller"}),
    )
    .await;
    let cm = e.until("the ConfigMap", async || e.config_maps().get_opt("via-sa").await.unwrap()).await;
    assert_eq!(cm.data.unwrap()["f.txt"], "private");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_from_cert_secret_ref() {
    let e = env("sync-tls").await;
    let pki = Pki::new();
    let reg = Distribution::start_with(DistributionOptions {
        tls: Some((pki.server_cert.clone(), pki.server_key.clone())),
        ..Default::default()
    });
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f.txt"), "over tls").unwrap();
    let ca = pki.ca_cert.to_str().unwrap();
    run(std::process::Command::new(tool("oras")).current_dir(src.path()).args([
        "push",
        "--ca-file",
        ca,
        &format!("{}/tls:v1", reg.host()),
        "f.txt",
    ]));
    let spec = |cert: bool| {
        let mut s = json!({"url": format!("oci://{}/tls", reg.host()), "ref": {"tag": "v1"}, "interval": "1s"});
        if cert {
            s["certSecretRef"] = json!({"name": "registry-ca"});
        }
        s
    };
    e.apply("tls", spec(false)).await;
    let (_, reason, message) =
        e.until("refusal", async || e.condition("tls", "Ready").await.filter(|c| c.0 == "False")).await;
    assert_eq!(reason, "Unreachable", "an unknown CA: {message}");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "registry-ca"},
        "stringData": {"ca.crt": std::fs::read_to_string(&pki.ca_cert).unwrap()}
    }))
    .unwrap();
    Api::<Secret>::namespaced(e.admin.clone(), &e.ns).create(&PostParams::default(), &secret).await.unwrap();
    e.apply("tls", spec(true)).await;
    let cm = e.until("the ConfigMap", async || e.config_maps().get_opt("tls").await.unwrap()).await;
    assert_eq!(cm.data.unwrap()["f.txt"], "over tls");
}
