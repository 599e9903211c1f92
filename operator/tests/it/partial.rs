//! Ranged reads through tables of contents, on layers the real producers
//! write (containerd's estargz library, gzip and zstd:chunked; skopeo's
//! zstd:chunked) served by distribution 2.8: only the selected files'
//! chunks leave the registry (its access log), every hostile TOC is refused
//! with nothing published, a registry that ignores `Range` gets a whole
//! read, and `--no-partial` / `spec.partial: Never` read whole layers.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::layers::{produce, push};
use crate::support::cluster::{Env, Spec};
use crate::support::registry::Ferro;
use crate::support::*;

const APP: &[u8] = b"port: 8080\n";
/// The formats with a TOC, as `e2e/layers/make.sh` names their layers.
const RANGED: [&str; 3] = ["estargz", "estargz-zstd-chunked", "skopeo-zstd-chunked"];

/// `etc/app.yaml` beside `n` files of 1 MiB of bytes that do not compress,
/// so that the layer is about `n` MiB.
fn big_tree(dir: &Path, n: usize) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("assets")).unwrap();
    fs::write(dir.join("etc/app.yaml"), APP).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        let mut data = Vec::with_capacity(1 << 20);
        while data.len() < 1 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        fs::write(dir.join(format!("assets/{i:03}.bin")), data).unwrap();
    }
}

/// The real producers' layers of a 16 MiB tree, by name.
fn layers(work: &Path) -> Vec<(String, Value, Vec<u8>)> {
    layers_of(work, None)
}

/// The same, with a file of `mark` in the tree: layers no other test
/// pushes, which the shared operator's blob cache cannot already hold.
fn layers_of(work: &Path, mark: Option<&str>) -> Vec<(String, Value, Vec<u8>)> {
    let src = work.join("src");
    big_tree(&src, 16);
    if let Some(m) = mark {
        fs::write(src.join("etc/mark.txt"), m).unwrap();
    }
    produce(&src, &work.join("layers")).into_iter().filter(|(n, _, _)| RANGED.contains(&n.as_str())).collect()
}

/// (status, bytes) of each GET of `digest` in distribution's access log.
pub(crate) fn blob_gets(log: &[String], digest: &str) -> Vec<(u16, u64)> {
    log.iter()
        .filter_map(|l| {
            let at = l.find(&format!("/blobs/{digest} HTTP/1.1\""))?;
            l[..at].contains("\"GET /v2/").then_some(())?;
            let rest = &l[at..];
            let mut after = rest[rest.find("\" ")? + 2..].split_whitespace();
            Some((after.next()?.parse().ok()?, after.next()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_file_is_read_by_ranges_from_each_producers_layer() {
    let work = tempfile::tempdir().unwrap();
    let reg = Distribution::start();
    let host = reg.host();
    for (name, desc, blob) in layers(work.path()) {
        let layer = desc["digest"].as_str().unwrap();
        push(&host, &format!("{name}:v1"), &desc, &blob, true);
        let reference = format!("oci://{host}/{name}:v1");
        let seen = reg.access_log().len();
        let out = work.path().join(format!("{name}-one"));
        let o = pull(&reference, &out, &["--select", "etc/app.yaml", "--output", "json"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(tree(&out), [("etc/app.yaml".to_string(), APP.to_vec())].into(), "{name}");
        let doc = json(&o);
        assert_eq!(doc["layers"][0]["read"], "ranges", "{name}: {doc}");
        let gets = blob_gets(&reg.access_log()[seen..], layer);
        assert!(
            !gets.is_empty() && gets.iter().all(|(s, _)| *s == 206),
            "{name}: only ranged GETs: {gets:?}\n{:#?}",
            &reg.access_log()[seen..]
        );
        assert!(gets.len() <= 4, "{name}: TOC in at most two requests, one for the file: {gets:?}");
        let bytes: u64 = gets.iter().map(|(_, b)| b).sum();
        assert_eq!(doc["registryBytes"], bytes, "{name}: the report counts what the registry sent");
        assert!(bytes < 1 << 20 && bytes * 16 < blob.len() as u64, "{name}: {bytes} of {} bytes", blob.len());

        // --no-partial: the whole layer, its digest checked
        let seen = reg.access_log().len();
        let whole = work.path().join(format!("{name}-whole"));
        let o = pull(&reference, &whole, &["--select", "etc/app.yaml", "--output", "json", "--no-partial"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(tree(&whole), tree(&out), "{name}");
        assert_eq!(json(&o)["layers"][0]["read"], "whole", "{name}");
        assert_eq!(blob_gets(&reg.access_log()[seen..], layer), [(200, blob.len() as u64)], "{name}");

        // everything selected: ranges would cost more than the layer
        let seen = reg.access_log().len();
        let all = work.path().join(format!("{name}-all"));
        let o = pull(&reference, &all, &["--output", "json"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let doc = json(&o);
        // the TOC read before deciding counts, beside the whole layer
        let gets = blob_gets(&reg.access_log()[seen..], layer);
        assert!(gets.contains(&(200, blob.len() as u64)), "{name}: {gets:?}");
        assert_eq!(doc["registryBytes"], gets.iter().map(|(_, b)| b).sum::<u64>(), "{name}: {gets:?}");
        assert_eq!(doc["layers"][0]["requests"], gets.len(), "{name}");
        assert_eq!(doc["layers"][0]["read"], "whole", "{name}");
        let reason = doc["layers"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("the selection needs"), "{name}: {reason}");
        assert_eq!(tree(&all).len(), 17, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_ignores_range_gets_a_whole_read() {
    // ferro-oci-server 1.0 answers a blob GET that has a Range header with
    // the whole blob and 200, as some registries and proxies do
    let work = tempfile::tempdir().unwrap();
    let (name, desc, blob) = layers(work.path()).into_iter().next().unwrap();
    let reg = Ferro::start().await;
    let host = reg.host();
    let (d, b) = (desc.clone(), blob.clone());
    let h = host.clone();
    tokio::task::spawn_blocking(move || push(&h, "app:v1", &d, &b, true)).await.unwrap();
    let out = work.path().join("out");
    let o = pull(&format!("oci://{host}/app:v1"), &out, &["--select", "etc/app.yaml", "--output", "json"]).await;
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    assert_eq!(tree(&out), [("etc/app.yaml".to_string(), APP.to_vec())].into());
    let doc = json(&o);
    assert_eq!(doc["layers"][0]["read"], "whole", "{doc}");
    assert_eq!(doc["layers"][0]["reason"], "the registry ignores Range requests", "{doc}");
    let layer = format!("GET /v2/app/blobs/{}", desc["digest"].as_str().unwrap());
    let gets = reg.hooks.log.lock().unwrap().iter().filter(|l| l.starts_with(&layer)).count();
    assert_eq!(gets, 1, "the 200 answering the first range is read as the whole layer, not asked for again");
    assert_eq!(doc["registryBytes"], blob.len() as u64);
}

/// An eStargz layer whose TOC `edit` changed (its member rewritten, the
/// footer kept: the TOC still starts where it did), and the TOC's digest.
/// Hand-made bytes on a real layer: no producer writes a lying TOC.
fn estargz_edited(blob: &[u8], edit: impl Fn(&mut Value)) -> (Vec<u8>, String) {
    let footer = &blob[blob.len() - 51..];
    let at = footer.windows(6).position(|w| w == b"STARGZ").unwrap();
    let toc_offset = usize::from_str_radix(std::str::from_utf8(&footer[at - 16..at]).unwrap(), 16).unwrap();
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&blob[toc_offset..blob.len() - 51]).read_to_end(&mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut toc: Value = serde_json::from_reader(&mut entry).unwrap();
    edit(&mut toc);
    let text = serde_json::to_vec(&toc).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_path("stargz.index.json").unwrap();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &text[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&builder.into_inner().unwrap()).unwrap();
    let mut out = blob[..toc_offset].to_vec();
    out.extend(gz.finish().unwrap());
    out.extend_from_slice(footer);
    (out, sha256(&text))
}

/// A zstd:chunked layer (containers/storage's) whose TOC `edit` changed:
/// the skippable frame rewritten in place, position and checksum
/// annotations to match. Hand-made bytes on a real layer, as above.
fn zstd_chunked_edited(desc: &Value, blob: &[u8], edit: impl Fn(&mut Value)) -> Pushed {
    let a = &desc["annotations"];
    let position: Vec<usize> = a["io.containers.zstd-chunked.manifest-position"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|n| n.parse().unwrap())
        .collect();
    let (offset, length) = (position[0], position[1]);
    let mut toc: Value = serde_json::from_slice(&zstd::decode_all(&blob[offset..offset + length]).unwrap()).unwrap();
    edit(&mut toc);
    let text = serde_json::to_vec(&toc).unwrap();
    let frame = zstd::encode_all(&text[..], 3).unwrap();
    let mut out = blob[..offset - 8].to_vec();
    out.extend([0x50, 0x2a, 0x4d, 0x18]);
    out.extend((frame.len() as u32).to_le_bytes());
    out.extend(&frame);
    out.extend(&blob[offset + length..]);
    let mut d = desc.clone();
    d["digest"] = json!(sha256(&out));
    d["size"] = json!(out.len());
    d["annotations"]["io.containers.zstd-chunked.manifest-position"] =
        json!(format!("{offset}:{}:{}:1", frame.len(), text.len()));
    d["annotations"]["io.containers.zstd-chunked.manifest-checksum"] = json!(sha256(&frame));
    (d, out)
}

/// A layer's descriptor and bytes, to push.
type Pushed = (Value, Vec<u8>);

fn entry<'a>(toc: &'a mut Value, name: &str) -> &'a mut Value {
    // the producers name entries as the tar does: `./etc/app.yaml`
    let named = |e: &Value| e["name"].as_str().is_some_and(|n| n.trim_start_matches("./") == name);
    toc["entries"].as_array_mut().unwrap().iter_mut().find(|e| named(e) && e["type"] == "reg").unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tables_of_contents_are_refused_and_nothing_is_published() {
    let work = tempfile::tempdir().unwrap();
    let all = layers(work.path());
    let (_, estargz, estargz_blob) = all.iter().find(|l| l.0 == "estargz").unwrap();
    let (_, skopeo, skopeo_blob) = all.iter().find(|l| l.0 == "skopeo-zstd-chunked").unwrap();
    let reg = Distribution::start();
    let host = reg.host();
    let out = work.path().join("out");
    push(&host, "good:v1", estargz, estargz_blob, true);
    let o = pull(&format!("oci://{host}/good:v1"), &out, &["--select", "etc/app.yaml"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    // Changed here, so that no case takes the file from --out instead of
    // fetching it (a delta sync would rightly never look at the lying chunk).
    fs::write(out.join("etc/app.yaml"), "edited here\n").unwrap();
    let good = tree(&out);

    let lie = |d: &Value, blob: Vec<u8>, toc_digest: String| {
        let mut d = d.clone();
        d["digest"] = json!(sha256(&blob));
        d["size"] = json!(blob.len());
        d["annotations"]["containerd.io/snapshot/stargz/toc.digest"] = json!(toc_digest);
        (d, blob)
    };
    let estargz_case = |edit: &dyn Fn(&mut Value), keep_digest: bool| {
        let (blob, digest) = estargz_edited(estargz_blob, edit);
        let digest = if keep_digest {
            estargz["annotations"]["containerd.io/snapshot/stargz/toc.digest"].as_str().unwrap().to_string()
        } else {
            digest
        };
        lie(estargz, blob, digest)
    };
    let first_asset = |toc: &Value| -> u64 {
        toc["entries"].as_array().unwrap().iter().find(|e| e["name"] == "./assets/000.bin").unwrap()["offset"]
            .as_u64()
            .unwrap()
    };
    let cases: Vec<(&str, Pushed, &str, i32)> = vec![
        (
            "a TOC that is not what the manifest's digest says",
            estargz_case(&|t| entry(t, "etc/app.yaml")["size"] = json!(5), true),
            "digest",
            5,
        ),
        (
            "a chunk outside the blob",
            estargz_case(&|t| entry(t, "etc/app.yaml")["offset"] = json!(1u64 << 40), false),
            "chunk",
            9,
        ),
        (
            "chunks that overlap",
            estargz_case(
                &|t| {
                    let at = first_asset(t);
                    entry(t, "assets/001.bin")["offset"] = json!(at);
                },
                false,
            ),
            "overlaps",
            9,
        ),
        (
            "a file whose bytes are not what its chunk digest says",
            estargz_case(&|t| entry(t, "etc/app.yaml")["chunkDigest"] = json!(sha256(b"other")), false),
            "chunkDigest",
            5,
        ),
        (
            "a file whose bytes are not what its digest says",
            estargz_case(
                &|t| {
                    let e = entry(t, "etc/app.yaml");
                    e["digest"] = json!(sha256(b"other"));
                    e.as_object_mut().unwrap().remove("chunkDigest");
                },
                false,
            ),
            "TOC digest",
            5,
        ),
        (
            "an entry out of the tree",
            estargz_case(&|t| entry(t, "assets/002.bin")["name"] = json!("../../escape.bin"), false),
            "escape.bin",
            7,
        ),
        (
            "a chunk that inflates past its size",
            zstd_chunked_edited(skopeo, skopeo_blob, |t| {
                let e = entry(t, "etc/app.yaml");
                e["size"] = json!(APP.len() - 1);
                e["digest"] = json!(sha256(&APP[..APP.len() - 1]));
            }),
            "inflates past",
            9,
        ),
    ];
    // exit 5 (DigestMismatch, retried) where bytes are not what a digest
    // says; 9 (Unsupported) for a malformed TOC; 7 (UnsafeContent)
    for (i, (what, (desc, blob), says, code)) in cases.into_iter().enumerate() {
        let tag = format!("bad:v{i}");
        push(&host, &tag, &desc, &blob, true);
        let seen = reg.access_log().len();
        let o = pull(&format!("oci://{host}/{tag}"), &out, &["--select", "etc/app.yaml"]).await;
        assert_eq!(o.status.code(), Some(code), "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{what}: {}", stderr(&o));
        assert_eq!(tree(&out), good, "{what}: nothing published");
        let full = blob_gets(&reg.access_log()[seen..], desc["digest"].as_str().unwrap());
        assert!(full.iter().all(|(s, _)| *s == 206), "{what}: not read whole instead: {full:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_takes_one_file_by_ranges_into_a_config_map() {
    let work = tempfile::tempdir().unwrap();
    let all = layers_of(work.path(), Some("config map test"));
    let by_name = |n: &str| all.iter().find(|l| l.0 == n).cloned().unwrap();
    // a large eStargz layer, as the issue asks
    let (_, desc, blob) = by_name("estargz");
    let reg = Distribution::start();
    let host = reg.host();
    let digest = push(&host, "app:v1", &desc, &blob, true);
    let layer = desc["digest"].as_str().unwrap();
    let e = Env::new("partial").await;
    let spec = Spec::new(&host, "app").tag("v1").set("select", json!({"include": ["etc/app.yaml"]}));
    e.apply("ranged", &spec).await;
    let status = e.synced("ranged", &digest).await;
    let cm = e.config_map("ranged").await.unwrap();
    assert_eq!(cm.data.unwrap()["etc__app.yaml"], "port: 8080\n");
    let gets = blob_gets(&reg.access_log(), layer);
    assert!(!gets.is_empty() && gets.iter().all(|(s, _)| *s == 206), "only ranged GETs: {gets:?}");
    let t = &status["transfer"];
    assert_eq!((t["layersRanged"].as_u64(), t["layersWhole"].as_u64()), (Some(1), Some(0)), "{status}");
    assert_eq!(t["bytesFromRegistry"], gets.iter().map(|(_, b)| b).sum::<u64>(), "{status}");
    assert_eq!(t["rangeRequests"], gets.len(), "{status}");
    assert_eq!((t["filesFromRegistry"].as_u64(), t["filesReused"].as_u64()), (Some(1), Some(0)), "{status}");
    assert!(gets.len() >= 2, "the TOC, then the file: {gets:?}");

    // A second Artifact of the same digest: the operator's blob cache kept
    // the TOC, so only the file's chunk is requested.
    let seen = reg.access_log().len();
    e.apply("again", &spec).await;
    let status = e.synced("again", &digest).await;
    let gets = blob_gets(&reg.access_log()[seen..], layer);
    assert!(gets.len() == 1 && gets[0].0 == 206, "the file's chunk alone: {gets:?}");
    assert_eq!(status["transfer"]["rangeRequests"], 1, "{status}");
    assert_eq!(e.config_map("again").await.unwrap().data.unwrap()["etc__app.yaml"], "port: 8080\n");

    // Another producer's layer of the same tree: the file is in the
    // ConfigMap already, so only the new layer's TOC is read.
    let (_, other, other_blob) = by_name("skopeo-zstd-chunked");
    let moved = push(&host, "app:v2", &other, &other_blob, true);
    let seen = reg.access_log().len();
    e.apply("ranged", &spec.clone().tag("v2")).await;
    let status = e.synced("ranged", &moved).await;
    let t = &status["transfer"];
    assert_eq!((t["filesFromRegistry"].as_u64(), t["filesReused"].as_u64()), (Some(0), Some(1)), "{status}");
    assert_eq!(t["bytesReused"], APP.len(), "{status}");
    let gets = blob_gets(&reg.access_log()[seen..], other["digest"].as_str().unwrap());
    assert!(gets.len() <= 2 && gets.iter().all(|(s, _)| *s == 206), "the TOC alone: {gets:?}");
    assert_eq!(t["bytesFromRegistry"], gets.iter().map(|(_, b)| b).sum::<u64>(), "{status}");
    assert_eq!(e.config_map("ranged").await.unwrap().data.unwrap()["etc__app.yaml"], "port: 8080\n");

    // spec.partial: Never reads the whole layer
    let seen = reg.access_log().len();
    e.apply("whole", &spec.set("partial", "Never")).await;
    let status = e.synced("whole", &digest).await;
    assert_eq!(blob_gets(&reg.access_log()[seen..], layer), [(200, blob.len() as u64)]);
    let t = &status["transfer"];
    assert_eq!((t["layersRanged"].as_u64(), t["layersWhole"].as_u64()), (Some(0), Some(1)), "{status}");
    assert_eq!(e.config_map("whole").await.unwrap().data.unwrap()["etc__app.yaml"], "port: 8080\n");
}

/// The 16 MiB tree of `layers`, and the same with one asset rewritten:
/// each real producer's layers of both, by name.
fn versions(work: &Path, mark: Option<&str>) -> Vec<(String, Pushed, Pushed)> {
    let v1 = layers_of(work, mark);
    let src = work.join("src");
    let mut changed = fs::read(src.join("assets/005.bin")).unwrap();
    changed.iter_mut().take(4096).for_each(|b| *b = !*b);
    fs::write(src.join("assets/005.bin"), changed).unwrap();
    let v2 = produce(&src, &work.join("layers-v2"));
    v1.into_iter()
        .map(|(name, d1, b1)| {
            let (_, d2, b2) = v2.iter().find(|l| l.0 == name).unwrap().clone();
            (name, (d1, b1), (d2, b2))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_with_one_changed_file_fetches_only_that_file() {
    let work = tempfile::tempdir().unwrap();
    let reg = Distribution::start();
    let host = reg.host();
    for (name, (d1, b1), (d2, b2)) in versions(work.path(), None) {
        push(&host, &format!("{name}:v1"), &d1, &b1, true);
        push(&host, &format!("{name}:v2"), &d2, &b2, true);
        let out = work.path().join(format!("{name}-out"));
        let o = pull(&format!("oci://{host}/{name}:v1"), &out, &["--output", "json"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(json(&o)["filesReused"], 0, "{name}: nothing there to reuse");
        // Someone edits a file in --out, keeping its size: not reused.
        let mut edited = fs::read(out.join("assets/009.bin")).unwrap();
        edited[0] ^= 1;
        fs::write(out.join("assets/009.bin"), edited).unwrap();

        let seen = reg.access_log().len();
        let o = pull(&format!("oci://{host}/{name}:v2"), &out, &["--output", "json"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let doc = json(&o);
        let want = fs::read_dir(work.path().join("src/assets")).unwrap().count() + 1;
        assert_eq!(tree(&out).len(), want, "{name}");
        assert_eq!(
            fs::read(out.join("assets/005.bin")).unwrap(),
            fs::read(work.path().join("src/assets/005.bin")).unwrap()
        );
        assert_eq!(
            fs::read(out.join("assets/009.bin")).unwrap(),
            fs::read(work.path().join("src/assets/009.bin")).unwrap()
        );
        assert_eq!(doc["layers"][0]["read"], "ranges", "{name}: {doc}");
        assert_eq!(
            (doc["filesReused"].as_u64(), doc["filesFromRegistry"].as_u64()),
            (Some(15), Some(2)),
            "{name}: {doc}"
        );
        assert_eq!(doc["bytesReused"], 14 * (1 << 20) + APP.len() as u64, "{name}");
        let gets = blob_gets(&reg.access_log()[seen..], d2["digest"].as_str().unwrap());
        assert!(gets.iter().all(|(s, _)| *s == 206), "{name}: only ranged GETs: {gets:?}");
        let bytes: u64 = gets.iter().map(|(_, b)| b).sum();
        assert_eq!(doc["registryBytes"], bytes, "{name}");
        // the two files' chunks, the TOC, and what merging ranges adds
        assert!(bytes < (2 << 20) + (512 << 10), "{name}: {bytes} bytes for two 1 MiB files");

        // `pull --volume` (the agent's code): from the current revision
        let vol = work.path().join(format!("{name}-vol"));
        let o = pull(&format!("oci://{host}/{name}:v1"), &vol, &["--volume", "--output", "json"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let seen = reg.access_log().len();
        let o = pull(&format!("oci://{host}/{name}:v2"), &vol, &["--volume", "--output", "json"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let doc = json(&o);
        assert_eq!((doc["filesReused"].as_u64(), doc["filesFromRegistry"].as_u64()), (Some(16), Some(1)), "{doc}");
        let gets = blob_gets(&reg.access_log()[seen..], d2["digest"].as_str().unwrap());
        assert_eq!(doc["registryBytes"], gets.iter().map(|(_, b)| b).sum::<u64>(), "{name}");
        let mut got = tree(&vol.join("..data"));
        got.remove("..ocisync.json");
        assert!(got == tree(&work.path().join("src")), "{name}: the new version, whole");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_move_into_a_volume_reuses_the_unchanged_files() {
    use crate::support::cluster::Operator;
    let work = tempfile::tempdir().unwrap();
    let (_, (d1, b1), (d2, b2)) =
        versions(work.path(), Some("volume test")).into_iter().find(|v| v.0 == "estargz").unwrap();
    let reg = Distribution::start();
    let host = reg.host();
    let first = push(&host, "app:live", &d1, &b1, true);
    let e = Env::new("delta").await;
    let spec = Spec::new(&host, "app").tag("live").interval("2s").set("target", json!({"volume": {"path": "app"}}));
    e.apply("app", &spec).await;
    let status = e.synced("app", &first).await;
    assert_eq!(status["transfer"]["filesReused"], 0, "{status}");

    let seen = reg.access_log().len();
    let second = push(&host, "app:live", &d2, &b2, true);
    let status = e.synced("app", &second).await;
    let root = Operator::volume_root(e.cp).join("delta/app");
    let mut got = tree(&root.join("..data"));
    got.remove("..ocisync.json");
    let want = tree(&work.path().join("src"));
    assert!(got == want, "the new version, whole: {:?} and {:?}", got.keys(), want.keys());
    let t = &status["transfer"];
    assert_eq!((t["filesReused"].as_u64(), t["filesFromRegistry"].as_u64()), (Some(17), Some(1)), "{status}");
    assert_eq!(t["bytesReused"], 15 * (1 << 20) + (APP.len() + "volume test".len()) as u64, "{status}");
    assert_eq!((t["layersRanged"].as_u64(), t["layersWhole"].as_u64()), (Some(1), Some(0)), "{status}");
    let gets = blob_gets(&reg.access_log()[seen..], d2["digest"].as_str().unwrap());
    assert!(gets.iter().all(|(s, _)| *s == 206), "only ranged GETs: {gets:?}");
    let bytes: u64 = gets.iter().map(|(_, b)| b).sum();
    assert_eq!(t["bytesFromRegistry"], bytes, "{status}");
    assert!(bytes < (1 << 20) + (512 << 10), "{bytes} bytes for one changed 1 MiB file");
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_reads_only_tables_of_contents_and_cat_only_the_files_chunks() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    big_tree(&src, 16);
    let all = produce(&src, &work.path().join("layers"));
    let want: Vec<(String, u64, String)> =
        tree(&src).into_iter().map(|(p, c)| (p, c.len() as u64, sha256(&c))).collect();
    let reg = Distribution::start();
    let host = reg.host();
    let listing = |doc: &Value| -> Vec<(String, u64, String)> {
        let files = doc["files"].as_array().unwrap();
        files
            .iter()
            .map(|f| {
                (f["path"].as_str().unwrap().into(), f["size"].as_u64().unwrap(), f["sha256"].as_str().unwrap().into())
            })
            .collect()
    };
    // the real producers' layers with a TOC, and a plain one (skopeo's gzip)
    for (name, desc, blob) in all.iter().filter(|l| RANGED.contains(&l.0.as_str()) || l.0 == "skopeo-gzip") {
        let ranged = name != "skopeo-gzip";
        let layer = desc["digest"].as_str().unwrap();
        push(&host, &format!("{name}:v1"), desc, blob, true);
        let reference = format!("oci://{host}/{name}:v1");

        let seen = reg.access_log().len();
        let o = ocisync(&["ls", &reference, "--insecure", "--output", "json"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let doc = json(&o);
        assert_eq!(listing(&doc), want, "{name}: the files GNU tar packed, with their sizes and digests");
        assert_eq!(doc["from"], if ranged { "toc" } else { "layers" }, "{name}");
        let gets = blob_gets(&reg.access_log()[seen..], layer);
        let bytes: u64 = gets.iter().map(|(_, b)| b).sum();
        assert_eq!(doc["registryBytes"], bytes, "{name}");
        if ranged {
            assert!(gets.len() <= 2 && gets.iter().all(|(s, _)| *s == 206), "{name}: the TOC alone: {gets:?}");
            assert!(bytes <= 256 << 10, "{name}: {bytes} bytes to list a {} byte layer", blob.len());
        } else {
            assert_eq!(gets, [(200, blob.len() as u64)], "{name}: a plain layer is read to be listed");
        }
        let text = ocisync(&["ls", &reference, "--insecure", "--select", "etc/**"]).await;
        assert_eq!(String::from_utf8_lossy(&text.stdout), format!("{:>12}  etc/app.yaml\n", APP.len()), "{name}");

        let seen = reg.access_log().len();
        let o = ocisync(&["cat", &reference, "etc/app.yaml", "--insecure"]).await;
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(o.stdout, APP, "{name}");
        let gets = blob_gets(&reg.access_log()[seen..], layer);
        assert_eq!(gets.iter().all(|(s, _)| *s == 206), ranged, "{name}: {gets:?}");
        let o = ocisync(&["cat", &reference, "assets/007.bin", "--insecure"]).await;
        assert!(o.stdout == fs::read(src.join("assets/007.bin")).unwrap(), "{name}: a 1 MiB file, byte for byte");
        let o = ocisync(&["cat", &reference, "etc/missing.yaml", "--insecure"]).await;
        assert_eq!(o.status.code(), Some(3), "{name}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{name}");
    }
}

/// Where the file `name`'s chunk starts in an eStargz layer, by its TOC.
fn estargz_offset(blob: &[u8], name: &str) -> usize {
    let footer = &blob[blob.len() - 51..];
    let at = footer.windows(6).position(|w| w == b"STARGZ").unwrap();
    let toc_offset = usize::from_str_radix(std::str::from_utf8(&footer[at - 16..at]).unwrap(), 16).unwrap();
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&blob[toc_offset..blob.len() - 51]).read_to_end(&mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut toc: Value = serde_json::from_reader(archive.entries().unwrap().next().unwrap().unwrap()).unwrap();
    entry(&mut toc, name)["offset"].as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_come_from_a_mirror_and_from_the_origin_when_the_mirror_lies() {
    let work = tempfile::tempdir().unwrap();
    let (_, desc, blob) = layers(work.path()).into_iter().find(|l| l.0 == "estargz").unwrap();
    let layer = desc["digest"].as_str().unwrap().to_string();
    let (origin, mirror) = (Distribution::start(), Distribution::start());
    let (o, m) = (origin.host(), mirror.host());
    let d = push(&o, "app:v1", &desc, &blob, true);
    crate::support::crane(&["copy", &format!("{o}/app@{d}"), &format!("{m}/cache/app:copied")]);
    let args = |out: &Path| {
        let mirror = format!("oci://{m}/cache/app");
        let v = ["--select", "etc/app.yaml", "--output", "json", "--mirror", &mirror, "--mirror-insecure"];
        (format!("oci://{o}/app:v1"), out.to_path_buf(), v.map(str::to_string))
    };

    let seen = (origin.access_log().len(), mirror.access_log().len());
    let (reference, out, extra) = args(&work.path().join("one"));
    let o1 = pull(&reference, &out, &extra.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(o1.status.success(), "{}", stderr(&o1));
    assert_eq!(tree(&out), [("etc/app.yaml".to_string(), APP.to_vec())].into());
    let doc = json(&o1);
    assert_eq!(doc["layers"][0]["read"], "ranges", "{doc}");
    let (at_origin, at_mirror) =
        (blob_gets(&origin.access_log()[seen.0..], &layer), blob_gets(&mirror.access_log()[seen.1..], &layer));
    assert!(at_origin.is_empty(), "nothing from the origin: {at_origin:?}");
    assert!(!at_mirror.is_empty() && at_mirror.iter().all(|(s, _)| *s == 206), "ranges from the mirror: {at_mirror:?}");
    assert_eq!(doc["sources"][0]["role"], "mirror", "{doc}");

    // The mirror's copy of the file's chunk is not what the TOC says: never
    // published; the read is done again from the origin, by range.
    let data = mirror.blob_data(&layer);
    let mut bytes = fs::read(&data).unwrap();
    bytes[estargz_offset(&blob, "etc/app.yaml") + 12] ^= 0xff;
    fs::write(&data, bytes).unwrap();
    let seen = (origin.access_log().len(), mirror.access_log().len());
    let (reference, out, extra) = args(&work.path().join("two"));
    let o2 = pull(&reference, &out, &extra.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert_eq!(tree(&out), [("etc/app.yaml".to_string(), APP.to_vec())].into());
    let (at_origin, at_mirror) =
        (blob_gets(&origin.access_log()[seen.0..], &layer), blob_gets(&mirror.access_log()[seen.1..], &layer));
    assert!(!at_mirror.is_empty(), "the mirror was asked first");
    assert!(
        !at_origin.is_empty() && at_origin.iter().all(|(s, _)| *s == 206),
        "then the origin, by range: {at_origin:?}"
    );
    assert_eq!(json(&o2)["layers"][0]["read"], "ranges");
}
