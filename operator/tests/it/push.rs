//! `ocisync push` to distribution 2.8, read back by other tools (crane's
//! export and oras's blob fetch through GNU tar, GNU tar on the layer
//! itself, containerd's estargz library through its TOC, skopeo's copy to a
//! plain layout) and by ocisync by range; reproducible; hostile trees
//! refused.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::layers::listing;
use crate::support::*;

/// A tree with what a config artifact holds, a file cut into chunks, an
/// empty file, a symlink and a name longer than ustar's 100 bytes.
fn tree(dir: &Path) {
    let deep = format!("deep/{}/{}", "d".repeat(90), "f".repeat(60));
    fs::create_dir_all(dir.join("etc/conf.d")).unwrap();
    fs::create_dir_all(dir.join(&deep).parent().unwrap()).unwrap();
    fs::write(dir.join("etc/app.yaml"), "port: 8080\n").unwrap();
    fs::write(dir.join("etc/conf.d/empty.conf"), "").unwrap();
    fs::write(dir.join(&deep), "far down\n").unwrap();
    let mut x: u64 = 7;
    let mut big = Vec::with_capacity(9 << 20);
    while big.len() < 9 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    fs::create_dir_all(dir.join("assets")).unwrap();
    fs::write(dir.join("assets/big.bin"), &big).unwrap();
    // as much again, so that big.bin alone is read by range
    big.reverse();
    big.extend_from_within(..1 << 20);
    fs::write(dir.join("assets/more.bin"), &big).unwrap();
    for i in 0..20 {
        fs::write(dir.join(format!("assets/{i:02}.txt")), format!("file {i}\n").repeat(1000)).unwrap();
    }
    std::os::unix::fs::symlink("etc/app.yaml", dir.join("app.yaml")).unwrap();
    let script = dir.join("run.sh");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_files_read_back_by_every_reader_and_one_by_range() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree(&src);
    let want = listing(&src);
    let reg = Distribution::start();
    let host = reg.host();

    let o =
        ocisync(&["push", &format!("oci://{host}/app:v1"), src.to_str().unwrap(), "--insecure", "--output", "json"])
            .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = json(&o);
    let digest = doc["digest"].as_str().unwrap().to_string();
    assert_eq!(doc["pinned"], format!("{host}/app@{digest}"));
    assert_eq!(doc["files"], 26, "{doc}");
    let layer = doc["layer"]["digest"].as_str().unwrap().to_string();

    // ocisync reads it all back
    let out = work.path().join("pulled");
    let o = pull(&format!("oci://{host}/app:v1"), &out, &["--output", "json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(listing(&out) == want, "ocisync pull: {:?}", listing(&out).keys().collect::<Vec<_>>());
    assert_eq!(json(&o)["indexedLayers"][0]["format"], "estargz");

    // crane flattens the artifact to a tar, GNU tar unpacks it
    let flat = work.path().join("crane");
    fs::create_dir_all(&flat).unwrap();
    let tar = work.path().join("flat.tar");
    crane(&["export", &format!("{host}/app:v1"), tar.to_str().unwrap()]);
    run(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&flat));
    fs::remove_file(flat.join("stargz.index.json")).unwrap();
    assert!(listing(&flat) == want, "crane export | tar -x: {:?}", listing(&flat).keys().collect::<Vec<_>>());

    // oras fetches the layer (untitled layers are not `oras pull`'s: see
    // the README), GNU tar unpacks it
    let by_oras = work.path().join("oras");
    fs::create_dir_all(by_oras.join("x")).unwrap();
    oras(&by_oras, &["blob", "fetch", "--output", "layer.tgz", &format!("{host}/app@{layer}")]);
    run(Command::new("tar").arg("-xzf").arg(by_oras.join("layer.tgz")).arg("-C").arg(by_oras.join("x")));
    fs::remove_file(by_oras.join("x/stargz.index.json")).unwrap();
    assert!(listing(&by_oras.join("x")) == want, "oras blob fetch | tar -xz");

    // the layer alone is a tar+gzip GNU tar reads
    let blob = work.path().join("layer.tgz");
    let o = crane(&["blob", &format!("{host}/app@{layer}")]);
    fs::write(&blob, &o.stdout).unwrap();
    let gnu = work.path().join("gnu");
    fs::create_dir_all(&gnu).unwrap();
    run(Command::new("tar").arg("-xzf").arg(&blob).arg("-C").arg(&gnu));
    fs::remove_file(gnu.join("stargz.index.json")).unwrap();
    assert!(listing(&gnu) == want, "tar -xz");
    let mode = fs::metadata(gnu.join("run.sh")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111, 0o111, "the executable bit kept");

    // containerd's estargz library opens it, checks the TOC against the
    // digest in the manifest, and reads every file through its chunks
    let toc = doc["layer"]["tocDigest"].as_str().unwrap();
    let o = run(Command::new(producers().join("gobin/estargz-write")).arg("-verify").arg(&blob).arg(toc));
    let by_library: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(str::to_string).collect();
    let mut files: Vec<String> = want
        .iter()
        .filter(|(p, _)| !fs::symlink_metadata(src.join(p)).unwrap().file_type().is_symlink())
        .map(|(p, c)| format!("{p} {}", sha256(c)))
        .collect();
    files.sort();
    assert_eq!(by_library, files, "every file, as the estargz library reads it");

    // one file by range: only 206s in the access log
    let seen = reg.access_log().len();
    let one = work.path().join("one");
    let o = pull(&format!("oci://{host}/app:v1"), &one, &["--select", "etc/app.yaml", "--output", "json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["layers"][0]["read"], "ranges", "{}", json(&o));
    let log = reg.access_log();
    let gets: Vec<&String> = log[seen..].iter().filter(|l| l.contains(&format!("/blobs/{layer} "))).collect();
    assert!(!gets.is_empty() && gets.iter().all(|l| l.contains("\" 206 ")), "{gets:?}");
    // a file of three chunks read alone by range, every chunk checked
    let seen = reg.access_log().len();
    let o = ocisync(&["cat", &format!("oci://{host}/app:v1"), "assets/big.bin", "--insecure"]).await;
    assert!(o.stdout == fs::read(src.join("assets/big.bin")).unwrap(), "{}", stderr(&o));
    let log = reg.access_log();
    let gets: Vec<&String> = log[seen..].iter().filter(|l| l.contains(&format!("/blobs/{layer} "))).collect();
    assert!(!gets.is_empty() && gets.iter().all(|l| l.contains("\" 206 ")), "{gets:?}");

    // the same tree again: the same digest, nothing uploaded
    let o =
        ocisync(&["push", &format!("oci://{host}/app:v2"), src.to_str().unwrap(), "--insecure", "--output", "json"])
            .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let again: Value = json(&o);
    assert_eq!(again["digest"], digest.as_str(), "reproducible");
    assert_eq!(again["uploaded"], serde_json::json!([]), "the blobs were there");

    // into another repository: mounted from the first, not uploaded
    let seen = reg.access_log().len();
    let args = ["push", &format!("oci://{host}/other:v1"), src.to_str().unwrap(), "--insecure", "--output", "json"];
    let o = ocisync(&[&args[..], &["--mount-from", "app", "--created", "2026-01-02T03:04:05Z"]].concat()).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let other = json(&o);
    assert_eq!(other["uploaded"], serde_json::json!([]), "{other}");
    assert_eq!(other["mounted"].as_array().unwrap().len(), 2, "the config and the layer: {other}");
    let log = reg.access_log();
    assert!(log[seen..].iter().any(|l| l.contains(&format!("POST /v2/other/blobs/uploads/?mount={layer}"))), "{log:?}");
    assert!(!log[seen..].iter().any(|l| l.contains("PUT /v2/other/blobs/")), "no blob uploaded: {log:?}");
    let m: Value = serde_json::from_slice(&crane(&["manifest", &format!("{host}/other:v1")]).stdout).unwrap();
    assert_eq!(m["annotations"]["org.opencontainers.image.created"], "2026-01-02T03:04:05Z");
    assert_eq!(m["artifactType"], "application/vnd.ocisync.files.v1");
    assert_eq!(m["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
    assert_ne!(other["digest"], digest.as_str(), "another manifest: it has the annotation");
}

#[tokio::test(flavor = "multi_thread")]
async fn trees_a_reader_would_refuse_are_not_pushed() {
    let work = tempfile::tempdir().unwrap();
    let reg = Distribution::start();
    let host = reg.host();
    let out = work.path().join("out");
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", out.join("escape")).unwrap();
    let sock = work.path().join("sock");
    fs::create_dir_all(&sock).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(sock.join("s")).unwrap();
    for (dir, says) in [(&out, "out of the tree"), (&sock, "socket")] {
        let o = ocisync(&["push", &format!("oci://{host}/bad:v1"), dir.to_str().unwrap(), "--insecure"]).await;
        assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    assert!(!reg.access_log().iter().any(|l| l.contains("PUT ")), "nothing uploaded");
}

/// The loop a platform team runs: push from CI, sign with cosign, an
/// Artifact that requires the signature takes one file by range; a second
/// push changing one file of 2,002 reaches a volume target, which reuses the
/// rest.
#[tokio::test(flavor = "multi_thread")]
async fn push_sign_sync_then_a_one_file_change_reaches_a_volume() {
    use crate::support::cluster::{Env, Operator, Spec};
    use crate::support::cosign::Signer;
    use serde_json::json;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("data")).unwrap();
    fs::write(src.join("etc/app.yaml"), "replicas: 2\n").unwrap();
    fs::write(src.join("etc/test"), "push round trip").unwrap();
    // 2,000 files of 8 KiB that do not compress
    let mut x: u64 = 11;
    for i in 0..2000u32 {
        let mut bytes = Vec::with_capacity(8192);
        while bytes.len() < 8192 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        fs::write(src.join(format!("data/{i:04}.bin")), bytes).unwrap();
    }
    let reg = Distribution::start();
    let host = reg.host();
    let push = async |tag: &str| {
        let reference = format!("oci://{host}/app:{tag}");
        let o = ocisync(&["push", &reference, src.to_str().unwrap(), "--insecure", "--output", "json"]).await;
        assert!(o.status.success(), "{}", stderr(&o));
        json(&o)
    };
    let v1 = push("v1").await;
    let (d1, layer1) =
        (v1["digest"].as_str().unwrap().to_string(), v1["layer"]["digest"].as_str().unwrap().to_string());
    let signer = Signer::new();
    signer.sign(v1["pinned"].as_str().unwrap());

    // signed, then one file by range into a ConfigMap
    let e = Env::new("push-loop").await;
    let keys = json!({"metadata": {"name": "keys"}, "stringData": {"cosign.pub": signer.public_pem()}});
    e.create_secret(keys).await;
    let seen = reg.access_log().len();
    let spec = Spec::new(&host, "app")
        .tag("v1")
        .set("verify", json!({"keys": {"secretRef": {"name": "keys"}}}))
        .set("select", json!({"include": ["etc/app.yaml"]}));
    e.apply("config", &spec).await;
    let st = e.synced("config", &d1).await;
    assert_eq!(e.condition("config", "Verified").await.unwrap().0, "True");
    assert_eq!(e.config_map("config").await.unwrap().data.unwrap()["etc__app.yaml"], "replicas: 2\n");
    assert_eq!(st["transfer"]["layersRanged"], 1, "{st}");
    let log = reg.access_log();
    let gets: Vec<&String> = log[seen..].iter().filter(|l| l.contains(&format!("/blobs/{layer1} "))).collect();
    assert!(!gets.is_empty() && gets.iter().all(|l| l.contains("\" 206 ")), "only ranged reads: {gets:?}");

    // the whole tree into a volume, following a tag; then one file changes
    let live = push("live").await;
    assert_eq!(live["digest"], d1.as_str(), "the same tree, the same digest");
    let vol = Spec::new(&host, "app").tag("live").interval("2s").set("target", json!({"volume": {"path": "app"}}));
    e.apply("tree", &vol).await;
    e.synced("tree", &d1).await;
    fs::write(src.join("data/0042.bin"), vec![7u8; 8192]).unwrap();
    let v2 = push("live").await;
    let (d2, layer2) =
        (v2["digest"].as_str().unwrap().to_string(), v2["layer"]["digest"].as_str().unwrap().to_string());
    assert_ne!(d2, d1);
    let seen = reg.access_log().len();
    let st = e.synced("tree", &d2).await;
    let t = &st["transfer"];
    assert_eq!((t["filesReused"].as_u64(), t["filesFromRegistry"].as_u64()), (Some(2001), Some(1)), "{st}");
    let log = reg.access_log();
    let gets: Vec<&String> = log[seen..].iter().filter(|l| l.contains(&format!("/blobs/{layer2} "))).collect();
    assert!(!gets.is_empty() && gets.iter().all(|l| l.contains("\" 206 ")), "only ranged reads: {gets:?}");
    let root = Operator::volume_root(e.cp).join("push-loop/app/..data");
    assert_eq!(fs::read(root.join("data/0042.bin")).unwrap(), vec![7u8; 8192]);
    assert_eq!(fs::read(root.join("data/0041.bin")).unwrap(), fs::read(src.join("data/0041.bin")).unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zstd_chunked_push_reads_back_everywhere() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree(&src);
    let want = listing(&src);
    let reg = Distribution::start();
    let host = reg.host();
    let reference = format!("oci://{host}/zc:v1");
    let args =
        ["push", &reference, src.to_str().unwrap(), "--insecure", "--output", "json", "--format", "zstd-chunked"];
    let o = ocisync(&args).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = json(&o);
    let layer = doc["layer"]["digest"].as_str().unwrap().to_string();
    let m: Value = serde_json::from_slice(&crane(&["manifest", &format!("{host}/zc:v1")]).stdout).unwrap();
    assert_eq!(m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");

    // ocisync: whole, and one chunked file by range
    let out = work.path().join("pulled");
    let o = pull(&reference, &out, &["--output", "json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(listing(&out) == want, "ocisync pull");
    assert_eq!(json(&o)["indexedLayers"][0]["format"], "zstd-chunked");
    let seen = reg.access_log().len();
    let o = ocisync(&["cat", &reference, "assets/big.bin", "--insecure"]).await;
    assert!(o.stdout == fs::read(src.join("assets/big.bin")).unwrap(), "{}", stderr(&o));
    let log = reg.access_log();
    let gets: Vec<&String> = log[seen..].iter().filter(|l| l.contains(&format!("/blobs/{layer} "))).collect();
    assert!(!gets.is_empty() && gets.iter().all(|l| l.contains("\" 206 ")), "{gets:?}");

    // GNU tar through zstd (which skips the TOC's skippable frames)
    let blob = work.path().join("layer.tar.zst");
    fs::write(&blob, crane(&["blob", &format!("{host}/zc@{layer}")]).stdout).unwrap();
    let gnu = work.path().join("gnu");
    fs::create_dir_all(&gnu).unwrap();
    run(Command::new("tar").arg("--zstd").arg("-xf").arg(&blob).arg("-C").arg(&gnu));
    assert!(listing(&gnu) == want, "tar --zstd -x: {:?}", listing(&gnu).keys().collect::<Vec<_>>());

    // skopeo (containers/image) copies it to an OCI layout, checking every
    // digest on the way (1.9's --dest-decompress leaves a zstd layer as it
    // is); GNU tar reads the layer it wrote
    let policy = work.path().join("policy.json");
    fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    let layout = work.path().join("layout");
    run(Command::new(producers().join("bin/skopeo"))
        .arg("--policy")
        .arg(&policy)
        .args(["copy", "-q", "--src-tls-verify=false", "--dest-decompress", &format!("docker://{host}/zc:v1")])
        .arg(format!("oci:{}:v1", layout.display())));
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob_of = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob_of(index["manifests"][0]["digest"].as_str().unwrap())).unwrap()).unwrap();
    let plain = manifest["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(plain, layer, "skopeo's copy is the layer pushed");
    assert_eq!(manifest["layers"][0]["annotations"], m["layers"][0]["annotations"], "and its TOC annotations");
    let by_skopeo = work.path().join("skopeo");
    fs::create_dir_all(&by_skopeo).unwrap();
    run(Command::new("tar").arg("--zstd").arg("-xf").arg(blob_of(plain)).arg("-C").arg(&by_skopeo));
    assert!(listing(&by_skopeo) == want, "skopeo copy, then tar --zstd -x");

    // containerd's estargz library, through its zstd:chunked decompressor
    let toc = doc["layer"]["tocDigest"].as_str().unwrap();
    let o = run(Command::new(producers().join("gobin/estargz-write"))
        .args(["-verify", "-zstdchunked"])
        .arg(&blob)
        .arg(toc));
    let read = String::from_utf8(o.stdout).unwrap();
    assert_eq!(read.lines().count(), 26, "{read}");
    assert!(read.contains(&format!("etc/app.yaml {}", sha256(b"port: 8080\n"))), "{read}");
}

/// Behind a token server and a proxy that refuses bodies over 1 MiB: the
/// push asks for `pull,push`, its monolithic upload is refused with 413,
/// and it goes on in pieces (`PATCH`), halved until they pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_through_a_body_limit_goes_in_pieces_with_a_push_token() {
    use crate::support::registry::{BEARER_USER, Ferro};
    use std::sync::atomic::Ordering;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree(&src);
    let reg = Ferro::start().await;
    reg.hooks.bearer.store(true, Ordering::SeqCst);
    reg.hooks.max_upload_body.store(1 << 20, Ordering::SeqCst);
    let config = work.path().join("config.json");
    let auth = serde_json::json!({"auths": {reg.host(): {"username": BEARER_USER.0, "password": BEARER_USER.1}}});
    fs::write(&config, auth.to_string()).unwrap();
    let reference = format!("oci://{}/limited:v1", reg.host());
    let cfg = config.to_str().unwrap();
    let o = ocisync(&["push", &reference, src.to_str().unwrap(), "--insecure", "--docker-config", cfg]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let log = reg.hooks.log.lock().unwrap().clone();
    let patches = log.iter().filter(|l| l.starts_with("PATCH ")).count();
    assert!(patches >= 21, "a 21 MiB layer in pieces of at most 1 MiB: {patches} PATCHes\n{log:#?}");
    let out = work.path().join("out");
    let o = pull(&reference, &out, &["--docker-config", cfg]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(listing(&out) == listing(&src), "what was pushed in pieces reads back whole");
}
