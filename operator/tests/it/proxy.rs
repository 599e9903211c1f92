//! HTTP proxies: Debian's tinyproxy between ocisync and distribution 2.8.
//! The CLI honours `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (HTTPS through
//! a CONNECT tunnel); an Artifact's `proxySecretRef` authenticates to a
//! proxy with `BasicAuth`, and a wrong proxy password is a clear reason.
//! What went through the proxy is read from tinyproxy's own log.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::cluster::{Env, Spec};
use crate::support::registry::{Distribution, DistributionOptions, Pki};
use crate::support::*;

struct Tinyproxy {
    port: u16,
    dir: tempfile::TempDir,
    _proc: Proc,
}

impl Tinyproxy {
    fn start(auth: Option<(&str, &str)>) -> Tinyproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth = auth.map(|(u, p)| format!("BasicAuth {u} {p}\n")).unwrap_or_default();
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\n{auth}",
            dir.path().join("access.log").display()
        );
        std::fs::write(dir.path().join("tinyproxy.conf"), conf).unwrap();
        let mut cmd = Command::new(producers().join("bin/tinyproxy"));
        cmd.arg("-d").arg("-c").arg(dir.path().join("tinyproxy.conf"));
        let mut proc = Proc::spawn("tinyproxy", &mut cmd, dir.path().join("stderr.log"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(proc.alive() && std::time::Instant::now() < deadline, "tinyproxy: {}", proc.logs());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Tinyproxy { port, dir, _proc: proc }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests tinyproxy forwarded or tunnelled, as its log names them.
    fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines().filter_map(|l| l.split_once("Request (file descriptor ")).map(|(_, r)| r.to_string()).collect()
    }
}

/// `ocisync pull` with exactly these proxy variables (none inherited).
fn pull_via(reference: &str, out: &Path, env: &[(&str, &str)], extra: &[&str]) -> std::process::Output {
    let _ = std::fs::remove_dir_all(out);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocisync"));
    cmd.args(["pull", reference, "--no-progress", "--out"]).arg(out).args(extra);
    for v in
        ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"]
    {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_goes_through_the_environments_proxy() {
    let proxy = Tinyproxy::start(None);
    let reg = Distribution::start();
    push_files(&reg.host(), "app:v1", &[("f.txt", b"proxied")], &["--plain-http"]);
    let r = format!("{}/app:v1", reg.host());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = pull_via(&r, &out, &[("HTTP_PROXY", &proxy.url())], &["--insecure"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("f.txt")).unwrap(), b"proxied");
    let seen = proxy.requests();
    let manifest = format!("HEAD http://{}/v2/app/manifests/v1", reg.host());
    assert!(seen.iter().any(|l| l.contains(&manifest)), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("/blobs/sha256:")), "blobs too: {seen:?}");

    // NO_PROXY names the registry: straight there
    let before = proxy.requests().len();
    let o = pull_via(&r, &out, &[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")], &["--insecure"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(proxy.requests().len(), before, "NO_PROXY bypasses the proxy");

    // HTTPS: a CONNECT tunnel, so the proxy sees the host and nothing else
    let pki = Pki::new();
    let tls = Some((pki.server_cert.clone(), pki.server_key.clone()));
    let secure = Distribution::start_with(DistributionOptions { tls, ..Default::default() });
    let ca = pki.ca_cert.to_str().unwrap();
    push_files(&secure.host(), "app:v1", &[("f.txt", b"tunnelled")], &["--ca-file", ca]);
    let r = format!("{}/app:v1", secure.host());
    let o = pull_via(&r, &out, &[("HTTPS_PROXY", &proxy.url())], &["--ca-file", ca]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("f.txt")).unwrap(), b"tunnelled");
    let seen = proxy.requests();
    assert!(seen.iter().any(|l| l.contains(&format!("CONNECT {} ", secure.host()))), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains(&format!("GET https://{}", secure.host()))), "{seen:?}");

    // a proxy that wants credentials and gets none: said so, exit 4
    let guarded = Tinyproxy::start(Some(("proxyuser", "hunter2")));
    let r = format!("{}/app:v1", reg.host());
    let o = pull_via(&r, &out, &[("HTTP_PROXY", &guarded.url())], &["--insecure"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("407 Proxy Authentication Required"), "{}", stderr(&o));
    // credentials in the variable, as curl and docker take them
    let with_auth = guarded.url().replace("http://", "http://proxyuser:hunter2@");
    let o = pull_via(&r, &out, &[("HTTP_PROXY", &with_auth)], &["--insecure"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_secret_ref_authenticates_to_the_proxy() {
    let e = Env::new("proxied").await;
    let proxy = Tinyproxy::start(Some(("proxyuser", "s3cret")));
    let reg = Distribution::start();
    let digest = push_files(&reg.host(), "app:v1", &[("f.txt", b"via the proxy")], &["--plain-http"]);
    let secret = |name: &str, password: &str| {
        json!({"metadata": {"name": name},
               "stringData": {"address": proxy.url(), "username": "proxyuser", "password": password}})
    };
    e.create_secret(secret("proxy", "s3cret")).await;
    e.create_secret(secret("wrong-proxy", "hunter2")).await;
    e.create_secret(json!({"metadata": {"name": "no-address"}, "stringData": {"username": "u", "password": "p"}}))
        .await;
    let spec = |secret: &str| Spec::new(&reg.host(), "app").tag("v1").set("proxySecretRef", json!({"name": secret}));
    e.apply("app", &spec("proxy")).await;
    e.synced("app", &digest).await;
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["f.txt"], "via the proxy");
    let seen = proxy.requests();
    assert!(seen.iter().any(|l| l.contains(&format!("HEAD http://{}/v2/app/manifests/v1", reg.host()))), "{seen:?}");

    e.apply("wrong", &spec("wrong-proxy")).await;
    let (reason, message) = e.ready("wrong", false).await;
    assert_eq!(reason, "Unauthorized", "{message}");
    // tinyproxy answers wrong proxy credentials with its own 401 (a missing
    // one with 407): the message names the proxy as a suspect.
    let host = proxy.url().replace("http://", "");
    assert!(message.contains(&format!("the proxy {host} refused")) && !message.contains("hunter2"), "{message}");
    e.apply("bad", &spec("no-address")).await;
    let (reason, message) = e.ready("bad", false).await;
    assert_eq!(reason, "InvalidCredentials", "{message}");
    assert!(message.contains("has no address"), "{message}");
}
