//! A real Kubernetes control plane: etcd and kube-apiserver 1.20 (no
//! kubelet, as envtest), installed by e2e/setup/install-control-plane.sh and
//! started once per test binary. Tests share it and keep to their own
//! namespaces; it is stopped by pid when the test binary exits.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};

use super::{repo_root, run};

pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(cp) = SHARED.get() {
        let _ = Command::new(repo_root().join("e2e/setup/stop-control-plane.sh")).arg(&cp.dir).output();
        let _ = std::fs::remove_dir_all(&cp.dir);
    }
}

impl ControlPlane {
    /// The control plane of this test binary, installed and started on first use.
    pub fn shared() -> &'static ControlPlane {
        SHARED.get_or_init(|| {
            let setup = repo_root().join("e2e/setup");
            run(&mut Command::new(setup.join("install-control-plane.sh")));
            let dir = std::env::temp_dir().join(format!("ocisync-cp-{}", std::process::id()));
            let out = run(Command::new(setup.join("start-control-plane.sh")).arg(&dir));
            let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            // SAFETY: registering a plain extern "C" fn to run at exit.
            unsafe { libc::atexit(stop_shared) };
            ControlPlane { dir, kubeconfig }
        })
    }

    /// An admin client (system:masters).
    pub async fn admin(&self) -> kube::Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kc = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// `kubectl` against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(super::tool("kubectl")).env("KUBECONFIG", &self.kubeconfig).args(args))
    }
}

impl ControlPlane {
    /// Install the committed CRD as a user would (`kubectl create -f`):
    /// 1.20 answers a server-side apply of fields it does not know with a 500.
    pub async fn install_crd(&self, client: &kube::Client) {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if crds.get_opt("artifacts.ocisync.dev").await.unwrap().is_none() {
            let path = repo_root().join("crds/artifacts.ocisync.dev.yaml");
            let out = Command::new(super::tool("kubectl"))
                .env("KUBECONFIG", &self.kubeconfig)
                .args(["create", "-f", path.to_str().unwrap()])
                .output()
                .unwrap();
            // another test of this binary may have won the race
            assert!(out.status.success() || String::from_utf8_lossy(&out.stderr).contains("AlreadyExists"));
        }
        let established = await_condition(crds, "artifacts.ocisync.dev", conditions::is_crd_established());
        tokio::time::timeout(std::time::Duration::from_secs(30), established).await.unwrap().unwrap();
    }

    pub async fn namespace(&self, client: &kube::Client, name: &str) {
        let ns: Api<Namespace> = Api::all(client.clone());
        let _ = ns
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap(),
            )
            .await;
    }
}
