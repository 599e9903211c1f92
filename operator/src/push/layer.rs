//! The packed items as one layer, streamed to a file: plain tar+gzip, or
//! eStargz, which any tar+gzip reader reads too and which adds a table of
//! contents so that each file can be fetched alone (containerd's estargz
//! library's layout: each file's content, chunk by chunk, starts a gzip
//! member of its own; the TOC is the last member, a tar holding
//! `stargz.index.json`; a 51-byte gzip footer names where it starts), or
//! the same library's zstd:chunked (zstd frames for members; the TOC
//! compressed in a skippable frame, and a 40-byte footer in another, which
//! any zstd reader skips).
//!
//! Reproducible: entries in the walk's order, mode 0755/0644, owner 0, time
//! 0, no user names, gzip headers with no time and OS "unknown". The same
//! tree gives the same bytes.

use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::members::Members;
use super::pack::{Item, ItemKind, PackError};
use crate::oci::Digest;

/// Headers alone (directories, links, empty files) past this many bytes in
/// one member start another: members stay small enough to batch.
const MAX_HEADERS: usize = 4 << 20;

const BLOCK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Estargz,
    ZstdChunked,
    TarGzip,
}

/// A written layer: its digest and size, what it inflates to, and for
/// eStargz the TOC's digest.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) diff_id: Digest,
    pub(crate) uncompressed: u64,
    pub(crate) toc: Option<Digest>,
    /// zstd:chunked: the compressed TOC's digest, and where it lies
    /// (`offset:length:uncompressed length:1`), for its annotations.
    pub(crate) zstd_toc: Option<(Digest, String)>,
}

/// Write `items` as a layer in `format` to `to`; eStargz files are cut into
/// chunks of `chunk_size` bytes.
pub(crate) fn write(items: &[Item], format: Format, chunk_size: u64, to: &Path) -> Result<Written, PackError> {
    let io_err = |source| PackError::Io { path: to.to_path_buf(), source };
    let file = File::create(to).map_err(io_err)?;
    let mut m = Members::new(BufWriter::with_capacity(256 << 10, file), format == Format::ZstdChunked);
    let mut toc: Vec<Value> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    // Every format cuts a member before each chunk: eStargz and
    // zstd:chunked to make it fetchable alone, tar+gzip (a multi-member gzip
    // any reader reads) so that members can be compressed on several cores.
    for item in items {
        let (size, mode, link, typeflag) = match &item.kind {
            ItemKind::Dir => (0, 0o755, "", b'5'),
            ItemKind::File { size, executable, .. } => (*size, if *executable { 0o755 } else { 0o644 }, "", b'0'),
            ItemKind::Symlink { target } => (0, 0o777, target.as_str(), b'2'),
        };
        let name = if matches!(item.kind, ItemKind::Dir) { format!("{}/", item.name) } else { item.name.clone() };
        if m.pending() > MAX_HEADERS {
            m.cut().map_err(io_err)?;
        }
        m.write(&header(&name, link, size, mode, typeflag));
        let mut entry = json!({"name": name, "type": match typeflag { b'5' => "dir", b'2' => "symlink", _ => "reg" }, "mode": mode});
        if !link.is_empty() {
            entry["linkName"] = json!(link);
        }
        let ItemKind::File { source, .. } = &item.kind else {
            toc.push(entry);
            continue;
        };
        entry["size"] = json!(size);
        let mut f = File::open(source).map_err(|e| PackError::Io { path: source.clone(), source: e })?;
        let changed = |reason: &str| PackError::Changed { path: source.clone(), reason: reason.into() };
        let mut whole = Sha256::new();
        let mut done = 0u64;
        let mut chunks = Vec::new();
        // An empty file has no content member.
        while done < size {
            let len = chunk_size.min(size - done);
            m.cut().map_err(io_err)?;
            // the member's index: its offset is known once it is written
            let member = m.next_member();
            let mut chunk = Sha256::new();
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let n = f.read(&mut buf[..want]).map_err(|e| PackError::Io { path: source.clone(), source: e })?;
                if n == 0 {
                    return Err(changed("it got shorter"));
                }
                chunk.update(&buf[..n]);
                whole.update(&buf[..n]);
                m.write(&buf[..n]);
                left -= n as u64;
            }
            chunks.push((member, done, len, Digest::from_hasher(chunk)));
            done += len;
        }
        if f.read(&mut buf[..1]).map_err(|e| PackError::Io { path: source.clone(), source: e })? != 0 {
            return Err(changed("it grew"));
        }
        let pad = (BLOCK - (size as usize % BLOCK)) % BLOCK;
        m.write(&buf_zero(pad));
        entry["digest"] = json!(Digest::from_hasher(whole).to_string());
        for (i, (member, chunk_offset, len, digest)) in chunks.into_iter().enumerate() {
            let chunked = size > chunk_size;
            if i == 0 {
                entry["offset"] = json!(member);
                if chunked {
                    entry["chunkSize"] = json!(len);
                }
                entry["chunkDigest"] = json!(digest.to_string());
                toc.push(entry.clone());
            } else {
                let mut c = json!({"name": name, "type": "chunk", "offset": member, "chunkOffset": chunk_offset, "chunkDigest": digest.to_string()});
                if chunk_offset + len < size {
                    c["chunkSize"] = json!(len);
                }
                toc.push(c);
            }
        }
        if size == 0 {
            toc.push(entry);
        }
    }
    // every member written: the TOC's offsets become the members' places
    m.cut().map_err(io_err)?;
    m.flush().map_err(io_err)?;
    for e in &mut toc {
        if let Some(o) = e.get_mut("offset") {
            let at = o.as_u64().and_then(|i| m.start(usize::try_from(i).ok()?));
            *o = json!(at.ok_or_else(|| io_err(io::Error::other("a chunk's member was never written")))?);
        }
    }
    let mut zstd_toc = None;
    let toc_digest = match format {
        Format::ZstdChunked => {
            // the TOC compressed alone in a skippable frame, then the footer
            // in another (the estargz library's zstd:chunked); no tar around it
            let json = serde_json::to_vec_pretty(&json!({"version": 1, "entries": toc}))
                .map_err(|e| io_err(io::Error::other(e)))?;
            let compressed = zstd::stream::encode_all(&json[..], 3).map_err(io_err)?;
            let toc_offset = m.position() + 8;
            m.raw(&skippable(&compressed)).map_err(io_err)?;
            let mut footer = Vec::with_capacity(40);
            for n in [toc_offset, compressed.len() as u64, json.len() as u64, 1] {
                footer.extend(n.to_le_bytes());
            }
            footer.extend([0x47, 0x6e, 0x55, 0x6c, 0x49, 0x6e, 0x55, 0x78]);
            m.raw(&skippable(&footer)).map_err(io_err)?;
            let position = format!("{toc_offset}:{}:{}:1", compressed.len(), json.len());
            zstd_toc = Some((Digest::of(&compressed), position));
            Some(Digest::of(&json))
        }
        Format::Estargz => {
            // the TOC: its own member, a tar of one file and the end of archive
            let toc_offset = m.position();
            let json = serde_json::to_vec_pretty(&json!({"version": 1, "entries": toc}))
                .map_err(|e| io_err(io::Error::other(e)))?;
            m.write(&header("stargz.index.json", "", json.len() as u64, 0o644, b'0'));
            m.write(&json);
            m.write(&buf_zero((BLOCK - json.len() % BLOCK) % BLOCK + 2 * BLOCK));
            m.raw(&footer(toc_offset)).map_err(io_err)?;
            Some(Digest::of(&json))
        }
        Format::TarGzip => {
            m.write(&buf_zero(2 * BLOCK));
            None
        }
    };
    let (w, digest, size, diff_id, uncompressed) = m.finish().map_err(io_err)?;
    w.into_inner().map_err(|e| io_err(e.into_error()))?.sync_all().map_err(io_err)?;
    Ok(Written { digest, size, diff_id, uncompressed, toc: toc_digest, zstd_toc })
}

/// A zstd skippable frame holding `data`.
fn skippable(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x50, 0x2a, 0x4d, 0x18];
    f.extend(u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    f.extend(data);
    f
}

fn buf_zero(n: usize) -> Vec<u8> {
    vec![0u8; n]
}

/// eStargz's footer: an empty gzip member whose extra field says where the
/// TOC starts (51 bytes, as the estargz library writes it).
fn footer(toc_offset: u64) -> Vec<u8> {
    let mut f = vec![0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255, 26, 0, b'S', b'G', 22, 0];
    f.extend(format!("{toc_offset:016x}STARGZ").bytes());
    // an empty stored block, then CRC-32 and size of nothing
    f.extend([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    f
}

/// One ustar header (with a PAX header before it when the name or link does
/// not fit, or the size needs more than 11 octal digits).
fn header(name: &str, link: &str, size: u64, mode: u32, typeflag: u8) -> Vec<u8> {
    let split = split_name(name);
    let mut pax = Vec::new();
    if split.is_none() {
        pax.push(("path", name.to_string()));
    }
    if link.len() > 100 {
        pax.push(("linkpath", link.to_string()));
    }
    if size > 0o777_7777_7777 {
        pax.push(("size", size.to_string()));
    }
    let mut out = Vec::new();
    if !pax.is_empty() {
        let mut records = Vec::new();
        for (k, v) in pax {
            records.extend(pax_record(k, &v));
        }
        out.extend(ustar("PaxHeaders/entry", "", records.len() as u64, 0o644, b'x', ""));
        out.extend(&records);
        out.extend(buf_zero((BLOCK - records.len() % BLOCK) % BLOCK));
    }
    let (prefix, base) = split.unwrap_or(("", ""));
    let shown = if base.is_empty() { &name[..name.len().min(100)] } else { base };
    let link = &link[..link.len().min(100)];
    out.extend(ustar(shown, link, size.min(0o777_7777_7777), mode, typeflag, prefix));
    out
}

/// `name` as ustar's (prefix, name) when it fits: name up to 100 bytes,
/// prefix up to 155, split at a `/`.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    let bytes = name.as_bytes();
    (name.len() - 101..name.len().min(156)).rev().find(|&i| bytes.get(i) == Some(&b'/')).and_then(|i| {
        let (p, n) = (&name[..i], &name[i + 1..]);
        (p.len() <= 155 && !n.is_empty() && n.len() <= 100).then_some((p, n))
    })
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // "<len> key=value\n", where len counts itself
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    format!("{len} {key}={value}\n").into_bytes()
}

fn ustar(name: &str, link: &str, size: u64, mode: u32, typeflag: u8, prefix: &str) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let put = |h: &mut [u8; BLOCK], at: usize, len: usize, s: &[u8]| {
        h[at..at + s.len().min(len)].copy_from_slice(&s[..s.len().min(len)])
    };
    put(&mut h, 0, 100, name.as_bytes());
    put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, 12, b"00000000000\0");
    h[148..156].copy_from_slice(b"        ");
    h[156] = typeflag;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 8, b"ustar\x0000");
    put(&mut h, 345, 155, prefix.as_bytes());
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_changes_while_it_is_packed_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let source = d.path().join("f");
        std::fs::write(&source, b"12345").unwrap();
        let item =
            |size| Item { name: "f".into(), kind: ItemKind::File { source: source.clone(), size, executable: false } };
        for (size, says) in [(9, "got shorter"), (3, "grew")] {
            for format in [Format::Estargz, Format::TarGzip] {
                let e = write(&[item(size)], format, 4, &d.path().join("layer")).unwrap_err().to_string();
                assert!(e.contains(says), "{size} {format:?}: {e}");
            }
        }
        let ok = write(&[item(5)], Format::Estargz, 4, &d.path().join("layer")).unwrap();
        assert_eq!(ok.uncompressed % 512, 0, "whole tar blocks");
        let again = write(&[item(5)], Format::Estargz, 4, &d.path().join("layer2")).unwrap();
        assert_eq!((ok.digest, ok.toc), (again.digest, again.toc), "the same bytes for the same input");
    }

    #[test]
    fn headers_split_long_names_and_fall_back_to_pax() {
        assert_eq!(split_name("a/b"), Some(("", "a/b")));
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        assert_eq!(split_name(&long), Some((&long[..120], &long[121..])));
        assert_eq!(split_name(&"x".repeat(101)), None);
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
        assert_eq!(pax_record("path", &"a".repeat(91)).len(), 101, "the length counts its own digits");
        assert_eq!(footer(0x1234).len(), 51);
    }
}
