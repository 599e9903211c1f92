//! `ocisync diff` on two versions of one tree, as each real producer writes
//! its layers (skopeo's gzip, zstd and zstd:chunked, the estargz library's
//! eStargz and zstd:chunked), served by distribution 2.8: the same changes
//! as `diff -r` of two pulls, only the tables of contents read where the
//! layers have them (the access log), and `-p` equal to GNU `diff -u`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::layers::{produce, push};
use crate::partial::blob_gets;
use crate::support::*;

/// The layers with a table of contents.
const INDEXED: [&str; 3] = ["skopeo-zstd-chunked", "estargz", "estargz-zstd-chunked"];

fn write(dir: &Path, path: &str, body: &[u8]) {
    let p = dir.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

/// What `diff -rqN` says of two directories (a file on one side only
/// compared with an empty one), as (status, path): added, deleted or
/// modified by which side has it.
fn diff_rq(a: &Path, b: &Path) -> BTreeSet<(char, String)> {
    let out = Command::new("diff").arg("-rqN").arg(a).arg(b).output().unwrap();
    let prefix = format!("Files {}/", a.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let path = l.strip_prefix(&prefix).and_then(|r| r.split(" and ").next()).unwrap_or_else(|| panic!("{l}"));
            let status = match (a.join(path).exists(), b.join(path).exists()) {
                (false, _) => 'A',
                (_, false) => 'D',
                _ => 'M',
            };
            (status, path.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_names_what_diff_r_of_two_pulls_names_and_reads_only_tables_of_contents() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let yaml: String = (1..=30).map(|i| format!("key{i}: value{i}\n")).collect();
    write(&src, "etc/app.yaml", yaml.as_bytes());
    write(&src, "etc/db.yaml", b"host: db\nport: 5432\n");
    write(&src, "README.md", b"# app\n\nThe first version.\n");
    write(&src, "bin.dat", b"\x00\x01binary\x00");
    write(&src, "gone.txt", b"removed in v2\n");
    // 1 MiB that does not compress, the same in both: what a TOC saves reading
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    write(&src, "assets/noise.bin", &noise);
    let v1 = produce(&src, &work.path().join("v1"));
    write(&src, "etc/app.yaml", yaml.replace("value3\n", "three\n").replace("value27\n", "twenty-seven\n").as_bytes());
    write(&src, "README.md", b"# app\n\nThe second version.\n");
    write(&src, "bin.dat", b"\x00\x02binary\x00");
    fs::remove_file(src.join("gone.txt")).unwrap();
    write(&src, "new/added.txt", b"new in v2\n");
    let v2 = produce(&src, &work.path().join("v2"));

    let reg = Distribution::start();
    let host = reg.host();
    for ((name, d1, b1), (_, d2, b2)) in v1.iter().zip(&v2) {
        push(&host, &format!("{name}:v1"), d1, b1, true);
        push(&host, &format!("{name}:v2"), d2, b2, true);
        let (r1, r2) = (format!("oci://{host}/{name}:v1"), format!("oci://{host}/{name}:v2"));
        let seen = reg.access_log().len();
        let out = ocisync(&["diff", &r1, &r2, "--insecure", "--output", "json"]).await;
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let log = reg.access_log()[seen..].to_vec();
        let doc = json(&out);
        let ours: BTreeSet<(char, String)> = doc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["status"].as_str().unwrap().chars().next().unwrap(), c["path"].as_str().unwrap().to_string()))
            .collect();

        // the same as diff -r of what two pulls write
        let (a, b) = (work.path().join(format!("{name}-a")), work.path().join(format!("{name}-b")));
        for (r, dir) in [(&r1, &a), (&r2, &b)] {
            let o = pull(r, dir, &[]).await;
            assert!(o.status.success(), "{name}: {}", stderr(&o));
        }
        let theirs = diff_rq(&a, &b);
        assert_eq!(ours, theirs, "{name}");
        assert_eq!(ours.len(), 5, "{name}: {ours:?}");

        // the bytes it says it read are the registry's, and with tables of
        // contents, only ranges (the TOCs) were read
        let gets: Vec<(u16, u64)> =
            [&d1["digest"], &d2["digest"]].iter().flat_map(|d| blob_gets(&log, d.as_str().unwrap())).collect();
        let bytes: u64 = gets.iter().map(|(_, n)| n).sum();
        let indexed = INDEXED.contains(&name.as_str());
        assert_eq!(doc["before"]["from"], if indexed { "toc" } else { "layers" }, "{name}");
        if indexed {
            assert_eq!(doc["registryBytes"], bytes, "{name}: the bytes of the TOC ranges");
            assert!(gets.len() >= 2 && gets.iter().all(|(s, _)| *s == 206), "{name}: only ranged reads: {gets:?}");
            assert!(bytes < (b1.len() as u64 + b2.len() as u64) / 4, "{name}: {bytes} bytes, far less than the layers");
        }

        // -p: GNU diff -u of the two files, for the changed text files
        let out = ocisync(&["diff", &r1, &r2, "--insecure", "-p"]).await;
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        for path in ["README.md", "etc/app.yaml"] {
            let gnu = Command::new("diff")
                .args(["-u", "--label", &format!("a/{path}"), "--label", &format!("b/{path}")])
                .arg(a.join(path))
                .arg(b.join(path))
                .output()
                .unwrap();
            let gnu = String::from_utf8(gnu.stdout).unwrap();
            assert!(!gnu.is_empty() && text.contains(&gnu), "{name} {path}: ours\n{text}\nGNU's\n{gnu}");
        }
        assert!(text.contains("Binary files a/bin.dat and b/bin.dat differ"), "{name}: {text}");
        assert!(!text.contains("+++ b/new/added.txt"), "{name}: only changed files get a patch");
        // --exit-code, and nothing to say between a version and itself
        let same = ocisync(&["diff", &r1, &r1, "--insecure", "--exit-code", "--output", "json"]).await;
        assert_eq!(same.status.code(), Some(0), "{name}: {}", stderr(&same));
        assert_eq!(json(&same)["changes"], Value::Array(vec![]));
        let differ = ocisync(&["diff", &r1, &r2, "--insecure", "--exit-code"]).await;
        assert_eq!(differ.status.code(), Some(1), "{name}");
    }
}

/// `--select` narrows both sides, as `pull` and `ls` do.
#[tokio::test(flavor = "multi_thread")]
async fn diff_takes_the_selection_of_pull() {
    let reg = Distribution::start();
    let host = reg.host();
    push_files(&host, "sel:v1", &[("a.yaml", b"a: 1\n"), ("b.txt", b"b\n")], &["--plain-http"]);
    push_files(&host, "sel:v2", &[("a.yaml", b"a: 2\n"), ("b.txt", b"bb\n")], &["--plain-http"]);
    let (r1, r2) = (format!("oci://{host}/sel:v1"), format!("oci://{host}/sel:v2"));
    let out = ocisync(&["diff", &r1, &r2, "--insecure", "--select", "*.yaml", "--output", "json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = json(&out);
    let paths: Vec<&str> = doc["changes"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["a.yaml"]);
    assert_eq!(doc["before"]["from"], "layers", "oras's plain layers have no TOC");
    let out = ocisync(&["diff", &r1, &r2, "--insecure", "-p", "--select", "*.yaml"]).await;
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().skip(1).collect::<Vec<_>>().join("\n"),
        "--- a/a.yaml\n+++ b/a.yaml\n@@ -1 +1 @@\n-a: 1\n+a: 2"
    );
}
