//! `ocisync agent` on the real API server, as a workload's ServiceAccount
//! whose Role allows only get/list/watch of one Artifact (by name): it
//! publishes what the operator synced, follows the tag, runs its hook,
//! serves its digest, and never publishes a digest that failed verification.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::signatures::{blob_gets, layer_of};
use crate::support::cluster::{Env, Spec};
use crate::support::cosign::Signer;
use crate::support::*;

/// A ServiceAccount, and the Role and RoleBinding the chart's `agentRoles`
/// renders for it and `artifact`; a kubeconfig with its token.
pub(super) fn agent_access(e: &Env, artifact: &str, dir: &Path) -> PathBuf {
    let ns = &e.ns;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": ns}});
    let file = dir.join("sa.json");
    std::fs::write(&file, sa.to_string()).unwrap();
    e.cp.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let values = json!({
        "releaseName": "agent-test", "rbac": {"create": false}, "serviceAccount": {"create": false},
        "agentRoles": [{"namespace": ns, "serviceAccount": "app", "artifacts": [artifact]}]
    });
    let python = std::env::var_os("OCISYNC_VALIDATORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/ocisync/validators".into())
        .join("bin/python");
    let script = repo_root().join("e2e/check-chart.py");
    let rendered = run(Command::new(python).arg(script).args(["render-rbac", "ocisync-system", &values.to_string()]));
    let file = dir.join("rbac.yaml");
    std::fs::write(&file, &rendered.stdout).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&String::from_utf8_lossy(&rendered.stdout)).unwrap();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Role", "RoleBinding"], "the chart renders the agent's Role and RoleBinding only");
    e.cp.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    let token = String::from_utf8(e.cp.kubectl(&["create", "token", "app", "-n", ns]).stdout).unwrap();
    let view = |path: &str| {
        let out =
            e.cp.kubectl(&["config", "view", "--raw", "-o", &format!("jsonpath={{.clusters[0].cluster.{path}}}")]);
        String::from_utf8(out.stdout).unwrap()
    };
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": view("server"), "certificate-authority-data": view("certificate-authority-data")}}],
        "users": [{"name": "u", "user": {"token": token.trim()}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": ns}}]
    });
    let path = dir.join("agent.kubeconfig");
    std::fs::write(&path, kubeconfig.to_string()).unwrap();
    path
}

pub(super) fn agent(kubeconfig: &Path, artifact: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocisync"));
    cmd.args(["agent", "--artifact", artifact, "--dir", dir.to_str().unwrap()])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", "/nonexistent");
    cmd
}

pub(super) fn published(dir: &Path) -> Option<String> {
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("..data/..ocisync.json")).ok()?).ok()?;
    marker["digest"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_publishes_what_the_operator_synced_and_follows_it() {
    let e = Env::new("agent").await;
    let reg = Distribution::start();
    let host = reg.host();
    let d1 = push_files(&host, "app:live", &[("app.yaml", b"one\n")], &["--plain-http"]);
    e.apply("app", &Spec::new(&host, "app").tag("live").interval("2s")).await;
    e.synced("app", &d1).await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = agent_access(&e, "app", tmp.path());
    let shared = tmp.path().join("shared");
    let hook_log = tmp.path().join("hook.log");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let hook = format!("echo \"$OCISYNC_DIGEST $OCISYNC_REVISION\" >> {}", hook_log.display());
    // The URL hook's receiver: every body POSTed to it.
    let posted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/changed", receiver.local_addr().unwrap());
    let sink = posted.clone();
    let app = axum::Router::new().route(
        "/changed",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            sink.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or_default());
            "ok"
        }),
    );
    tokio::spawn(async move { axum::serve(receiver, app).await });
    let args = ["--listen", &listen, "--grace", "1s", "--on-change-url", &hook_url, "--", "sh", "-c", &hook];
    let mut cmd = agent(&kubeconfig, "agent/app", &shared, &args);
    let _sidecar = Proc::spawn("agent", cmd.stdout(Stdio::null()), tmp.path().join("agent.log"));

    eventually("the agent publishes the first digest", 30, async || (published(&shared)? == d1).then_some(())).await;
    assert_eq!(std::fs::read_to_string(shared.join("app.yaml")).unwrap(), "one\n");
    let ready = reqwest::get(format!("http://{listen}/readyz")).await.unwrap();
    assert_eq!((ready.status().as_u16(), ready.text().await.unwrap()), (200, d1.clone()));

    let d2 = push_files(&host, "app:live", &[("app.yaml", b"two\n")], &["--plain-http"]);
    eventually("the agent follows the tag", 60, async || (published(&shared)? == d2).then_some(())).await;
    assert_eq!(std::fs::read_to_string(shared.join("app.yaml")).unwrap(), "two\n");
    let hooks = eventually("both hooks ran", 10, async || {
        let log = std::fs::read_to_string(&hook_log).ok()?;
        (log.lines().count() == 2).then_some(log)
    })
    .await;
    assert!(
        hooks.lines().next().unwrap().starts_with(&d1) && hooks.lines().nth(1).unwrap().starts_with(&d2),
        "{hooks}"
    );
    let bodies = eventually("both POSTs arrived", 10, async || {
        let p = posted.lock().unwrap().clone();
        (p.len() == 2).then_some(p)
    })
    .await;
    assert_eq!((bodies[0]["digest"].as_str(), bodies[1]["digest"].as_str()), (Some(d1.as_str()), Some(d2.as_str())));
    assert_eq!(bodies[1]["dir"], shared.to_str().unwrap());
    let metrics = reqwest::get(format!("http://{listen}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("ocisync_agent_published{{digest=\"{d2}\"")), "{metrics}");
    assert!(metrics.contains("ocisync_agent_publishes_total 2"), "{metrics}");

    // --one-time, as an init container: 0 once the files are in place.
    let init = tmp.path().join("init");
    let out = agent(&kubeconfig, "agent/app", &init, &["--one-time", "--listen", "0"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(published(&init).as_deref(), Some(d2.as_str()));
    // An Artifact it may not read, and one that does not exist: a clear
    // message and a non-zero exit, nothing written.
    let other = tmp.path().join("other");
    let out =
        agent(&kubeconfig, "agent/nope", &other, &["--one-time", "--listen", "0", "--timeout", "5s"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("forbidden"), "{stderr}");
    assert!(published(&other).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_artifacts_agent_never_publishes_an_unverified_digest() {
    let e = Env::new("agent-verified").await;
    let reg = Distribution::start();
    let host = reg.host();
    let signer = Signer::new();
    let d1 = push_files(&host, "app:live", &[("app.yaml", b"signed\n")], &["--plain-http"]);
    signer.sign(&format!("{host}/app@{d1}"));
    e.create_secret(json!({"metadata": {"name": "keys"}, "stringData": {"cosign.pub": signer.public_pem()}})).await;
    let spec = Spec::new(&host, "app")
        .tag("live")
        .interval("2s")
        .set("verify", json!({"keys": {"secretRef": {"name": "keys"}}}));
    e.apply("app", &spec).await;
    e.synced("app", &d1).await;
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = agent_access(&e, "app", tmp.path());
    let shared = tmp.path().join("shared");
    let mut cmd = agent(&kubeconfig, "agent-verified/app", &shared, &["--listen", "0"]);
    let _sidecar = Proc::spawn("agent-verified", cmd.stdout(Stdio::null()), tmp.path().join("agent.log"));
    eventually("the signed digest", 30, async || (published(&shared)? == d1).then_some(())).await;

    // An unsigned version on the tag: the operator refuses it, and the
    // agent keeps the signed one and never downloads the other.
    let d2 = push_files(&host, "app:live", &[("app.yaml", b"unsigned\n")], &["--plain-http"]);
    let (reason, _) = e.ready("app", false).await;
    assert_eq!(reason, "NoSignature");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(published(&shared).as_deref(), Some(d1.as_str()));
    assert_eq!(std::fs::read_to_string(shared.join("app.yaml")).unwrap(), "signed\n");
    assert_eq!(blob_gets(&reg.access_log(), &layer_of(&host, "app", &d2)), 0);
}

/// `--docker-config` with a credential helper: the operator syncs a private
/// Artifact through its service account's pull secret; the agent, which
/// has no Secret to read, gets the password from the helper its own
/// config names (a script speaking the helper protocol, logging each ask).
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_asks_its_docker_configs_credential_helper() {
    let e = Env::new("agent-helper").await;
    let (reg, digest) = private_registry();
    e.create_secret(crate::support::cluster::pull_secret("right", &reg.host(), "wonderland")).await;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "puller", "namespace": e.ns}, "imagePullSecrets": [{"name": "right"}]});
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("puller.json");
    std::fs::write(&file, sa.to_string()).unwrap();
    e.cp.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    e.apply("app", &Spec::new(&reg.host(), "private").tag("v1").set("serviceAccountName", "puller")).await;
    e.synced("app", &digest).await;

    let kubeconfig = agent_access(&e, "app", tmp.path());
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = tmp.path().join("helper.log");
    credential_helper(&bin, "vault", ("alice", "wonderland"), &log);
    let config = tmp.path().join("config.json");
    std::fs::write(&config, json!({"credHelpers": {reg.host(): "vault"}}).to_string()).unwrap();
    let shared = tmp.path().join("shared");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let args = ["--one-time", "--listen", "0", "--docker-config", config.to_str().unwrap()];
    let out = agent(&kubeconfig, &format!("{}/app", e.ns), &shared, &args).env("PATH", path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(published(&shared).as_deref(), Some(digest.as_str()));
    assert_eq!(std::fs::read_to_string(shared.join("f.txt")).unwrap(), "private");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), format!("get {}\n", reg.host()));
}
