use std::collections::BTreeMap;

use super::*;
use crate::unpack::{Limits, Staging};

#[path = "../../../tests/it/support/tarball.rs"]
mod tarball;
use tarball::{Item::*, gzip, tar};

fn digest() -> Digest {
    Digest::of(b"a layer")
}

fn unpack(
    items: &[tarball::Item],
    selection: &Selection,
    limits: Limits,
) -> Result<(tempfile::TempDir, LayerReport), UnpackError> {
    let dir = tempfile::tempdir().unwrap();
    let bytes = gzip(&tar(items));
    let r = unpack_layer(
        &LayerKind::Tar(Compression::Gzip),
        &digest(),
        &bytes[..],
        dir.path(),
        selection,
        &Budget::new(limits),
    )?;
    Ok((dir, r))
}

fn all(items: &[tarball::Item]) -> Result<(tempfile::TempDir, LayerReport), UnpackError> {
    unpack(items, &Selection::all(), Limits::default())
}

#[test]
fn writes_files_with_hash_mode_and_later_wins() {
    let (dir, r) =
        all(&[Dir("./conf/"), File("./conf/a.yaml", b"one"), Exec("bin/run", b"#!"), File("conf/a.yaml", b"two")])
            .unwrap();
    assert_eq!(fs::read(dir.path().join("conf/a.yaml")).unwrap(), b"two");
    assert_eq!(r.entries["conf/a.yaml"], Entry::File { size: 3, sha256: Digest::of(b"two"), executable: false });
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.path().join("bin/run")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111 & !crate_umask());
    assert_eq!(r.entries.len(), 2);
}

fn crate_umask() -> u32 {
    // umask is process-wide: read it and put it back at once.
    use rustix::fs::Mode;
    let m = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(m);
    m.bits()
}

#[test]
fn refuses_escapes_and_devices() {
    let cases: Vec<(tarball::Item, &str)> = vec![
        (File("../x", b"x"), "UnsafePath"),
        (File("/etc/x", b"x"), "UnsafePath"),
        (Symlink("root", "/"), "LinkEscapes"),
        (Symlink("a/up", "../.."), "LinkEscapes"),
        (HardLink("h", "../../etc/passwd"), "LinkEscapes"),
        (HardLink("h", "/etc/passwd"), "LinkEscapes"),
        (HardLink("h", "never-written"), "LinkEscapes"),
        (CharDevice("dev/null"), "UnsupportedEntry"),
        // content that could never succeed is refused as content, not
        // failed on as I/O (which would be retried forever)
        (HardLink("ok", "ok"), "LinkEscapes"),
        (File(".wh.", b""), "UnsafePath"),
        (File("a/.wh..", b""), "UnsafePath"),
        (File(".wh..", b""), "UnsafePath"),
    ];
    for (item, want) in cases {
        let err = all(&[File("ok", b"1"), item]).unwrap_err();
        assert!(format!("{err:?}").starts_with(want), "{want}: got {err:?}");
    }
}

#[test]
fn an_escaping_link_is_refused_even_when_not_selected() {
    let only_yaml = Selection::new(&["*.yaml"], &[], &[]).unwrap();
    let err = unpack(&[Symlink("evil", "/etc"), File("a.yaml", b"")], &only_yaml, Limits::default()).unwrap_err();
    assert!(matches!(err, UnpackError::LinkEscapes { .. }), "{err:?}");
}

#[test]
fn does_not_write_through_links() {
    let err = all(&[Symlink("d", "."), File("d/x", b"1")]).unwrap_err();
    assert!(matches!(err, UnpackError::UnsafePath { ref reason, .. } if reason.contains("link")), "{err:?}");
}

/// Unpack one layer and merge it, as a pull does.
fn merge_one(items: &[tarball::Item]) -> Result<BTreeMap<String, Entry>, UnpackError> {
    let out = tempfile::tempdir().unwrap();
    let staging = Staging::new(&out.path().join("dest")).unwrap();
    let bytes = tar(items);
    let budget = Budget::new(Limits::default());
    let r = unpack_layer(
        &LayerKind::Tar(Compression::None),
        &digest(),
        &bytes[..],
        &staging.layer_dir(0),
        &Selection::all(),
        &budget,
    )?;
    staging.merge(vec![(0, r)])
}

#[test]
fn chained_links_that_escape_are_caught_at_merge() {
    // Each link alone stays inside; followed for real, they leave the root.
    let err = merge_one(&[Symlink("a", "."), Symlink("c", "a/..")]).unwrap_err();
    assert!(matches!(err, UnpackError::LinkEscapes { ref path, .. } if path == "c"), "{err:?}");
    let err = merge_one(&[Dir("sub"), Symlink("sub/a", ".."), Symlink("b", "sub/a/../x")]).unwrap_err();
    assert!(matches!(err, UnpackError::LinkEscapes { ref path, .. } if path == "b"), "{err:?}");
    // links that stay inside are kept
    let ok = merge_one(&[File("conf/a", b"1"), Symlink("current", "conf/a"), Symlink("conf/self", ".")]).unwrap();
    assert_eq!(ok["current"], Entry::Symlink { target: "conf/a".into() });
    let err = merge_one(&[Symlink("dangling", "missing")]).unwrap_err();
    assert!(err.to_string().contains("not in the output"), "{err}");
}

#[test]
fn extension_entries_are_applied_and_bounded() {
    // a long name and a PAX path name the entry after them
    let long = format!("dir/{}", "n".repeat(200));
    let (_d, r) = all(&[LongName(long.as_bytes()), File("short", b"1")]).unwrap();
    assert!(r.entries.contains_key(&long), "{:?}", r.entries.keys());
    let (_d, r) = all(&[Pax(&[("path", b"from/pax.txt"), ("mtime", b"1")]), File("short", b"1")]).unwrap();
    assert_eq!(r.entries.keys().collect::<Vec<_>>(), ["from/pax.txt"]);
    let (_d, r) = all(&[File("a", b"1"), Pax(&[("linkpath", b"a")]), Symlink("l", "x")]).unwrap();
    assert_eq!(r.entries["l"], Entry::Symlink { target: "a".into() });
    // a long name past PATH_MAX is refused without reading it whole
    let huge = vec![b'n'; 64 << 20];
    let err = all(&[LongName(&huge), File("x", b"1")]).unwrap_err();
    assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err:?}");
    let err = all(&[Pax(&[("comment", &vec![b'c'; 100 << 10])]), File("x", b"1")]).unwrap_err();
    assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err:?}");
    // PAX paths get the same checks as any other
    let err = all(&[Pax(&[("path", b"../escape")]), File("fine", b"1")]).unwrap_err();
    assert!(matches!(err, UnpackError::UnsafePath { .. }), "{err:?}");
    // sparse files (GNU or PAX-encoded) are refused: their holes are bytes
    // the stream never carried
    let err = all(&[Sparse("holes", 1 << 40)]).unwrap_err();
    assert!(matches!(err, UnpackError::UnsupportedEntry { .. }), "{err:?}");
    let err = all(&[Pax(&[("GNU.sparse.major", b"1")]), File("x", b"1")]).unwrap_err();
    assert!(matches!(err, UnpackError::UnsupportedEntry { .. }), "{err:?}");
    // a PAX size is the data's length, as Go reads it (files past 8 GiB
    // need it): here it runs into the end-of-archive blocks, as it would
    // for containerd
    let (_d, r) = all(&[Pax(&[("size", b"999")]), File("x", b"1")]).unwrap();
    assert!(matches!(r.entries["x"], Entry::File { size: 999, .. }), "{:?}", r.entries);
    let err = all(&[Pax(&[("size", b"9999")]), File("x", b"1")]).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err:?}");
    // an extension with nothing after it
    let err = all(&[File("x", b"1"), LongName(b"orphan")]).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err:?}");
}

#[test]
fn metadata_is_charged() {
    // many long names hit a fixed bound on what the report holds, whatever
    // the file count allows
    let b = Budget::new(Limits::default());
    assert!(b.charge_metadata(40 << 20).is_ok());
    assert!(matches!(b.charge_metadata(30 << 20), Err(UnpackError::LimitExceeded { limit: "path bytes", .. })));
}

#[test]
fn limits_stop_bombs_and_file_floods() {
    let bomb = [Zeros("zeros", 64 << 20)];
    let small = Limits { max_total_bytes: 8 << 20, ..Limits::default() };
    let err = unpack(&bomb, &Selection::all(), small).unwrap_err();
    assert!(matches!(err, UnpackError::LimitExceeded { limit: "total unpacked bytes", .. }), "{err:?}");
    // unselected bytes still count: they are decompressed all the same
    let none = Selection::new(&["nothing"], &[], &[]).unwrap();
    assert!(unpack(&bomb, &none, small).is_err());
    let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
    let items: Vec<_> = names.iter().map(|n| File(n, b"x")).collect();
    let err = unpack(&items, &Selection::all(), Limits { max_files: 10, ..Limits::default() }).unwrap_err();
    assert!(matches!(err, UnpackError::LimitExceeded { limit: "file count", max: 10 }), "{err:?}");
}

#[test]
fn selection_skips_while_streaming() {
    let sel = Selection::new(&["conf/**"], &["**/*.bak"], &[]).unwrap();
    let (dir, r) =
        unpack(&[File("conf/a", b"1"), File("conf/b.bak", b"2"), File("readme", b"3")], &sel, Limits::default())
            .unwrap();
    assert_eq!(r.entries.keys().collect::<Vec<_>>(), ["conf/a"]);
    assert!(!dir.path().join("readme").exists() && !dir.path().join("conf/b.bak").exists());
}

#[test]
fn corrupt_streams_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let budget = Budget::new(Limits::default());
    let err = unpack_layer(
        &LayerKind::Tar(Compression::Gzip),
        &digest(),
        &b"not gzip at all"[..],
        dir.path(),
        &Selection::all(),
        &budget,
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { format: "tar archive", .. }), "{err:?}");
    let zst = tarball::zstd(&tar(&[File("z", b"zstd!")]));
    let r =
        unpack_layer(&LayerKind::Tar(Compression::Zstd), &digest(), &zst[..], dir.path(), &Selection::all(), &budget)
            .unwrap();
    assert_eq!(fs::read(dir.path().join("z")).unwrap(), b"zstd!");
    assert_eq!(r.entries.len(), 1);
}

#[test]
fn merge_later_layers_win_and_whiteouts_delete() {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("old"), b"previous sync").unwrap();
    let staging = Staging::new(&dest).unwrap();
    let layers = [
        tar(&[File("a", b"1"), File("d/x", b"1"), File("d/y", b"1"), File("keep/z", b"1"), File("f", b"file")]),
        tar(&[
            File("a", b"2"),
            File(".wh.keep", b""),
            File("d/.wh..wh..opq", b""),
            File("d/new", b"2"),
            File("f/now-a-dir", b"2"),
        ]),
    ];
    let mut reports = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let budget = Budget::new(Limits::default());
        reports.push((
            i,
            unpack_layer(
                &LayerKind::Tar(Compression::None),
                &digest(),
                &l[..],
                &staging.layer_dir(i),
                &Selection::all(),
                &budget,
            )
            .unwrap(),
        ));
    }
    let merged = staging.merge(reports).unwrap();
    let files: BTreeMap<&str, Vec<u8>> =
        merged.keys().map(|k| (k.as_str(), fs::read(staging.root().join(k)).unwrap())).collect();
    assert_eq!(files.keys().copied().collect::<Vec<_>>(), ["a", "d/new", "f/now-a-dir"]);
    assert_eq!(files["a"], b"2");
    assert!(fs::read(dest.join("old")).is_ok(), "destination untouched before commit");
    staging.commit().unwrap();
    assert!(!dest.join("old").exists());
    assert_eq!(fs::read(dest.join("d/new")).unwrap(), b"2");
    let leftovers: Vec<_> = fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["dest"], "staging removed after commit");
}

#[test]
fn dropped_staging_leaves_the_destination_alone() {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("old"), b"keep me").unwrap();
    {
        let staging = Staging::new(&dest).unwrap();
        let l = tar(&[File("new", b"x")]);
        unpack_layer(
            &LayerKind::Tar(Compression::None),
            &digest(),
            &l[..],
            &staging.layer_dir(0),
            &Selection::all(),
            &Budget::new(Limits::default()),
        )
        .unwrap();
    }
    assert_eq!(fs::read(dest.join("old")).unwrap(), b"keep me");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 1);
}

fn unzstd(layer: &[u8]) -> Result<(tempfile::TempDir, LayerReport), UnpackError> {
    let dir = tempfile::tempdir().unwrap();
    let budget = Budget::new(Limits::default());
    let r = unpack_layer(&LayerKind::Tar(Compression::Zstd), &digest(), layer, dir.path(), &Selection::all(), &budget)?;
    Ok((dir, r))
}

/// A zstd frame of `data` whose header declares a `2^log` window, as a
/// streaming producer (no pledged size) writes it.
fn zstd_frame(data: &[u8], log: u32) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(log)).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// RFC 8878 §3.1.2: magic 0x184D2A5?, a 4-byte length, then bytes every
/// decoder skips. zstd:chunked keeps its table of contents in two of them.
fn skippable(content: &[u8]) -> Vec<u8> {
    [&[0x50, 0x2a, 0x4d, 0x18][..], &(content.len() as u32).to_le_bytes(), content].concat()
}

#[test]
fn zstd_skippable_frames_anywhere_and_many_frames() {
    let t = tar(&[File("a", b"first"), File("b", b"second")]);
    let (head, tail) = t.split_at(1024);
    let layer =
        [skippable(b"lead"), zstd_frame(head, 20), skippable(b"middle"), zstd_frame(tail, 20), skippable(&[0; 40])]
            .concat();
    let (dir, r) = unzstd(&layer).unwrap();
    assert_eq!(r.entries.len(), 2);
    assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"second");
    // a tar without its end-of-archive blocks, so the decoder reads on to
    // the end of the stream, where a skippable frame is last
    let unterminated = &t[..t.len() - 1024];
    let (dir, _) = unzstd(&[zstd_frame(unterminated, 20), skippable(&[7; 40])].concat()).unwrap();
    assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"second");
}

#[test]
fn zstd_windows_up_to_128_mib_and_not_past() {
    let t = tar(&[File("w", b"window")]);
    // skopeo's zstd:chunked declares 32 MiB; zstd --long=27 128 MiB
    for log in [25, 27] {
        let (dir, _) = unzstd(&zstd_frame(&t, log)).unwrap();
        assert_eq!(fs::read(dir.path().join("w")).unwrap(), b"window", "window log {log}");
    }
    let err = unzstd(&zstd_frame(&t, 28)).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("memory"), "{err}");
}

fn unpack_kind(kind: &LayerKind, layer: &[u8]) -> (tempfile::TempDir, LayerReport) {
    let dir = tempfile::tempdir().unwrap();
    let budget = Budget::new(Limits::default());
    let r = unpack_layer(kind, &digest(), layer, dir.path(), &Selection::all(), &budget).unwrap();
    (dir, r)
}

#[test]
fn real_producers_layers_hold_the_source_files_and_no_metadata() {
    use crate::unpack::layer::classify;
    use crate::unpack::toc::Format;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/unpack/toc/testdata");
    let (_d, source) = unpack_kind(&LayerKind::Tar(Compression::None), &fs::read(data.join("source.tar")).unwrap());
    assert!(source.entries.contains_key("etc/app.yaml") && source.toc.is_none());
    for (name, c, toc) in [
        ("estargz", Compression::Gzip, Some(Format::Estargz)),
        ("estargz-zstd-chunked", Compression::Zstd, Some(Format::ZstdChunked)),
        ("skopeo-zstd-chunked", Compression::Zstd, Some(Format::ZstdChunked)),
        ("skopeo-zstd", Compression::Zstd, None),
        ("skopeo-gzip", Compression::Gzip, None),
    ] {
        let blob = fs::read(data.join(format!("{name}.blob"))).unwrap();
        let desc: crate::oci::manifest::Descriptor =
            serde_json::from_slice(&fs::read(data.join(format!("{name}.json"))).unwrap()).unwrap();
        let declared = classify(&desc).unwrap();
        // by the annotations, and by the footer alone (a copy that lost them)
        for kind in [declared, LayerKind::Tar(c)] {
            let (dir, r) = unpack_kind(&kind, &blob);
            assert_eq!(r.entries, source.entries, "{name} as {kind:?}");
            assert_eq!(r.toc, toc, "{name} as {kind:?}");
            for meta in crate::unpack::toc::METADATA_ENTRIES {
                assert!(!dir.path().join(meta).exists(), "{name}: {meta}");
            }
        }
    }
    // a plain tar may hold a file of that name: it is the user's
    let (_d, r) = all(&[File("stargz.index.json", b"{}"), File(".prefetch.landmark", b"x")]).unwrap();
    assert_eq!(r.entries.len(), 2);
}
