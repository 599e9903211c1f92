//! `ocisync check` on a tree with one of each failure, against
//! distribution 2.8 and artifacts signed by the real cosign, and on a clean
//! tree: what fails says which check and why, and the exit code gates.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::cosign::Signer;
use crate::support::*;

fn secret(name: &str, ns: &str, pem: &str) -> String {
    let body: String = pem.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n  cosign.pub: |\n{body}"
    )
}

fn artifact(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

async fn check(dir: &Path) -> (Option<i32>, Value) {
    let out = ocisync(&["check", dir.to_str().unwrap(), "--insecure", "--output", "json"]).await;
    (out.status.code(), json(&out))
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_each_failure_and_passes_a_clean_tree() {
    let reg = Distribution::start();
    let host = reg.host();
    let (platform, stranger) = (Signer::new(), Signer::new());
    let app = push_files(&host, "app:v1", &[("a", b"a\n")], &["--plain-http"]);
    let foreign = push_files(&host, "foreign:v1", &[("f", b"f\n")], &["--plain-http"]);
    push_files(&host, "plain:v1", &[("p", b"p\n")], &["--plain-http"]);
    platform.sign(&format!("{host}/app@{app}"));
    stranger.sign(&format!("{host}/foreign@{foreign}"));

    let tree = tempfile::tempdir().unwrap();
    let t = tree.path();
    let base = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels: {{env: prod}}\n---\n{}---\n{}---\n\
         apiVersion: ocisync.dev/v1alpha1\nkind: ClusterArtifactPolicy\nmetadata: {{name: prod-signed}}\n\
         spec:\n  namespaceSelector: {{matchLabels: {{env: prod}}}}\n  verify:\n    keys: {{secretRef: {{name: platform, namespace: ocisync-system}}}}\n",
        secret("platform", "ocisync-system", &platform.public_pem()),
        secret("cosign", "team", &platform.public_pem()),
    );
    fs::write(t.join("base.yaml"), &base).unwrap();
    let good = artifact(
        "good",
        "prod",
        &format!("  url: oci://{host}/app\n  insecure: true\n  ref: {{tag: v1, digest: {app}}}\n"),
    );
    fs::write(t.join("good.yaml"), &good).unwrap();
    let (code, doc) = check(t).await;
    assert_eq!(code, Some(0), "a clean tree: {doc}");
    assert_eq!(doc["artifacts"][0]["ok"], true);
    assert_eq!(doc["artifacts"][0]["digest"], app.as_str());

    let missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    fs::create_dir_all(t.join("apps")).unwrap();
    fs::write(t.join("apps/schema.yaml"), artifact("schema", "team", "  urll: oci://r.io/x\n")).unwrap();
    let pinned_nowhere = format!("  url: oci://{host}/app\n  insecure: true\n  ref: {{digest: '{missing}'}}\n");
    fs::write(t.join("apps/missing.yaml"), artifact("missing", "team", &pinned_nowhere)).unwrap();
    let plain = format!("  url: oci://{host}/plain\n  insecure: true\n  ref: {{tag: v1}}\n");
    fs::write(t.join("apps/unsigned.yaml"), artifact("unsigned", "prod", &plain)).unwrap();
    let wrong = format!(
        "  url: oci://{host}/foreign\n  insecure: true\n  ref: {{tag: v1}}\n  verify: {{keys: {{secretRef: {{name: cosign}}}}}}\n"
    );
    fs::write(t.join("apps/wrong.yaml"), artifact("wrong", "team", &wrong)).unwrap();

    let (code, doc) = check(t).await;
    assert_eq!(code, Some(1), "{doc}");
    let rows = doc["artifacts"].as_array().unwrap();
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap_or_else(|| panic!("{n}: {doc}")).clone();
    let failed = |n: &str| {
        let f = row(n)["failed"].clone();
        assert!(f.is_object(), "{n} did not fail: {doc}");
        (
            f["check"].as_str().unwrap().to_string(),
            f["reason"].as_str().unwrap().to_string(),
            f["message"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(row("good")["ok"], true);
    let (c, _, m) = failed("schema");
    assert_eq!(c, "schema");
    assert!(m.contains(".spec.urll: unknown field") && m.contains(".spec: url is required"), "{m}");
    let (c, r, _) = failed("missing");
    assert_eq!((c.as_str(), r.as_str()), ("digest", "NotFound"));
    let (c, r, m) = failed("unsigned");
    assert_eq!((c.as_str(), r.as_str()), ("verify", "PolicyViolation"));
    assert!(m.contains("ClusterArtifactPolicy/prod-signed"), "{m}");
    let (c, r, _) = failed("wrong");
    assert_eq!((c.as_str(), r.as_str()), ("verify", "UntrustedSigner"));
    assert_eq!(rows.len(), 5);
}
