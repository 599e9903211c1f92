//! Registries on loopback: Debian's docker-registry (distribution 2.8) as a
//! child process, and ferro-oci-server in this process with hooks that play
//! a registry misbehaving in the ways a test needs.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Proc, free_port, push_files, run, tool};

fn write_htpasswd(dir: &Path, users: &[(String, String)]) {
    let lines: String = users.iter().map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap())).collect();
    std::fs::write(dir.join("htpasswd"), lines).unwrap();
}

pub fn wait_for_port(port: u16, proc: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(proc.alive(), "{} exited:\n{}", proc.name, proc.logs());
        assert!(Instant::now() < deadline, "{} did not listen on {port}", proc.name);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Default)]
pub struct DistributionOptions {
    pub htpasswd: Option<(String, String)>,
    /// More htpasswd users beside `htpasswd`'s.
    pub users: Vec<(String, String)>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Send push notifications to this URL with this bearer token
    /// (distribution's `notifications.endpoints`).
    pub notify: Option<(String, String)>,
}

/// docker-registry (distribution 2.8.3) on 127.0.0.1, storage in a temp dir.
pub struct Distribution {
    pub port: u16,
    pub dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl Distribution {
    pub fn start() -> Self {
        Self::start_with(DistributionOptions::default())
    }

    pub fn start_with(opts: DistributionOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut extra = String::new();
        let users: Vec<_> = opts.htpasswd.iter().chain(&opts.users).cloned().collect();
        if !users.is_empty() {
            write_htpasswd(dir.path(), &users);
            extra +=
                &format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", dir.path().join("htpasswd").display());
        }
        if let Some((url, token)) = &opts.notify {
            extra += &format!(
                "notifications:\n  endpoints:\n  - name: ocisync\n    url: {url}\n    headers:\n      Authorization: [\"Bearer {token}\"]\n    timeout: 2s\n    threshold: 10\n    backoff: 1s\n"
            );
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
        let proc = Some(Self::spawn(dir.path(), port));
        Distribution { port, dir, proc }
    }

    fn spawn(dir: &Path, port: u16) -> Proc {
        // the access log goes to stdout, the rest to stderr
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("registry.log")).unwrap();
        let mut cmd = Command::new(tool("docker-registry"));
        cmd.arg("serve").arg(dir.join("config.yml")).stdout(log);
        let mut proc = Proc::spawn("docker-registry", &mut cmd, dir.join("registry.err"));
        wait_for_port(port, &mut proc);
        proc
    }

    /// Take the registry down; `restart` brings it back on the same port
    /// with the same content.
    pub fn stop(&mut self) {
        self.proc = None;
    }

    pub fn restart(&mut self) {
        self.proc = Some(Self::spawn(self.dir.path(), self.port));
    }

    /// Replace the htpasswd users (a password rotated) and restart, since
    /// distribution 2.8 reads the file once.
    pub fn set_users(&mut self, users: &[(String, String)]) {
        write_htpasswd(self.dir.path(), users);
        self.stop();
        self.restart();
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
    /// The access log's request lines, once it has settled: distribution
    /// writes a line after the response is sent, so a client that has just
    /// read its last byte may be ahead of it (seen under load in CI).
    pub fn access_log(&self) -> Vec<String> {
        let read = || {
            let text = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
            text.lines().filter(|l| l.contains("HTTP/1.1\"")).map(str::to_string).collect::<Vec<_>>()
        };
        let mut last = read();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = read();
            if now.len() == last.len() {
                return now;
            }
            last = now;
        }
        last
    }
}

/// A registry that wants alice's password, holding `private:v1` (one file
/// `f.txt`); and that manifest's digest.
pub fn private_registry() -> (Distribution, String) {
    let reg = Distribution::start_with(DistributionOptions {
        htpasswd: Some(("alice".into(), "wonderland".into())),
        ..Default::default()
    });
    let digest = push_files(
        &reg.host(),
        "private:v1",
        &[("f.txt", b"private")],
        &["--plain-http", "-u", "alice", "-p", "wonderland"],
    );
    (reg, digest)
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
    /// The token server speaks only OAuth2 (POST): its GET is a 404.
    pub oauth_only: AtomicBool,
    /// The `grant_type` of each OAuth2 POST to /token.
    pub grants: std::sync::Mutex<Vec<String>>,
    /// Answer manifest HEADs without `Docker-Content-Digest`, as some
    /// registries and proxies do.
    pub strip_digest: AtomicBool,
    pub manifest_gets: AtomicUsize,
    /// Hold manifest (or blob) requests for a minute before answering, as
    /// a registry that hangs does.
    pub stall_manifests: AtomicBool,
    pub stall_blobs: AtomicBool,
    /// How long a stall lasts, in seconds (0: a minute).
    pub stall_secs: std::sync::atomic::AtomicU64,
    /// Answer manifest requests with a 500 whose body changes every time.
    pub fail_manifests: AtomicBool,
    pub manifest_requests: AtomicUsize,
    /// What blob GETs get (a `Fault` as u8); `Fault::None` passes them.
    pub blob_fault: std::sync::atomic::AtomicU8,
    pub blob_requests: AtomicUsize,
    /// Tag lists that link to a next page forever.
    pub endless_tags: AtomicBool,
    /// Every request, as `METHOD path`.
    pub log: std::sync::Mutex<Vec<String>>,
    /// Serve the referrers API this many entries a page (0: all at once),
    /// linking to the next page as the distribution spec says.
    pub referrers_page: AtomicUsize,
    /// Refuse upload requests (PUT, PATCH) whose body is longer than this
    /// with 413, as a proxy with a body limit does (0: no limit).
    pub max_upload_body: AtomicUsize,
}

/// Ways a registry (or what stands between it and us) breaks a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    None = 0,
    /// HTTP 503 with a body.
    Unavailable,
    /// Endless 429 with `Retry-After: 1`.
    Throttled,
    /// Half the body, then the connection breaks.
    Reset,
    /// The right length, one byte flipped.
    Corrupted,
    /// A `Content-Length` larger than the body.
    WrongLength,
    /// One byte every 200 ms.
    Drip,
}

impl Hooks {
    pub fn fault_blobs(&self, f: Fault) {
        self.blob_fault.store(f as u8, Ordering::SeqCst);
    }
}

/// Page `page` of a referrers index, with a `Link` to the next one.
async fn paginate(res: Response, path: &str, page: usize, per_page: usize) -> Response {
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
    let Ok(mut index) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let all = index["manifests"].as_array().cloned().unwrap_or_default();
    let chunk: Vec<_> = all.iter().skip(page * per_page).take(per_page).cloned().collect();
    index["manifests"] = serde_json::Value::Array(chunk);
    if all.len() > (page + 1) * per_page {
        let link = format!("<{path}?page={}>; rel=\"next\"", page + 1);
        parts.headers.insert(header::LINK, link.parse().unwrap());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(index.to_string()))
}

/// The blob response `res` broken as `fault` says.
async fn break_blob(fault: u8, res: Response) -> Response {
    use futures::StreamExt as _;
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let n = bytes.len();
    match fault {
        f if f == Fault::Unavailable as u8 => {
            let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#;
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
        f if f == Fault::Throttled as u8 => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "slow down").into_response()
        }
        f if f == Fault::Reset as u8 => {
            let half = bytes.slice(..n / 2);
            // the first half goes out (a pause lets hyper flush it), then
            // the connection breaks
            let stream = futures::stream::iter([Some(half), None]).then(|chunk| async move {
                match chunk {
                    Some(b) => Ok(b),
                    None => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"))
                    }
                }
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        f if f == Fault::Corrupted as u8 => {
            let mut v = bytes.to_vec();
            if let Some(b) = v.get_mut(n / 2) {
                *b ^= 0xff;
            }
            Response::from_parts(parts, Body::from(v))
        }
        f if f == Fault::WrongLength as u8 => {
            // a stream, so that hyper takes the header's word for the length
            parts.headers.insert(header::CONTENT_LENGTH, (n + 100).into());
            let stream = futures::stream::iter([Some(bytes), None]).then(|chunk| async move {
                match chunk {
                    Some(b) => Ok::<_, std::io::Error>(b),
                    None => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok(bytes::Bytes::new())
                    }
                }
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        f if f == Fault::Drip as u8 => {
            let stream = futures::stream::iter((0..n).map(move |i| bytes.slice(i..i + 1))).then(|b| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, std::io::Error>(b)
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        _ => Response::from_parts(parts, Body::from(bytes)),
    }
}

pub const BEARER_USER: (&str, &str) = ("robot", "s3cret");
/// The OAuth2 refresh token (a docker "identity token") /token accepts.
pub const REFRESH_TOKEN: &str = "refresh-456";
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
            .route("/token", axum::routing::get(token).post(oauth_token))
            .layer(axum::middleware::from_fn(move |req, next| hook(h.clone(), addr, req, next)));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Ferro { addr, hooks, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Push `files` as `reference` with oras. oras blocks; the in-process
    /// registry must keep serving meanwhile.
    pub async fn push(&self, reference: &str, files: &[(&str, &[u8])]) -> String {
        let (host, reference) = (self.host(), reference.to_string());
        let files: Vec<(String, Vec<u8>)> = files.iter().map(|(n, c)| (n.to_string(), c.to_vec())).collect();
        tokio::task::spawn_blocking(move || {
            let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (n.as_str(), c.as_slice())).collect();
            push_files(&host, &reference, &files, &["--plain-http"])
        })
        .await
        .unwrap()
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

/// The distribution token spec's OAuth2 form: a refresh token, or a user
/// and password, for a scope.
async fn oauth_token(body: String) -> Response {
    let form: std::collections::HashMap<String, String> =
        body.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.replace("%3A", ":"))).collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let ok = match field("grant_type") {
        "refresh_token" => field("refresh_token") == REFRESH_TOKEN,
        "password" => field("username") == BEARER_USER.0 && field("password") == BEARER_USER.1,
        _ => false,
    };
    if ok && field("scope").starts_with("repository:") && !field("client_id").is_empty() {
        axum::Json(serde_json::json!({ "access_token": TOKEN, "expires_in": 300 })).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn hook(hooks: Arc<Hooks>, addr: SocketAddr, req: Request<Body>, next: Next) -> Response {
    hooks.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    hooks.log.lock().unwrap().push(format!("{} {path}", req.method()));
    let per_page = hooks.referrers_page.load(Ordering::SeqCst);
    if per_page > 0 && path.contains("/referrers/") {
        let page: usize =
            req.uri().query().and_then(|q| q.strip_prefix("page=")).and_then(|n| n.parse().ok()).unwrap_or(0);
        return paginate(next.run(req).await, &path, page, per_page).await;
    }
    if path == "/token" {
        hooks.token_requests.fetch_add(1, Ordering::SeqCst);
        if req.method() == axum::http::Method::POST {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).to_string();
            let grant = text.split('&').find_map(|kv| kv.strip_prefix("grant_type=")).unwrap_or("").to_string();
            hooks.grants.lock().unwrap().push(grant);
            return next.run(Request::from_parts(parts, Body::from(bytes))).await;
        }
        if hooks.oauth_only.load(Ordering::SeqCst) {
            return StatusCode::NOT_FOUND.into_response();
        }
        return next.run(req).await;
    }
    if hooks.bearer.load(Ordering::SeqCst) {
        let want = format!("Bearer {TOKEN}");
        if req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            let challenge = format!(r#"Bearer realm="http://{addr}/token",service="ferro-test""#);
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)]).into_response();
        }
    }
    let limit = hooks.max_upload_body.load(Ordering::SeqCst);
    if limit > 0 && path.contains("/blobs/uploads/") && matches!(req.method().as_str(), "PUT" | "PATCH") {
        let length: usize =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
        if length > limit {
            // read and dropped first, as nginx's lingering close does, so
            // that the client gets the answer
            let _ = axum::body::to_bytes(req.into_body(), 1 << 30).await;
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    }
    if path.contains("/manifests/") {
        let n = hooks.manifest_requests.fetch_add(1, Ordering::SeqCst);
        if hooks.fail_manifests.load(Ordering::SeqCst) {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("failure number {n}")).into_response();
        }
        if hooks.stall_manifests.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        let left = hooks.throttle.load(Ordering::SeqCst);
        if left > 0 {
            hooks.throttle.store(left - 1, Ordering::SeqCst);
            let secs = hooks.retry_after_secs.load(Ordering::SeqCst).to_string();
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs)], "slow down").into_response();
        }
    }
    let blob_get = req.method() == axum::http::Method::GET && path.contains("/blobs/");
    if blob_get {
        hooks.blob_requests.fetch_add(1, Ordering::SeqCst);
    }
    if path.contains("/blobs/") && hooks.stall_blobs.load(Ordering::SeqCst) {
        let secs = match hooks.stall_secs.load(Ordering::SeqCst) {
            0 => 60,
            n => n,
        };
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    if path.ends_with("/tags/list") && hooks.endless_tags.load(Ordering::SeqCst) {
        let q = req.uri().query().unwrap_or_default();
        let page: usize = q.split('&').find_map(|p| p.strip_prefix("last=t")).and_then(|n| n.parse().ok()).unwrap_or(0);
        let repo = path.trim_start_matches("/v2/").trim_end_matches("/tags/list").to_string();
        let link = format!("</v2/{repo}/tags/list?last=t{}>; rel=\"next\"", page + 1);
        let body = serde_json::json!({"name": repo, "tags": [format!("t{page}")]}).to_string();
        return (StatusCode::OK, [(header::LINK, link)], body).into_response();
    }
    let head_manifest = req.method() == axum::http::Method::HEAD && path.contains("/manifests/");
    if req.method() == axum::http::Method::GET && path.contains("/manifests/") {
        hooks.manifest_gets.fetch_add(1, Ordering::SeqCst);
    }
    let mut res = next.run(req).await;
    if head_manifest && hooks.strip_digest.load(Ordering::SeqCst) {
        res.headers_mut().remove("docker-content-digest");
    }
    let fault = hooks.blob_fault.load(Ordering::SeqCst);
    if blob_get && fault != Fault::None as u8 {
        return break_blob(fault, res).await;
    }
    res
}
