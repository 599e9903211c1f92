//! The operator as it runs in a cluster: its own process, with a
//! ServiceAccount token bound to the ClusterRole that config/rbac ships, not
//! an admin identity. One per test binary, killed by pid at exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::control_plane::ControlPlane;
use super::{repo_root, run, tool};

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
            .get_or_init(|| async move {
                let admin = cp.admin().await;
                cp.install_crd(&admin).await;
                cp.namespace(&admin, "ocisync-system").await;
                tokio::task::spawn_blocking(move || Operator::start(cp)).await.unwrap()
            })
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

/// Apply config/rbac and write a kubeconfig with the token of its
/// ServiceAccount (the identity the operator has in a cluster).
pub fn service_account_kubeconfig(cp: &ControlPlane) -> PathBuf {
    let rbac = run(Command::new(tool("kustomize")).arg("build").arg(repo_root().join("config/rbac")));
    let mut apply = Command::new(tool("kubectl"))
        .env("KUBECONFIG", &cp.kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply.stdin.take().unwrap().write_all(&rbac.stdout).unwrap();
    assert!(apply.wait().unwrap().success());
    let token = run(Command::new(tool("kubectl")).env("KUBECONFIG", &cp.kubeconfig).args([
        "create",
        "token",
        "ocisync",
        "-n",
        "ocisync-system",
        "--duration",
        "2h",
    ]));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    // the admin kubeconfig's cluster, with the ServiceAccount's token
    let admin = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap();
    let ca = admin.lines().find_map(|l| l.trim().strip_prefix("certificate-authority-data: ")).unwrap();
    let kubeconfig = cp.dir.join("operator.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: ocisync\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: ocisync\ncurrent-context: c\n"
        ),
    )
    .unwrap();
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
