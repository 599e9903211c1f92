//! Mirrors trusted by digest, on the API server with two real registries:
//! the tag is resolved at the origin, the manifest and layers come from the
//! mirror when it has them, anything it lacks or serves wrong comes from the
//! origin, and the status says which served what.

use serde_json::{Value, json};

use crate::signatures::{blob_gets, layer_of};
use crate::support::cluster::{Env, Spec};
use std::sync::atomic::Ordering;

use crate::support::registry::{Distribution, Fault, Ferro};
use crate::support::{crane, push_files};

fn manifest_gets(log: &[String], repo: &str, digest: &str) -> usize {
    log.iter().filter(|l| l.contains("GET ") && l.contains(&format!("/v2/{repo}/manifests/{digest}"))).count()
}

/// Push `a.txt` as `app:v1` at the origin and copy it by digest to the
/// mirror's `cache/app`; the manifest's and the layer's digests.
fn push_and_mirror(origin: &str, mirror: &str, body: &[u8]) -> (String, String) {
    let d = push_files(origin, "app:v1", &[("a.txt", body)], &["--plain-http"]);
    crane(&["copy", &format!("{origin}/app@{d}"), &format!("{mirror}/cache/app:copied")]);
    let layer = layer_of(origin, "app", &d);
    (d, layer)
}

fn sources(status: &Value) -> Vec<(String, u64, u64)> {
    status["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["role"].as_str().unwrap_or("").to_string(),
                        s["manifests"].as_u64().unwrap_or(0),
                        s["layers"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_serves_by_digest_and_the_origin_fills_in() {
    let e = Env::new("mirrors").await;
    let origin = Distribution::start();
    let mirror = Distribution::start();
    let (o, m) = (origin.host(), mirror.host());
    let mirrors = json!([{"url": format!("oci://{m}/cache/app"), "insecure": true}]);

    // v1 is on the mirror too (copied by digest): everything by digest comes
    // from there; the origin answers the tag's HEAD and nothing else.
    let (v1, layer1) = push_and_mirror(&o, &m, b"one, from wherever");
    let before = (origin.access_log().len(), mirror.access_log().len());
    e.apply("app", &Spec::new(&o, "app").tag("v1").set("mirrors", mirrors.clone())).await;
    let st = e.synced("app", &v1).await;
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["a.txt"], "one, from wherever");
    assert_eq!(sources(&st), [("mirror".to_string(), 1, 1)], "{st}");
    assert_eq!(st["sources"][0]["url"], format!("oci://{m}/cache/app"));
    let (olog, mlog) = (&origin.access_log()[before.0..], &mirror.access_log()[before.1..]);
    assert_eq!(manifest_gets(mlog, "cache/app", &v1), 1, "the manifest from the mirror");
    assert_eq!(blob_gets(mlog, &layer1), 1, "the layer from the mirror");
    assert_eq!(manifest_gets(olog, "app", &v1), 0, "no manifest GET at the origin: {olog:?}");
    assert_eq!(blob_gets(olog, &layer1), 0, "no blob from the origin");
    assert!(olog.iter().any(|l| l.contains("HEAD /v2/app/manifests/v1")), "the tag at the origin: {olog:?}");
    assert!(!mlog.iter().any(|l| l.contains("/manifests/v1")), "never a tag at the mirror: {mlog:?}");

    // v2 is only at the origin: the mirror is asked, lacks it, the origin serves.
    let v2 = push_files(&o, "app:v1", &[("a.txt", b"two, origin only")], &["--plain-http"]);
    let st = e.synced("app", &v2).await;
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["a.txt"], "two, origin only");
    assert_eq!(sources(&st), [("origin".to_string(), 1, 1)], "{st}");
    assert!(manifest_gets(&mirror.access_log(), "cache/app", &v2) >= 1, "the mirror was asked first");

    // v3 on the mirror, but its layer there is not what the digest says:
    // never published; the fetch is done again from the origin.
    let (v3, layer3) = push_and_mirror(&o, &m, b"three, tampered on the mirror");
    let data = mirror.blob_data(&layer3);
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    // (crane copy read the origin's copy once itself)
    let (o3, m3) = (blob_gets(&origin.access_log(), &layer3), blob_gets(&mirror.access_log(), &layer3));
    let st = e.synced("app", &v3).await;
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["a.txt"], "three, tampered on the mirror");
    assert_eq!(sources(&st), [("mirror".to_string(), 1, 0), ("origin".to_string(), 0, 1)], "{st}");
    assert_eq!(blob_gets(&mirror.access_log(), &layer3) - m3, 1, "the bad copy was read once");
    assert_eq!(blob_gets(&origin.access_log(), &layer3) - o3, 1, "then the origin's");
}

/// A mirror that is down costs nothing but the attempt: the origin serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_that_is_down_falls_back_to_the_origin() {
    let e = Env::new("mirror-down").await;
    let origin = Distribution::start();
    let mut mirror = Distribution::start();
    let m = mirror.host();
    mirror.stop();
    let d = push_files(&origin.host(), "app:v1", &[("a.txt", b"from the origin")], &["--plain-http"]);
    let mirrors = json!([{"url": format!("oci://{m}/app"), "insecure": true}]);
    e.apply("app", &Spec::new(&origin.host(), "app").tag("v1").set("mirrors", mirrors)).await;
    let st = e.synced("app", &d).await;
    assert_eq!(sources(&st), [("origin".to_string(), 1, 1)], "{st}");
    // A mirror that refuses (500 for manifests, 503 for blobs) is asked once
    // per manifest and once per layer: the origin is the retry, not the
    // mirror again with backoff.
    let refusing = Ferro::start().await;
    refusing.hooks.fail_manifests.store(true, Ordering::SeqCst);
    refusing.hooks.fault_blobs(Fault::Unavailable);
    let d2 = push_files(&origin.host(), "refused:v1", &[("b.txt", b"the mirror refused this")], &["--plain-http"]);
    let mirrors = json!([{"url": format!("oci://{}/refused", refusing.host()), "insecure": true}]);
    e.apply("refused", &Spec::new(&origin.host(), "refused").tag("v1").set("mirrors", mirrors)).await;
    let st = e.synced("refused", &d2).await;
    assert_eq!(sources(&st), [("origin".to_string(), 1, 1)], "{st}");
    assert_eq!(refusing.hooks.manifest_requests.load(Ordering::SeqCst), 1, "one attempt at the manifest");
    assert_eq!(refusing.hooks.blob_requests.load(Ordering::SeqCst), 1, "one attempt at the layer");
    // and a spec that names a mirror badly is the user's to fix
    let bad = json!([{"url": format!("oci://{m}/app:latest")}]);
    e.apply("bad", &Spec::new(&origin.host(), "app").tag("v1").set("mirrors", bad)).await;
    let (reason, message) = e.ready("bad", false).await;
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(message.contains("spec.mirrors"), "{message}");
}

/// The agent and the CLI take the same mirrors: the agent the Artifact's
/// `spec.mirrors`, `ocisync pull` its `--mirror`.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_and_the_cli_fetch_through_the_mirror_too() {
    use crate::agent::{agent, agent_access, published};
    let e = Env::new("mirror-agent").await;
    let origin = Distribution::start();
    let mirror = Distribution::start();
    let (o, m) = (origin.host(), mirror.host());
    let (d, layer) = push_and_mirror(&o, &m, b"for the agent and the cli");
    let origin_gets = blob_gets(&origin.access_log(), &layer);
    let mirrors = json!([{"url": format!("oci://{m}/cache/app"), "insecure": true}]);
    e.apply("app", &Spec::new(&o, "app").tag("v1").set("mirrors", mirrors)).await;
    e.synced("app", &d).await;
    let after_operator = blob_gets(&mirror.access_log(), &layer);

    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = agent_access(&e, "app", tmp.path());
    let dir = tmp.path().join("files");
    let artifact = format!("{}/app", e.ns);
    let out = agent(&kubeconfig, &artifact, &dir, &["--one-time", "--listen", "0"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(published(&dir).as_deref(), Some(d.as_str()));
    assert_eq!(std::fs::read(dir.join("a.txt")).unwrap(), b"for the agent and the cli");
    assert_eq!(blob_gets(&mirror.access_log(), &layer), after_operator + 1, "the agent's download, from the mirror");

    let out_dir = tmp.path().join("cli");
    let mirror_url = format!("oci://{m}/cache/app");
    let out = crate::support::ocisync(&[
        "pull",
        "--insecure",
        "--mirror",
        &mirror_url,
        "--mirror-insecure",
        "--output",
        "json",
        &format!("oci://{o}/app:v1"),
        "--out",
        out_dir.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sources"][0]["url"], mirror_url, "{report}");
    assert_eq!(
        (report["sources"][0]["role"].as_str(), report["sources"][0]["layers"].as_u64()),
        (Some("mirror"), Some(1))
    );
    assert_eq!(report["sources"].as_array().map(Vec::len), Some(1), "nothing from the origin: {report}");
    assert_eq!(std::fs::read(out_dir.join("a.txt")).unwrap(), b"for the agent and the cli");
    assert_eq!(blob_gets(&origin.access_log(), &layer), origin_gets, "no layer from the origin, by anyone");
    // a mirror named with a tag is a usage error
    let bad = crate::support::ocisync(&[
        "pull",
        "--mirror",
        &format!("oci://{m}/cache/app:v1"),
        &format!("oci://{o}/app:v1"),
        "--out",
        "/tmp/never",
    ])
    .await;
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
}
