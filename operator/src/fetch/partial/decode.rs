//! The blocking half of a ranged read: one request's bytes in, its chunks
//! inflated into scratch files (one per TOC file, each chunk at its place)
//! and checked against their digests; then each file against its own.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::oci::Digest;
use crate::oci::range::Span;
use crate::unpack::toc::{Chunk, Format};
use crate::unpack::{Budget, UnpackError};

/// A chunk to inflate, and the TOC file it belongs to.
pub(super) struct Wanted {
    pub(super) file: usize,
    pub(super) chunk: Chunk,
}

/// Where the scratch file of TOC entry `file` is.
pub(super) fn scratch_path(scratch: &Path, file: usize) -> PathBuf {
    scratch.join(file.to_string())
}

pub(super) struct Decoder<'a> {
    pub(super) format: Format,
    pub(super) layer: &'a Digest,
    pub(super) scratch: &'a Path,
    pub(super) budget: &'a Budget,
}

impl Decoder<'_> {
    fn corrupt(&self, message: String) -> UnpackError {
        UnpackError::Corrupt { digest: self.layer.to_string(), format: self.format.layer_name(), message }
    }

    /// Inflate the chunks that lie in `span` (sorted, inside it) from `r`,
    /// which yields the span's bytes.
    pub(super) fn span(&self, span: Span, chunks: &[&Wanted], mut r: impl Read) -> Result<(), UnpackError> {
        let mut at = span.start;
        let mut buf = vec![0u8; 64 << 10];
        for w in chunks {
            let c = &w.chunk;
            if c.offset < at || c.end > span.end {
                return Err(self.corrupt(format!("a chunk at {} outside the bytes fetched for it", c.offset)));
            }
            skip(&mut r, c.offset - at).map_err(|e| self.corrupt(format!("reading chunk at {}: {e}", c.offset)))?;
            let mut raw = (&mut r).take(c.end - c.offset);
            self.chunk(w, &mut raw, &mut buf)?;
            // The rest of the chunk's bytes (eStargz's next tar header) are
            // read past, never inflated.
            io::copy(&mut raw, &mut io::sink()).map_err(|e| self.corrupt(e.to_string()))?;
            at = c.end;
        }
        Ok(())
    }

    fn chunk(&self, w: &Wanted, raw: &mut impl Read, buf: &mut [u8]) -> Result<(), UnpackError> {
        let c = &w.chunk;
        let bad = |what: &str| self.corrupt(format!("the chunk at {} {what}", c.offset));
        let mut inflated: Box<dyn Read + '_> = match self.format {
            // One gzip member: eStargz starts each chunk with a new one.
            Format::Estargz => Box::new(flate2::read::GzDecoder::new(raw)),
            Format::ZstdChunked => {
                let mut d = zstd::stream::read::Decoder::new(crate::unpack::window::Frames::new(raw))
                    .map_err(|e| bad(&e.to_string()))?;
                d.window_log_max(crate::unpack::window::MAX_WINDOW_LOG).map_err(|e| bad(&e.to_string()))?;
                Box::new(d)
            }
        };
        let path = scratch_path(self.scratch, w.file);
        let f =
            OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(UnpackError::io(&path))?;
        let mut hasher = Sha256::new();
        let mut done = 0u64;
        while done < c.size {
            let want = usize::try_from((c.size - done).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = match inflated.read(&mut buf[..want]) {
                Ok(0) => return Err(bad(&format!("inflates to {done} bytes, where the TOC says {}", c.size))),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad(&format!("does not inflate: {e}"))),
            };
            self.budget.charge_bytes(n as u64)?;
            hasher.update(&buf[..n]);
            f.write_all_at(&buf[..n], c.file_offset + done).map_err(UnpackError::io(&path))?;
            done += n as u64;
        }
        // A chunk whose end the TOC names is its file's bytes and nothing
        // else (containers/storage ends a frame there); otherwise the member
        // or frame goes on with the tar's padding and next header.
        if self.format == Format::ZstdChunked && c.exact {
            let mut one = [0u8; 1];
            if matches!(inflated.read(&mut one), Ok(n) if n > 0) {
                return Err(bad(&format!("inflates past its {} bytes", c.size)));
            }
        }
        if let Some(d) = &c.digest {
            let actual = Digest::from_hasher(hasher);
            if &actual != d {
                let message = format!("the chunk at {} is not what its chunkDigest says: {actual}, not {d}", c.offset);
                return Err(UnpackError::Mismatch { digest: self.layer.to_string(), message });
            }
        }
        Ok(())
    }

    /// A scratch file is the whole file its TOC entry names.
    pub(super) fn check_file(&self, file: usize, path: &str, size: u64, digest: &Digest) -> Result<(), UnpackError> {
        let full = scratch_path(self.scratch, file);
        let mut hasher = Sha256::new();
        let n = match std::fs::File::open(&full) {
            Ok(mut f) => io::copy(&mut f, &mut hasher).map_err(UnpackError::io(&full))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(UnpackError::io(&full)(e)),
        };
        let actual = Digest::from_hasher(hasher);
        if n != size || &actual != digest {
            let message = format!("{path:?} is not what its TOC digest says ({n} bytes, {actual})");
            return Err(UnpackError::Mismatch { digest: self.layer.to_string(), message });
        }
        Ok(())
    }
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the response ended early"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::Limits;
    use crate::unpack::toc::tests::{fixture, read_toc};
    use crate::unpack::toc::{TocEntry, TocKind};

    const REAL: [(&str, Format); 4] = [
        ("estargz", Format::Estargz),
        ("estargz-zstd-chunked", Format::ZstdChunked),
        ("skopeo-zstd-chunked", Format::ZstdChunked),
        ("skopeo-zstd-chunked-chunks", Format::ZstdChunked),
    ];

    /// Inflate `chunks` of TOC entry `file` one range each, as a ranged read
    /// does, from `blob`.
    fn inflate(dec: &Decoder, blob: &[u8], file: usize, chunks: &[Chunk]) -> Result<(), UnpackError> {
        for c in chunks {
            let span = Span { start: c.offset, end: c.end };
            let w = Wanted { file, chunk: c.clone() };
            dec.span(span, &[&w], &blob[c.offset as usize..c.end as usize])?;
        }
        Ok(())
    }

    fn files(toc: &[TocEntry]) -> impl Iterator<Item = (usize, &TocEntry, &[Chunk], &Digest)> {
        toc.iter().enumerate().filter_map(|(i, e)| match &e.kind {
            TocKind::File { chunks, digest: Some(d), .. } if e.size > 0 => Some((i, e, chunks.as_slice(), d)),
            _ => None,
        })
    }

    #[test]
    fn every_file_of_the_real_producers_layers_decodes_alone() {
        let layer = Digest::of(b"layer");
        for (name, format) in REAL {
            let (blob, _) = fixture(name);
            let toc = read_toc(name);
            let scratch = tempfile::tempdir().unwrap();
            let budget = Budget::new(Limits::default());
            let dec = Decoder { format, layer: &layer, scratch: scratch.path(), budget: &budget };
            let mut n = 0;
            for (i, e, chunks, digest) in files(&toc) {
                inflate(&dec, &blob, i, chunks).unwrap_or_else(|err| panic!("{name} {}: {err}", e.path));
                dec.check_file(i, &e.path, e.size, digest).unwrap_or_else(|err| panic!("{name} {}: {err}", e.path));
                n += 1;
            }
            assert!(n >= 2, "{name}: {n} files");
            let app = toc.iter().position(|e| e.path == "etc/app.yaml").unwrap();
            assert_eq!(std::fs::read(scratch_path(scratch.path(), app)).unwrap(), b"port: 80\n", "{name}");
        }
    }

    /// Every way a chunk can lie, on every real layer: refused, by reason.
    #[test]
    fn lying_chunks_are_refused() {
        let layer = Digest::of(b"layer");
        for (name, format) in REAL {
            let (blob, _) = fixture(name);
            let toc = read_toc(name);
            let (i, e, chunks, digest) = files(&toc)
                .max_by_key(|(_, e, _, _)| e.size)
                .map(|(i, e, c, d)| (i, e, c.to_vec(), d.clone()))
                .unwrap();
            let c = chunks[0].clone();
            let mut cases: Vec<(&str, Vec<u8>, Chunk, &str)> = vec![
                (
                    "a wrong chunk digest",
                    blob.clone(),
                    Chunk { digest: Some(Digest::of(b"x")), ..c.clone() },
                    "chunkDigest",
                ),
                (
                    "a size past what it inflates to",
                    blob.clone(),
                    Chunk { size: c.size + 1, ..c.clone() },
                    "inflates to",
                ),
            ];
            let mut flipped = blob.clone();
            flipped[(c.offset + (c.end - c.offset) / 2) as usize] ^= 0xff;
            cases.push(("a flipped byte", flipped, c.clone(), ""));
            if let Some(exact) = chunks.iter().rfind(|c| c.exact).filter(|_| format == Format::ZstdChunked) {
                // the frame holds more than the TOC says: never written past
                let short = Chunk { size: exact.size - 1, digest: None, ..exact.clone() };
                cases.push(("a size short of what it inflates to", blob.clone(), short, "inflates past"));
            }
            for (what, bytes, chunk, says) in cases {
                let scratch = tempfile::tempdir().unwrap();
                let budget = Budget::new(Limits::default());
                let dec = Decoder { format, layer: &layer, scratch: scratch.path(), budget: &budget };
                let r = inflate(&dec, &bytes, i, std::slice::from_ref(&chunk))
                    .and_then(|()| inflate(&dec, &bytes, i, &chunks[1..]))
                    .and_then(|()| dec.check_file(i, &e.path, e.size, &digest));
                match r {
                    Err(UnpackError::Corrupt { message, .. } | UnpackError::Mismatch { message, .. }) => {
                        assert!(message.contains(says), "{name}, {what}: {message}")
                    }
                    other => panic!("{name}, {what}: {other:?}"),
                }
            }
            // a chunk outside the bytes fetched for it
            let scratch = tempfile::tempdir().unwrap();
            let budget = Budget::new(Limits::default());
            let dec = Decoder { format, layer: &layer, scratch: scratch.path(), budget: &budget };
            let w = Wanted { file: i, chunk: c.clone() };
            let span = Span { start: c.offset + 1, end: c.end };
            let r = dec.span(span, &[&w], &blob[span.start as usize..span.end as usize]);
            assert!(
                matches!(&r, Err(UnpackError::Corrupt { message, .. }) if message.contains("outside")),
                "{name}: {r:?}"
            );
        }
    }

    #[test]
    fn a_chunk_is_charged_to_the_budget() {
        let layer = Digest::of(b"layer");
        let (blob, _) = fixture("skopeo-zstd-chunked-chunks");
        let toc = read_toc("skopeo-zstd-chunked-chunks");
        let (i, _, chunks, _) = files(&toc).find(|(_, e, _, _)| e.path == "data.txt").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let budget = Budget::new(Limits { max_total_bytes: 100_000, ..Limits::default() });
        let dec = Decoder { format: Format::ZstdChunked, layer: &layer, scratch: scratch.path(), budget: &budget };
        let r = inflate(&dec, &blob, i, chunks);
        assert!(matches!(r, Err(UnpackError::LimitExceeded { .. })), "{r:?}");
    }
}
