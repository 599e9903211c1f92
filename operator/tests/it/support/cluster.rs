//! A real Kubernetes control plane (etcd and kube-apiserver 1.20, no
//! kubelet, as envtest), installed by e2e/setup/install-control-plane.sh and
//! started once per test binary, with an audit log of what the operator
//! reads. The operator runs as its own process with the token of the
//! ServiceAccount that config/rbac binds: one shared operator for most
//! tests, and dedicated ones (their own label selector, metrics and work
//! dir) where a test must count what one operator does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt};
use ocisync::api::Artifact;
use serde_json::{Value, json};

use super::{Proc, at_exit, eventually, free_port, repo_root, run, tool, tools_bin};

/// Artifacts with this label are left to a dedicated operator (whose
/// selector names the value); the shared operator ignores them.
pub const OPERATOR_LABEL: &str = "ocisync.test/operator";
/// The operator's identity, as the audit log names it.
pub const OPERATOR_USER: &str = "system:serviceaccount:ocisync-system:ocisync";

pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// A kubeconfig with the operator's ServiceAccount token.
    pub operator_kubeconfig: PathBuf,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["system:serviceaccount:ocisync-system:ocisync"]
  resources:
  - group: ""
    resources: ["secrets", "serviceaccounts", "configmaps"]
- level: None
"#;

impl ControlPlane {
    /// The control plane of this test binary, installed, started and
    /// prepared for the operator on first use.
    pub fn shared() -> &'static ControlPlane {
        SHARED.get_or_init(|| {
            let setup = repo_root().join("e2e/setup");
            run(&mut Command::new(setup.join("install-control-plane.sh")));
            let dir = std::env::temp_dir().join(format!("ocisync-cp-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY).unwrap();
            let audit = format!(
                "--audit-policy-file={} --audit-log-path={} --audit-log-mode=blocking",
                dir.join("audit-policy.yaml").display(),
                dir.join("audit.log").display()
            );
            let out =
                run(Command::new(setup.join("start-control-plane.sh")).arg(&dir).env("APISERVER_EXTRA_ARGS", audit));
            let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let stop_dir = dir.clone();
            at_exit(move || {
                let _ = Command::new(repo_root().join("e2e/setup/stop-control-plane.sh")).arg(&stop_dir).output();
                let _ = std::fs::remove_dir_all(&stop_dir);
            });
            // The CRD, config/rbac and the operator's token, as the demo and
            // the scale bench prepare a cluster.
            let operator_kubeconfig = dir.join("operator.kubeconfig");
            let path = format!("{}:{}", tools_bin().display(), std::env::var("PATH").unwrap_or_default());
            run(Command::new(setup.join("operator-access.sh"))
                .arg(&operator_kubeconfig)
                .env("KUBECONFIG", &kubeconfig)
                .env("PATH", path));
            ControlPlane { dir, kubeconfig, operator_kubeconfig }
        })
    }

    /// An admin client (system:masters).
    pub async fn admin(&self) -> kube::Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// `kubectl` against this control plane, as admin.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(tool("kubectl")).env("KUBECONFIG", &self.kubeconfig).args(args))
    }

    pub async fn crd_established(&self, client: &kube::Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let established = await_condition(crds, "artifacts.ocisync.dev", conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established).await.unwrap().unwrap();
    }

    pub async fn namespace(&self, client: &kube::Client, name: &str) {
        let ns: Api<Namespace> = Api::all(client.clone());
        let _ = ns
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
            .await;
    }

    /// What the operator asked the API server for, from the audit log:
    /// (verb, resource, namespace, name) per request.
    pub fn operator_requests(&self) -> Vec<(String, String, String, String)> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["user"]["username"] == OPERATOR_USER)
            .map(|e| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                let o = &e["objectRef"];
                (s(&e["verb"]), s(&o["resource"]), s(&o["namespace"]), s(&o["name"]))
            })
            .collect()
    }
}

/// An `ocisync operator` process under the operator's ServiceAccount.
pub struct Operator {
    /// `None` for the shared operator, whose process the at-exit hook owns.
    pub proc: Option<Proc>,
    /// Where it serves /healthz, /readyz and /metrics.
    pub metrics: String,
    pub work: PathBuf,
}

impl Operator {
    /// Start one with `extra` flags; `--metrics-addr` and `--work-dir` are
    /// chosen here.
    pub fn start(cp: &ControlPlane, name: &str, extra: &[&str]) -> Operator {
        Operator::start_under(cp, name, extra, &[])
    }

    /// As `start`, run by `wrapper` (a program and its arguments, e.g.
    /// `unshare --pid --fork` to be PID 1 of a namespace, as in a pod).
    pub fn start_under(cp: &ControlPlane, name: &str, extra: &[&str], wrapper: &[&str]) -> Operator {
        let work = cp.dir.join(format!("{name}-work"));
        let metrics = format!("127.0.0.1:{}", free_port());
        let bin = env!("CARGO_BIN_EXE_ocisync");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(["operator", "--metrics-addr", &metrics, "--work-dir"])
            .arg(&work)
            .args(extra)
            .env("KUBECONFIG", &cp.operator_kubeconfig)
            .env("POD_NAME", name)
            .env("OCISYNC_LOG", "info,ocisync=debug")
            .stdout(std::process::Stdio::null());
        let proc = Some(Proc::spawn(name, &mut cmd, cp.dir.join(format!("{name}.log"))));
        Operator { proc, metrics, work }
    }

    /// A replica that reconciles only the Artifacts labelled
    /// `OPERATOR_LABEL=name`, without leader election unless `extra` asks.
    pub fn dedicated(cp: &ControlPlane, name: &str, extra: &[&str]) -> Operator {
        let selector = format!("{OPERATOR_LABEL}={name}");
        let mut args = vec!["--watch-label-selector", &selector, "--leader-elect=false"];
        args.extend_from_slice(extra);
        Operator::start(cp, name, &args)
    }

    /// The shared operator: every Artifact without `OPERATOR_LABEL`. Its
    /// work dir holds a stale staging tree before it starts, as a killed
    /// operator leaves one; the sweep at start must remove it.
    pub fn shared(cp: &'static ControlPlane) -> &'static Operator {
        static SHARED: OnceLock<Operator> = OnceLock::new();
        SHARED.get_or_init(|| {
            let work = cp.dir.join("operator-0-work");
            std::fs::create_dir_all(work.join("stale-uid/files/.staging")).unwrap();
            std::fs::write(work.join("stale-uid/files/.staging/half-written"), b"x").unwrap();
            let selector = format!("!{OPERATOR_LABEL}");
            let volumes = Operator::volume_root(cp);
            let args = [
                "--watch-label-selector",
                &selector,
                "--volume-root",
                volumes.to_str().unwrap(),
                "--volume-grace",
                "2s",
            ];
            let mut op = Operator::start(cp, "operator-0", &args);
            let proc = op.proc.take();
            at_exit(move || drop(proc));
            op
        })
    }

    /// The shared operator's `--volume-root`.
    pub fn volume_root(cp: &ControlPlane) -> PathBuf {
        cp.dir.join("volumes")
    }

    pub async fn metrics_text(&self) -> String {
        match reqwest::get(format!("http://{}/metrics", self.metrics)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The sum of a metric's samples whose line starts with `prefix`.
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    }

    pub async fn reconciles(&self) -> f64 {
        self.metric("ocisync_reconciles_total").await
    }
}

/// A test's namespace on the shared control plane, and the operator that
/// serves it.
pub struct Env {
    pub admin: kube::Client,
    pub ns: String,
    pub cp: &'static ControlPlane,
    /// `Some(name)`: the Artifacts carry `OPERATOR_LABEL=name`.
    pub operator_label: Option<String>,
}

impl Env {
    /// A namespace served by the shared operator.
    pub async fn new(ns: &str) -> Env {
        let cp = ControlPlane::shared();
        Operator::shared(cp);
        Env::bare(cp, ns, None).await
    }

    /// A namespace whose Artifacts only the dedicated operator `name` serves.
    pub async fn dedicated(ns: &str, name: &str) -> Env {
        Env::bare(ControlPlane::shared(), ns, Some(name.into())).await
    }

    async fn bare(cp: &'static ControlPlane, ns: &str, operator_label: Option<String>) -> Env {
        let admin = cp.admin().await;
        cp.namespace(&admin, ns).await;
        cp.crd_established(&admin).await;
        Env { admin, ns: ns.into(), cp, operator_label }
    }

    pub fn artifacts(&self) -> Api<Artifact> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Server-side apply of an Artifact, as `kubectl apply` would.
    pub async fn apply(&self, name: &str, spec: &Spec) {
        self.apply_with(name, spec, json!({})).await;
    }

    /// The same, with `annotations`.
    pub async fn apply_with(&self, name: &str, spec: &Spec, annotations: Value) {
        let mut metadata = json!({"name": name, "annotations": annotations});
        if let Some(l) = &self.operator_label {
            metadata["labels"] = json!({ OPERATOR_LABEL: l });
        }
        let a = json!({"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "metadata": metadata, "spec": spec.0});
        self.artifacts().patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&a)).await.unwrap();
    }

    pub async fn status(&self, name: &str) -> Value {
        serde_json::to_value(self.artifacts().get(name).await.unwrap().status).unwrap()
    }

    /// (status, reason, message) of a condition.
    pub async fn condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let st = self.status(name).await;
        let c = st["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
        Some((c["status"].as_str()?.into(), c["reason"].as_str()?.into(), c["message"].as_str()?.into()))
    }

    /// Wait for `Ready` to have this status; returns (reason, message).
    pub async fn ready(&self, name: &str, status: bool) -> (String, String) {
        let want = if status { "True" } else { "False" };
        let (_, reason, message) = eventually(&format!("{name} Ready={want}"), 60, async || {
            self.condition(name, "Ready").await.filter(|c| c.0 == want)
        })
        .await;
        (reason, message)
    }

    /// Wait until the Artifact's status says `digest` is in its target.
    pub async fn synced(&self, name: &str, digest: &str) -> Value {
        eventually(&format!("{name} synced to {digest}"), 60, async || {
            Some(self.status(name).await).filter(|s| s["lastSyncedDigest"] == digest)
        })
        .await
    }

    pub async fn config_map(&self, name: &str) -> Option<ConfigMap> {
        self.config_maps().get_opt(name).await.unwrap()
    }

    pub async fn create_secret(&self, secret: Value) {
        let s: Secret = serde_json::from_value(secret).unwrap();
        self.secrets().create(&PostParams::default(), &s).await.unwrap();
    }

    pub fn uid_of(a: &Artifact) -> String {
        a.uid().unwrap()
    }
}

/// What `user` may do in `namespace`, as `kubectl auth can-i --list` says:
/// sorted "resource [names] verbs" lines, verbs sorted, without the
/// non-resource URLs every user has.
pub fn permissions(cp: &ControlPlane, user: &str, namespace: &str) -> Vec<String> {
    let out = cp.kubectl(&["auth", "can-i", "--list", "--as", user, "-n", namespace]);
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .map(|l| {
            // Resources  [urls]  [names]  [verbs]
            let mut cols = l.split('[').map(|c| c.trim().trim_end_matches(']').trim());
            let resource = cols.next().unwrap_or_default().to_string();
            let rest: Vec<&str> = cols.collect();
            let names = rest.get(1).copied().unwrap_or_default();
            let mut verbs: Vec<&str> = rest.get(2).copied().unwrap_or_default().split_whitespace().collect();
            verbs.sort_unstable();
            format!("{resource} [{names}] {}", verbs.join(" "))
        })
        .collect();
    rows.sort();
    rows
}

/// A `kubernetes.io/dockerconfigjson` Secret with alice's credentials for `host`.
pub fn pull_secret(name: &str, host: &str, password: &str) -> Value {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json!({"auths": {host: {"auth": auth}}}).to_string()}
    })
}

/// An Artifact's spec, built field by field: plain HTTP and a 1 s interval
/// unless a test says otherwise.
#[derive(Clone)]
pub struct Spec(pub Value);

impl Spec {
    /// `repo` on the registry at `host`.
    pub fn new(host: &str, repo: &str) -> Spec {
        Spec(json!({"url": format!("oci://{host}/{repo}"), "insecure": true, "interval": "1s"}))
    }

    pub fn set(mut self, field: &str, value: impl Into<Value>) -> Spec {
        self.0[field] = value.into();
        self
    }

    pub fn tag(self, t: &str) -> Spec {
        self.set("ref", json!({"tag": t}))
    }

    pub fn semver(self, range: &str) -> Spec {
        self.set("ref", json!({"semver": range}))
    }

    /// A pinned digest, with the tag beside it watched for drift.
    pub fn pinned(self, digest: &str, tag: &str) -> Spec {
        self.set("ref", json!({"digest": digest, "tag": tag}))
    }

    pub fn interval(self, d: &str) -> Spec {
        self.set("interval", d)
    }

    pub fn timeout(self, d: &str) -> Spec {
        self.set("timeout", d)
    }

    pub fn secret(self, name: &str) -> Spec {
        self.set("secretRef", json!({"name": name}))
    }

    pub fn config_map(self, target: Value) -> Spec {
        self.set("target", json!({"configMap": target}))
    }
}

/// The names in a directory, sorted (for checks on an operator's work dir).
pub fn entries(dir: &Path) -> Vec<String> {
    // The operator's blob cache lives in its work dir on purpose; what must
    // not be left behind is staging.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n != ".blob-cache");
    names.sort();
    names
}
