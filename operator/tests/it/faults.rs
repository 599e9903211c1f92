//! A registry that breaks in the ways real ones do, in front of the real
//! engine: every fault ends in a clear reason, the last good content stays,
//! retries keep to their schedule, and the next good answer recovers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::cluster::{Env, Spec};
use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_blob_fault_fails_the_pull_cleanly() {
    let reg = Ferro::start().await;
    // big enough that the headers are on their way before the body breaks
    let content = "good: true\n".repeat(20_000);
    reg.push("app:v1", &[("config.yaml", content.as_bytes())]).await;
    let r = format!("{}/app:v1", reg.host());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    assert!(pull(&r, &out, &[]).await.status.success());
    let before = tree(&out);
    // (fault, exit code, most blob requests one pull may make)
    let cases = [
        (Fault::Unavailable, 8, 4),
        (Fault::Throttled, 8, 4),
        (Fault::Reset, 8, 1),
        (Fault::Corrupted, 5, 1),
        (Fault::WrongLength, 8, 1),
        (Fault::Drip, 8, 1),
    ];
    for (fault, code, most) in cases {
        reg.hooks.fault_blobs(fault);
        let n0 = reg.hooks.blob_requests.load(Ordering::SeqCst);
        let o = pull(&r, &out, &["--timeout", "3s", "--output", "json"]).await;
        let n = reg.hooks.blob_requests.load(Ordering::SeqCst) - n0;
        assert_eq!(o.status.code(), Some(code), "{fault:?}: {}", stderr(&o));
        assert!(json(&o)["error"]["message"].is_string(), "{fault:?}");
        assert!((1..=most).contains(&n), "{fault:?}: {n} blob requests");
        assert_eq!(tree(&out), before, "{fault:?}: the output is untouched");
        assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1, "{fault:?}: no staging left behind");
    }
    reg.hooks.fault_blobs(Fault::None);
    assert!(pull(&r, &out, &[]).await.status.success(), "recovered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupting_registry_keeps_the_last_good_content_backs_off_and_recovers() {
    let e = Env::new("fault-corrupt").await;
    let reg = Ferro::start().await;
    let v1 = reg.push("app:v1", &[("a.txt", b"one")]).await;
    e.apply("corrupt", &Spec::new(&reg.host(), "app").tag("v1")).await;
    e.synced("corrupt", &v1).await;
    reg.hooks.fault_blobs(Fault::Corrupted);
    let v2 = reg.push("app:v1", &[("a.txt", b"two")]).await;
    let (reason, message) = e.ready("corrupt", false).await;
    assert_eq!(reason, "DigestMismatch", "{message}");
    assert_eq!(e.condition("corrupt", "Reconciling").await.unwrap().0, "True");
    assert_eq!(e.config_map("corrupt").await.unwrap().data.unwrap()["a.txt"], "one", "the last good content");
    let n0 = reg.hooks.blob_requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(16)).await;
    let n = reg.hooks.blob_requests.load(Ordering::SeqCst) - n0;
    // backoff 5 s, 10 s, 20 s: two or three more tries in 16 s, not sixteen
    assert!(n <= 3, "{n} blob requests in 16 s");
    reg.hooks.fault_blobs(Fault::None);
    e.synced("corrupt", &v2).await;
    assert_eq!(e.config_map("corrupt").await.unwrap().data.unwrap()["a.txt"], "two");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_tag_list_is_cut_short() {
    let e = Env::new("fault-tags").await;
    let reg = Ferro::start().await;
    reg.push("app:1.0.0", &[("a.txt", b"one")]).await;
    reg.hooks.endless_tags.store(true, Ordering::SeqCst);
    let n0 = reg.hooks.requests.load(Ordering::SeqCst);
    e.apply("endless", &Spec::new(&reg.host(), "app").semver(">=1.0.0")).await;
    let (reason, message) = e.ready("endless", false).await;
    assert_eq!(reason, "RegistryError", "{message}");
    assert!(message.contains("past 100 pages"), "{message}");
    let n = reg.hooks.requests.load(Ordering::SeqCst) - n0;
    assert!((100..=110).contains(&n), "{n} requests for one attempt");
}
