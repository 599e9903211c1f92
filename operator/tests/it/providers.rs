//! Kubelet credential provider plugins in front of distribution 2.8 with
//! htpasswd: Artifacts sync with no Secret; the cache follows the answer's
//! `cacheKeyType` and `cacheDuration` (plugin runs counted in the plugin's
//! own log); a rotated password is picked up when the cache expires;
//! `tokenAttributes` gets each tenant a token for its own service account
//! (checked by a TokenReview on the real API server) and its own
//! credentials; plugins that hang, fail, print garbage or give nothing each
//! give their reason while the others keep syncing.
//!
//! The plugin is a script the test writes, speaking the real
//! `credentialprovider.kubelet.k8s.io/v1` JSON: no cloud's plugin can run
//! here without that cloud.

use std::path::Path;

use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::support::cluster::{ControlPlane, Env, Operator, Spec};
use crate::support::eventually;
use crate::support::push_files;
use crate::support::registry::{Distribution, DistributionOptions};

const PLUGIN: &str = r#"#!/usr/bin/env python3
import json, os, sys, time
mode, key_type, ttl = sys.argv[1:4]
req = json.load(sys.stdin)
d = os.environ["PLUGIN_DIR"]
with open(os.path.join(d, "runs.log"), "a") as f:
    f.write(json.dumps({"provider": mode, "image": req["image"], "apiVersion": req["apiVersion"],
                        "token": req.get("serviceAccountToken"),
                        "annotations": req.get("serviceAccountAnnotations")}) + "\n")
if mode == "hang":
    time.sleep(3600)
if mode == "fail":
    sys.exit(3)
if mode == "garbage":
    print("hunter2 {{ not json")
    sys.exit(0)
auth = {}
if mode != "empty":
    user = (req.get("serviceAccountAnnotations") or {}).get("ocisync.test/user", "alice")
    password = open(os.path.join(d, "password-" + user)).read().strip()
    auth[req["image"].split("/")[0]] = {"username": user, "password": password}
answer = {"apiVersion": req["apiVersion"], "kind": "CredentialProviderResponse", "cacheKeyType": key_type, "auth": auth}
if ttl != "-":
    answer["cacheDuration"] = ttl
print(json.dumps(answer))
"#;

fn provider(host: &str, name: &str, args: [&str; 3], extra: &str) -> String {
    format!(
        "- name: {name}\n  matchImages: [\"{host}/{name}\"]\n  defaultCacheDuration: 1h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  args: [{}]\n  env: [{{name: PLUGIN_DIR, value: PLUGIN_DIR_VALUE}}]\n{extra}",
        args.map(|a| format!("\"{a}\"")).join(", ")
    )
}

fn runs(dir: &Path, provider: &str) -> Vec<Value> {
    let log = std::fs::read_to_string(dir.join("runs.log")).unwrap_or_default();
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|r| r["provider"] == provider).collect()
}

async fn service_account(e: &Env, name: &str, user: Option<&str>) {
    let notes = user.map(|u| json!({"ocisync.test/user": u})).unwrap_or(json!({}));
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name, "annotations": notes}})).unwrap();
    Api::namespaced(e.admin.clone(), &e.ns).create(&PostParams::default(), &sa).await.unwrap();
}

/// What the chart grants when a provider has `tokenAttributes`, here as a
/// Role in the tenant's namespace only (the operator's identity is shared
/// by the other tests, whose `can-i` lists must not change).
async fn allow_token_requests(e: &Env) {
    for (kind, body) in [
        (
            "roles",
            json!({"metadata": {"name": "tokens"},
            "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]}),
        ),
        (
            "rolebindings",
            json!({"metadata": {"name": "tokens"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tokens"},
            "subjects": [{"kind": "ServiceAccount", "name": "ocisync", "namespace": "ocisync-system"}]}),
        ),
    ] {
        let file = e.cp.dir.join(format!("{}-{kind}.json", e.ns));
        let mut body = body;
        body["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
        body["kind"] = if kind == "roles" { "Role" } else { "RoleBinding" }.into();
        std::fs::write(&file, body.to_string()).unwrap();
        e.cp.kubectl(&["apply", "-n", &e.ns, "-f", file.to_str().unwrap()]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_provider_plugins_give_each_artifact_its_credentials() {
    let cp = ControlPlane::shared();
    let users = |a: &str, b: &str| vec![("alice".to_string(), a.to_string()), ("bob".to_string(), b.to_string())];
    let mut reg = Distribution::start_with(DistributionOptions { users: users("a-1", "b-1"), ..Default::default() });
    let host = reg.host();
    let push = |reference: &str, content: &[u8], user: &str, password: &str| {
        push_files(&host, reference, &[("f.txt", content)], &["--plain-http", "-u", user, "-p", password])
    };
    let mut digests = std::collections::HashMap::new();
    for repo in ["reg/a", "reg/b", "img/a", "img/b", "rot/a", "tenant/app"] {
        digests.insert(repo, push(&format!("{repo}:v1"), repo.as_bytes(), "alice", "a-1"));
    }

    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("bin");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(dir.path().join("password-alice"), "a-1").unwrap();
    std::fs::write(dir.path().join("password-bob"), "b-1").unwrap();
    let tokens = "  tokenAttributes:\n    serviceAccountTokenAudience: ocisync-test\n    requireServiceAccount: true\n    requiredServiceAccountAnnotationKeys: [ocisync.test/user]\n    cacheType: ServiceAccount\n";
    let mut config = String::from("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n");
    for (name, args, extra) in [
        ("reg", ["reg", "Registry", "1h"], ""),
        ("img", ["img", "Image", "-"], ""),
        ("rot", ["rot", "Registry", "3s"], ""),
        ("tenant", ["tenant", "Registry", "1h"], tokens),
        ("hang", ["hang", "Registry", "1h"], ""),
        ("fail", ["fail", "Registry", "1h"], ""),
        ("garbage", ["garbage", "Registry", "1h"], ""),
        ("empty", ["empty", "Registry", "1h"], ""),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let script = plugins.join(name);
        std::fs::write(&script, PLUGIN).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        config += &provider(&host, name, args, extra);
    }
    let config = config.replace("PLUGIN_DIR_VALUE", dir.path().to_str().unwrap());
    let config_file = dir.path().join("config.yaml");
    std::fs::write(&config_file, config).unwrap();
    let op = Operator::dedicated(
        cp,
        "op-providers",
        &[
            "--image-credential-provider-config",
            config_file.to_str().unwrap(),
            "--image-credential-provider-bin-dir",
            plugins.to_str().unwrap(),
        ],
    );

    let e = Env::dedicated("providers", "op-providers").await;
    let spec = |repo: &str| Spec::new(&host, repo).tag("v1").interval("2s");

    // Registry key: one run serves both repositories of the registry, and
    // no reconcile after runs it again within its hour.
    e.apply("reg-a", &spec("reg/a")).await;
    e.synced("reg-a", &digests["reg/a"]).await;
    e.apply("reg-b", &spec("reg/b")).await;
    e.synced("reg-b", &digests["reg/b"]).await;
    // Image key (and the config's defaultCacheDuration): one run per repository.
    e.apply("img-a", &spec("img/a")).await;
    e.synced("img-a", &digests["img/a"]).await;
    e.apply("img-b", &spec("img/b")).await;
    e.synced("img-b", &digests["img/b"]).await;
    // The failing plugins, beside them.
    for mode in ["hang", "fail", "garbage", "empty"] {
        e.apply(mode, &spec(&format!("{mode}/x"))).await;
    }
    for (mode, want) in [
        ("fail", "credential provider fail failed (exit status 3)"),
        ("garbage", "credential provider garbage answered with something that is not a CredentialProviderResponse"),
        ("empty", "credential provider empty gave no credentials for"),
        ("hang", "credential provider hang did not answer within 30s"),
    ] {
        let (reason, message) = e.ready(mode, false).await;
        assert_eq!(reason, "CredentialsUnavailable", "{mode}: {message}");
        assert!(message.contains(want) && !message.contains("hunter2"), "{mode}: {message}");
        let stalled = e.condition(mode, "Stalled").await.map(|c| c.0);
        assert_ne!(stalled.as_deref(), Some("True"), "{mode}: retried, not stalled");
    }
    let reconciled = op.reconciles().await;
    eventually("more reconciles", 60, async || (op.reconciles().await >= reconciled + 8.0).then_some(())).await;
    assert_eq!(runs(dir.path(), "reg").len(), 1, "Registry key: one run for reg/a and reg/b, cached");
    assert_eq!(runs(dir.path(), "img").len(), 2, "Image key: one run per repository, cached");
    assert!(runs(dir.path(), "fail").len() >= 2, "a failure is not cached: retried");
    assert_eq!(runs(dir.path(), "reg")[0]["image"], format!("{host}/reg/a"));
    assert_eq!(runs(dir.path(), "reg")[0]["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert!(runs(dir.path(), "reg")[0]["token"].is_null(), "no tokenAttributes: no token");

    // A password rotated behind the plugin: picked up once its 3 s expire.
    e.apply("rot", &spec("rot/a")).await;
    e.synced("rot", &digests["rot/a"]).await;
    let before = runs(dir.path(), "rot").len();
    std::fs::write(dir.path().join("password-alice"), "a-2").unwrap();
    reg.set_users(&users("a-2", "b-1"));
    let rotated = push("rot/a:v1", b"after rotation", "alice", "a-2");
    e.synced("rot", &rotated).await;
    assert!(runs(dir.path(), "rot").len() > before, "the plugin ran again after its cacheDuration");

    // tokenAttributes: each tenant's Artifact gets a token for its own
    // service account, and credentials for its own identity.
    let t1 = Env::dedicated("providers-t1", "op-providers").await;
    let t2 = Env::dedicated("providers-t2", "op-providers").await;
    for (t, user) in [(&t1, "alice"), (&t2, "bob")] {
        allow_token_requests(t).await;
        service_account(t, "puller", Some(user)).await;
    }
    service_account(&t1, "unannotated", None).await;
    t1.apply("app", &spec("tenant/app").set("serviceAccountName", "puller")).await;
    t2.apply("app", &spec("tenant/app").set("serviceAccountName", "puller")).await;
    t1.synced("app", &digests["tenant/app"]).await;
    t2.synced("app", &digests["tenant/app"]).await;
    t2.apply("no-account", &spec("tenant/app")).await;
    let (reason, message) = t2.ready("no-account", false).await;
    assert_eq!(reason, "CredentialsUnavailable", "{message}");
    assert!(message.contains("needs a service account: set spec.serviceAccountName"), "{message}");
    t1.apply("unannotated", &spec("tenant/app").set("serviceAccountName", "unannotated")).await;
    let (reason, message) = t1.ready("unannotated", false).await;
    assert_eq!(reason, "CredentialsUnavailable", "{message}");
    assert!(
        message.contains("needs annotation ocisync.test/user on ServiceAccount providers-t1/unannotated"),
        "{message}"
    );

    let tenant_runs = runs(dir.path(), "tenant");
    assert_eq!(tenant_runs.len(), 2, "one run per tenant (Registry key, per service account): {tenant_runs:?}");
    let reviews: Api<TokenReview> = Api::all(e.admin.clone());
    let mut seen = Vec::new();
    for run in &tenant_runs {
        let token = run["token"].as_str().expect("a token for the service account").to_string();
        let review: TokenReview = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": ["ocisync-test"]}
        }))
        .unwrap();
        let status = reviews.create(&PostParams::default(), &review).await.unwrap().status.unwrap();
        assert_eq!(status.authenticated, Some(true), "{:?}", status.error);
        assert_eq!(status.audiences, Some(vec!["ocisync-test".to_string()]));
        let user = status.user.unwrap().username.unwrap();
        seen.push((user, run["annotations"]["ocisync.test/user"].as_str().unwrap_or_default().to_string()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("system:serviceaccount:providers-t1:puller".to_string(), "alice".to_string()),
            ("system:serviceaccount:providers-t2:puller".to_string(), "bob".to_string()),
        ]
    );
    // Both tenants follow a push, each with its own credentials.
    let moved = push("tenant/app:v1", b"moved", "bob", "b-1");
    t1.synced("app", &moved).await;
    t2.synced("app", &moved).await;
    assert_eq!(runs(dir.path(), "tenant").len(), 2, "still served from the cache");
}
