//! The test harness: real components on loopback, each stopped by its own
//! pid (or task) when dropped.
//!
//! - `Distribution`: Debian's docker-registry (CNCF distribution 2.8), a child
//!   process with filesystem storage, optionally behind htpasswd or TLS.
//! - `Ferro`: the in-process ferro-oci-server, with hooks in front of it to
//!   play a registry that rate-limits or wants bearer tokens.
//! - `oras`, `crane`: the real tools, installed by e2e/setup/install-tools.sh
//!   on first use.
#![allow(dead_code)]

pub mod control_plane;
pub mod operator;
pub mod tarball;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
        if !["oras", "crane", "docker-registry"].iter().all(|t| bin.join(t).exists()) {
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

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("registry exited ({st}):\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "registry did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Default)]
pub struct DistributionOptions {
    pub htpasswd: Option<(String, String)>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// docker-registry (distribution 2.8.3) on 127.0.0.1, storage in a temp dir.
pub struct Distribution {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Distribution {
    pub fn start() -> Self {
        Self::start_with(DistributionOptions::default())
    }

    pub fn start_with(opts: DistributionOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut extra = String::new();
        if let Some((user, pass)) = &opts.htpasswd {
            let hash = bcrypt::hash(pass, 4).unwrap();
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            extra +=
                &format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", dir.path().join("htpasswd").display());
        }
        let tls = opts
            .tls
            .as_ref()
            .map(|(cert, key)| format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()))
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{extra}",
            root = dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Self::spawn(dir.path(), port);
        Distribution { port, dir, child }
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("registry.log")).unwrap();
        let err = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("registry.err")).unwrap();
        let mut child = Command::new(tool("docker-registry"))
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start docker-registry");
        wait_for_port(port, &mut child, &dir.join("registry.err"));
        child
    }

    /// Take the registry down; `restart` brings it back on the same port
    /// with the same content.
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.port);
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps a blob's bytes (distribution's layout).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }

    /// Requests the registry logged, one line each (its access log).
    pub fn access_log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        text.lines().filter(|l| l.contains("HTTP/1.1\"")).map(str::to_string).collect()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A registry that wants alice's password, holding `private:v1` (one file).
pub fn private_registry() -> Distribution {
    let reg = Distribution::start_with(DistributionOptions {
        htpasswd: Some(("alice".into(), "wonderland".into())),
        ..Default::default()
    });
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f.txt"), "private").unwrap();
    let target = format!("{}/private:v1", reg.host());
    run(std::process::Command::new(tool("oras")).current_dir(src.path()).args([
        "push",
        "--plain-http",
        "-u",
        "alice",
        "-p",
        "wonderland",
        &target,
        "f.txt",
    ]));
    reg
}

/// A CA and a server certificate for 127.0.0.1, made by openssl.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let sh = format!(
            r#"set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 -keyout {ca_key} -out {ca} -subj /CN=ocisync-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout {key} -subj /CN=127.0.0.1 2>/dev/null |
  openssl x509 -req -CA {ca} -CAkey {ca_key} -CAcreateserial -days 2 -sha256 -out {crt} \
  -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n') 2>/dev/null"#,
            ca_key = p("ca.key").display(),
            ca = p("ca.crt").display(),
            key = p("server.key").display(),
            crt = p("server.crt").display(),
        );
        run(Command::new("bash").arg("-c").arg(sh));
        Pki { ca_cert: p("ca.crt"), server_cert: p("server.crt"), server_key: p("server.key"), dir }
    }
}

/// What a `Ferro` registry does before the real handlers see a request.
#[derive(Default)]
pub struct Hooks {
    /// Requests seen, of any kind.
    pub requests: AtomicUsize,
    /// Answer this many manifest requests with 429 first.
    pub throttle: AtomicUsize,
    pub retry_after_secs: AtomicUsize,
    /// When set, /v2/ requests need `Authorization: Bearer <token>`,
    /// handed out by /token for the right basic credentials.
    pub bearer: AtomicBool,
    pub token_requests: AtomicUsize,
    /// Answer manifest HEADs without `Docker-Content-Digest`, as some
    /// registries and proxies do.
    pub strip_digest: AtomicBool,
    pub manifest_gets: AtomicUsize,
}

pub const BEARER_USER: (&str, &str) = ("robot", "s3cret");
const TOKEN: &str = "tok-123";

/// ferro-oci-server in this process, on 127.0.0.1.
pub struct Ferro {
    pub addr: SocketAddr,
    pub hooks: Arc<Hooks>,
    task: tokio::task::JoinHandle<()>,
}

impl Ferro {
    pub async fn start() -> Self {
        let state = ferro_oci_server::AppState::new(
            Arc::new(ferro_blob_store::InMemoryBlobStore::new()),
            Arc::new(ferro_oci_server::InMemoryRegistryMeta::new()),
        );
        let hooks = Arc::new(Hooks::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = hooks.clone();
        let app = ferro_oci_server::router(state)
            .route("/token", axum::routing::get(token))
            .layer(axum::middleware::from_fn(move |req, next| hook(h.clone(), addr, req, next)));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Ferro { addr, hooks, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Ferro {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn token(req: Request<Body>) -> Response {
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", BEARER_USER.0, BEARER_USER.1))
    );
    let ok = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(want.as_str());
    let scoped = req.uri().query().is_some_and(|q| q.contains("scope=repository"));
    if ok && scoped {
        axum::Json(serde_json::json!({ "token": TOKEN, "expires_in": 300 })).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn hook(hooks: Arc<Hooks>, addr: SocketAddr, req: Request<Body>, next: Next) -> Response {
    hooks.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    if path == "/token" {
        hooks.token_requests.fetch_add(1, Ordering::SeqCst);
        return next.run(req).await;
    }
    if hooks.bearer.load(Ordering::SeqCst) {
        let want = format!("Bearer {TOKEN}");
        if req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            let challenge = format!(r#"Bearer realm="http://{addr}/token",service="ferro-test""#);
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)]).into_response();
        }
    }
    if path.contains("/manifests/") {
        let left = hooks.throttle.load(Ordering::SeqCst);
        if left > 0 {
            hooks.throttle.store(left - 1, Ordering::SeqCst);
            let secs = hooks.retry_after_secs.load(Ordering::SeqCst).to_string();
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs)], "slow down").into_response();
        }
    }
    let head_manifest = req.method() == axum::http::Method::HEAD && path.contains("/manifests/");
    if req.method() == axum::http::Method::GET && path.contains("/manifests/") {
        hooks.manifest_gets.fetch_add(1, Ordering::SeqCst);
    }
    let mut res = next.run(req).await;
    if head_manifest && hooks.strip_digest.load(Ordering::SeqCst) {
        res.headers_mut().remove("docker-content-digest");
    }
    res
}

/// `oras` against a plain-HTTP registry, run in `dir`.
pub fn oras(dir: &Path, args: &[&str]) -> Output {
    run(Command::new(tool("oras")).current_dir(dir).args(args).arg("--plain-http"))
}

pub fn crane(args: &[&str]) -> Output {
    run(Command::new(tool("crane")).args(args).arg("--insecure"))
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
            "digest": ocisync::oci::Digest::of(bytes).to_string(),
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
    ocisync::oci::Digest::of(&std::fs::read(&m).unwrap()).to_string()
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
