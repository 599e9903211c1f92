//! Two operator replicas against one real API server: only the holder of
//! the Lease reconciles, and the other takes over when the leader dies.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::support::cluster::{ControlPlane, Env, Operator, Spec};
use crate::support::tarball::{Item::*, TAR, tar};
use crate::support::*;

const LEASE: &str = "ocisync-test-ha";

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_reconciles_and_a_follower_takes_over() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("ha", "ha").await;
    let leases: Api<Lease> = Api::namespaced(e.admin.clone(), "ocisync-system");
    let holder = async || -> Option<String> { leases.get_opt(LEASE).await.ok()??.spec?.holder_identity };
    let args = ["--leader-elect=true", "--lease-name", LEASE, "--lease-duration", "4s"];
    let replica = |name: &str| {
        let selector = format!("{}=ha", crate::support::cluster::OPERATOR_LABEL);
        let mut all = vec!["--watch-label-selector", selector.as_str()];
        all.extend_from_slice(&args);
        Operator::start(cp, name, &all)
    };
    let mut a = replica("replica-a");
    eventually("replica-a to hold the Lease", 30, async || (holder().await? == "replica-a").then_some(())).await;
    let b = replica("replica-b");
    eventually("replica-b to be up", 30, async || {
        reqwest::get(format!("http://{}/readyz", b.metrics)).await.ok().filter(|r| r.status() == 200)
    })
    .await;

    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    e.apply("ha", &Spec::new(&reg.host(), "app").tag("v1")).await;
    e.synced("ha", &v1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.reconciles().await >= 1.0, "the leader reconciles");
    assert_eq!(b.reconciles().await, 0.0, "the follower does not");
    assert_eq!(holder().await.as_deref(), Some("replica-a"));

    // the leader dies without releasing the lease: the follower waits out
    // the lease, takes over, and syncs what changed meanwhile
    a.proc.as_mut().unwrap().kill();
    let v2 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"2")]))]);
    eventually("replica-b to hold the Lease", 30, async || (holder().await? == "replica-b").then_some(())).await;
    e.synced("ha", &v2).await;
    assert!(b.reconciles().await >= 1.0);
}

/// A leader that loses its Lease stops writing at once: the sync it had in
/// flight is dropped, not finished, since another replica may already be
/// writing.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_that_loses_its_lease_drops_what_it_was_doing() {
    const LEASE: &str = "ocisync-test-abort";
    let cp = ControlPlane::shared();
    let e = Env::dedicated("ha-abort", "abort").await;
    let leases: Api<Lease> = Api::namespaced(e.admin.clone(), "ocisync-system");
    let holder = async || -> Option<String> { leases.get_opt(LEASE).await.ok()??.spec?.holder_identity };
    let selector = format!("{}=abort", crate::support::cluster::OPERATOR_LABEL);
    let args = ["--watch-label-selector", &selector, "--lease-name", LEASE, "--lease-duration", "4s"];
    let mut a = Operator::start(cp, "abort-a", &args);
    eventually("abort-a to hold the Lease", 30, async || (holder().await? == "abort-a").then_some(())).await;

    let reg = Ferro::start().await;
    reg.push("app:v1", &[("f", b"1")]).await;
    reg.hooks.stall_secs.store(8, std::sync::atomic::Ordering::SeqCst);
    reg.hooks.stall_blobs.store(true, std::sync::atomic::Ordering::SeqCst);
    e.apply("abort", &Spec::new(&reg.host(), "app").tag("v1")).await;
    eventually("the sync to hang on its blob", 30, async || {
        (reg.hooks.blob_requests.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // another replica takes the Lease (as one would after a partition)
    let now = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ))
    .unwrap();
    let steal = serde_json::json!({"spec": {"holderIdentity": "abort-thief", "leaseDurationSeconds": 600,
                                             "acquireTime": now, "renewTime": now}});
    leases.patch(LEASE, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&steal)).await.unwrap();
    let proc = a.proc.as_mut().unwrap();
    eventually("abort-a to stop", 20, async || (!proc.alive()).then_some(())).await;
    // past the end of the blob's stall: a drained sync would have written by now
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(e.config_map("abort").await.is_none(), "nothing written after the Lease was lost");
    assert!(e.status("abort").await.get("lastSyncedDigest").is_none());
}

/// A SIGTERM the moment `/metrics` answers, or `/readyz` says ready (while
/// the Lease is taken), ends the operator at once, every time: the signal
/// is listened for before anything else starts, not when first awaited.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_right_after_start_up_is_not_lost() {
    let cp = ControlPlane::shared();
    for i in 0..6 {
        let name = format!("early-term-{i}");
        let probe = if i % 2 == 0 { "metrics" } else { "readyz" };
        let selector = format!("{}=early-term", crate::support::cluster::OPERATOR_LABEL);
        let args =
            ["--watch-label-selector", &selector, "--leader-elect=true", "--lease-name", "ocisync-test-early-term"];
        let mut op = Operator::start(cp, &name, &args);
        let proc = op.proc.as_mut().unwrap();
        let started = std::time::Instant::now();
        let answered = async || {
            let r = reqwest::get(format!("http://{}/{probe}", op.metrics)).await;
            r.is_ok_and(|r| r.status() == 200)
        };
        while !answered().await {
            assert!(started.elapsed() < Duration::from_secs(30), "{name}: /metrics never answered");
            assert!(proc.alive(), "{name} exited before answering");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = i32::try_from(proc.pid()).unwrap();
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::TERM)
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while proc.alive() {
            assert!(std::time::Instant::now() < deadline, "{name}: still running 10 s after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
