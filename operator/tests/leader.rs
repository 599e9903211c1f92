//! Two operator replicas against one real API server: only the holder of
//! the Lease reconciles, and the other takes over when the leader dies.

mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::control_plane::ControlPlane;
use support::operator::{service_account_kubeconfig, spawn};
use support::tarball::{Item::*, TAR, tar};
use support::*;

struct Replica {
    child: Child,
    log: std::path::PathBuf,
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_log(r: &Replica, needle: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !r.log().contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{}", r.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_reconciles_and_a_follower_takes_over() {
    let cp = ControlPlane::shared();
    let admin = cp.admin().await;
    cp.namespace(&admin, "ha").await;
    let kubeconfig = tokio::task::spawn_blocking(move || service_account_kubeconfig(cp)).await.unwrap();
    let replica = |name: &str| {
        let log = cp.dir.join(format!("{name}.log"));
        let args = ["--lease-duration", "4", "--metrics-addr", ""];
        let child = spawn(&kubeconfig, &cp.dir.join(format!("{name}-work")), &log, name, &args);
        Replica { child, log }
    };
    let mut a = replica("replica-a");
    wait_log(&a, "became the leader", 30).await;
    let b = replica("replica-b");
    wait_log(&b, "waiting to become the leader", 30).await;

    let reg = Distribution::start();
    let v1 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let artifacts: Api<ocisync::api::Artifact> = Api::namespaced(admin.clone(), "ha");
    let apply = json!({"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "metadata": {"name": "ha"},
                       "spec": {"url": format!("oci://{}/app", reg.host()), "ref": {"tag": "v1"}, "insecure": true, "interval": "1s"}});
    artifacts.patch("ha", &PatchParams::apply("test"), &Patch::Apply(&apply)).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "ha");
    let synced = async |digest: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(cm) = cms.get_opt("ha").await.unwrap()
                && cm.metadata.annotations.as_ref().and_then(|a| a.get("ocisync.dev/digest")).map(String::as_str)
                    == Some(digest)
            {
                return;
            }
            assert!(Instant::now() < deadline, "not synced to {digest}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    synced(&v1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.log().contains("reconcile started"), "the leader reconciles");
    assert!(!b.log().contains("reconcile started"), "the follower does not:\n{}", b.log());
    assert!(!b.log().contains("became the leader"));

    // the leader dies without releasing the lease: the follower waits out
    // the lease, takes over, and syncs what changed meanwhile
    let _ = a.child.kill();
    let v2 = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"2")]))]);
    wait_log(&b, "became the leader", 30).await;
    synced(&v2).await;
    assert!(b.log().contains("reconcile started"));
}
