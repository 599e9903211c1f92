//! Hand-written header bytes: the cases here are the ones no well-behaved
//! writer makes (GNU tar's own output is read in tests/it/layers.rs).

use super::*;

#[derive(Clone, Copy)]
enum Magic {
    Gnu,
    Ustar,
    V7,
}

/// One header block, checksummed.
fn block(name: &[u8], typeflag: u8, size: u64, link: &[u8], magic: Magic) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    b[100..107].copy_from_slice(b"0000644");
    b[108..115].copy_from_slice(b"0000000");
    b[116..123].copy_from_slice(b"0000000");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link);
    match magic {
        Magic::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
        Magic::Ustar => {
            b[257..265].copy_from_slice(b"ustar\x0000");
            b[329..336].copy_from_slice(b"0000000");
            b[337..344].copy_from_slice(b"0000000");
        }
        Magic::V7 => {}
    }
    checksum(&mut b);
    b
}

fn checksum(b: &mut [u8]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

fn data(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

fn file(name: &str, content: &[u8]) -> Vec<u8> {
    [block(name.as_bytes(), b'0', content.len() as u64, b"", Magic::Ustar), data(content)].concat()
}

fn pax_record(k: &str, v: &[u8]) -> Vec<u8> {
    let body = [format!(" {k}=").as_bytes(), v, b"\n"].concat();
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    [len.to_string().as_bytes(), &body].concat()
}

fn pax(typeflag: u8, records: &[u8]) -> Vec<u8> {
    [block(b"PaxHeaders/x", typeflag, records.len() as u64, b"", Magic::Ustar), data(records)].concat()
}

fn end() -> Vec<u8> {
    vec![0u8; 2 * BLOCK]
}

/// An entry's kind, path, link target and data.
type Got = (Kind, String, String, Vec<u8>);

/// Every entry with its data, or the error.
fn read(archive: &[u8]) -> Result<Vec<Got>, TarError> {
    let mut a = Archive::new(archive);
    let mut out = Vec::new();
    while let Some(h) = a.next_entry()? {
        let mut content = Vec::new();
        a.read_to_end(&mut content)?;
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        out.push((h.kind, s(&h.path), s(&h.link), content));
    }
    Ok(out)
}

fn names(archive: &[u8]) -> Vec<String> {
    read(archive).unwrap().into_iter().map(|(_, n, _, _)| n).collect()
}

#[test]
fn v7_directory_with_a_size_has_no_data() {
    // Before: read as a file whose content was the next header, and the
    // entries after it lost.
    let archive = [block(b"conf/", b'\0', 1024, b"", Magic::V7), file("conf/app.yaml", b"port: 80\n"), end()].concat();
    let got = read(&archive).unwrap();
    assert_eq!(got[0].0, Kind::Dir);
    assert_eq!((got[1].1.as_str(), got[1].3.as_slice()), ("conf/app.yaml", &b"port: 80\n"[..]));
    // with type '0' readers disagree on whether data follows: refused,
    // unless the size is zero, where they all agree
    let ambiguous = [block(b"conf/", b'0', 1024, b"", Magic::Ustar), file("x", b"1"), end()].concat();
    assert!(matches!(read(&ambiguous), Err(TarError::Ambiguous(_))));
    let empty = [block(b"conf/", b'0', 0, b"", Magic::Ustar), file("x", b"1"), end()].concat();
    assert_eq!(read(&empty).unwrap()[0].0, Kind::Dir);
}

#[test]
fn header_only_entries_carry_no_data_whatever_their_size() {
    for typeflag in [b'1', b'2', b'5'] {
        let archive = [block(b"l", typeflag, 700, b"target", Magic::Ustar), file("after", b"ok"), end()].concat();
        let got = read(&archive).unwrap();
        assert_eq!(got.len(), 2, "type {}", typeflag as char);
        assert!(got[0].3.is_empty());
        assert_eq!((got[1].1.as_str(), got[1].3.as_slice()), ("after", &b"ok"[..]));
    }
}

#[test]
fn pax_records_are_split_by_their_length() {
    // a binary xattr value holding a newline, as GNU tar writes for
    // security.capability: accepted
    let cap = b"\x01\x00\x00\x02\n\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let records = [pax_record("SCHILY.xattr.security.capability", cap), pax_record("path", b"bin/ping")].concat();
    let archive = [pax(b'x', &records), file("short", b"#!"), end()].concat();
    assert_eq!(names(&archive), ["bin/ping"]);
    // a record hidden inside another's value is the value, as Go and
    // libarchive read it: it names nothing
    let smuggled = pax_record("comment", b"x\n22 path=etc/shadow\n");
    let archive = [pax(b'x', &smuggled), file("innocent", b"1"), end()].concat();
    assert_eq!(names(&archive), ["innocent"]);
    // an empty value keeps the header's field
    let archive = [pax(b'x', &pax_record("path", b"")), file("kept", b"1"), end()].concat();
    assert_eq!(names(&archive), ["kept"]);
    // a global header's path names nothing (containerd ignores it too)
    let archive = [pax(b'g', &pax_record("path", b"global")), file("own", b"1"), end()].concat();
    assert_eq!(names(&archive), ["own"]);
}

#[test]
fn malformed_pax_headers_are_refused() {
    let cases: &[&[u8]] = &[
        b"12 path=abc",    // no newline
        b"99 path=abc\n",  // length past the header
        b"3 a\n",          // length under 5
        b"x9 path=ab\n",   // not a number
        b"9 pathab\n",     // no '='
        b"7 =abc\n",       // empty key
        b"11 path=a\0b\n", // NUL in a name
        b"10 size=-1\n",   // negative size
    ];
    for records in cases {
        let archive = [pax(b'x', records), file("x", b"1"), end()].concat();
        assert!(matches!(read(&archive), Err(TarError::Malformed(_))), "{:?}", String::from_utf8_lossy(records));
    }
}

#[test]
fn gnu_long_names_end_at_the_first_nul() {
    let long = b"dir/a-long-name\0garbage after the NUL";
    let archive = [
        block(b"././@LongLink", b'L', long.len() as u64, b"", Magic::Gnu),
        data(long),
        block(b"short", b'0', 1, b"", Magic::Gnu),
        data(b"1"),
        end(),
    ]
    .concat();
    assert_eq!(names(&archive), ["dir/a-long-name"]);
}

#[test]
fn ambiguous_extensions_are_refused() {
    let long = b"gnu/name";
    let both = [
        pax(b'x', &pax_record("path", b"pax/name")),
        block(b"././@LongLink", b'L', long.len() as u64, b"", Magic::Gnu),
        data(long),
        file("x", b"1"),
        end(),
    ]
    .concat();
    assert!(matches!(read(&both), Err(TarError::Ambiguous(_))));
    let twice =
        [pax(b'x', &pax_record("path", b"a")), pax(b'x', &pax_record("path", b"b")), file("x", b"1"), end()].concat();
    assert!(matches!(read(&twice), Err(TarError::Ambiguous(_))));
    // Go forgets a PAX header that a global one follows; libarchive does not
    let global_between =
        [pax(b'x', &pax_record("path", b"a")), pax(b'g', &pax_record("comment", b"g")), file("x", b"1"), end()]
            .concat();
    assert!(matches!(read(&global_between), Err(TarError::Ambiguous(_))));
}

#[test]
fn names_prefixes_and_numbers() {
    // USTAR joins its prefix; GNU has none (its times live there)
    let mut b = block(b"name", b'0', 0, b"", Magic::Ustar);
    b[345..351].copy_from_slice(b"prefix");
    checksum(&mut b);
    assert_eq!(names(&[b, end()].concat()), ["prefix/name"]);
    // base-256 sizes (GNU, for files past 8 GiB)
    let mut b = block(b"big", b'0', 0, b"", Magic::Gnu);
    b[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    checksum(&mut b);
    let got = read(&[b, data(b"abc"), end()].concat()).unwrap();
    assert_eq!(got[0].3, b"abc");
    // old signed checksums are accepted
    let mut b = block("é".as_bytes(), b'0', 0, b"", Magic::Ustar);
    b[148..156].fill(b' ');
    let signed: i32 = b.iter().map(|&c| i32::from(c as i8)).sum();
    b[148..155].copy_from_slice(format!("{signed:06o}\0").as_bytes());
    assert_eq!(names(&[b, end()].concat()), ["é"]);
}

#[test]
fn what_is_not_a_tar_is_refused() {
    let mut bad_sum = block(b"x", b'0', 0, b"", Magic::Ustar);
    bad_sum[0] = b'y';
    let mut bad_size = block(b"x", b'0', 0, b"", Magic::Ustar);
    bad_size[124..136].copy_from_slice(b"00000000009\0");
    checksum(&mut bad_size);
    let zero_then_header = [vec![0u8; BLOCK], file("x", b"1")].concat();
    let cut = file("x", &[7u8; 600])[..700].to_vec();
    for archive in [bad_sum, bad_size, zero_then_header, cut, vec![1u8; 100]] {
        assert!(matches!(read(&archive), Err(TarError::Malformed(_) | TarError::Io(_))), "{archive:?}");
    }
    let unknown = [block(b"label", b'V', 0, b"", Magic::Gnu), end()].concat();
    assert!(matches!(read(&unknown), Err(TarError::Unsupported { .. })));
    // an extension header bigger than any name or attribute set is not held
    let huge = block(b"././@LongLink", b'L', 1 << 30, b"", Magic::Gnu);
    assert!(matches!(read(&huge), Err(TarError::TooLong { .. })));
    // the end of the stream on a block boundary ends the archive (as in Go),
    // and nothing after the end-of-archive marker is read
    assert_eq!(names(&file("x", b"1")), ["x"]);
    assert_eq!(names(&[file("x", b"1"), end(), vec![0xff; 7]].concat()), ["x"]);
}
