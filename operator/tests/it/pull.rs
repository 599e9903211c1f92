//! `ocisync pull` against Debian's docker-registry (distribution 2.8) with
//! content pushed by the real oras and crane.

use std::fs;
use std::path::Path;

use crate::support::tarball::{Item::*, TAR, TAR_GZ, TAR_ZST, gzip, tar, zstd};
use crate::support::*;

/// An artifact the way people push one with oras: two files with their own
/// media types and a directory (which oras tars and marks for unpacking).
fn push_oras_artifact(reg: &Distribution, tag: &str) -> (tempfile::TempDir, String) {
    let src = tempfile::tempdir().unwrap();
    let p = src.path();
    fs::write(p.join("app.yaml"), "replicas: 3\n").unwrap();
    fs::write(p.join("notes.md"), "# notes\n").unwrap();
    fs::create_dir_all(p.join("conf/nested")).unwrap();
    fs::write(p.join("conf/a.json"), "{}").unwrap();
    fs::write(p.join("conf/nested/b.txt"), "b").unwrap();
    fs::write(p.join("conf/old.bak"), "old").unwrap();
    let out = oras(
        p,
        &[
            "push",
            &format!("{}/team/config:{tag}", reg.host()),
            "--artifact-type",
            "application/vnd.example.config",
            "--annotation",
            "org.opencontainers.image.source=https://example.com/repo",
            "app.yaml:application/yaml",
            "notes.md:text/markdown",
            "conf/",
        ],
    );
    (src, pushed_digest(&out))
}

#[tokio::test(flavor = "multi_thread")]
async fn oras_files_and_directory_arrive_whole() {
    let reg = Distribution::start();
    let (_src, digest) = push_oras_artifact(&reg, "v1");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = ocisync(&[
        "pull",
        &format!("oci://{}/team/config:v1", reg.host()),
        "--out",
        out.to_str().unwrap(),
        "--insecure",
        "--output",
        "json",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = json(&o);
    assert_eq!(doc["digest"], digest.as_str(), "the digest oras pushed");
    let files = tree(&out);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["app.yaml", "conf/a.json", "conf/nested/b.txt", "conf/old.bak", "notes.md"]);
    assert_eq!(files["app.yaml"], b"replicas: 3\n");
    let app = doc["files"].as_array().unwrap().iter().find(|f| f["path"] == "app.yaml").unwrap();
    assert_eq!(app["sha256"], sha256(b"replicas: 3\n"));
    assert_eq!(app["size"], 12);
    assert_eq!(doc["layersFetched"], 3);
    // nothing left beside the output
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn selection_skips_files_and_unwanted_layers_are_not_downloaded() {
    let reg = Distribution::start();
    let (src, _) = push_oras_artifact(&reg, "v1");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let r = format!("{}/team/config:v1", reg.host());
    let o = pull(&r, &out, &["--select", "conf/**", "--select", "*.yaml", "--exclude", "**/*.bak"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        tree(&out).keys().map(String::as_str).collect::<Vec<_>>(),
        ["app.yaml", "conf/a.json", "conf/nested/b.txt"]
    );
    // notes.md is a layer of its own: its blob was never requested
    let notes = sha256(&fs::read(src.path().join("notes.md")).unwrap());
    let log: Vec<String> = reg.access_log().into_iter().filter(|l| l.contains("ocisync/")).collect();
    assert!(log.iter().any(|l| l.contains("GET /v2/team/config/blobs/sha256:")), "the log records our blob requests");
    assert!(!log.iter().any(|l| l.contains(&notes)), "unselected layer fetched:\n{}", log.join("\n"));
    // `*` does not cross directories
    let o = pull(&r, &out, &["--select", "*.json"]).await;
    assert!(o.status.success());
    assert!(tree(&out).is_empty());
    // a media-type filter picks layers
    let o = pull(&r, &out, &["--media-type", "text/markdown"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(tree(&out).keys().map(String::as_str).collect::<Vec<_>>(), ["notes.md"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tar_gzip_and_zstd_layers_merge_in_manifest_order() {
    let reg = Distribution::start();
    let l1 = tar(&[File("a", b"1"), File("b", b"1"), Exec("bin/tool", b"#!/bin/sh\n")]);
    let l2 = gzip(&tar(&[File("a", b"2"), File(".wh.b", b"")]));
    let l3 = zstd(&tar(&[Dir("d"), File("d/c", b"3"), Symlink("link", "d/c")]));
    push_layers(&reg.host(), "layers:v1", &[(TAR, l1), (TAR_GZ, l2), (TAR_ZST, l3)]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = pull(&format!("{}/layers:v1", reg.host()), &out, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let files = tree(&out);
    assert_eq!(files.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "bin/tool", "d/c", "link"]);
    assert_eq!(files["a"], b"2", "later layer wins");
    assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("d/c"));
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(fs::metadata(out.join("bin/tool")).unwrap().permissions().mode() & 0o100, 0, "exec bit kept");
}

/// Two single-platform images by crane (Docker media types), joined in an
/// index by crane.
fn push_multi_platform(reg: &Distribution) -> String {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        let layer = dir.path().join(format!("{arch}.tar"));
        fs::write(&layer, tar(&[File("etc/arch", arch.as_bytes())])).unwrap();
        let r = format!("{}/multi:{arch}", reg.host());
        crane(&["append", "-f", layer.to_str().unwrap(), "-t", &r]);
        crane(&["mutate", &r, "--set-platform", &format!("linux/{arch}"), "-t", &r]);
    }
    let idx = format!("{}/multi:latest", reg.host());
    crane(&[
        "index",
        "append",
        "-m",
        &format!("{}/multi:amd64", reg.host()),
        "-m",
        &format!("{}/multi:arm64", reg.host()),
        "-t",
        &idx,
    ]);
    idx
}

#[tokio::test(flavor = "multi_thread")]
async fn image_index_picks_the_requested_platform() {
    let reg = Distribution::start();
    let idx = push_multi_platform(&reg);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = pull(&idx, &out, &["--platform", "linux/arm64", "--output", "json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(out.join("etc/arch")).unwrap(), b"arm64");
    let doc = json(&o);
    assert_eq!(doc["platform"], "linux/arm64");
    assert_ne!(doc["digest"], doc["manifestDigest"], "index digest vs the chosen manifest");
    // default: the running platform
    let o = pull(&idx, &out, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let here = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(fs::read(out.join("etc/arch")).unwrap(), here.as_bytes());
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("platform linux/{here}")));
    let o = pull(&idx, &out, &["--platform", "linux/s390x"]).await;
    assert_eq!(o.status.code(), Some(9));
    assert!(stderr(&o).contains("linux/amd64, linux/arm64"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_blob_fails_the_pull_and_leaves_the_output_alone() {
    let reg = Distribution::start();
    let layer = gzip(&tar(&[File("config.yaml", b"good: true\n")]));
    let layer_digest = sha256(&layer);
    push_layers(&reg.host(), "app:v1", &[(TAR_GZ, layer.clone())]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let r = format!("{}/app:v1", reg.host());
    assert!(pull(&r, &out, &[]).await.status.success());
    let before = tree(&out);
    // same length, different bytes: only the digest can tell
    let mut bad = layer.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    fs::write(reg.blob_data(&layer_digest), &bad).unwrap();
    let o = pull(&r, &out, &["--output", "json"]).await;
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("digest mismatch"), "{}", stderr(&o));
    assert_eq!(json(&o)["error"]["reason"], "DigestMismatch");
    assert_eq!(tree(&out), before);
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 1, "no staging left behind");
    // shorter than the manifest says
    fs::write(reg.blob_data(&layer_digest), &layer[..n - 5]).unwrap();
    let o = pull(&r, &out, &[]).await;
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(tree(&out), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_manifest_is_refused() {
    let reg = Distribution::start();
    let digest = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let stored = reg.blob_data(&digest);
    let manifest = fs::read_to_string(&stored).unwrap();
    // still valid JSON, still an image manifest: only the digest can tell
    fs::write(&stored, manifest.replacen("\"schemaVersion\":2", "\"schemaVersion\": 2", 1)).unwrap();
    let work = tempfile::tempdir().unwrap();
    for r in [format!("{}/app:v1", reg.host()), format!("{}/app@{digest}", reg.host())] {
        let o = pull(&r, &work.path().join("o"), &[]).await;
        assert_eq!(o.status.code(), Some(5), "{r}: {}", stderr(&o));
        assert!(stderr(&o).contains("manifest digest mismatch"), "{}", stderr(&o));
    }
    assert!(!work.path().join("o").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_archives_are_refused_whole() {
    let reg = Distribution::start();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", tar(&[File("ok", b"1"), File("../x", b"pwned")])),
        ("absolute", tar(&[File("/etc/x", b"pwned")])),
        ("symlink-root", tar(&[Symlink("root", "/"), File("a", b"1")])),
        ("symlink-up", tar(&[Symlink("up", "../../..")])),
        ("hardlink-out", tar(&[HardLink("passwd", "/etc/passwd")])),
        ("hardlink-up", tar(&[HardLink("x", "../outside")])),
        ("device", tar(&[CharDevice("null")])),
    ];
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("previous"), b"last good").unwrap();
    for (name, layer) in cases {
        push_layers(&reg.host(), &format!("evil:{name}"), &[(TAR_GZ, gzip(&layer))]);
        let o = pull(&format!("{}/evil:{name}", reg.host()), &out, &[]).await;
        assert_eq!(o.status.code(), Some(7), "{name}: {}", stderr(&o));
        assert_eq!(tree(&out).keys().map(String::as_str).collect::<Vec<_>>(), ["previous"], "{name}");
        assert!(!work.path().join("x").exists() && !work.path().join("outside").exists());
        assert_eq!(fs::read_dir(work.path()).unwrap().count(), 1, "{name}: staging left behind");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_stop_a_gzip_bomb_and_a_file_flood() {
    let reg = Distribution::start();
    let bomb = gzip(&tar(&[Zeros("zeros", 256 << 20)]));
    assert!(bomb.len() < 1 << 20, "a bomb: {} bytes compressed", bomb.len());
    push_layers(&reg.host(), "bomb:v1", &[(TAR_GZ, bomb)]);
    let names: Vec<String> = (0..50).map(|i| format!("f/{i}")).collect();
    let flood = tar(&names.iter().map(|n| File(n, b"x")).collect::<Vec<_>>());
    push_layers(&reg.host(), "flood:v1", &[(TAR, flood)]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = pull(&format!("{}/bomb:v1", reg.host()), &out, &["--max-total-bytes", "16MiB"]).await;
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("total unpacked bytes limit"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = pull(&format!("{}/flood:v1", reg.host()), &out, &["--max-files", "10"]).await;
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("file count limit of 10"), "{}", stderr(&o));
    let o = pull(&format!("{}/flood:v1", reg.host()), &out, &["--max-layer-bytes", "1KiB"]).await;
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    // raising the limit lets it through
    let o = pull(&format!("{}/flood:v1", reg.host()), &out, &["--max-files", "50"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(tree(&out).len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_replaces_the_old_one_whole() {
    let reg = Distribution::start();
    push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1"), File("b", b"1")]))]);
    push_layers(&reg.host(), "app:v2", &[(TAR, tar(&[File("a", b"2")]))]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    for tag in ["v1", "v2"] {
        let o = pull(&format!("{}/app:{tag}", reg.host()), &out, &[]).await;
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(tree(&out), [("a".to_string(), b"2".to_vec())].into());
}

#[tokio::test(flavor = "multi_thread")]
async fn resolve_is_one_head_and_a_pinned_digest_skips_it() {
    let reg = Distribution::start();
    let digest = push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let before = reg.access_log().len();
    let o = ocisync(&["resolve", &format!("{}/app:v1", reg.host()), "--insecure"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{digest}\n"));
    let log = reg.access_log();
    let new: Vec<&String> = log[before..].iter().collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].contains("\"HEAD /v2/app/manifests/v1 HTTP/1.1\""), "{new:?}");

    let before = reg.access_log().len();
    let work = tempfile::tempdir().unwrap();
    let o = ocisync(&[
        "pull",
        &format!("oci://{}/app@{digest}", reg.host()),
        "--out",
        work.path().join("o").to_str().unwrap(),
        "--insecure",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let log = reg.access_log();
    assert!(!log[before..].iter().any(|l| l.contains("HEAD ")), "a pin needs no resolution: {:?}", &log[before..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_errors_for_missing_tags_down_registries_and_bad_references() {
    let reg = Distribution::start();
    push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = pull(&format!("{}/app:v9", reg.host()), &out, &[]).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("manifest app:v9 not found"), "{}", stderr(&o));

    let down = format!("127.0.0.1:{}/app:v1", free_port());
    let o = pull(&down, &out, &[]).await;
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach") && stderr(&o).contains("Connection refused"), "{}", stderr(&o));

    for bad in ["app:v1", "127.0.0.1/Upper:v1", "127.0.0.1/app@sha256:12"] {
        let o = ocisync(&["pull", bad, "--out", out.to_str().unwrap()]).await;
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_needs_insecure() {
    let reg = Distribution::start();
    push_layers(&reg.host(), "app:v1", &[(TAR, tar(&[File("a", b"1")]))]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = ocisync(&["pull", &format!("{}/app:v1", reg.host()), "--out", out.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(stderr(&o).contains("https://") && stderr(&o).contains("--insecure"), "{}", stderr(&o));
    assert!(!out.exists());
}
