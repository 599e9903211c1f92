//! Layers as real tools write them (skopeo 1.9's gzip, zstd and
//! zstd:chunked; containerd's estargz library, gzip and zstd:chunked; GNU
//! tar with file capabilities; zstd with a 128 MiB window), pushed to the
//! real registry, pulled by the CLI and synced by the operator: the files
//! are those `tar -x` gives, minus the formats' own metadata.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::cluster::{Env, Operator, Spec};
use crate::support::tarball::{Item::*, TAR, tar};
use crate::support::*;

const PRODUCED: [&str; 5] = ["skopeo-gzip", "skopeo-zstd", "skopeo-zstd-chunked", "estargz", "estargz-zstd-chunked"];
const METADATA: [&str; 3] = ["stargz.index.json", ".prefetch.landmark", ".no.prefetch.landmark"];

/// A tree with what trips readers up: an executable, a symlink, a hard link,
/// an empty file, a name past 100 bytes (a GNU long name), and a file of
/// 3 MiB (several zstd:chunked chunks and frames).
fn source_tree(dir: &Path) {
    let long = dir.join(format!("deep/{}", "d".repeat(60)));
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(&long).unwrap();
    fs::write(dir.join("etc/app.yaml"), "port: 80\n").unwrap();
    fs::write(dir.join("bin/run"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("bin/run"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../etc/app.yaml", dir.join("bin/app.yaml")).unwrap();
    fs::hard_link(dir.join("etc/app.yaml"), dir.join("etc/same.yaml")).unwrap();
    fs::write(dir.join("empty"), "").unwrap();
    fs::write(long.join(format!("{}.txt", "n".repeat(60))), "long\n").unwrap();
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u32 = 1;
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(format!("{x:08x}\n").as_bytes());
    }
    fs::write(dir.join("data.txt"), big).unwrap();
}

/// Every layer `e2e/layers/make.sh` writes for the tree, with its descriptor.
pub(crate) fn produce(src: &Path, out: &Path) -> Vec<(String, Value, Vec<u8>)> {
    run(Command::new(repo_root().join("e2e/layers/make.sh")).arg(src).arg(out).env("OCISYNC_PRODUCERS", producers()));
    PRODUCED
        .iter()
        .map(|n| {
            let desc: Value = serde_json::from_slice(&fs::read(out.join(format!("{n}.json"))).unwrap()).unwrap();
            (n.to_string(), desc, fs::read(out.join(format!("{n}.blob"))).unwrap())
        })
        .collect()
}

/// What GNU tar extracts from the decompressed layer, minus the metadata
/// entries; symlinks as `-> target`.
fn tar_x(blob: &[u8], media_type: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    fs::write(&layer, blob).unwrap();
    let out = dir.path().join("x");
    fs::create_dir(&out).unwrap();
    let z = if media_type.ends_with("zstd") { "--zstd" } else { "--gzip" };
    run(Command::new("tar").args([z, "-xf"]).arg(&layer).arg("-C").arg(&out));
    let mut files = listing(&out);
    files.retain(|k, _| !METADATA.contains(&k.as_str()));
    files
}

/// Files and symlinks under `dir` (a volume's current revision included).
pub(crate) fn listing(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        let rel = entry.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&entry).unwrap();
        if m.file_type().is_symlink() {
            out.insert(rel, format!("-> {}", fs::read_link(&entry).unwrap().display()).into_bytes());
        } else if m.is_file() {
            out.insert(rel, fs::read(&entry).unwrap());
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Push one layer with the descriptor its producer wrote, with or without
/// its annotations (a copy by a tool that drops them).
pub(crate) fn push(host: &str, reference: &str, desc: &Value, blob: &[u8], annotated: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let repo = reference.split(':').next().unwrap();
    let (b, c) = (dir.path().join("layer"), dir.path().join("config"));
    fs::write(&b, blob).unwrap();
    fs::write(&c, "{}").unwrap();
    for f in [&b, &c] {
        oras(dir.path(), &["blob", "push", &format!("{host}/{repo}"), f.to_str().unwrap()]);
    }
    let mut layer = json!({"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"]});
    if annotated && desc["annotations"].as_object().is_some_and(|a| !a.is_empty()) {
        layer["annotations"] = desc["annotations"].clone();
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [layer],
    });
    let m = dir.path().join("manifest.json");
    fs::write(&m, serde_json::to_vec(&manifest).unwrap()).unwrap();
    oras(dir.path(), &["manifest", "push", &format!("{host}/{reference}"), m.to_str().unwrap()]);
    sha256(&fs::read(&m).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_producers_layer_pulls_and_syncs_to_the_files_tar_gives() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    source_tree(&src);
    let layers = produce(&src, &work.path().join("layers"));
    let reg = Distribution::start();
    let host = reg.host();
    let e = Env::new("layers").await;
    let mut digests = Vec::new();
    for (name, desc, blob) in &layers {
        let media_type = desc["mediaType"].as_str().unwrap();
        let want = tar_x(blob, media_type);
        assert!(want.contains_key("data.txt") && want.len() >= 7, "{name}: {:?}", want.keys());
        if name.starts_with("estargz") {
            let raw = tar_x_all(blob, media_type);
            assert!(raw.contains_key(".prefetch.landmark"), "{name}: the producer wrote its metadata");
        }
        let digest = push(&host, &format!("{name}:v1"), desc, blob, true);
        // the format, recognised by the annotations, and by the footer alone
        push(&host, &format!("{name}:bare"), desc, blob, false);
        let format = match name.as_str() {
            "estargz" => json!([{"digest": desc["digest"], "format": "estargz"}]),
            n if n.ends_with("zstd-chunked") => json!([{"digest": desc["digest"], "format": "zstd-chunked"}]),
            _ => json!([]),
        };
        for tag in ["v1", "bare"] {
            let out = work.path().join(format!("pull-{name}-{tag}"));
            let o = pull(&format!("oci://{host}/{name}:{tag}"), &out, &["--output", "json"]).await;
            assert!(o.status.success(), "{name}:{tag}: {}", stderr(&o));
            assert_eq!(listing(&out), want, "{name}:{tag}: ocisync pull gives what tar -x gives");
            assert_eq!(json(&o)["indexedLayers"], format, "{name}:{tag}");
        }
        // the operator: into a volume (everything) and a ConfigMap (a selection)
        let spec = Spec::new(&host, name).tag("v1");
        e.apply(&format!("{name}-vol"), &spec.clone().set("target", json!({"volume": {"path": name}}))).await;
        e.apply(&format!("{name}-cm"), &spec.set("select", json!({"exclude": ["data.txt"]}))).await;
        digests.push((name.clone(), digest, want));
    }
    for (name, digest, want) in digests {
        e.synced(&format!("{name}-vol"), &digest).await;
        let root = Operator::volume_root(e.cp).join("layers").join(&name);
        let mut got = listing(&root.join("..data/"));
        got.retain(|k, _| !k.starts_with(".."));
        assert_eq!(got, want, "{name}: the volume holds what tar -x gives");
        e.synced(&format!("{name}-cm"), &digest).await;
        // every file but the 3 MiB one, and none of the formats' metadata
        let cm = e.config_map(&format!("{name}-cm")).await.unwrap();
        let data = cm.data.unwrap_or_default();
        let mut keys: Vec<String> = data.keys().chain(cm.binary_data.unwrap_or_default().keys()).cloned().collect();
        keys.sort();
        let mut expected: Vec<String> =
            want.keys().filter(|k| *k != "data.txt").map(|k| k.replace('/', "__")).collect();
        expected.sort();
        assert_eq!(keys, expected, "{name}");
        assert_eq!(data["etc__app.yaml"], "port: 80\n");
        assert_eq!(data["bin__app.yaml"], "port: 80\n", "a symlink is a copy of its target");
    }
}

/// Every entry `tar -x` writes, metadata included.
fn tar_x_all(blob: &[u8], media_type: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    fs::write(&layer, blob).unwrap();
    let z = if media_type.ends_with("zstd") { "--zstd" } else { "--gzip" };
    let o = run(Command::new("tar").args([z, "-tf"]).arg(&layer));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| (l.trim_start_matches("./").to_string(), vec![])).collect()
}

/// zstd's CLI with a declared window of 2^log (streamed, so the header
/// keeps the window whatever the content's size).
fn zstd_long(data: &[u8], log: u32) -> Vec<u8> {
    let mut args = vec![format!("--long={log}"), "-3".into(), "-c".into()];
    if log > 27 {
        args.push("--ultra".into());
    }
    let mut child = Command::new("zstd").args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_windows_up_to_128_mib_pull_and_larger_ones_are_refused_cleanly() {
    let reg = Distribution::start();
    let host = reg.host();
    let layer = tar(&[File("big/window.txt", &b"0123456789abcdef".repeat(1 << 16))]);
    let zst = "application/vnd.oci.image.layer.v1.tar+zstd";
    push_layers(&host, "win:27", &[(zst, zstd_long(&layer, 27))]);
    push_layers(&host, "win:28", &[(zst, zstd_long(&layer, 28))]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = pull(&format!("oci://{host}/win:27"), &out, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("big/window.txt")).unwrap().len(), 1 << 20);
    let o = pull(&format!("oci://{host}/win:28"), &out, &[]).await;
    assert!(matches!(o.status.code(), Some(6 | 9)), "{:?}: {}", o.status, stderr(&o));
    assert!(stderr(&o).contains("memory"), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("big/window.txt")).unwrap().len(), 1 << 20, "the last good pull stays");
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 1, "no staging left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn gnu_tar_file_capabilities_are_read_as_go_reads_them() {
    // GNU tar --xattrs writes security.capability as a binary PAX value;
    // cap_dac_override and cap_fowner make its fifth byte a newline, which a
    // reader splitting records on newlines refuses (or misreads).
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("bin")).unwrap();
    fs::write(src.join("bin/tool"), "#!/bin/sh\n").unwrap();
    fs::write(src.join("bin/plain"), "plain\n").unwrap();
    // libcap2-bin's setcap, in sbin (not on every PATH)
    let setcap = ["/usr/sbin/setcap", "/sbin/setcap"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("setcap");
    run(Command::new(setcap).arg("cap_dac_override,cap_fowner+ep").arg(src.join("bin/tool")));
    let layer = work.path().join("layer.tar");
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--format=pax", "-cf"])
        .arg(&layer)
        .arg("-C")
        .arg(&src)
        .arg("bin"));
    let bytes = fs::read(&layer).unwrap();
    let record = b"SCHILY.xattr.security.capability=\x01\x00\x00\x02\x0a";
    assert!(bytes.windows(record.len()).any(|w| w == record), "GNU tar wrote the capability with its newline");
    let reg = Distribution::start();
    push_layers(&reg.host(), "caps:v1", &[(TAR, bytes)]);
    let out = work.path().join("out");
    let o = pull(&format!("oci://{}/caps:v1", reg.host()), &out, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(fs::read(out.join("bin/plain")).unwrap(), b"plain\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_map_takes_a_few_files_out_of_a_64_mib_layer() {
    let e = Env::new("layers-cm").await;
    let reg = Distribution::start();
    let host = reg.host();
    let layer = tar(&[Zeros("assets/big.bin", 64 << 20), File("etc/app.yaml", b"port: 8080\n")]);
    let digest = push_layers(&host, "large:v1", &[(TAR, layer)]);
    let spec = Spec::new(&host, "large").tag("v1").interval("1s");
    e.apply("one-file", &spec.clone().set("select", json!({"include": ["etc/app.yaml"]}))).await;
    e.synced("one-file", &digest).await;
    let cm = e.config_map("one-file").await.unwrap();
    assert_eq!(cm.data.unwrap().into_iter().collect::<Vec<_>>(), [("etc__app.yaml".into(), "port: 8080\n".into())]);

    // a selection over what a ConfigMap holds: stalled, and not downloaded again
    e.apply("too-much", &spec.set("select", json!({"include": ["assets/**"]}))).await;
    let (status, reason, message) =
        eventually("ContentTooLarge", 60, async || e.condition("too-much", "Ready").await.filter(|c| c.0 == "False"))
            .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ContentTooLarge"), "{message}");
    assert!(message.contains("selected files"), "{message}");
    assert!(e.config_map("too-much").await.is_none());
    let stalled = e.condition("too-much", "Stalled").await.unwrap();
    assert_eq!(stalled.0, "True", "{stalled:?}");
    let blob_gets = || reg.access_log().iter().filter(|l| l.contains("GET /v2/large/blobs/")).count();
    let before = blob_gets();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(blob_gets(), before, "a stalled digest is not downloaded again at each interval");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chart_pushed_by_helm_pulls_to_the_files_helm_packaged() {
    // Helm v4's own engine (helm-python-sdk, in the validators venv that
    // e2e/test.sh installs) packages charts/ocisync and pushes it.
    let python = PathBuf::from(std::env::var("OCISYNC_VALIDATORS").unwrap_or("/var/tmp/ocisync/validators".into()))
        .join("bin/python");
    let reg = Distribution::start();
    let work = tempfile::tempdir().unwrap();
    let script = r#"
import json, sys, helm_python as helm
tgz = helm.package(sys.argv[1], destination=sys.argv[2])
pushed = helm.push(tgz, sys.argv[3], plain_http=True)
print(json.dumps({"tgz": tgz, "pushed": pushed}, default=str))
"#;
    let o = run(Command::new(&python)
        .args(["-c", script])
        .arg(repo_root().join("charts/ocisync"))
        .arg(work.path())
        .arg(format!("oci://{}/charts", reg.host())));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tgz = PathBuf::from(doc["tgz"].as_str().unwrap());
    let version = tgz.file_stem().unwrap().to_str().unwrap().trim_start_matches("ocisync-").to_string();
    let want = tar_x(&fs::read(&tgz).unwrap(), "tar+gzip");
    assert!(want.contains_key("ocisync/Chart.yaml"), "{:?}", want.keys());
    let out = work.path().join("out");
    let o = pull(&format!("oci://{}/charts/ocisync:{version}", reg.host()), &out, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(listing(&out), want, "ocisync pull gives what helm packaged");
}
