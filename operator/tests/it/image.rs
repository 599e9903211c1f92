//! The container image's layout, without a container engine (there is none
//! on these machines): the runtime filesystem the Dockerfile makes (the
//! binary, the shared libraries it links, a CA bundle, user 65532 and no
//! shell) is assembled here, pushed as an OCI image with the real `crane`,
//! pulled back with `ocisync pull`, and run from that tree under `chroot`
//! as uid 65532 against the real API server, where it syncs an Artifact.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cluster::{ControlPlane, Env, Spec};
use crate::support::*;

/// The files the runtime image holds: the binary at the Dockerfile's path,
/// what `ldd` says it loads (distroless/cc's glibc and libgcc), the CA
/// bundle, and passwd/group naming 65532 `nonroot` as distroless does.
fn runtime_tree(root: &Path) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ocisync"));
    let put = |to: &str, from: &Path| {
        let dest = root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    put("/usr/local/bin/ocisync", &bin);
    let ldd = run(Command::new("ldd").arg(&bin));
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line.split("=>").last().unwrap().split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            put(path, &std::fs::canonicalize(path).unwrap());
        }
    }
    put("/etc/ssl/certs/ca-certificates.crt", Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let etc = root.join("etc");
    std::fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    std::fs::create_dir_all(root.join("home/nonroot")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_image_runs_as_nonroot_and_syncs() {
    let cp = ControlPlane::shared();
    let e = Env::dedicated("image-test", "image").await;
    let reg = Distribution::start();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    runtime_tree(&tree);
    let layer = dir.path().join("layer.tar");
    run(Command::new("tar").arg("-C").arg(&tree).args(["--owner=0", "--group=0", "-cf"]).arg(&layer).arg("."));
    let image = format!("{}/ocisync:test", reg.host());
    crane(&["append", "--new_layer", layer.to_str().unwrap(), "--new_tag", &image]);
    crane(&["mutate", &image, "--entrypoint", "/usr/local/bin/ocisync", "--user", "65532:65532"]);
    let config: serde_json::Value = serde_json::from_slice(&crane(&["config", &image]).stdout).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");

    // The image back through ocisync itself.
    let root = dir.path().join("rootfs");
    let pulled = pull(&image, &root, &[]).await;
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert!(!root.join("bin/sh").exists(), "no shell in the image");
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
        .args(["/usr/local/bin/ocisync", "operator", "--work-dir", "/work", "--leader-elect=false"])
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
