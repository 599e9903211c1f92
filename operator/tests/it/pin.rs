//! `ocisync pin` on a git repository the test makes: Artifacts in several
//! files and styles beside other kinds, pointing at distribution 2.8 with
//! artifacts signed by the real cosign. Only the digest lines change (`git
//! diff --numstat`), a second run changes nothing, an unsigned new digest is
//! refused and its file untouched, `--dry-run` writes nothing.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::cosign::Signer;
use crate::support::*;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
        .args(args));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pin_writes_only_verified_digests_and_nothing_else() {
    let reg = Distribution::start();
    let host = reg.host();
    let signer = Signer::new();
    let v1 = push_files(&host, "app:v1", &[("app.yaml", b"v: 1\n")], &["--plain-http"]);
    let v12 = push_files(&host, "lib:1.2.0", &[("lib.yaml", b"v: 1.2\n")], &["--plain-http"]);
    push_files(&host, "lib:1.1.0", &[("lib.yaml", b"v: 1.1\n")], &["--plain-http"]);
    push_files(&host, "lib:2.0.0", &[("lib.yaml", b"v: 2\n")], &["--plain-http"]);
    let bare = push_files(&host, "bare:v1", &[("x", b"x\n")], &["--plain-http"]);
    signer.sign(&format!("{host}/app@{v1}"));
    signer.sign(&format!("{host}/lib@{v12}"));

    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    fs::create_dir_all(r.join("apps")).unwrap();
    let a = format!(
        "# the app's configuration, synced by ocisync\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: keep-me}}\ndata: {{tag: v9}}\n---\n\
         apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata:\n  name: app\n  namespace: team\n\
         spec:\n  url: oci://{host}/app\n  insecure: true\n  ref:\n    # follow the release tag\n    tag: \"v1\"   # moved by pin\n\
         \x20 verify:\n    keys: {{secretRef: {{name: cosign}}}}\n"
    );
    fs::write(r.join("apps/a.yaml"), &a).unwrap();
    let old = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let b = format!(
        "apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {{name: lib}}\n\
         spec: {{url: 'oci://{host}/lib', insecure: true, ref: {{semver: '>=1.0 <2', digest: '{old}'}},\n  verify: {{keys: {{secretRef: {{name: cosign}}}}}}}}\n"
    );
    fs::write(r.join("apps/b.yml"), &b).unwrap();
    let unsigned = format!(
        "apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {{name: bare}}\n\
         spec:\n  url: oci://{host}/bare\n  insecure: true\n  ref:\n    tag: v1\n  verify:\n    keys:\n      secretRef: {{name: cosign}}\n"
    );
    fs::write(r.join("unsigned.yaml"), &unsigned).unwrap();
    let kustomization = "resources:\n- apps/a.yaml\n- apps/b.yml\n";
    fs::write(r.join("kustomization.yaml"), kustomization).unwrap();
    git(r, &["init", "-q"]);
    git(r, &["add", "."]);
    git(r, &["commit", "-qm", "init"]);

    let key = signer.public_key();
    let key = key.to_str().unwrap();
    // --dry-run: the diff is printed, nothing is written
    let out = ocisync(&["pin", r.to_str().unwrap(), "--key", key, "--insecure", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(10), "the unsigned one: {}", stderr(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains(&format!("+    digest: {v1}")), "{shown}");
    assert_eq!(git(r, &["status", "--porcelain"]), "", "--dry-run wrote nothing");

    let out = ocisync(&["pin", r.to_str().unwrap(), "--key", key, "--insecure", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let doc = json(&out);
    let by_name = |n: &str| doc["artifacts"].as_array().unwrap().iter().find(|a| a["name"] == n).unwrap().clone();
    assert_eq!(by_name("app")["after"], v1.as_str());
    assert_eq!(by_name("app")["verified"], true);
    let evidence = &by_name("app")["verification"]["signatures"][0];
    assert_eq!(evidence["format"], "SigstoreBundle", "{doc}");
    assert_eq!(evidence["requiredBy"], "--key");
    assert_eq!(by_name("lib")["after"], v12.as_str(), "the highest tag in the range");
    assert_eq!(by_name("lib")["before"], old);
    assert_eq!(by_name("bare")["error"]["reason"], "NoSignature");
    assert_eq!(by_name("bare")["after"], serde_json::Value::Null, "{bare} is not written");

    // one added line in a.yaml, one changed in b.yml, nothing else
    let numstat = git(r, &["diff", "--numstat"]);
    assert_eq!(numstat, "1\t0\tapps/a.yaml\n1\t1\tapps/b.yml\n", "{numstat}");
    let a_now = fs::read_to_string(r.join("apps/a.yaml")).unwrap();
    assert_eq!(a_now, a.replace("# moved by pin\n", &format!("# moved by pin\n    digest: {v1}\n")));
    let b_now = fs::read_to_string(r.join("apps/b.yml")).unwrap();
    assert_eq!(b_now, b.replace(old, &v12));
    assert_eq!(fs::read_to_string(r.join("unsigned.yaml")).unwrap(), unsigned);

    // a second run changes nothing
    git(r, &["commit", "-qam", "pinned"]);
    let out = ocisync(&["pin", r.to_str().unwrap(), "--key", key, "--insecure"]).await;
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert_eq!(git(r, &["status", "--porcelain"]), "");

    // without the flags, the keys come from the Secret its spec.verify
    // names, in the tree, in its namespace; without that Secret, no pin
    git(r, &["reset", "-q", "--hard", "HEAD~1"]);
    let a_file = r.join("apps/a.yaml");
    let out = ocisync(&["pin", a_file.to_str().unwrap(), "--insecure", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let message = json(&out)["artifacts"][0]["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("Secret team/cosign is not in the tree"), "{message}");
    assert_eq!(git(r, &["status", "--porcelain"]), "");
    let pem: String = signer.public_pem().lines().map(|l| format!("    {l}\n")).collect();
    let secret = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cosign\n  namespace: {ns}\nstringData:\n  cosign.pub: |\n{pem}"
        )
    };
    fs::write(r.join("keys.yaml"), secret("elsewhere")).unwrap();
    let out = ocisync(&["pin", a_file.to_str().unwrap(), r.join("keys.yaml").to_str().unwrap(), "--insecure"]).await;
    assert_eq!(out.status.code(), Some(2), "a Secret of another namespace is not read: {}", stderr(&out));
    fs::write(r.join("keys.yaml"), secret("team")).unwrap();
    let out = ocisync(&["pin", a_file.to_str().unwrap(), r.join("keys.yaml").to_str().unwrap(), "--insecure"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&a_file).unwrap(), a_now, "the same edit as with --key");

    // the tag moves: so does the pin, and it says what the move changes
    let v1b = push_files(&host, "app:v1", &[("app.yaml", b"v: 1.1\n")], &["--plain-http"]);
    signer.sign(&format!("{host}/app@{v1b}"));
    let keys_file = r.join("keys.yaml");
    let args = ["pin", a_file.to_str().unwrap(), keys_file.to_str().unwrap(), "--insecure", "--output", "json"];
    let out = ocisync(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let app = json(&out)["artifacts"][0].clone();
    assert_eq!(
        (app["before"].as_str(), app["after"].as_str(), app["moved"].as_bool()),
        (Some(v1.as_str()), Some(v1b.as_str()), Some(true))
    );
    assert_eq!(app["files"], serde_json::json!({"added": 0, "removed": 0, "changed": 1}));
    assert_eq!(fs::read_to_string(&a_file).unwrap(), a_now.replace(&v1, &v1b));
}

/// An Artifact that asks for Notation signatures: `pin` and `check` read
/// its trust policy Secret (Flux's layout) from the tree, and a digest the
/// real notation signed is pinned and passes; one signed by another
/// organisation is refused.
#[tokio::test(flavor = "multi_thread")]
async fn pin_and_check_verify_notation_with_the_trees_secret() {
    use crate::support::notation::{ACME, Notation, flux_secret};

    let reg = Distribution::start();
    let host = reg.host();
    let n = Notation::new("http://127.0.0.1:9");
    let good = push_files(&host, "signed:v1", &[("a", b"a\n")], &["--plain-http"]);
    n.sign(&format!("{host}/signed@{good}"), "ec", "cose", &[]);
    let foreign = push_files(&host, "foreign:v1", &[("f", b"f\n")], &["--plain-http"]);
    n.sign(&format!("{host}/foreign@{foreign}"), "other", "jws", &[]);
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    let mut secret = flux_secret("notation-trust", &n, &[ACME]);
    secret["apiVersion"] = "v1".into();
    secret["kind"] = "Secret".into();
    secret["metadata"]["namespace"] = "apps".into();
    fs::write(r.join("trust.yaml"), serde_saphyr::to_string(&secret).unwrap()).unwrap();
    for repo_name in ["signed", "foreign"] {
        let doc = format!(
            "apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {{name: {repo_name}, namespace: apps}}\n\
             spec:\n  url: oci://{host}/{repo_name}\n  insecure: true\n  ref:\n    tag: v1\n  verify:\n    notation:\n      secretRef: {{name: notation-trust}}\n"
        );
        fs::write(r.join(format!("{repo_name}.yaml")), doc).unwrap();
    }
    let out = ocisync(&["pin", r.to_str().unwrap(), "--insecure", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(11), "the foreign one: {}", stderr(&out));
    let doc = json(&out);
    let by = |n: &str| doc["artifacts"].as_array().unwrap().iter().find(|a| a["name"] == n).unwrap().clone();
    assert_eq!(by("signed")["after"], good.as_str());
    assert_eq!(by("signed")["verified"], true);
    assert_eq!(by("signed")["verification"]["signatures"][0]["format"], "Notation");
    assert_eq!(by("signed")["verification"]["signatures"][0]["requiredBy"], "spec.verify.notation");
    assert_eq!(by("foreign")["error"]["reason"], "UntrustedSigner");
    assert!(fs::read_to_string(r.join("signed.yaml")).unwrap().contains(&format!("    digest: {good}\n")));
    assert!(!fs::read_to_string(r.join("foreign.yaml")).unwrap().contains("digest:"));
    // check agrees: the pinned one passes, the other fails on its signature
    let out = ocisync(&["check", r.to_str().unwrap(), "--insecure", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    let by = |n: &str| doc["artifacts"].as_array().unwrap().iter().find(|a| a["name"] == n).unwrap().clone();
    assert_eq!(by("signed")["ok"], true, "{doc}");
    assert_eq!(by("foreign")["failed"]["reason"], "UntrustedSigner", "{doc}");
}
