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

/// A SIGTERM at any moment of start-up ends the operator within seconds,
/// as PID 1 of its own PID namespace, which is what it is in a pod: there
/// the kernel drops a signal PID 1 has no handler for, so one that came
/// before the handler was installed would be lost for good and the kubelet
/// would wait out the grace period. Sent the moment the process catches
/// SIGTERM (its `SigCgt`), when `/metrics` answers, and when `/readyz`
/// says ready while a second replica waits for the Lease another holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_at_any_moment_of_start_up_ends_it_as_pid_1() {
    const LEASE: &str = "ocisync-test-early-term";
    let cp = ControlPlane::shared();
    let selector = format!("{}=early-term", crate::support::cluster::OPERATOR_LABEL);
    let args = ["--watch-label-selector", &selector, "--leader-elect=true", "--lease-name", LEASE];
    // holds the Lease throughout, so the others start as followers
    let _holder = Operator::start(cp, "early-term-holder", &args);
    let leases: Api<Lease> = Api::namespaced(cp.admin().await, "ocisync-system");
    eventually("the holder to take the Lease", 30, async || {
        (leases.get_opt(LEASE).await.ok()??.spec?.holder_identity? == "early-term-holder").then_some(())
    })
    .await;
    for (i, moment) in
        ["caught", "caught+20ms", "caught+100ms", "metrics", "readyz", "caught", "metrics"].into_iter().enumerate()
    {
        let name = format!("early-term-{i}");
        let mut op = Operator::start_under(cp, &name, &args, &["unshare", "--pid", "--fork", "--kill-child"]);
        let url = |path: &str| format!("http://{}/{path}", op.metrics);
        let (metrics, readyz) = (url("metrics"), url("readyz"));
        let proc = op.proc.as_mut().unwrap();
        let started = std::time::Instant::now();
        let pid = loop {
            assert!(proc.alive(), "{name}: unshare exited");
            assert!(started.elapsed() < Duration::from_secs(10), "{name}: no child of unshare");
            if let Some(pid) = child_of(proc.pid()) {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let ready = async |url: &str| reqwest::get(url).await.is_ok_and(|r| r.status() == 200);
        loop {
            assert!(started.elapsed() < Duration::from_secs(30), "{name}: never reached {moment}");
            assert!(proc.alive(), "{name} exited before {moment}");
            let reached = match moment.split_once('+') {
                _ if moment == "metrics" => ready(&metrics).await,
                _ if moment == "readyz" => ready(&readyz).await,
                Some((_, delay)) => {
                    if catches_sigterm(pid) {
                        let ms = delay.trim_end_matches("ms").parse().unwrap();
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    catches_sigterm(pid)
                }
                None => catches_sigterm(pid),
            };
            if reached {
                break;
            }
            tokio::time::sleep(Duration::from_millis(if moment.starts_with("caught") { 0 } else { 5 })).await;
        }
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::TERM)
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while proc.alive() {
            assert!(std::time::Instant::now() < deadline, "{name}: still running 10 s after SIGTERM at {moment}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The process whose parent is `parent` (unshare's one child).
fn child_of(parent: u32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces, so after ')'
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent).then_some(pid)
    })
}

/// Has `pid` a handler for SIGTERM (bit 15 of `SigCgt`)?
fn catches_sigterm(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << 14) != 0)
}

/// A SIGTERM while a sync hangs on a blob: in-flight syncs get the drain
/// (20 s), then are dropped; the operator exits and releases the Lease.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_during_a_hung_sync_ends_it_after_the_drain() {
    const LEASE: &str = "ocisync-test-term-sync";
    let cp = ControlPlane::shared();
    let e = Env::dedicated("term-sync", "term-sync").await;
    let leases: Api<Lease> = Api::namespaced(e.admin.clone(), "ocisync-system");
    let holder = async || -> Option<String> { leases.get_opt(LEASE).await.ok()??.spec?.holder_identity };
    let selector = format!("{}=term-sync", crate::support::cluster::OPERATOR_LABEL);
    let args = ["--watch-label-selector", &selector, "--lease-name", LEASE];
    let mut a = Operator::start(cp, "term-sync-a", &args);
    eventually("term-sync-a to hold the Lease", 30, async || (holder().await? == "term-sync-a").then_some(())).await;
    let reg = Ferro::start().await;
    reg.push("app:v1", &[("f", b"1")]).await;
    reg.hooks.stall_secs.store(120, std::sync::atomic::Ordering::SeqCst);
    reg.hooks.stall_blobs.store(true, std::sync::atomic::Ordering::SeqCst);
    e.apply("hung", &Spec::new(&reg.host(), "app").tag("v1")).await;
    eventually("the sync to hang on its blob", 30, async || {
        (reg.hooks.blob_requests.load(std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    let proc = a.proc.as_mut().unwrap();
    let pid = i32::try_from(proc.pid()).unwrap();
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::TERM).unwrap();
    let sent = std::time::Instant::now();
    // it waits for the drain, not less: the sync was given its chance
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(proc.alive(), "exited before the drain was over");
    eventually("term-sync-a to exit after the drain", 15, async || (!proc.alive()).then_some(())).await;
    assert!(sent.elapsed() < Duration::from_secs(30), "{:?}", sent.elapsed());
    assert!(proc.exit_code() == Some(0), "a SIGTERM is a clean exit: {:?}", proc.exit_code());
    assert_ne!(holder().await.as_deref(), Some("term-sync-a"), "the Lease was released");
    assert!(e.config_map("hung").await.is_none(), "nothing written by the dropped sync");
}
