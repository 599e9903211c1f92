//! The container image's layout, without a container engine (there is none
//! on these machines, and the Dockerfile's base images are out of reach):
//! `e2e/setup/build-image.sh` assembles the runtime filesystem the
//! Dockerfile makes (the binary, the shared libraries it links, a CA bundle,
//! user 65532 and no shell) and pushes it with the real `crane`; here its
//! configuration is checked against the Dockerfile's, the image is pulled
//! back with `ocisync pull`, and run from that tree under `chroot` as uid
//! 65532 against the real API server, where it syncs an Artifact. The node
//! suite (e2e/node) runs the same image as a pod.

use std::process::Command;

use crate::support::cluster::{ControlPlane, Env, Spec};
use crate::support::*;

/// The Dockerfile's runtime stage: its USER, ENTRYPOINT, CMD and where it
/// copies the binary.
fn dockerfile() -> (String, Vec<String>, Vec<String>, String) {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let runtime = text.rsplit_once("\nFROM ").unwrap().1;
    let line = |word: &str| {
        runtime.lines().find_map(|l| l.strip_prefix(word)).unwrap_or_else(|| panic!("no {word}")).trim().to_string()
    };
    let list = |word: &str| serde_json::from_str::<Vec<String>>(&line(word)).unwrap();
    let copy = line("COPY ");
    (line("USER "), list("ENTRYPOINT "), list("CMD "), copy.rsplit(' ').next().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_image_runs_as_nonroot_and_syncs() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("image-test", "image").await;
    let reg = Distribution::start();
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{}/ocisync:test", reg.host());
    run(Command::new(repo_root().join("e2e/setup/build-image.sh"))
        .arg(&image)
        .env("OCISYNC_BIN", env!("CARGO_BIN_EXE_ocisync"))
        .env("OCISYNC_TOOLS", tools_bin().parent().unwrap()));
    let config: serde_json::Value = serde_json::from_slice(&crane(&["config", &image]).stdout).unwrap();
    let (user, entrypoint, cmd, binary) = dockerfile();
    assert_eq!(config["config"]["User"], user.as_str());
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(entrypoint));
    assert_eq!(config["config"]["Cmd"], serde_json::json!(cmd));
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")));
    assert_eq!(entrypoint, std::slice::from_ref(&binary));

    // The image back through ocisync itself.
    let root = dir.path().join("rootfs");
    let pulled = pull(&image, &root, &[]).await;
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert!(!root.join("bin/sh").exists(), "no shell in the image");
    assert!(root.join(binary.trim_start_matches('/')).is_file(), "the binary where the Dockerfile puts it");
    // what the pod gives it: a kubeconfig (the ServiceAccount's token) and an emptyDir
    std::fs::create_dir_all(root.join("work")).unwrap();
    std::fs::copy(&cp.operator_kubeconfig, root.join("kubeconfig")).unwrap();
    let nonroot = (Some(rustix::fs::Uid::from_raw(65532)), Some(rustix::fs::Gid::from_raw(65532)));
    for owned in ["work", "kubeconfig"] {
        rustix::fs::chown(root.join(owned), nonroot.0, nonroot.1).unwrap();
    }
    let metrics = format!("127.0.0.1:{}", free_port());
    let selector = format!("{}=image", crate::support::cluster::OPERATOR_LABEL);
    let mut cmd = Command::new("/usr/sbin/chroot");
    cmd.args(["--userspec=65532:65532"])
        .arg(&root)
        .arg(&binary)
        .args(["operator", "--work-dir", "/work", "--leader-elect=false"])
        .args(["--metrics-addr", &metrics, "--watch-label-selector", &selector])
        .env_clear()
        .env("KUBECONFIG", "/kubeconfig")
        .env("HOME", "/home/nonroot")
        .stdout(std::process::Stdio::null());
    let mut op = Proc::spawn("image-operator", &mut cmd, dir.path().join("operator.log"));

    let log = op.log.clone();
    eventually("the operator in the image answers /readyz", 30, async || {
        let up = reqwest::get(format!("http://{metrics}/readyz")).await.ok().filter(|r| r.status() == 200);
        assert!(up.is_some() || op.alive(), "it exited: {}", std::fs::read_to_string(&log).unwrap_or_default());
        up
    })
    .await;
    let d = push_files(&reg.host(), "app:v1", &[("app.yaml", b"from the image\n")], &["--plain-http"]);
    e.apply("app", &Spec::new(&reg.host(), "app").tag("v1")).await;
    e.synced("app", &d).await;
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["app.yaml"], "from the image\n");
    let uid = std::fs::read_to_string(format!("/proc/{}/status", op.pid())).unwrap();
    assert!(uid.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65532")), "{uid}");
    assert!(op.alive(), "{}", op.logs());
}
