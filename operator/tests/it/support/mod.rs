//! The test harness: real components on loopback, each a `Proc` (or an
//! in-process task) stopped when dropped; what lives for the whole test
//! binary is dropped by one at-exit hook.
//!
//! - `registry`: Debian's docker-registry (CNCF distribution 2.8), and the
//!   in-process ferro-oci-server with hooks that misbehave on demand.
//! - `cluster`: etcd and kube-apiserver 1.20, the operator under its
//!   ServiceAccount, and helpers to write Artifacts and wait for state.
//! - `oras`, `crane`: the real tools, installed by e2e/setup/install-tools.sh
//!   on first use.
#![allow(dead_code)]

pub mod cluster;
pub mod cosign;
pub mod notation;
pub mod registry;
pub mod sigstore;
pub mod tarball;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use registry::*;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The directory with the real tools, installing them once if missing.
pub fn tools_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let prefix =
            std::env::var_os("OCISYNC_TOOLS").map(PathBuf::from).unwrap_or_else(|| "/var/tmp/ocisync/tools".into());
        let bin = prefix.join("bin");
        if !["oras", "crane", "cosign", "docker-registry", "kubectl", "kustomize", "notation"]
            .iter()
            .all(|t| bin.join(t).exists())
        {
            let script = repo_root().join("e2e/setup/install-tools.sh");
            let st = Command::new(&script)
                .env("OCISYNC_TOOLS", &prefix)
                .stdout(Stdio::null())
                .status()
                .expect("run install-tools.sh");
            assert!(st.success(), "{} failed", script.display());
        }
        bin
    })
}

pub fn tool(name: &str) -> PathBuf {
    tools_bin().join(name)
}

/// Run a command, panic with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Poll `check` until it returns `Some`, or fail after `secs` seconds
/// naming what was awaited. The one way tests wait for state.
pub async fn eventually<T>(what: &str, secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A child process with its output in a log file. Dropping it is the one
/// way it stops: SIGTERM, a few seconds' grace, then SIGKILL.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    /// Start `cmd` with stderr (and stdout, unless `cmd` sets it) to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = cmd.stdin(Stdio::null()).stderr(file).spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc { name: name.into(), log, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit code, once it has exited.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.try_wait().ok().flatten().and_then(|s| s.code())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Die at once, as a crash or an OOM kill would: no cleanup, no release.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak resident memory so far, from /proc (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        kb * 1024
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.alive() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).expect("a child has a pid"),
                rustix::process::Signal::TERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

/// Teardown for what lives as long as the test binary (the control plane,
/// the shared operator): run once, at exit, in reverse order.
pub fn at_exit(f: impl FnOnce() + Send + 'static) {
    static HOOKS: Mutex<Vec<Box<dyn FnOnce() + Send>>> = Mutex::new(Vec::new());
    extern "C" fn run_hooks() {
        let hooks = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|e| e.into_inner()));
        for h in hooks.into_iter().rev() {
            h();
        }
    }
    let mut hooks = HOOKS.lock().unwrap();
    if hooks.is_empty() {
        // SAFETY: registering a plain extern "C" fn to run at exit.
        unsafe { libc::atexit(run_hooks) };
    }
    hooks.push(Box::new(f));
}

/// `oras` against a plain-HTTP registry, run in `dir`.
pub fn oras(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(tool("oras")).current_dir(dir).args(args).arg("--plain-http"))
}

pub fn crane(args: &[&str]) -> Output {
    run(Command::new(tool("crane")).args(args).arg("--insecure"))
}

/// Push files with oras as one artifact (each file its own layer, titled
/// with its name); `extra` are further oras flags (`--plain-http`, `-u`…).
/// Returns the manifest digest.
pub fn push_files(registry: &str, reference: &str, files: &[(&str, &[u8])], extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let target = format!("{registry}/{reference}");
    let mut cmd = Command::new(tool("oras"));
    cmd.current_dir(dir.path()).arg("push").args(extra).arg(&target).args(files.iter().map(|(n, _)| *n));
    pushed_digest(&run(&mut cmd))
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The digest oras or crane printed for a push.
pub fn pushed_digest(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let i = text.rfind("sha256:").expect("a digest in the tool's output");
    text[i..i + 71].to_string()
}

/// Push hand-made layers (no title annotation) as one OCI manifest, with
/// oras: `layers` are (media type, bytes).
pub fn push_layers(registry: &str, reference: &str, layers: &[(&str, Vec<u8>)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let repo = reference.split(':').next().unwrap();
    let mut descs = Vec::new();
    let config = b"{}".to_vec();
    for (i, (media_type, bytes)) in
        layers.iter().chain(std::iter::once(&("application/vnd.oci.empty.v1+json", config))).enumerate()
    {
        let f = dir.path().join(format!("blob{i}"));
        std::fs::write(&f, bytes).unwrap();
        oras(dir.path(), &["blob", "push", &format!("{registry}/{repo}"), f.to_str().unwrap()]);
        descs.push(serde_json::json!({
            "mediaType": media_type,
            "digest": sha256(bytes),
            "size": bytes.len(),
        }));
    }
    let config = descs.pop().unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": descs,
    });
    let m = dir.path().join("manifest.json");
    std::fs::write(&m, serde_json::to_vec(&manifest).unwrap()).unwrap();
    oras(dir.path(), &["manifest", "push", &format!("{registry}/{reference}"), m.to_str().unwrap()]);
    sha256(&std::fs::read(&m).unwrap())
}

/// The ocisync binary under test; async so in-process registries keep serving.
pub async fn ocisync(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ocisync"))
        .args(args)
        .env("HOME", "/nonexistent") // no stray ~/.docker/config.json
        .env_remove("DOCKER_CONFIG")
        .output()
        .await
        .unwrap()
}

/// `ocisync pull REF --out OUT --insecure EXTRA…`: a pull from a plain-HTTP
/// test registry.
pub async fn pull(reference: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["pull", reference, "--out", out.to_str().unwrap(), "--insecure"];
    args.extend_from_slice(extra);
    ocisync(&args).await
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), stderr(o)))
}

/// Every file under `dir`, as `path -> contents`.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// skopeo, estargz-write, docker-credential-pass and tinyproxy, installed once by
/// e2e/setup/install-producers.sh.
pub fn producers() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let prefix = std::env::var_os("OCISYNC_PRODUCERS")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/tmp/ocisync/producers".into());
        let all = ["bin/skopeo", "gobin/estargz-write", "bin/docker-credential-pass", "bin/tinyproxy"];
        if !all.iter().all(|f| prefix.join(f).exists()) {
            let script = repo_root().join("e2e/setup/install-producers.sh");
            let st = Command::new(&script).env("OCISYNC_PRODUCERS", &prefix).status().expect("install-producers.sh");
            assert!(st.success(), "{} failed", script.display());
        }
        prefix
    })
}

/// `dir/docker-credential-NAME`: a script speaking the credential helper
/// protocol (`get`, the server on stdin) that answers `user`/`password` and
/// appends "ACTION SERVER" to `log` at each call.
pub fn credential_helper(dir: &Path, name: &str, (user, password): (&str, &str), log: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "#!/bin/sh\nread s\necho \"$1 $s\" >> {}\necho '{{\"Username\":\"{user}\",\"Secret\":\"{password}\"}}'\n",
        log.display()
    );
    let p = dir.join(format!("docker-credential-{name}"));
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}
