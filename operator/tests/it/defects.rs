//! Defects found in review of the first controller, each shown on the real
//! API server and registry: content that could never be published, work
//! repeated for nothing, triggers that defeated backoff, memory held for
//! nothing, races between Artifacts, and what a timeout leaves behind.

use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::support::cluster::{ControlPlane, Env, Operator, Spec, entries, pull_secret};
use crate::support::tarball::{Item::*, TAR, TAR_GZ, gzip, tar};
use crate::support::*;

/// A ConfigMap has no links: a link to a file becomes a copy under the
/// link's key, a link to a directory is left out. Before, both failed as
/// `Internal` and were retried, with a full download, forever.
#[tokio::test(flavor = "multi_thread")]
async fn symlinks_have_a_rule_in_a_config_map() {
    let e = Env::new("defect-links").await;
    let reg = Distribution::start();
    let d = push_layers(
        &reg.host(),
        "links:v1",
        &[(
            TAR,
            tar(&[
                Dir("conf"),
                File("conf/app.yaml", b"replicas: 1\n"),
                Symlink("app.yaml", "conf/app.yaml"),
                Symlink("current", "conf"),
            ]),
        )],
    );
    e.apply("links", &Spec::new(&reg.host(), "links").tag("v1")).await;
    e.synced("links", &d).await;
    let data = e.config_map("links").await.unwrap().data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["app.yaml", "conf__app.yaml"]);
    assert_eq!(data["app.yaml"], "replicas: 1\n", "a copy of the file the link names");
}

/// Content that stalled is not downloaded again until the digest or the
/// spec changes; then it is.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_content_is_not_downloaded_again() {
    let e = Env::new("defect-stalled").await;
    let reg = Distribution::start();
    let d = push_layers(&reg.host(), "bad:v1", &[(TAR, tar(&[File("ok.txt", b"ok"), File("../escape", b"x")]))]);
    let spec = Spec::new(&reg.host(), "bad").tag("v1");
    e.apply("bad", &spec).await;
    let (reason, _) = e.ready("bad", false).await;
    assert_eq!(reason, "UnsafeContent");
    assert_eq!(e.condition("bad", "Stalled").await.unwrap().0, "True");
    // A fetch GETs the manifest by digest, then the layer (which the blob
    // cache may serve the second time): count both.
    let fetches = || {
        let log = reg.access_log();
        log.iter().filter(|l| l.contains("GET /v2/bad/blobs/") || l.contains("GET /v2/bad/manifests/sha256:")).count()
    };
    let before = fetches();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fetches(), before, "five 1 s intervals, no fetch of what stalled");
    // a spec change is new input: it is fetched, and still refused
    e.apply("bad", &spec.clone().set("select", json!({"include": ["*.txt"]}))).await;
    eventually("a new fetch", 30, async || (fetches() > before).then_some(())).await;
    // a new digest on the tag is new input too
    let fixed = push_layers(&reg.host(), "bad:v1", &[(TAR, tar(&[File("ok.txt", b"fixed")]))]);
    assert_ne!(fixed, d);
    e.synced("bad", &fixed).await;
}

/// The operator's own status writes do not start the next reconcile: a
/// registry whose error text changes every time (so every attempt writes
/// a new status) is still retried on the backoff schedule, not in a loop.
#[tokio::test(flavor = "multi_thread")]
async fn status_writes_do_not_defeat_backoff() {
    let e = Env::new("defect-backoff").await;
    let reg = Ferro::start().await;
    reg.push("app:v1", &[("f", b"1")]).await;
    reg.hooks.fail_manifests.store(true, Ordering::SeqCst);
    let start = reg.hooks.manifest_requests.load(Ordering::SeqCst);
    e.apply("flaky", &Spec::new(&reg.host(), "app").tag("v1")).await;
    e.ready("flaky", false).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let n = reg.hooks.manifest_requests.load(Ordering::SeqCst) - start;
    // each reconcile tries 4 times; backoff 5 s, 10 s, 20 s: 3 reconciles in
    // 20 s (4 if the machine is quick), where a status-triggered loop makes
    // one every ~2 s
    assert!((4..=16).contains(&n), "{n} manifest requests in 20 s");
}

/// A Secret change reconciles only the Artifacts that read that Secret,
/// directly or through their ServiceAccount.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_change_reconciles_only_its_users() {
    let e = Env::new("defect-secret-map").await;
    let reg = Ferro::start().await;
    reg.push("app:v1", &[("f", b"1")]).await;
    e.create_secret(pull_secret("pull", &reg.host(), "wonderland")).await;
    e.create_secret(json!({"metadata": {"name": "unrelated"}, "stringData": {"x": "1"}})).await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "pull"}]}))
            .unwrap();
    Api::namespaced(e.admin.clone(), &e.ns).create(&PostParams::default(), &sa).await.unwrap();
    // failing, so that every reconcile shows as manifest requests
    reg.hooks.fail_manifests.store(true, Ordering::SeqCst);
    let pushed = reg.hooks.manifest_requests.load(Ordering::SeqCst);
    e.apply("via-sa", &Spec::new(&reg.host(), "app").tag("v1").set("serviceAccountName", "puller")).await;
    let requests = || reg.hooks.manifest_requests.load(Ordering::SeqCst) - pushed;
    // three attempts (4 requests each) put the next one 20 s away: a quiet
    // window in which only a trigger can cause requests
    eventually("three attempts", 60, async || (requests() >= 12 && requests() % 4 == 0).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = requests();
    let touch = |name: &str, v: &str| {
        let p = json!({"metadata": {"labels": {"touched": v}}});
        let secrets = e.secrets();
        let name = name.to_string();
        async move { secrets.patch(&name, &Default::default(), &kube::api::Patch::Merge(&p)).await.unwrap() }
    };
    touch("unrelated", "1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(requests(), before, "a Secret nobody reads reconciles nothing");
    touch("pull", "1").await;
    eventually("a reconcile for the ServiceAccount's pull secret", 5, async || (requests() > before).then_some(()))
        .await;
}

/// Two Artifacts naming one ConfigMap: the API server sees two field
/// managers, so exactly one of them owns it and the other is told.
#[tokio::test(flavor = "multi_thread")]
async fn two_artifacts_naming_one_config_map_do_not_both_win() {
    let e = Env::new("defect-race").await;
    let reg = Distribution::start();
    let a = push_layers(&reg.host(), "a:v1", &[(TAR, tar(&[File("who", b"a")]))]);
    let b = push_layers(&reg.host(), "b:v1", &[(TAR, tar(&[File("who", b"b")]))]);
    let pairs = 4;
    for i in 0..pairs {
        let target = json!({"name": format!("shared-{i}")});
        let (sa, sb) = (
            Spec::new(&reg.host(), "a").tag("v1").interval("1h").config_map(target.clone()),
            Spec::new(&reg.host(), "b").tag("v1").interval("1h").config_map(target),
        );
        let (na, nb) = (format!("a-{i}"), format!("b-{i}"));
        futures::join!(e.apply(&na, &sa), e.apply(&nb, &sb));
    }
    for i in 0..pairs {
        let (ra, rb) = futures::join!(
            eventually("a settled", 60, async || e.condition(&format!("a-{i}"), "Ready").await),
            eventually("b settled", 60, async || e.condition(&format!("b-{i}"), "Ready").await),
        );
        let (winner, loser, digest) = match (ra.0.as_str(), rb.0.as_str()) {
            ("True", "False") => (format!("a-{i}"), rb, &a),
            ("False", "True") => (format!("b-{i}"), ra, &b),
            _ => panic!("pair {i}: exactly one may win: {ra:?} {rb:?}"),
        };
        assert_eq!(loser.1, "ConfigMapNotOwned", "{loser:?}");
        let cm = e.config_map(&format!("shared-{i}")).await.unwrap();
        let uid = e.artifacts().get(&winner).await.unwrap().uid().unwrap();
        let owners: Vec<_> = cm.owner_references().iter().map(|o| o.uid.clone()).collect();
        assert_eq!(owners, std::slice::from_ref(&uid), "pair {i}");
        assert_eq!(cm.annotations()["ocisync.dev/digest"], *digest);
        let who = cm.data.unwrap()["who"].clone();
        assert_eq!(format!("{who}-{i}"), winner, "the winner's content, whole");
        let managers: Vec<_> = cm.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
        assert!(managers.contains(&format!("ocisync-{uid}")), "{managers:?}");
    }
}

/// A sync that runs out of time names the step, and leaves nothing in the
/// work dir; nothing from before a restart survives there either.
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_names_its_step_and_leaves_nothing_behind() {
    let e = Env::new("defect-timeout").await;
    let op = Operator::shared(ControlPlane::shared());
    assert!(!entries(&op.work).contains(&"stale-uid".to_string()), "swept at start: {:?}", entries(&op.work));
    let reg = Ferro::start().await;
    reg.push("app:v1", &[("f", b"1")]).await;
    reg.hooks.stall_blobs.store(true, Ordering::SeqCst);
    e.apply("slow-blob", &Spec::new(&reg.host(), "app").tag("v1").timeout("3s")).await;
    let (reason, message) = e.ready("slow-blob", false).await;
    assert_eq!(reason, "Timeout", "{message}");
    assert!(message.contains("fetching"), "{message}");
    let (status, reason, _) = e.condition("slow-blob", "Fetched").await.unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Timeout"));
    let uid = e.artifacts().get("slow-blob").await.unwrap().uid().unwrap();
    assert!(!entries(&op.work).contains(&uid), "the work dir of a timed-out sync is removed");

    reg.hooks.stall_manifests.store(true, Ordering::SeqCst);
    e.apply("slow-tag", &Spec::new(&reg.host(), "app").tag("v1").timeout("3s")).await;
    let (reason, message) = e.ready("slow-tag", false).await;
    assert_eq!(reason, "Timeout", "{message}");
    assert!(message.contains("resolving"), "{message}");
    assert_eq!(e.condition("slow-tag", "Resolved").await.unwrap().0, "False");
    assert!(e.condition("slow-tag", "Fetched").await.is_none(), "never reached");
}

/// The operator holds neither managed ConfigMaps' content (the ownership
/// watch is metadata only) nor the files it publishes beyond what a
/// ConfigMap can hold (the fetch is clamped to the target's size, and the
/// size is decided from the report before anything is read).
#[tokio::test(flavor = "multi_thread")]
async fn memory_stays_bounded_by_what_a_config_map_holds() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("defect-memory", "memory").await;
    // 40 MB of ConfigMaps that look managed, before the operator starts
    let filler = "x".repeat(1_000_000);
    for i in 0..40 {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("big-{i}"), "labels": {"app.kubernetes.io/managed-by": "ocisync"}},
            "data": {"filler": filler}
        }))
        .unwrap();
        e.config_maps().create(&PostParams::default(), &cm).await.unwrap();
    }
    let op = Operator::dedicated(cp, "memory", &[]);
    let reg = Distribution::start();
    // 96 MiB of zeros, a few hundred KiB compressed
    let bomb = gzip(&tar(&[Zeros("zeros.bin", 96 << 20)]));
    push_layers(&reg.host(), "huge:v1", &[(TAR_GZ, bomb)]);
    e.apply("huge", &Spec::new(&reg.host(), "huge").tag("v1")).await;
    let (reason, message) = e.ready("huge", false).await;
    assert_eq!(reason, "ContentTooLarge", "{message}");
    assert_eq!(e.condition("huge", "Published").await.unwrap().0, "False");
    let peak = op.proc.as_ref().unwrap().peak_rss();
    assert!(peak < 56 << 20, "peak RSS {} MiB", peak >> 20);
    for i in 0..40 {
        e.config_maps().delete(&format!("big-{i}"), &DeleteParams::default()).await.unwrap();
    }
}

/// What the operator remembers of an Artifact goes with the Artifact.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_artifact_is_forgotten() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("defect-forget", "forget").await;
    let op = Operator::dedicated(cp, "forget", &[]);
    let down = format!("127.0.0.1:{}", free_port());
    for i in 0..3 {
        e.apply(&format!("failing-{i}"), &Spec::new(&down, "app").tag("v1")).await;
    }
    for i in 0..3 {
        e.ready(&format!("failing-{i}"), false).await;
    }
    eventually("3 failing", 30, async || (op.metric("ocisync_artifacts_failing").await == 3.0).then_some(())).await;
    for i in 0..3 {
        e.artifacts().delete(&format!("failing-{i}"), &DeleteParams::default()).await.unwrap();
    }
    eventually("none failing", 30, async || (op.metric("ocisync_artifacts_failing").await == 0.0).then_some(())).await;
}

/// A registry that hangs holds at most its share of the reconcile slots:
/// Artifacts on other registries sync meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_registry_does_not_starve_the_others() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("defect-slow", "slow").await;
    let _op = Operator::dedicated(cp, "slow", &["--concurrency", "8"]);
    let slow = Ferro::start().await;
    slow.push("app:v1", &[("f", b"1")]).await;
    slow.hooks.stall_manifests.store(true, Ordering::SeqCst);
    let pushed = slow.hooks.manifest_requests.load(Ordering::SeqCst);
    for i in 0..8 {
        e.apply(&format!("slow-{i}"), &Spec::new(&slow.host(), "app").tag("v1").timeout("40s")).await;
    }
    // let them take what slots they can (they share one resolution, so the
    // registry sees a single hanging HEAD)
    eventually("the hanging registry to be asked", 20, async || {
        (slow.hooks.manifest_requests.load(Ordering::SeqCst) > pushed).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fast = Distribution::start();
    let d = push_layers(&fast.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let started = std::time::Instant::now();
    for i in 0..20 {
        e.apply(&format!("fast-{i}"), &Spec::new(&fast.host(), "app").tag("v1")).await;
    }
    for i in 0..20 {
        e.synced(&format!("fast-{i}"), &d).await;
    }
    // the hanging syncs would have held every slot for their 40 s timeout
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
}

/// `--max-timeout` is a ceiling no spec can raise.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_max_timeout_caps_every_spec() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("defect-ceiling", "ceiling").await;
    let _op = Operator::dedicated(cp, "ceiling", &["--max-timeout", "3s"]);
    let reg = Ferro::start().await;
    reg.push("app:v1", &[("f", b"1")]).await;
    reg.hooks.stall_manifests.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    e.apply("patient", &Spec::new(&reg.host(), "app").tag("v1").timeout("1h")).await;
    let (reason, message) = e.ready("patient", false).await;
    assert_eq!(reason, "Timeout", "{message}");
    assert!(message.contains("3s"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}
