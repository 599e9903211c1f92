//! Auth and transport: htpasswd and TLS on the real distribution; bearer
//! tokens and rate limits in front of ferro-oci-server.

use std::fs;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::registry::REFRESH_TOKEN;
use crate::support::*;

fn docker_config(dir: &std::path::Path, registry: &str, entry: serde_json::Value) -> String {
    config_file(dir, serde_json::json!({ "auths": { registry: entry } }))
}

/// A docker config file of `body`, under a new name in `dir`.
fn config_file(dir: &std::path::Path, body: serde_json::Value) -> String {
    let p = dir.join(format!("config-{}.json", fs::read_dir(dir).unwrap().count()));
    fs::write(&p, body.to_string()).unwrap();
    p.to_str().unwrap().to_string()
}

/// `ocisync pull REF --docker-config CFG` into `out` (emptied first), with
/// `env` set: the credential helper tests' PATH and the helper's own.
fn pull_with_config(reference: &str, cfg: &str, out: &std::path::Path, env: &[(&str, String)]) -> std::process::Output {
    let _ = fs::remove_dir_all(out);
    std::process::Command::new(env!("CARGO_BIN_EXE_ocisync"))
        .args(["pull", reference, "--insecure", "--no-progress", "--docker-config", cfg, "--out"])
        .arg(out)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_docker_config() {
    let (reg, _) = private_registry();
    let r = format!("{}/private:v1", reg.host());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let pull = |cfg: Option<String>| {
        let mut args =
            vec!["pull".to_string(), r.clone(), "--out".into(), out.to_str().unwrap().into(), "--insecure".into()];
        if let Some(c) = cfg {
            args.extend(["--docker-config".into(), c]);
        }
        async move { ocisync(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let o = pull(None).await;
    assert_eq!(o.status.code(), Some(4), "anonymous: {}", stderr(&o));
    assert!(stderr(&o).contains("no credentials were given"), "{}", stderr(&o));

    let wrong = docker_config(work.path(), &reg.host(), serde_json::json!({ "username": "alice", "password": "nope" }));
    let o = pull(Some(wrong)).await;
    assert_eq!(o.status.code(), Some(4), "wrong password: {}", stderr(&o));
    assert!(stderr(&o).contains("credentials given were rejected"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("alice"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("nope"), "a password never reaches the output");

    let other_host =
        docker_config(work.path(), "127.0.0.1:1", serde_json::json!({ "username": "alice", "password": "wonderland" }));
    assert_eq!(pull(Some(other_host)).await.status.code(), Some(4), "credentials for another host are not sent");

    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    let right = docker_config(work.path(), &format!("http://{}/v2/", reg.host()), serde_json::json!({ "auth": auth }));
    let o = pull(Some(right)).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"private");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_private_ca() {
    let pki = Pki::new();
    let tls = Some((pki.server_cert.clone(), pki.server_key.clone()));
    let reg = Distribution::start_with(DistributionOptions { tls, ..Default::default() });
    push_files(&reg.host(), "tls:v1", &[("f.txt", b"over tls")], &["--ca-file", pki.ca_cert.to_str().unwrap()]);
    let r = format!("{}/tls:v1", reg.host());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = ocisync(&["pull", &r, "--out", out.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(stderr(&o).contains("--ca-file"), "the error says how to trust the CA: {}", stderr(&o));
    let o = ocisync(&["pull", &r, "--out", out.to_str().unwrap(), "--ca-file", pki.ca_cert.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"over tls");
    // --insecure means plain HTTP, which this registry does not speak
    let o = pull(&r, &out, &[]).await;
    assert_ne!(o.status.code(), Some(0));
}

async fn ferro_with_file(content: &str) -> (Ferro, String) {
    let reg = Ferro::start().await;
    reg.push("app:v1", &[("f.txt", content.as_bytes())]).await;
    let r = format!("{}/app:v1", reg.host());
    (reg, r)
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_fetched_with_basic_credentials() {
    let (reg, r) = ferro_with_file("behind a token").await;
    reg.hooks.bearer.store(true, Ordering::SeqCst);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = pull(&r, &out, &[]).await;
    assert_eq!(o.status.code(), Some(4), "anonymous gets no token: {}", stderr(&o));
    let wrong =
        docker_config(work.path(), &reg.host(), serde_json::json!({ "username": BEARER_USER.0, "password": "x" }));
    let o = pull(&r, &out, &["--docker-config", &wrong]).await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    let right = docker_config(
        work.path(),
        &reg.host(),
        serde_json::json!({ "username": BEARER_USER.0, "password": BEARER_USER.1 }),
    );
    let tokens_before = reg.hooks.token_requests.load(Ordering::SeqCst);
    let o = pull(&r, &out, &["--docker-config", &right]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"behind a token");
    assert_eq!(reg.hooks.token_requests.load(Ordering::SeqCst) - tokens_before, 1, "one token serves the whole pull");
}

/// Identity tokens, as `docker login` to an OAuth registry leaves them (an
/// `identitytoken` in config.json, or a helper answering the `<token>`
/// user): exchanged with the OAuth2 `refresh_token` grant (a POST to the
/// realm); a realm with no GET gets the `password` grant for a password.
#[tokio::test(flavor = "multi_thread")]
async fn identity_tokens_are_exchanged_at_the_token_realm() {
    let (reg, r) = ferro_with_file("behind oauth").await;
    reg.hooks.bearer.store(true, Ordering::SeqCst);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let grants = || std::mem::take(&mut *reg.hooks.grants.lock().unwrap());
    let stored = |token: &str| {
        // `docker login` writes the `<token>` user beside it; the token is what counts
        let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "<token>:");
        docker_config(work.path(), &reg.host(), serde_json::json!({ "auth": auth, "identitytoken": token }))
    };
    let o = pull(&r, &out, &["--docker-config", &stored(REFRESH_TOKEN)]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"behind oauth");
    assert_eq!(grants(), ["refresh_token"]);
    let o = pull(&r, &out, &["--docker-config", &stored("revoked-hunter2")]).await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("identity token given was rejected"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("hunter2"), "{}", stderr(&o));
    assert_eq!(grants(), ["refresh_token"], "one exchange tried, refused");

    // from a credential helper's `<token>` answer
    let bin = work.path().join("bin");
    fs::create_dir(&bin).unwrap();
    credential_helper(&bin, "oauth", ("<token>", REFRESH_TOKEN), &work.path().join("oauth.log"));
    let env = [("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))];
    let cfg = config_file(work.path(), serde_json::json!({ "credHelpers": { reg.host(): "oauth" } }));
    let o = pull_with_config(&r, &cfg, &out, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(grants(), ["refresh_token"]);

    // a realm that answers only POSTs: the password grant
    reg.hooks.oauth_only.store(true, Ordering::SeqCst);
    let password = docker_config(
        work.path(),
        &reg.host(),
        serde_json::json!({ "username": BEARER_USER.0, "password": BEARER_USER.1 }),
    );
    let o = pull(&r, &out, &["--docker-config", &password]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(grants(), ["password"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_waited_out_as_retry_after_says() {
    let (reg, r) = ferro_with_file("eventually").await;
    reg.hooks.throttle.store(2, Ordering::SeqCst);
    reg.hooks.retry_after_secs.store(1, Ordering::SeqCst);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let started = Instant::now();
    let o = pull(&r, &out, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"eventually");
    assert_eq!(reg.hooks.throttle.load(Ordering::SeqCst), 0, "both 429s were answered");
    // Not a speed target: the two waits the registry asked for happened.
    assert!(started.elapsed() >= Duration::from_secs(2), "waited {:?}", started.elapsed());

    // A registry that never lets up: bounded attempts, then a clear error.
    reg.hooks.throttle.store(1000, Ordering::SeqCst);
    reg.hooks.retry_after_secs.store(0, Ordering::SeqCst);
    let o = ocisync(&["resolve", &r, "--insecure"]).await;
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(stderr(&o).contains("HTTP 429 after 4 attempt(s)"), "{}", stderr(&o));
    assert_eq!(1000 - reg.hooks.throttle.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn ferro_round_trip_matches_distribution() {
    let (reg, r) = ferro_with_file("same bytes").await;
    let work = tempfile::tempdir().unwrap();
    let o = pull(&r, &work.path().join("o"), &["--output", "json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["files"][0]["path"], "f.txt");
    assert!(reg.hooks.requests.load(Ordering::SeqCst) > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_digest_header_resolve_falls_back_to_get() {
    let (reg, r) = ferro_with_file("no header").await;
    let with_header = ocisync(&["resolve", &r, "--insecure"]).await;
    assert!(with_header.status.success(), "{}", stderr(&with_header));
    assert_eq!(reg.hooks.manifest_gets.load(Ordering::SeqCst), 0, "HEAD was enough");
    reg.hooks.strip_digest.store(true, Ordering::SeqCst);
    let without = ocisync(&["resolve", &r, "--insecure"]).await;
    assert!(without.status.success(), "{}", stderr(&without));
    assert_eq!(without.stdout, with_header.stdout, "the digest of the fetched bytes is the same digest");
    assert_eq!(reg.hooks.manifest_gets.load(Ordering::SeqCst), 1);
    // a pull reuses the manifest that the fallback already fetched
    let work = tempfile::tempdir().unwrap();
    let o = pull(&r, &work.path().join("o"), &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(reg.hooks.manifest_gets.load(Ordering::SeqCst), 2);
}

/// Credentials from docker credential helpers, chosen as the docker CLI
/// chooses them: the registry's `credHelpers` entry over `credsStore`; a
/// missing helper is a usage error (exit 2). The helpers here are scripts
/// speaking the helper protocol (the server on stdin, JSON back), each
/// logging the server it was asked for.
#[tokio::test(flavor = "multi_thread")]
async fn credential_helpers_as_docker_uses_them() {
    let (reg, _) = private_registry();
    let r = format!("{}/private:v1", reg.host());
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    fs::create_dir(&bin).unwrap();
    for (name, password) in [("store", "not-this-one"), ("per-host", "wonderland")] {
        credential_helper(&bin, name, ("alice", password), &work.path().join(format!("{name}.log")));
    }
    let config = |body: serde_json::Value| config_file(work.path(), body);
    let env = [("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))];
    let pull_with = |cfg: String| pull_with_config(&r, &cfg, &work.path().join("out"), &env);

    // credsStore alone: its (wrong) password is used, not anonymous access
    let o = pull_with(config(serde_json::json!({ "credsStore": "store" })));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(work.path().join("store.log")).unwrap(), format!("get {}\n", reg.host()));
    // the host's credHelpers entry wins over the store
    let cfg = config(serde_json::json!({ "credsStore": "store", "credHelpers": { reg.host(): "per-host" } }));
    let o = pull_with(cfg);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(work.path().join("out/f.txt")).unwrap(), b"private");
    assert_eq!(fs::read_to_string(work.path().join("per-host.log")).unwrap(), format!("get {}\n", reg.host()));
    // a helper that is not installed: exit 2, named
    let o = pull_with(config(serde_json::json!({ "credHelpers": { reg.host(): "absent" } })));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("docker-credential-absent was not found"), "{}", stderr(&o));
}

/// Debian's real `docker-credential-pass` (golang-docker-credential-helpers
/// 0.6.4, on `pass` and a GPG key made here) holds alice's password, stored
/// with `docker-credential-pass store` as `docker login` would: a pull with
/// `"credsStore": "pass"` gets it; for a host it holds nothing for, the
/// helper's empty answer means anonymous (refused by this registry: 4).
#[tokio::test(flavor = "multi_thread")]
async fn the_real_docker_credential_pass_holds_the_password() {
    let (reg, _) = private_registry();
    let r = format!("{}/private:v1", reg.host());
    let work = tempfile::tempdir().unwrap();
    let gnupg = work.path().join("gnupg");
    fs::create_dir(&gnupg).unwrap();
    fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let vars = [
        ("PATH", format!("{}:{}", producers().join("bin").display(), std::env::var("PATH").unwrap_or_default())),
        ("GNUPGHOME", gnupg.display().to_string()),
        ("PASSWORD_STORE_DIR", work.path().join("store").display().to_string()),
    ];
    let env = |c: &mut std::process::Command| {
        c.envs(vars.iter().map(|(k, v)| (*k, v)));
    };
    let mut keygen = std::process::Command::new("gpg");
    keygen.args(["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "ocisync-test"]);
    env(&mut keygen);
    run(&mut keygen);
    let mut list = std::process::Command::new("gpg");
    list.args(["--list-keys", "--with-colons"]);
    env(&mut list);
    let listed = String::from_utf8(run(&mut list).stdout).unwrap();
    let key = listed.lines().find_map(|l| l.strip_prefix("fpr:")).unwrap().trim_matches(':').to_string();
    let mut init = std::process::Command::new("pass");
    init.args(["init", &key]);
    env(&mut init);
    run(&mut init);
    let mut store = std::process::Command::new("docker-credential-pass");
    store.arg("store").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    env(&mut store);
    let mut child = store.spawn().unwrap();
    let entry = serde_json::json!({"ServerURL": reg.host(), "Username": "alice", "Secret": "wonderland"});
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), entry.to_string().as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());

    let cfg = config_file(work.path(), serde_json::json!({"auths": {}, "credsStore": "pass"}));
    let pull_from = |reference: &str| pull_with_config(reference, &cfg, &work.path().join("out"), &vars);
    let o = pull_from(&r);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(work.path().join("out/f.txt")).unwrap(), b"private");
    // The same registry under another name: pass holds nothing for it.
    let other = format!("localhost:{}/private:v1", reg.host().rsplit(':').next().unwrap());
    let o = pull_from(&other);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}
