use super::*;

/// A fixture layer and the annotations its producer wrote (testdata/README.md).
pub(crate) fn fixture(name: &str) -> (Vec<u8>, BTreeMap<String, String>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/unpack/toc/testdata");
    let blob = std::fs::read(dir.join(format!("{name}.blob"))).unwrap();
    let desc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let annotations = serde_json::from_value(desc["annotations"].clone()).unwrap();
    (blob, annotations)
}

fn tail(blob: &[u8]) -> &[u8] {
    &blob[blob.len().saturating_sub(MAX_FOOTER)..]
}

/// The TOC's entries, found the way a ranged reader finds them: footer,
/// region, digest from the annotations, parse.
pub(crate) fn read_toc(name: &str) -> Vec<TocEntry> {
    let (blob, annotations) = fixture(name);
    let footer = footer(tail(&blob)).unwrap_or_else(|| panic!("{name}: no footer"));
    let len = blob.len() as u64;
    let (region, data_end) = match footer {
        Footer::Estargz { toc_offset, footer_len } => {
            (&blob[toc_offset as usize..(len - footer_len) as usize], toc_offset)
        }
        Footer::ZstdChunked { toc, .. } => {
            // the skippable frame's header is the 8 bytes before the TOC
            (&blob[toc.offset as usize..(toc.offset + toc.length) as usize], toc.offset - 8)
        }
    };
    let json = toc_json(footer.format(), region).unwrap();
    match declared(&annotations).unwrap() {
        Declared::Estargz { toc } => check_digest(&json, &toc).unwrap(),
        Declared::ZstdChunked { checksum, position, estargz_toc } => {
            check_digest(region, &checksum).unwrap();
            assert_eq!(
                Footer::ZstdChunked { toc: position, footer_len: 48 },
                footer,
                "{name}: annotation and footer agree"
            );
            if let Some(toc) = estargz_toc {
                check_digest(&json, &toc).unwrap();
            }
        }
        Declared::None => panic!("{name}: no annotations"),
    }
    parse(&json, data_end).unwrap()
}

fn file<'a>(toc: &'a [TocEntry], path: &str) -> (&'a TocEntry, &'a [Chunk]) {
    let e = toc.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("{path} not in the TOC"));
    match &e.kind {
        TocKind::File { chunks, .. } => (e, chunks),
        k => panic!("{path}: {k:?}"),
    }
}

#[test]
fn reads_what_the_real_producers_write() {
    for name in ["estargz", "estargz-zstd-chunked", "skopeo-zstd-chunked"] {
        let toc = read_toc(name);
        let (app, chunks) = file(&toc, "etc/app.yaml");
        assert_eq!(app.size, 9, "{name}");
        assert_eq!(chunks.len(), 1);
        let TocKind::File { digest: Some(d), executable: false, .. } = &app.kind else { panic!("{name}: {app:?}") };
        assert_eq!(d, &Digest::of(b"port: 80\n"), "{name}");
        let (run, _) = file(&toc, "bin/run");
        assert!(matches!(run.kind, TocKind::File { executable: true, .. }), "{name}");
        let (blob, chunks) = file(&toc, "data/blob.bin");
        assert_eq!(blob.size, 3000);
        // estargz was asked for 1 KiB chunks; skopeo 1.9 cuts by content
        if name.starts_with("estargz") {
            assert_eq!(
                chunks.iter().map(|c| (c.file_offset, c.size)).collect::<Vec<_>>(),
                [(0, 1024), (1024, 1024), (2048, 952)]
            );
            assert!(chunks.iter().all(|c| c.digest.is_some()));
        }
        assert!(chunks.windows(2).all(|w| w[0].end <= w[1].offset));
        let link = toc.iter().find(|e| e.path == "bin/app.yaml").unwrap();
        assert_eq!(link.kind, TocKind::Symlink { target: "../etc/app.yaml".into() }, "{name}");
        let hard = toc.iter().find(|e| e.path == "etc/hard.yaml").unwrap();
        assert_eq!(hard.kind, TocKind::HardLink { target: "etc/app.yaml".into() }, "{name}");
        let (empty, chunks) = file(&toc, "empty");
        assert_eq!((empty.size, chunks.len()), (0, 0));
    }
}

#[test]
fn a_file_cut_into_chunks_by_skopeo_names_its_end_on_the_file() {
    let toc = read_toc("skopeo-zstd-chunked-chunks");
    let (data, chunks) = file(&toc, "data.txt");
    assert_eq!(data.size, 108_000);
    // the file's entry says endOffset 56172, its chunk none: the first chunk
    // ends where the second begins, the second where the file does
    let spans: Vec<_> = chunks.iter().map(|c| (c.offset, c.end, c.file_offset, c.size)).collect();
    assert_eq!(spans, [(98, 33_693, 0, 64_716), (33_693, 56_172, 64_716, 43_284)]);
    let (app, chunks) = file(&toc, "etc/app.yaml");
    assert_eq!((app.size, chunks[0].offset, chunks[0].end), (9, 56_278, 56_300));
}

#[test]
fn annotations_and_footers_say_which_format() {
    let declared_format = |n: &str| declared(&fixture(n).1).unwrap().format();
    let footer_format = |n: &str| footer(tail(&fixture(n).0)).map(|f| f.format());
    assert_eq!(declared_format("estargz"), Some(Format::Estargz));
    assert_eq!(footer_format("estargz"), Some(Format::Estargz));
    for n in ["estargz-zstd-chunked", "skopeo-zstd-chunked"] {
        assert_eq!(declared_format(n), Some(Format::ZstdChunked), "{n}");
        assert_eq!(footer_format(n), Some(Format::ZstdChunked), "{n}");
    }
    for n in ["skopeo-zstd", "skopeo-gzip"] {
        assert_eq!(declared_format(n), None, "{n}");
        assert_eq!(footer_format(n), None, "{n}");
    }
}

#[test]
fn footers_in_every_shape() {
    // zstd:chunked v2 (containers/storage 1.50+): 64 bytes with the tar-split's place
    let mut v2 = SKIPPABLE_MAGIC.to_vec();
    v2.extend(64u32.to_le_bytes());
    for n in [100u64, 20, 50, 1, 200, 30, 60] {
        v2.extend(n.to_le_bytes());
    }
    v2.extend(CHUNKED_MAGIC);
    let toc = Position { offset: 100, length: 20, uncompressed: 50 };
    assert_eq!(footer(&v2), Some(Footer::ZstdChunked { toc, footer_len: 72 }));
    // legacy stargz: the offset straight in the extra field
    let mut legacy = vec![0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 22, 0];
    legacy.extend(b"00000000000004d2STARGZ");
    legacy.extend([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(footer(&legacy), Some(Footer::Estargz { toc_offset: 1234, footer_len: 47 }));
    // near misses
    let mut wrong_type = v2.clone();
    wrong_type[8 + 24] = 2;
    let mut bad_hex = legacy.clone();
    bad_hex[12] = b'g';
    for t in [&wrong_type[..], &bad_hex, &[], &[0x50, 0x2a, 0x4d, 0x18], &v2[1..]] {
        assert_eq!(footer(t), None, "{t:?}");
    }
}

#[test]
fn annotations_are_checked() {
    let a = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let d = format!("sha256:{}", "a".repeat(64));
    assert!(matches!(declared(&a(&[(ESTARGZ_TOC_DIGEST, "sha256:short")])), Err(TocError::Annotation { .. })));
    assert!(matches!(declared(&a(&[(CHUNKED_CHECKSUM[0], &d)])), Err(TocError::Annotation { .. })));
    for bad in ["1:2:3", "1:2:3:2", "a:b:c:d", "-1:2:3:1", "1:2:3:1:5"] {
        let r = declared(&a(&[(CHUNKED_CHECKSUM[1], &d), (CHUNKED_POSITION[1], bad)]));
        assert!(matches!(r, Err(TocError::Annotation { .. })), "{bad}");
    }
    let ok = declared(&a(&[(CHUNKED_CHECKSUM[0], &d), (CHUNKED_POSITION[0], "10:20:30:1")])).unwrap();
    assert!(matches!(
        ok,
        Declared::ZstdChunked { position: Position { offset: 10, length: 20, uncompressed: 30 }, .. }
    ));
}

#[test]
fn hostile_tocs_are_refused() {
    let d = Digest::of(b"x");
    let toc = |entries: &str| format!(r#"{{"version":1,"entries":[{entries}]}}"#);
    let reg = |name: &str, offset: i64, size: i64| {
        format!(r#"{{"name":"{name}","type":"reg","size":{size},"offset":{offset},"digest":"{d}"}}"#)
    };
    let ok = toc(&[reg("a", 10, 5), reg("b", 20, 5)].join(","));
    assert_eq!(parse(ok.as_bytes(), 100).unwrap().len(), 2);
    let cases: Vec<(String, &str)> = vec![
        (toc(&reg("../escape", 10, 5)), "a path out of the tree"),
        (toc(&reg("/etc/passwd", 10, 5)), "an absolute path"),
        (toc(&[reg("a", 20, 5), reg("b", 10, 5)].join(",")), "chunks out of order"),
        (toc(&[reg("a", 10, 5), reg("b", 10, 5)].join(",")), "chunks at one offset"),
        (toc(&reg("a", 100, 5)), "a chunk at the TOC"),
        (toc(&reg("a", -1, 5)), "a negative offset"),
        (toc(&reg("a", 10, -5)), "a negative size"),
        (toc(r#"{"name":"l","type":"symlink","linkName":"../../etc"}"#), "a link out"),
        (toc(r#"{"name":"l","type":"hardlink","linkName":"/etc/passwd"}"#), "a hard link out"),
        (toc(r#"{"name":"x","type":"whiteout"}"#), "an unknown type"),
        (toc(r#"{"name":"x","type":"chunk","offset":10,"chunkOffset":5,"chunkSize":5}"#), "a chunk alone"),
        (
            toc(&[reg("a", 10, 10), r#"{"name":"a","type":"chunk","offset":20,"chunkOffset":3,"chunkSize":7}"#.into()]
                .join(",")),
            "a gap",
        ),
        (
            toc(&[
                r#"{"name":"a","type":"reg","size":10,"offset":10,"chunkSize":5}"#,
                r#"{"name":"b","type":"chunk","offset":20,"chunkOffset":5}"#,
            ]
            .join(",")),
            "a chunk of another file",
        ),
        (toc(r#"{"name":"a","type":"reg","size":10,"offset":10,"chunkSize":5}"#), "chunks short of the size"),
        (toc(r#"{"name":"a","type":"reg","size":10,"offset":10,"endOffset":9}"#), "an end before the start"),
        (toc(r#"{"name":"a","type":"reg","size":10,"offset":10,"digest":"md5:00"}"#), "a bad digest"),
        (toc(r#"{"name":"a","type":"reg","size":10,"offset":10,"chunkType":"zeros"}"#), "holes"),
        (r#"{"version":2,"entries":[]}"#.into(), "an unknown version"),
        ("[".into(), "not JSON"),
    ];
    // names and links the tar reader would refuse are refused as unsafe
    let unsafe_ = ["a path out of the tree", "an absolute path", "a link out", "a hard link out"];
    for (json, what) in cases {
        let r = parse(json.as_bytes(), 100);
        match unsafe_.contains(&what) {
            true => assert!(matches!(r, Err(TocError::Unsafe { .. })), "{what}: {json}: {r:?}"),
            false => assert!(matches!(r, Err(TocError::Invalid(_))), "{what}: {json}: {r:?}"),
        }
    }
    let huge = vec![b' '; MAX_TOC_BYTES as usize + 1];
    assert_eq!(parse(&huge, 100), Err(TocError::TooLarge));
}

#[test]
fn toc_regions_are_bounded_and_checked() {
    let (blob, _) = fixture("estargz");
    assert!(toc_json(Format::Estargz, &blob[..100]).is_err(), "the first member holds a file, not the TOC");
    assert!(toc_json(Format::ZstdChunked, b"not zstd").is_err());
    // a zstd bomb: a frame inflating past the TOC bound is cut there
    let bomb = zstd::encode_all(std::io::repeat(b' ').take(MAX_TOC_BYTES + 10), 19).unwrap();
    assert_eq!(toc_json(Format::ZstdChunked, &bomb), Err(TocError::TooLarge));
    assert!(matches!(check_digest(b"x", &Digest::of(b"y")), Err(TocError::Mismatch { .. })));
}
