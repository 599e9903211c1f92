//! The operator as it runs in a cluster: its own process, with a
//! ServiceAccount token bound to the ClusterRole that config/rbac ships, not
//! an admin identity. One per test binary, killed by pid at exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::control_plane::ControlPlane;
use super::{repo_root, run};

pub struct Operator {
    pub log: PathBuf,
    pub kubeconfig: PathBuf,
    /// Where it serves /healthz, /readyz and /metrics.
    pub metrics: String,
}

static SHARED: tokio::sync::OnceCell<Operator> = tokio::sync::OnceCell::const_new();
static CHILD: Mutex<Option<Child>> = Mutex::new(None);

extern "C" fn stop_operator() {
    if let Some(mut c) = CHILD.lock().ok().and_then(|mut g| g.take()) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
}

impl Operator {
    pub async fn shared(cp: &'static ControlPlane) -> &'static Operator {
        SHARED
            .get_or_init(|| async move { tokio::task::spawn_blocking(move || Operator::start(cp)).await.unwrap() })
            .await
    }

    fn start(cp: &ControlPlane) -> Operator {
        let kubeconfig = service_account_kubeconfig(cp);
        let log = cp.dir.join("operator.err");
        let metrics = format!("127.0.0.1:{}", super::free_port());
        let child =
            spawn(&kubeconfig, &cp.dir.join("operator-work"), &log, "operator-0", &["--metrics-addr", &metrics]);
        *CHILD.lock().unwrap() = Some(child);
        // SAFETY: registering a plain extern "C" fn to run at exit.
        unsafe { libc::atexit(stop_operator) };
        Operator { log, kubeconfig, metrics }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The CRD, config/rbac and a kubeconfig with the token of the operator's
/// ServiceAccount (its identity in a cluster): e2e/setup/operator-access.sh,
/// as the demo and the scale bench use it.
pub fn service_account_kubeconfig(cp: &ControlPlane) -> PathBuf {
    let kubeconfig = cp.dir.join("operator.kubeconfig");
    let path = format!("{}:{}", super::tools_bin().display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new(repo_root().join("e2e/setup/operator-access.sh"))
        .arg(&kubeconfig)
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("PATH", path));
    kubeconfig
}

/// One operator process, as replica `identity`, logging to `log`.
pub fn spawn(kubeconfig: &Path, work: &Path, log: &Path, identity: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ocisync"))
        .args(["operator", "--work-dir"])
        .arg(work)
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", identity)
        .env("OCISYNC_LOG", "info,ocisync=debug,kube_runtime=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start the operator")
}
