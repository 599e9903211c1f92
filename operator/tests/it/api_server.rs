//! The Artifact CRD on a real kube-apiserver (1.20, etcd, no kubelet).

use crate::support::cluster::ControlPlane;
use kube::api::{Api, Patch, PatchParams, PostParams};
use ocisync::api::{Artifact, ArtifactSpec, ArtifactStatus};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_committed_crd_is_served_with_status_and_columns() {
    let cp = ControlPlane::shared();
    let client = cp.admin().await;
    cp.crd_established(&client).await;
    cp.namespace(&client, "crd-test").await;
    let api: Api<Artifact> = Api::namespaced(client.clone(), "crd-test");
    let spec: ArtifactSpec = serde_json::from_value(json!({
        "url": "oci://127.0.0.1:5000/app",
        "ref": {"tag": "v1"},
        "select": {"include": ["*.yaml"]},
        "target": {"configMap": {"keys": "Basename"}}
    }))
    .unwrap();
    // Retried: a just-established CRD can take a moment to be served.
    let mut created = None;
    for _ in 0..50 {
        match api.create(&PostParams::default(), &Artifact::new("demo", spec.clone())).await {
            Ok(a) => {
                created = Some(a);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let created = created.expect("the API server serves Artifacts");
    assert_eq!(created.spec, spec, "the schema keeps every field");

    // status is a subresource, conditions included
    let status = json!({"status": {
        "observedGeneration": 1, "tag": "v1", "digest": format!("sha256:{}", "a".repeat(64)),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "3 files",
                        "lastTransitionTime": "2026-11-23T00:00:00Z", "observedGeneration": 1}]
    }});
    api.patch_status("demo", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let got = api.get("demo").await.unwrap();
    let st: &ArtifactStatus = got.status.as_ref().unwrap();
    assert_eq!(st.tag.as_deref(), Some("v1"));
    assert_eq!(st.conditions[0].reason, "Synced");
    // a spec write does not touch status, and the reverse
    api.patch("demo", &PatchParams::default(), &Patch::Merge(json!({"status": {"tag": "nope"}}))).await.unwrap();
    assert_eq!(api.get("demo").await.unwrap().status.unwrap().tag.as_deref(), Some("v1"));

    let plain = String::from_utf8(cp.kubectl(&["get", "art", "-n", "crd-test"]).stdout).unwrap();
    let header: Vec<&str> = plain.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "TAG", "DIGEST", "AGE"], "{plain}");
    let table = String::from_utf8(cp.kubectl(&["get", "art", "-n", "crd-test", "-o", "wide"]).stdout).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "TAG", "DIGEST", "STATUS", "AGE"], "{table}");
    assert!(table.contains("True") && table.contains("3 files"), "{table}");
}

/// The samples in config/samples are accepted by the real API server (a
/// server-side dry run: the CRDs' schemas, not just YAML syntax).
#[tokio::test(flavor = "multi_thread")]
async fn the_samples_are_valid_objects() {
    let cp = ControlPlane::shared();
    let client = cp.admin().await;
    cp.crd_established(&client).await;
    cp.namespace(&client, "samples").await;
    let dir = crate::support::repo_root().join("config/samples");
    let out = cp.kubectl(&["apply", "--dry-run=server", "-n", "samples", "-k", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for name in
        ["app-config", "app-config-signed", "app-config-pinned", "app-config-mirrored", "require-platform-signature"]
    {
        assert!(text.contains(&format!("/{name} created (server dry run)")), "{name}: {text}");
    }
}

/// The README's permission rows for the operator: `lease` in the release
/// namespace, `tokens` when a provider has tokenAttributes.
fn permission_rows(lease: bool, tokens: bool) -> Vec<String> {
    let mut want: Vec<String> = include_str!("../../../e2e/operator-permissions.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| match (l.strip_prefix("release-namespace: "), l.strip_prefix("token-attributes: ")) {
            (Some(row), _) => lease.then_some(row),
            (_, Some(row)) => tokens.then_some(row),
            _ => Some(l),
        })
        .map(str::to_string)
        .collect();
    want.sort();
    want
}

/// The operator's permissions under the chart's RBAC, as the API server
/// reports them (`kubectl auth can-i --list`), are exactly the README's
/// table: the Lease only in its own namespace, nothing else anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_can_do_exactly_what_the_readme_says() {
    let cp = ControlPlane::shared();
    let client = cp.admin().await;
    cp.namespace(&client, "rbac-elsewhere").await;
    for (namespace, lease) in [("ocisync-system", true), ("rbac-elsewhere", false)] {
        let got = crate::support::cluster::permissions(cp, crate::support::cluster::OPERATOR_USER, namespace);
        assert_eq!(got, permission_rows(lease, false), "in {namespace}");
    }
}

/// With a credential provider that has tokenAttributes, the chart's RBAC
/// (rendered by Helm's engine for a second release) adds `create` on
/// serviceaccounts/token, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn token_attributes_add_only_token_requests() {
    let cp = ControlPlane::shared();
    let client = cp.admin().await;
    cp.namespace(&client, "rbac-tokens").await;
    let values = json!({"releaseName": "ocisync-tokens", "leaderElection": {"enabled": false},
        "credentialProviders": {"config": {"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",
            "providers": [{"name": "acr-credential-provider", "matchImages": ["*.azurecr.io"], "defaultCacheDuration": "10m",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "tokenAttributes": {"serviceAccountTokenAudience": "api://AzureADTokenExchange", "requireServiceAccount": true}}]}}});
    let python = std::env::var("OCISYNC_VALIDATORS").unwrap_or_else(|_| "/var/tmp/ocisync/validators".into());
    let rbac = crate::support::run(
        std::process::Command::new(format!("{python}/bin/python"))
            .arg(crate::support::repo_root().join("e2e/check-chart.py"))
            .args(["render-rbac", "ocisync-system", &values.to_string()]),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rbac.yaml"), &rbac.stdout).unwrap();
    cp.kubectl(&["apply", "-f", dir.path().join("rbac.yaml").to_str().unwrap()]);
    let user = "system:serviceaccount:ocisync-system:ocisync-tokens";
    let got = crate::support::cluster::permissions(cp, user, "rbac-tokens");
    assert_eq!(got, permission_rows(false, true));
}
