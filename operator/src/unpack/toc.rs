//! eStargz and zstd:chunked: layers that carry a table of contents (TOC)
//! naming each file's compressed chunks, so a reader can fetch one file with
//! a range request. Here: how a layer says it has one (annotations, footer),
//! where the TOC lies, and the TOC itself, checked against everything a tar
//! entry is checked against. Pure; the streaming unpack uses the footer and
//! the metadata names, ranged reads use the rest.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::archive::{Archive, Kind};
use super::path::{resolve_link_target, sanitize};
use crate::oci::Digest;

/// containerd's stargz-snapshotter: the digest of the uncompressed TOC JSON.
pub(crate) const ESTARGZ_TOC_DIGEST: &str = "containerd.io/snapshot/stargz/toc.digest";
/// containers/storage, current names first; skopeo 1.9 and stargz-snapshotter
/// write the older `io.containers.*` ones.
const CHUNKED_CHECKSUM: [&str; 2] =
    ["io.github.containers.zstd-chunked.manifest-checksum", "io.containers.zstd-chunked.manifest-checksum"];
const CHUNKED_POSITION: [&str; 2] =
    ["io.github.containers.zstd-chunked.manifest-position", "io.containers.zstd-chunked.manifest-position"];

/// Entries that describe the layer, not the user's files: never published
/// from a layer with a TOC.
pub(crate) const METADATA_ENTRIES: [&str; 3] = ["stargz.index.json", ".prefetch.landmark", ".no.prefetch.landmark"];

/// containers/storage refuses larger TOCs; so does ocisync.
pub(crate) const MAX_TOC_BYTES: u64 = 50 << 20;
/// More entries than a TOC of `MAX_TOC_BYTES` could reasonably name.
const MAX_TOC_ENTRIES: usize = 1_000_000;
/// The longest footer: zstd:chunked v2's 64 bytes in a skippable frame.
pub(crate) const MAX_FOOTER: usize = 72;

const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
const CHUNKED_MAGIC: &[u8; 8] = b"GnUlInUx";

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum TocError {
    #[error("annotation {key}: {message}")]
    Annotation { key: &'static str, message: String },
    #[error("the table of contents is {0}")]
    Invalid(String),
    #[error("the table of contents does not match its digest: the descriptor says {expected}, it is {actual}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("the table of contents is over {MAX_TOC_BYTES} bytes")]
    TooLarge,
    /// A name or link the tar reader would refuse as unsafe.
    #[error("the table of contents names {path:?}: {reason}")]
    Unsafe { path: String, reason: String },
}

fn invalid(m: impl Into<String>) -> TocError {
    TocError::Invalid(m.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Format {
    /// gzip members, the TOC in a member of its own before a 51-byte footer.
    Estargz,
    /// zstd frames, the TOC in a skippable frame before a skippable footer.
    ZstdChunked,
}

impl Format {
    /// What a refusal calls such a layer.
    pub(crate) fn layer_name(self) -> &'static str {
        match self {
            Format::Estargz => "eStargz layer",
            Format::ZstdChunked => "zstd:chunked layer",
        }
    }
}

/// Where a zstd:chunked TOC lies, as its annotation or footer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) offset: u64,
    pub(crate) length: u64,
    pub(crate) uncompressed: u64,
}

/// What a descriptor's annotations say of its TOC.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Declared {
    None,
    /// The digest of the TOC JSON.
    Estargz {
        toc: Digest,
    },
    /// The digest of the compressed TOC and where it is; stargz-snapshotter's
    /// variant also names its JSON's digest.
    ZstdChunked {
        checksum: Digest,
        position: Position,
        estargz_toc: Option<Digest>,
    },
}

impl Declared {
    pub(crate) fn format(&self) -> Option<Format> {
        match self {
            Declared::None => None,
            Declared::Estargz { .. } => Some(Format::Estargz),
            Declared::ZstdChunked { .. } => Some(Format::ZstdChunked),
        }
    }
}

pub(crate) fn declared(annotations: &BTreeMap<String, String>) -> Result<Declared, TocError> {
    let find = |keys: [&'static str; 2]| keys.into_iter().find_map(|k| annotations.get(k).map(|v| (k, v)));
    let digest =
        |key: &'static str, v: &str| Digest::parse(v).map_err(|e| TocError::Annotation { key, message: e.to_string() });
    let estargz = annotations.get(ESTARGZ_TOC_DIGEST).map(|v| digest(ESTARGZ_TOC_DIGEST, v)).transpose()?;
    match (find(CHUNKED_CHECKSUM), find(CHUNKED_POSITION)) {
        (Some((ck, c)), Some((pk, p))) => Ok(Declared::ZstdChunked {
            checksum: digest(ck, c)?,
            position: position(p).map_err(|message| TocError::Annotation { key: pk, message })?,
            estargz_toc: estargz,
        }),
        (Some((key, _)), None) | (None, Some((key, _))) => {
            Err(TocError::Annotation { key, message: "comes without its checksum or position".into() })
        }
        (None, None) => Ok(estargz.map_or(Declared::None, |toc| Declared::Estargz { toc })),
    }
}

/// `offset:length:uncompressed:type`; type 1 is the only one written.
fn position(v: &str) -> Result<Position, String> {
    let n: Vec<u64> =
        v.split(':').map(|p| p.parse::<u64>()).collect::<Result<_, _>>().map_err(|_| "not four numbers")?;
    match n[..] {
        [offset, length, uncompressed, 1] => Ok(Position { offset, length, uncompressed }),
        [_, _, _, t] => Err(format!("manifest type {t}, where only 1 is known")),
        _ => Err("not four numbers".into()),
    }
}

/// What a layer's last bytes say of its TOC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Footer {
    /// The TOC's gzip member starts here and runs to the footer.
    Estargz {
        toc_offset: u64,
        footer_len: u64,
    },
    ZstdChunked {
        toc: Position,
        footer_len: u64,
    },
}

impl Footer {
    pub(crate) fn format(&self) -> Format {
        match self {
            Footer::Estargz { .. } => Format::Estargz,
            Footer::ZstdChunked { .. } => Format::ZstdChunked,
        }
    }
}

/// The footer at the end of `tail` (a blob's last bytes), if there is one.
pub(crate) fn footer(tail: &[u8]) -> Option<Footer> {
    let last = |n: usize| tail.len().checked_sub(n).map(|s| &tail[s..]);
    let le = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0xff; 8]));
    for n in [72, 48] {
        let Some(f) = last(n) else { continue };
        let data = &f[8..];
        if f[..4] == SKIPPABLE_MAGIC
            && usize::try_from(u32::from_le_bytes([f[4], f[5], f[6], f[7]])).ok() == Some(n - 8)
            && data.ends_with(CHUNKED_MAGIC)
            && le(&data[24..32]) == 1
        {
            let toc = Position { offset: le(&data[..8]), length: le(&data[8..16]), uncompressed: le(&data[16..24]) };
            return Some(Footer::ZstdChunked { toc, footer_len: n as u64 });
        }
    }
    // An empty gzip member whose extra field is "%016xSTARGZ": the TOC's
    // offset. eStargz puts it in a subfield ('S','G'); legacy stargz does not.
    for (n, extra_at, xlen) in [(51usize, 16usize, 26u16), (47, 12, 22)] {
        let Some(f) = last(n) else { continue };
        if f[..4] != [0x1f, 0x8b, 0x08, 0x04] || f[10..12] != xlen.to_le_bytes() {
            continue;
        }
        if n == 51 && f[12..16] != [b'S', b'G', 22, 0] {
            continue;
        }
        let extra = &f[extra_at..extra_at + 22];
        if &extra[16..] != b"STARGZ" || f[n - 8..] != [0; 8] {
            continue;
        }
        let hex = std::str::from_utf8(&extra[..16]).ok()?;
        let toc_offset = u64::from_str_radix(hex, 16).ok()?;
        return Some(Footer::Estargz { toc_offset, footer_len: n as u64 });
    }
    None
}

/// The TOC JSON from the bytes where the footer or annotation says it is:
/// an eStargz TOC member (gzip of a tar holding `stargz.index.json`) or a
/// zstd:chunked skippable frame's content (one zstd frame). Bounded by
/// `MAX_TOC_BYTES` whatever the bytes claim.
pub(crate) fn toc_json(format: Format, region: &[u8]) -> Result<Vec<u8>, TocError> {
    let mut json = Vec::new();
    let limit = MAX_TOC_BYTES + 1;
    match format {
        Format::Estargz => {
            let gz = flate2::read::GzDecoder::new(region);
            let mut tar = Archive::new(gz.take(MAX_TOC_BYTES + 4096));
            let h = tar
                .next_entry()
                .map_err(|e| invalid(format!("not a tar member: {e}")))?
                .ok_or_else(|| invalid("an empty tar member"))?;
            if h.kind != Kind::File || h.path != METADATA_ENTRIES[0].as_bytes() {
                return Err(invalid(format!("a member holding {:?}", String::from_utf8_lossy(&h.path))));
            }
            (&mut tar).take(limit).read_to_end(&mut json).map_err(|e| invalid(e.to_string()))?;
        }
        Format::ZstdChunked => {
            let frames = super::window::Frames::new(region);
            let mut d = zstd::stream::read::Decoder::new(frames).map_err(|e| invalid(e.to_string()))?;
            d.window_log_max(super::window::MAX_WINDOW_LOG).map_err(|e| invalid(e.to_string()))?;
            d.take(limit).read_to_end(&mut json).map_err(|e| invalid(format!("not a zstd frame: {e}")))?;
        }
    }
    if json.len() as u64 > MAX_TOC_BYTES {
        return Err(TocError::TooLarge);
    }
    Ok(json)
}

/// Checks `bytes` against the digest a descriptor named.
pub(crate) fn check_digest(bytes: &[u8], expected: &Digest) -> Result<(), TocError> {
    let actual = Digest::of(bytes);
    if &actual != expected {
        return Err(TocError::Mismatch { expected: expected.clone(), actual });
    }
    Ok(())
}

/// The TOC as written: eStargz's JTOC and containers/storage's TOC share
/// these fields (zstd:chunked adds `endOffset` and `chunkType`).
#[derive(Deserialize)]
struct RawToc {
    version: u32,
    #[serde(default)]
    entries: Vec<RawEntry>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawEntry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    size: i64,
    link_name: String,
    mode: i64,
    offset: i64,
    end_offset: i64,
    digest: String,
    chunk_offset: i64,
    chunk_size: i64,
    chunk_digest: String,
    chunk_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TocKind {
    File {
        digest: Option<Digest>,
        executable: bool,
        chunks: Vec<Chunk>,
    },
    Symlink {
        target: String,
    },
    HardLink {
        target: String,
    },
    /// A character or block device or a FIFO: kept so that a reader refuses
    /// the layer as it refuses such a tar entry.
    Device(&'static str),
}

/// One compressed chunk of a file: `[offset, end)` of the blob inflates to
/// `size` bytes at `file_offset` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) offset: u64,
    pub(crate) end: u64,
    pub(crate) file_offset: u64,
    pub(crate) size: u64,
    pub(crate) digest: Option<Digest>,
    /// The TOC names this chunk's end (containers/storage does): its bytes
    /// then inflate to its `size` and nothing more. Otherwise it ends where
    /// the next begins, and what follows its content (eStargz's tar padding
    /// and next header, in the same member or frame) is read past.
    pub(crate) exact: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TocEntry {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) kind: TocKind,
}

/// The TOC's files, links and the chunks of each file, in blob order,
/// checked: names by the tar rules, links inside the tree, chunks inside
/// `data_end` (where the TOC starts), in order, not overlapping, and adding
/// up to their file's size. Directories are not kept; devices are, for the
/// caller to refuse as in a tar.
pub(crate) fn parse(json: &[u8], data_end: u64) -> Result<Vec<TocEntry>, TocError> {
    if json.len() as u64 > MAX_TOC_BYTES {
        return Err(TocError::TooLarge);
    }
    let raw: RawToc = serde_json::from_slice(json).map_err(|e| invalid(format!("not a TOC: {e}")))?;
    if raw.version != 1 {
        return Err(invalid(format!("version {}, where only 1 is known", raw.version)));
    }
    if raw.entries.len() > MAX_TOC_ENTRIES {
        return Err(invalid(format!("over {MAX_TOC_ENTRIES} entries")));
    }
    let mut out: Vec<TocEntry> = Vec::new();
    // the blob offset the next chunk may start at
    let mut next_offset = 0u64;
    for e in raw.entries {
        let n = |v: i64, what: &str| u64::try_from(v).map_err(|_| invalid(format!("{:?}: a negative {what}", e.name)));
        let (offset, end_offset, size) = (n(e.offset, "offset")?, n(e.end_offset, "endOffset")?, n(e.size, "size")?);
        let (chunk_offset, chunk_size) = (n(e.chunk_offset, "chunkOffset")?, n(e.chunk_size, "chunkSize")?);
        let digest = |v: &str| match v {
            "" => Ok(None),
            d => Digest::parse(d).map(Some).map_err(|err| invalid(format!("{:?}: {err}", e.name))),
        };
        if e.kind == "chunk" {
            // continues the file before it
            let Some(TocEntry { path, size: file_size, kind: TocKind::File { chunks, .. } }) = out.last_mut() else {
                return Err(invalid(format!("{:?}: a chunk with no file before it", e.name)));
            };
            let expected = chunks.last().map_or(0, |c| c.file_offset + c.size);
            if sanitize(e.name.as_bytes()).ok().flatten().as_deref() != Some(path.as_str()) || chunk_offset != expected
            {
                return Err(invalid(format!("{:?}: a chunk out of order", e.name)));
            }
            let size = if chunk_size == 0 { file_size.saturating_sub(chunk_offset) } else { chunk_size };
            if !e.chunk_type.is_empty() {
                return Err(invalid(format!("{:?}: chunk type {:?}", e.name, e.chunk_type)));
            }
            // containers/storage puts the end of a file's last chunk on the
            // file's entry, and none on its chunks: that end moves along to
            // the newest chunk, and the one before ends where it begins
            let inherited = chunks.last_mut().map_or(0, |c| {
                c.exact = false;
                std::mem::take(&mut c.end)
            });
            let end = if end_offset != 0 { end_offset } else { inherited };
            push_chunk(chunks, &mut next_offset, offset, end, chunk_offset, size, digest(&e.chunk_digest)?)?;
            continue;
        }
        let shown = e.name.clone();
        let path = match sanitize(e.name.as_bytes()) {
            Ok(Some(p)) => p,
            Ok(None) if e.kind == "dir" => continue,
            Ok(None) => return Err(invalid(format!("{shown:?}: a {} naming the root", e.kind))),
            Err(reason) => return Err(TocError::Unsafe { path: shown, reason: reason.to_string() }),
        };
        let kind = match e.kind.as_str() {
            "dir" => continue,
            "char" => TocKind::Device("character device"),
            "block" => TocKind::Device("block device"),
            "fifo" => TocKind::Device("FIFO"),
            "reg" => {
                if !e.chunk_type.is_empty() {
                    return Err(invalid(format!("{shown:?}: chunk type {:?}", e.chunk_type)));
                }
                let mut chunks = Vec::new();
                if size > 0 {
                    if chunk_offset != 0 {
                        return Err(invalid(format!("{shown:?}: a file whose first chunk is not at 0")));
                    }
                    let first = if chunk_size == 0 { size } else { chunk_size };
                    push_chunk(&mut chunks, &mut next_offset, offset, end_offset, 0, first, digest(&e.chunk_digest)?)?;
                }
                TocKind::File { digest: digest(&e.digest)?, executable: e.mode & 0o111 != 0, chunks }
            }
            "symlink" => {
                resolve_link_target(&path, &e.link_name).ok_or_else(|| TocError::Unsafe {
                    path: shown.clone(),
                    reason: format!("a link out of the tree ({:?})", e.link_name),
                })?;
                TocKind::Symlink { target: e.link_name }
            }
            "hardlink" => {
                let target = sanitize(e.link_name.as_bytes()).ok().flatten().ok_or_else(|| TocError::Unsafe {
                    path: shown.clone(),
                    reason: "a hard link out of the tree".into(),
                })?;
                TocKind::HardLink { target }
            }
            other => return Err(invalid(format!("{shown:?}: unknown type {other:?}"))),
        };
        out.push(TocEntry { path, size, kind });
    }
    // each chunk ends where the next begins (eStargz names no end), the
    // last where the TOC does
    let mut ends: Vec<&mut Chunk> = out
        .iter_mut()
        .flat_map(|e| if let TocKind::File { chunks, .. } = &mut e.kind { chunks.iter_mut().collect() } else { vec![] })
        .collect();
    let starts: Vec<u64> = ends.iter().skip(1).map(|c| c.offset).chain([data_end]).collect();
    for (c, next) in ends.iter_mut().zip(starts) {
        if c.end == 0 {
            c.end = next;
        }
        if c.end > next || c.end <= c.offset {
            return Err(invalid(format!("a chunk at {} that runs past the next one or the data", c.offset)));
        }
    }
    for e in &out {
        if let TocKind::File { chunks, .. } = &e.kind
            && chunks.last().map_or(0, |c| c.file_offset + c.size) != e.size
        {
            return Err(invalid(format!("{:?}: chunks that do not add up to its size", e.path)));
        }
    }
    Ok(out)
}

fn push_chunk(
    chunks: &mut Vec<Chunk>,
    next_offset: &mut u64,
    offset: u64,
    end: u64,
    file_offset: u64,
    size: u64,
    digest: Option<Digest>,
) -> Result<(), TocError> {
    if offset < *next_offset || size == 0 || (end != 0 && end <= offset) {
        return Err(invalid(format!("a chunk at {offset} that overlaps the one before it or is empty")));
    }
    *next_offset = offset + 1;
    chunks.push(Chunk { offset, end, file_offset, size, digest, exact: end != 0 });
    Ok(())
}

#[cfg(test)]
#[path = "toc/tests.rs"]
pub(crate) mod tests;
