//! The volume layout under load and under SIGKILL, with `ocisync pull
//! --volume` as the publisher (the same code the operator's volume target
//! and the agent run) and separate reader processes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// One version's files: each body names the version, and MANIFEST lists
/// every file's sha256, so a reader can tell a whole tree from a mix.
fn version(i: usize, files: usize, size: usize) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = (0..files)
        .map(|f| (format!("f{f:03}.txt"), format!("version {i} file {f}\n").repeat(size / 20 + 1).into_bytes()))
        .collect();
    let manifest: String = out.iter().map(|(n, b)| format!("{n} {}\n", &sha256(b)[7..])).collect();
    out.push(("MANIFEST".into(), manifest.into_bytes()));
    out
}

fn push_version(host: &str, tag: &str, files: &[(String, Vec<u8>)]) -> String {
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    push_files(host, &format!("vol:{tag}"), &refs, &["--plain-http"])
}

/// A reader: resolves `..data` once per round and reads that tree against
/// its MANIFEST; `hold` opens every file first, waits across switches,
/// then reads. Exits 1 on the first mix, missing or partial file.
const READER: &str = r#"
import hashlib, os, sys, time
root, hold, stop = sys.argv[1], sys.argv[2] == "hold", sys.argv[3]
rounds = 0
while not os.path.exists(stop):
    try:
        rev = os.readlink(os.path.join(root, "..data"))
    except FileNotFoundError:
        time.sleep(0.01); continue
    tree = os.path.join(root, rev)
    lines = open(os.path.join(tree, "MANIFEST")).read().splitlines()
    want = dict(l.split(" ") for l in lines)
    files = {n: open(os.path.join(tree, n), "rb") for n in want}
    if hold:
        time.sleep(0.3)
    for n, f in files.items():
        got = hashlib.sha256(f.read()).hexdigest()
        f.close()
        if got != want[n]:
            print(f"{rev}/{n}: sha256 {got}, MANIFEST says {want[n]}"); sys.exit(1)
    rounds += 1
print(rounds)
"#;

async fn pull_volume(host: &str, tag: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let reference = format!("{host}/vol:{tag}");
    let args = [&["pull", "--insecure", &reference, "--out", out.to_str().unwrap(), "--volume"][..], extra].concat();
    ocisync(&args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn readers_never_see_a_mix_across_200_publishes() {
    let reg = Distribution::start();
    let host = reg.host();
    let versions: Vec<_> = (0..200).map(|i| version(i, 20, 200)).collect();
    // Eight pushers at once: the pushes are setup, not what is measured.
    std::thread::scope(|s| {
        for chunk in versions.chunks(25).enumerate().map(|(c, vs)| (c * 25, vs)) {
            let host = &host;
            s.spawn(move || {
                for (i, v) in chunk.1.iter().enumerate() {
                    push_version(host, &format!("v{}", chunk.0 + i), v);
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stop = dir.path().join("stop");
    let readers: Vec<_> = ["path", "path", "hold", "hold"]
        .iter()
        .map(|mode| {
            Command::new("python3")
                .args(["-c", READER, out.to_str().unwrap(), mode, stop.to_str().unwrap()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for i in 0..200 {
        let o = pull_volume(&host, &format!("v{i}"), &out, &["--grace", "5s", "--output", "json"]).await;
        assert!(o.status.success(), "publish {i}: {}", String::from_utf8_lossy(&o.stderr));
        let placed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(placed["placed"], "published", "publish {i} is a new revision");
    }
    std::fs::write(&stop, "").unwrap();
    for r in readers {
        let o = r.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "a reader saw a torn tree: {text}");
        assert!(text.trim().parse::<u32>().unwrap() >= 10, "the reader read while publishing ({text})");
    }
    let current = std::fs::read_link(out.join("..data")).unwrap();
    assert!(current.to_str().unwrap().starts_with("..r0000000200-"), "{current:?}");
    assert_eq!(std::fs::read(out.join("MANIFEST")).unwrap(), versions[199].last().unwrap().1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publisher_killed_anywhere_leaves_a_whole_tree_and_a_restart_cleans_up() {
    let reg = Distribution::start();
    let host = reg.host();
    // Big enough that a kill lands inside the download, the unpack, the
    // fsyncs or the switch.
    for i in 0..2 {
        push_version(&host, &format!("k{i}"), &version(i, 300, 16 << 10));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut killed_mid_way = 0;
    for round in 0..20 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(20 + (seed >> 33) % 400);
        let reference = format!("{host}/vol:k{}", round % 2);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocisync"))
            .args(["pull", "--insecure", &reference, "--out", out.to_str().unwrap(), "--volume", "--keep", "1"])
            .args(["--grace", "0s", "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed_mid_way += 1;
        }
        child.wait().unwrap();
        assert_whole(&out, round);
    }
    assert!(killed_mid_way >= 5, "only {killed_mid_way} of 20 kills landed mid-publish");
    // A restart (the next publish) clears what the kills left.
    let o = pull_volume(&host, "k0", &out, &["--keep", "1", "--grace", "0s"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_whole(&out, 99);
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data" && !n.starts_with("..r"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// If `..data` exists it points at a revision whose files match its MANIFEST.
fn assert_whole(out: &Path, round: usize) {
    let Ok(rev) = std::fs::read_link(out.join("..data")) else { return };
    let tree = out.join(&rev);
    let manifest = std::fs::read_to_string(tree.join("MANIFEST"))
        .unwrap_or_else(|e| panic!("round {round}: {rev:?} has no MANIFEST: {e}"));
    assert!(tree.join("..ocisync.json").exists(), "round {round}: {rev:?} has no marker");
    for line in manifest.lines() {
        let (name, want) = line.split_once(' ').unwrap();
        let body = std::fs::read(tree.join(name)).unwrap_or_else(|e| panic!("round {round}: {name}: {e}"));
        assert_eq!(&sha256(&body)[7..], want, "round {round}: {rev:?}/{name} is partial");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_content_twice_costs_no_download() {
    let reg = Distribution::start();
    let host = reg.host();
    let a = push_version(&host, "a", &version(0, 3, 100));
    push_version(&host, "b", &version(1, 3, 100));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let by_digest = format!("a@{a}");
    for tag in ["a", "b"] {
        let o = pull_volume(&host, tag, &out, &["--output", "json"]).await;
        let placed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(placed["placed"], "published", "{}", String::from_utf8_lossy(&o.stderr));
    }
    let before = reg.access_log().len();
    // a is held by a kept revision: switched back to, nothing fetched.
    let o = pull_volume(&host, &by_digest, &out, &["--output", "json"]).await;
    let placed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(placed["placed"], "restored");
    assert_eq!(placed["digest"], a);
    let again = pull_volume(&host, &by_digest, &out, &["--output", "json"]).await;
    let placed: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(placed["placed"], "current");
    let requests = &reg.access_log()[before..];
    assert!(requests.is_empty(), "pinned to a digest it holds, ocisync asks the registry nothing: {requests:?}");
    // Another selection of the same digest is other content.
    let o = pull_volume(&host, &by_digest, &out, &["--output", "json", "--select", "MANIFEST"]).await;
    let placed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(placed["placed"], "published");
}

/// `spec.target.volume` on the real API server: the shared operator's
/// `--volume-root`, a path under the namespace, the tag followed, and
/// what the volume refuses.
#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_publishes_into_the_operators_volume_and_follows_the_tag() {
    use crate::support::cluster::{ControlPlane, Env, Operator, Spec};
    use serde_json::json;
    let e = Env::new("vol-op").await;
    let root = Operator::volume_root(e.cp).join("vol-op/team/app");
    let reg = Distribution::start();
    let host = reg.host();
    let d1 = push_files(&host, "app:live", &[("app.yaml", b"one\n"), ("extra.txt", b"x")], &["--plain-http"]);
    let spec = Spec::new(&host, "app").tag("live").interval("2s");
    e.apply("app", &spec.clone().set("target", json!({"volume": {"path": "team/app"}}))).await;
    let st = e.synced("app", &d1).await;
    assert_eq!(st["volume"]["path"], "vol-op/team/app");
    let rev1 = st["volume"]["revision"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_link(root.join("..data")).unwrap().to_str().unwrap(), rev1);
    assert_eq!(std::fs::read_to_string(root.join("app.yaml")).unwrap(), "one\n");
    assert_eq!(st["files"]["count"], 2);
    assert!(e.config_map("app").await.is_none(), "a volume target writes no ConfigMap");

    let d2 = push_files(&host, "app:live", &[("app.yaml", b"two\n")], &["--plain-http"]);
    let st = e.synced("app", &d2).await;
    assert_ne!(st["volume"]["revision"], rev1.as_str());
    assert_eq!(std::fs::read_to_string(root.join("app.yaml")).unwrap(), "two\n");
    assert!(std::fs::symlink_metadata(root.join("extra.txt")).is_err(), "a file the new version lacks is gone");
    assert!(root.join(&rev1).join("extra.txt").exists(), "the old revision is kept for readers");

    // Another Artifact naming the same directory; paths out of the
    // namespace; two targets at once.
    e.apply("thief", &spec.clone().set("target", json!({"volume": {"path": "team/app"}}))).await;
    e.apply("escape", &spec.clone().set("target", json!({"volume": {"path": "../other-ns/app"}}))).await;
    e.apply("both", &spec.clone().set("target", json!({"volume": {}, "configMap": {}}))).await;
    for (name, reason) in [("thief", "VolumeNotOwned"), ("escape", "InvalidSpec"), ("both", "InvalidSpec")] {
        let (got, message) = e.ready(name, false).await;
        assert_eq!(got, reason, "{name}: {message}");
    }
    assert_eq!(std::fs::read_to_string(root.join("app.yaml")).unwrap(), "two\n");
    assert!(!Operator::volume_root(e.cp).join("other-ns").exists());

    // Re-created under its name (as GitOps tools do), the Artifact takes
    // its directory back, from the kept revision: nothing downloaded.
    let before = reg.access_log().len();
    e.artifacts().delete("app", &Default::default()).await.unwrap();
    eventually("app is gone", 10, async || e.artifacts().get_opt("app").await.unwrap().is_none().then_some(())).await;
    e.apply("app", &spec.set("target", json!({"volume": {"path": "team/app"}}))).await;
    let st = e.synced("app", &d2).await;
    assert_eq!(st["volume"]["path"], "vol-op/team/app");
    assert_eq!(st["files"]["count"], 1, "the kept revision's files, from its marker");
    let gets = reg.access_log()[before..].iter().filter(|l| l.contains("GET ") && l.contains("/blobs/")).count();
    assert_eq!(gets, 0, "no blob downloaded again");
    let _ = ControlPlane::shared();
}

/// The blob cache: 20 Artifacts of one digest, each into its own volume
/// directory, download its layer once (the registry's access log).
#[tokio::test(flavor = "multi_thread")]
async fn twenty_artifacts_of_one_digest_download_it_once() {
    use crate::signatures::{blob_gets, layer_of};
    use crate::support::cluster::{Env, Spec};
    use serde_json::json;
    let e = Env::new("vol-cache").await;
    let reg = Distribution::start();
    let host = reg.host();
    let body: Vec<u8> = (0..(2u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let d = push_files(&host, "shared:v1", &[("big.bin", &body)], &["--plain-http"]);
    for i in 0..20 {
        let target = json!({"volume": {"path": format!("copies/a{i}")}});
        e.apply(&format!("a{i}"), &Spec::new(&host, "shared").tag("v1").set("target", target)).await;
    }
    for i in 0..20 {
        e.synced(&format!("a{i}"), &d).await;
    }
    let root = crate::support::cluster::Operator::volume_root(e.cp).join("vol-cache/copies");
    for i in 0..20 {
        assert_eq!(std::fs::read(root.join(format!("a{i}/big.bin"))).unwrap(), body, "a{i}");
    }
    let layer = layer_of(&host, "shared", &d);
    assert_eq!(blob_gets(&reg.access_log(), &layer), 1, "one download for 20 Artifacts");

    // A cached blob that no longer hashes to its name is never published:
    // the sync reading it fails, the entry goes, the retry downloads again.
    let cached = e.cp.dir.join("operator-0-work/.blob-cache").join(&layer[7..]);
    let mut bytes = std::fs::read(&cached).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&cached, bytes).unwrap();
    let target = json!({"volume": {"path": "copies/late"}});
    e.apply("late", &Spec::new(&host, "shared").tag("v1").set("target", target)).await;
    e.synced("late", &d).await;
    assert_eq!(std::fs::read(root.join("late/big.bin")).unwrap(), body);
    assert_eq!(blob_gets(&reg.access_log(), &layer), 2, "downloaded again after the bad read");
}
