//! Namespaced mode (`--namespaces`), under the chart's RBAC rendered with
//! `namespaces: [nsmode-in]`: Roles there, and cluster-wide only the policy
//! kind and a `get` of that namespace. The operator syncs what is in its
//! namespaces, never touches the rest, and still applies cluster policies.

use std::process::Command;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::cluster::{ControlPlane, Env, OPERATOR_LABEL, Spec, permissions};
use crate::support::*;

const SA: &str = "system:serviceaccount:ocisync-system:ocisync-ns";

#[tokio::test(flavor = "multi_thread")]
async fn a_namespaced_operator_stays_in_its_namespaces() {
    let cp = ControlPlane::shared();
    let admin = cp.admin().await;
    let inside = Env::dedicated("nsmode-in", "nsmode").await;
    let outside = Env::dedicated("nsmode-out", "nsmode").await;
    let label = "ocisync.test/nsmode-policy";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let labels = json!({"metadata": {"labels": {label: "yes"}}});
    namespaces.patch("nsmode-in", &PatchParams::default(), &Patch::Merge(&labels)).await.unwrap();

    // the chart's RBAC for a second release, "ocisync-ns", in namespaced mode
    let values =
        json!({"releaseName": "ocisync-ns", "namespaces": ["nsmode-in"], "leaderElection": {"enabled": false}});
    let python = std::env::var("OCISYNC_VALIDATORS").unwrap_or_else(|_| "/var/tmp/ocisync/validators".into());
    let rbac = run(Command::new(format!("{python}/bin/python")).arg(repo_root().join("e2e/check-chart.py")).args([
        "render-rbac",
        "ocisync-system",
        &values.to_string(),
    ]));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rbac.yaml"), &rbac.stdout).unwrap();
    cp.kubectl(&["apply", "-f", dir.path().join("rbac.yaml").to_str().unwrap()]);

    // exactly these permissions: inside, the Role's; outside, nothing of ours but the cluster-wide two
    let cluster_wide = [
        "clusterartifactpolicies.ocisync.dev [] get list watch",
        "namespaces [nsmode-in] get",
        "selfsubjectaccessreviews.authorization.k8s.io [] create",
        "selfsubjectrulesreviews.authorization.k8s.io [] create",
    ];
    let role = [
        "artifacts.ocisync.dev [] get list watch",
        "artifacts.ocisync.dev/status [] get patch update",
        "configmaps [] create get list patch update watch",
        "events.events.k8s.io [] create patch",
        "secrets [] get list watch",
        "serviceaccounts [] get list watch",
    ];
    let sorted = |v: Vec<&str>| {
        let mut v: Vec<String> = v.into_iter().map(String::from).collect();
        v.sort();
        v
    };
    assert_eq!(permissions(cp, SA, "nsmode-out"), sorted(cluster_wide.to_vec()));
    assert_eq!(permissions(cp, SA, "nsmode-in"), sorted([&cluster_wide[..], &role[..]].concat()));

    // a kubeconfig with that ServiceAccount's token
    let token = cp.kubectl(&["create", "token", "ocisync-ns", "-n", "ocisync-system", "--duration", "1h"]).stdout;
    let token = String::from_utf8(token).unwrap();
    let base = std::fs::read_to_string(&cp.operator_kubeconfig).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let replaced: String = base
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("user: {token:") {
                format!("  user: {{token: \"{}\"}}", token.trim())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&kubeconfig, replaced).unwrap();
    let selector = format!("{OPERATOR_LABEL}=nsmode");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocisync"));
    cmd.args(["operator", "--namespaces", "nsmode-in", "--leader-elect=false", "--metrics-addr", "0"])
        .args(["--watch-label-selector", &selector, "--work-dir"])
        .arg(dir.path().join("work"))
        .env("KUBECONFIG", &kubeconfig)
        .env("OCISYNC_LOG", "info,ocisync=debug")
        .stdout(std::process::Stdio::null());
    let mut op = Proc::spawn("nsmode-operator", &mut cmd, dir.path().join("operator.log"));

    let reg = Distribution::start();
    let d = push_files(&reg.host(), "app:v1", &[("app.yaml", b"ns\n")], &["--plain-http"]);
    let spec = Spec::new(&reg.host(), "app").tag("v1");
    inside.apply("app", &spec).await;
    outside.apply("app", &spec).await;
    if tokio::time::timeout(Duration::from_secs(50), inside.synced("app", &d)).await.is_err() {
        panic!("not synced; the operator said:\n{}", op.logs());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(outside.status("app").await.is_null(), "outside its namespaces nothing is touched");
    assert!(outside.config_map("app").await.is_none());

    // a cluster policy on the labelled namespace, its key in that namespace
    let signer = crate::support::cosign::Signer::new();
    inside
        .create_secret(json!({"metadata": {"name": "policy-keys"}, "stringData": {"k.pub": signer.public_pem()}}))
        .await;
    let policies: Api<ocisync::api::ClusterArtifactPolicy> = Api::all(admin.clone());
    let name = "nsmode-require-signed";
    let policy = serde_json::from_value(json!({
        "apiVersion": "ocisync.dev/v1alpha1", "kind": "ClusterArtifactPolicy", "metadata": {"name": name},
        "spec": {"namespaceSelector": {"matchLabels": {label: "yes"}},
                 "verify": {"keys": {"secretRef": {"name": "policy-keys", "namespace": "nsmode-in"}}}}
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    let (reason, message) = inside.ready("app", false).await;
    assert_eq!(reason, "PolicyViolation", "{message}");
    policies.delete(name, &Default::default()).await.unwrap();
    assert!(op.alive(), "{}", op.logs());
}
