//! Ranged reads of a layer with a table of contents (eStargz,
//! zstd:chunked): the TOC with at most two requests, checked against the
//! digest the manifest names; then only the chunks of the selected files,
//! each checked against its `chunkDigest` and each file against its
//! `digest`, before the files go through the same rules as a tar's.
//!
//! The layer's own digest is not recomputed on this path: every byte is
//! vouched for by the chain manifest digest → TOC digest → chunk and file
//! digests, the chain containerd's lazy pulling relies on. Whenever that
//! chain is missing, the registry ignores `Range`, or the selection needs
//! most of the layer, the caller reads the whole layer instead, and says why.

mod decode;
pub(crate) mod plan;
pub(crate) mod reuse;

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::cache::TocPlace;
use super::job::{ChannelReader, LayerJob};
use super::sources::Mirror;
use super::{FetchError, task};
use crate::oci::RegistryError;
use crate::oci::range::{Ranged, Span};
use crate::unpack::archive::{Header, Kind};
use crate::unpack::toc::{self, Declared, Footer, Format, TocEntry, TocKind};
use crate::unpack::{LayerReport, UnpackError};
use decode::{Decoder, Wanted};
use plan::Choice;

/// The last bytes asked for first on an eStargz layer: its footer, and
/// with luck its whole TOC, in one request.
const TAIL: u64 = 256 << 10;
/// Chunk requests in flight for one layer.
const IN_FLIGHT: usize = 4;

/// What a layer's read cost, for the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ranges {
    pub(crate) requests: u32,
    pub(crate) bytes: u64,
}

/// Where a ranged read's files came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Files {
    pub(crate) fetched: u32,
    pub(crate) reused: u32,
    pub(crate) bytes_reused: u64,
}

pub(super) enum Outcome {
    Read(LayerReport, Ranges, Files),
    /// Read the whole layer instead, for this reason; with the response
    /// when the registry already sends the whole blob, and what was read
    /// by range before deciding (the TOC).
    Whole {
        reason: String,
        response: Option<(reqwest::Response, Arc<Mirror>)>,
        cost: Ranges,
    },
}

fn whole(reason: impl Into<String>, cost: &Ranges) -> Outcome {
    Outcome::Whole { reason: reason.into(), response: None, cost: cost.clone() }
}

fn ignores_range(response: reqwest::Response, via: &Arc<Mirror>, cost: &Ranges) -> Outcome {
    Outcome::Whole {
        reason: "the registry ignores Range requests".into(),
        response: Some((response, via.clone())),
        cost: cost.clone(),
    }
}

/// A small ranged read, whole in memory (a TOC: at most `MAX_TOC_BYTES`).
enum Got {
    Bytes(Vec<u8>),
    Whole(reqwest::Response),
}

/// A layer's TOC, read by range and checked against the manifest's digest,
/// or why the layer is read whole instead.
pub(super) enum Toc {
    /// The entries, the bytes the TOC took in the blob, and the registry
    /// (a mirror, or the origin) that serves the rest of the read.
    Entries {
        entries: Vec<TocEntry>,
        toc_bytes: u64,
        via: Arc<Mirror>,
    },
    Whole(Outcome),
}

pub(super) async fn read(job: &LayerJob, format: Format) -> Result<Outcome, FetchError> {
    let mut cost = Ranges::default();
    let (entries, toc_bytes, via) = match toc(job, format, &mut cost).await? {
        Toc::Entries { entries, toc_bytes, via } => (entries, toc_bytes, via),
        Toc::Whole(outcome) => return Ok(outcome),
    };
    let scratch = job.dir.with_extension("chunks");
    let made = {
        let scratch = scratch.clone();
        blocking(move || std::fs::create_dir_all(&scratch)).await?
    };
    made.map_err(|e| FetchError::Unpack(UnpackError::io(&scratch)(e)))?;
    let outcome = from_toc(job, &via, format, entries, toc_bytes, &scratch, &mut cost).await;
    let _ = blocking(move || std::fs::remove_dir_all(&scratch)).await;
    outcome
}

/// The TOC with at most two requests, checked, parsed by the tar's rules.
pub(super) async fn toc(job: &LayerJob, format: Format, cost: &mut Ranges) -> Result<Toc, FetchError> {
    let desc = &job.plan.descriptor;
    let corrupt = |message: String| {
        FetchError::Unpack(UnpackError::Corrupt {
            digest: desc.digest.to_string(),
            format: format.layer_name(),
            message,
        })
    };
    let toc_error = |e: toc::TocError| match e {
        toc::TocError::Mismatch { .. } => {
            FetchError::Unpack(UnpackError::Mismatch { digest: desc.digest.to_string(), message: e.to_string() })
        }
        toc::TocError::Unsafe { path, reason } => FetchError::Unpack(UnpackError::UnsafePath { path, reason }),
        e => corrupt(e.to_string()),
    };
    let declared = match toc::declared(&desc.annotations) {
        Err(e) => return Ok(Toc::Whole(whole(format!("its table of contents cannot be checked: {e}"), cost))),
        Ok(Declared::None) => return Ok(Toc::Whole(whole("it declares no table of contents", cost))),
        Ok(d) => d,
    };
    // The blob cache keeps TOCs by the digest this manifest declares: a
    // hit is those bytes again, hashed again; nothing is requested.
    let key = match &declared {
        Declared::ZstdChunked { checksum, .. } => checksum.clone(),
        Declared::Estargz { toc } => toc.clone(),
        Declared::None => return Ok(Toc::Whole(whole("it declares no table of contents", cost))),
    };
    if let Some(c) = job.cache.clone() {
        let (layer, k) = (desc.digest.clone(), key.clone());
        let hit = blocking(move || c.get_toc(&layer, toc::MAX_TOC_BYTES).filter(|(p, _)| p.digest == k)).await?;
        if let Some((place, bytes)) = hit {
            let json = match declared {
                Declared::ZstdChunked { .. } => {
                    blocking(move || toc::toc_json(Format::ZstdChunked, &bytes)).await?.map_err(toc_error)?
                }
                _ => bytes,
            };
            let entries = toc::parse(&json, place.data_end).map_err(toc_error)?;
            let via = job.mirrors.first().unwrap_or(&job.origin).clone();
            return Ok(Toc::Entries { entries, toc_bytes: place.toc_bytes, via });
        }
    }
    let (json, data_end, toc_bytes, kept, via) = match declared {
        Declared::None => return Ok(Toc::Whole(whole("it declares no table of contents", cost))),
        Declared::ZstdChunked { checksum, position, estargz_toc } => {
            let end = position.offset.checked_add(position.length).filter(|&e| e <= desc.size);
            let Some(end) = end.filter(|_| position.offset >= 8 && position.length <= toc::MAX_TOC_BYTES) else {
                return Err(corrupt("its table of contents lies outside the blob, or is too large".into()));
            };
            let (region, via) = match first(job, Span { start: position.offset, end }, cost).await? {
                (Got::Bytes(b), via) => (b, via),
                (Got::Whole(r), via) => return Ok(Toc::Whole(ignores_range(r, &via, cost))),
            };
            toc::check_digest(&region, &checksum).map_err(toc_error)?;
            let kept = region.clone();
            let json = blocking(move || toc::toc_json(Format::ZstdChunked, &region)).await?.map_err(toc_error)?;
            if let Some(d) = estargz_toc {
                toc::check_digest(&json, &d).map_err(toc_error)?;
            }
            // the skippable frame's 8-byte header ends the data
            (json, position.offset - 8, position.length, kept, via)
        }
        Declared::Estargz { toc: digest } => {
            let tail = Span { start: desc.size.saturating_sub(TAIL), end: desc.size };
            let (bytes, via) = match first(job, tail, cost).await? {
                (Got::Bytes(b), via) => (b, via),
                (Got::Whole(r), via) => return Ok(Toc::Whole(ignores_range(r, &via, cost))),
            };
            let last = &bytes[bytes.len().saturating_sub(toc::MAX_FOOTER)..];
            let Some(Footer::Estargz { toc_offset, footer_len }) = toc::footer(last) else {
                return Err(corrupt("it has no eStargz footer".into()));
            };
            let toc_end = desc.size.saturating_sub(footer_len);
            if toc_offset >= toc_end || toc_end - toc_offset > toc::MAX_TOC_BYTES {
                return Err(corrupt(format!("its footer puts the table of contents at {toc_offset}")));
            }
            let in_tail = |from: u64| &bytes[(from - tail.start) as usize..(toc_end - tail.start) as usize];
            let region = if toc_offset >= tail.start {
                in_tail(toc_offset).to_vec()
            } else {
                match get(job, &via, Span { start: toc_offset, end: tail.start }, cost).await? {
                    Got::Bytes(mut head) => {
                        head.extend_from_slice(in_tail(tail.start));
                        head
                    }
                    Got::Whole(r) => return Ok(Toc::Whole(ignores_range(r, &via, cost))),
                }
            };
            let len = region.len() as u64;
            let json = blocking(move || toc::toc_json(Format::Estargz, &region)).await?.map_err(toc_error)?;
            toc::check_digest(&json, &digest).map_err(toc_error)?;
            let kept = json.clone();
            (json, toc_offset, len, kept, via)
        }
    };
    let entries = toc::parse(&json, data_end).map_err(toc_error)?;
    if let Some(c) = job.cache.clone() {
        let (layer, place) = (desc.digest.clone(), TocPlace { digest: key, data_end, toc_bytes });
        blocking(move || c.put_toc(&layer, place, &kept)).await?;
    }
    Ok(Toc::Entries { entries, toc_bytes, via })
}

/// The rest of a ranged read, once the TOC is in: what is already here,
/// what to fetch, then every file through the tar's rules.
async fn from_toc(
    job: &LayerJob,
    via: &Arc<Mirror>,
    format: Format,
    entries: Vec<TocEntry>,
    toc_bytes: u64,
    scratch: &Path,
    cost: &mut Ranges,
) -> Result<Outcome, FetchError> {
    let desc = &job.plan.descriptor;
    let (entries, reused) = match job.previous.clone() {
        None => (entries, reuse::Reused::default()),
        Some(previous) => {
            let selection = job.selection.clone();
            blocking(move || {
                let found = reuse::find(&*previous, &entries, plan::selected(&entries, &selection));
                (entries, found)
            })
            .await?
        }
    };
    let plan = match plan::choose(&entries, &job.selection, &reused.files, desc.size, toc_bytes) {
        Choice::Whole(reason) => return Ok(whole(reason, cost)),
        Choice::Ranges(p) => p,
    };
    chunks(job, via, format, &entries, &plan, scratch, cost).await?;
    // every file fetched and checked, or found here: through the tar's rules
    let (digest, dir, selection, budget) =
        (desc.digest.clone(), job.dir.clone(), job.selection.clone(), job.budget.clone());
    let (s, previous) = (scratch.to_path_buf(), job.previous.clone());
    let fetched: HashSet<usize> = plan.files.iter().copied().collect();
    let kept: HashSet<usize> = plan.reused.iter().copied().collect();
    let report = blocking(move || {
        let items = entries.into_iter().enumerate().map(|(i, e)| {
            let from = match (&previous, fetched.contains(&i), kept.contains(&i)) {
                (_, true, _) => Content::Scratch(&s),
                (Some(p), _, true) => Content::Previous(&**p),
                _ => Content::Nowhere,
            };
            item(i, e, from)
        });
        crate::unpack::unpack_entries(format, &digest, items, &dir, &selection, &budget)
    })
    .await??;
    via.served_layer(cost.bytes);
    let files = Files {
        fetched: u32::try_from(plan.files.len()).unwrap_or(u32::MAX),
        reused: u32::try_from(plan.reused.len()).unwrap_or(u32::MAX),
        bytes_reused: reused.bytes,
    };
    Ok(Outcome::Read(report, cost.clone(), files))
}

/// Fetch and inflate every planned span, several at once, then check each
/// fetched file whole.
async fn chunks(
    job: &LayerJob,
    via: &Arc<Mirror>,
    format: Format,
    entries: &[TocEntry],
    plan: &plan::Plan,
    scratch: &Path,
    cost: &mut Ranges,
) -> Result<(), FetchError> {
    let wanted: Vec<Wanted> = plan
        .files
        .iter()
        .filter_map(|&i| match &entries[i].kind {
            TocKind::File { chunks, .. } => Some(chunks.iter().map(move |c| Wanted { file: i, chunk: c.clone() })),
            _ => None,
        })
        .flatten()
        .collect();
    let wanted = Arc::new(wanted);
    let mut results = futures::stream::iter(plan.spans.iter().copied())
        .map(|span| {
            let wanted = wanted.clone();
            let scratch = scratch.to_path_buf();
            async move { fetch_span(job, via, format, span, wanted, scratch).await }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut failure = None;
    while let Some(r) = results.next().await {
        match r {
            Ok(n) => {
                cost.requests += 1;
                cost.bytes += n;
            }
            Err(e) if failure.is_none() => failure = Some(e),
            Err(_) => {}
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    drop(results);
    // each fetched file is what its TOC entry says, whole
    let dec = Decoder { format, layer: &job.plan.descriptor.digest, scratch, budget: &job.budget };
    for &i in &plan.files {
        let e = &entries[i];
        if let TocKind::File { digest: Some(d), .. } = &e.kind {
            dec.check_file(i, &e.path, e.size, d)?;
        }
    }
    Ok(())
}

/// One span: its bytes streamed to a blocking thread that inflates its chunks.
async fn fetch_span(
    job: &LayerJob,
    via: &Arc<Mirror>,
    format: Format,
    span: Span,
    wanted: Arc<Vec<Wanted>>,
    scratch: std::path::PathBuf,
) -> Result<u64, FetchError> {
    let desc = &job.plan.descriptor;
    let res = match via.client.blob_range(&via.repository, desc, span).await? {
        Ranged::Partial(r) => r,
        Ranged::Whole(_) => {
            return Err(RegistryError::Protocol(format!(
                "blob {}: the registry answered a range with the whole blob after answering others",
                desc.digest
            ))
            .into());
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let (layer, budget) = (desc.digest.clone(), job.budget.clone());
    let inflate = tokio::task::spawn_blocking(move || {
        let mine: Vec<&Wanted> =
            wanted.iter().filter(|w| w.chunk.offset >= span.start && w.chunk.end <= span.end).collect();
        let dec = Decoder { format, layer: &layer, scratch: &scratch, budget: &budget };
        dec.span(span, &mine, ChannelReader::new(rx))
    });
    let got = stream_exactly(job, via, span, res, tx).await;
    let inflated = inflate.await.map_err(task)?;
    let n = got?;
    inflated?;
    Ok(n)
}

/// The body of a `206`, which must be exactly `span.len()` bytes.
async fn stream_exactly(
    job: &LayerJob,
    via: &Mirror,
    span: Span,
    res: reqwest::Response,
    tx: mpsc::Sender<Bytes>,
) -> Result<u64, FetchError> {
    let desc = &job.plan.descriptor;
    let what = || format!("layer {} bytes {}-{}", desc.digest, span.start, span.end.saturating_sub(1));
    let mut body = res.bytes_stream();
    let mut tx = Some(tx);
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        if job.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        let chunk =
            chunk.map_err(|e| RegistryError::Interrupted { what: what(), message: crate::oci::error::chain(&e) })?;
        received += chunk.len() as u64;
        if received > span.len() {
            return Err(RegistryError::SizeMismatch { what: what(), expected: span.len(), actual: received }.into());
        }
        via.client.observe_blob_bytes(chunk.len() as u64);
        if let Some(p) = &job.progress {
            p.advance(chunk.len() as u64);
        }
        if let Some(t) = &tx
            && t.send(chunk).await.is_err()
        {
            tx = None;
        }
    }
    if received != span.len() {
        return Err(RegistryError::SizeMismatch { what: what(), expected: span.len(), actual: received }.into());
    }
    Ok(received)
}

/// A layer's first request, to the mirrors in order, then the origin: the
/// first that answers serves the rest of the read. A mirror that cannot is
/// passed over, as for whole blobs.
async fn first(job: &LayerJob, span: Span, cost: &mut Ranges) -> Result<(Got, Arc<Mirror>), FetchError> {
    for m in &job.mirrors {
        match get(job, m, span, cost).await {
            Ok(got) => return Ok((got, m.clone())),
            Err(FetchError::Registry(e)) => {
                tracing::debug!(mirror = %m.url, error = %e, "mirror cannot serve the range")
            }
            Err(e) => return Err(e),
        }
    }
    Ok((get(job, &job.origin, span, cost).await?, job.origin.clone()))
}

/// A small range (a TOC, the tail) read whole, bounded by the span.
async fn get(job: &LayerJob, via: &Mirror, span: Span, cost: &mut Ranges) -> Result<Got, FetchError> {
    let desc = &job.plan.descriptor;
    let res = match via.client.blob_range(&via.repository, desc, span).await? {
        Ranged::Partial(r) => r,
        Ranged::Whole(r) => return Ok(Got::Whole(r)),
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(2);
    let collect = async {
        let mut out = Vec::with_capacity(usize::try_from(span.len()).unwrap_or(0));
        while let Some(b) = rx.recv().await {
            out.extend_from_slice(&b);
        }
        out
    };
    let (n, out) = tokio::join!(stream_exactly(job, via, span, res, tx), collect);
    let n = n?;
    cost.requests += 1;
    cost.bytes += n;
    Ok(Got::Bytes(out))
}

/// Where a TOC file's content comes from.
enum Content<'a> {
    /// Fetched and checked into the scratch directory.
    Scratch(&'a Path),
    /// Already published: copied from there, checked again on the way.
    Previous(&'a dyn reuse::Previous),
    /// Not selected, or empty.
    Nowhere,
}

/// A TOC entry as the tar reader's entry, with its content.
fn item(index: usize, e: TocEntry, from: Content<'_>) -> Result<(Header, Box<dyn Read>), UnpackError> {
    let empty = || -> Box<dyn Read> { Box::new(std::io::empty()) };
    let header = |kind, link: String, size, mode| Header {
        kind,
        path: e.path.clone().into_bytes(),
        link: link.into_bytes(),
        size,
        mode,
    };
    Ok(match &e.kind {
        TocKind::File { executable, digest, .. } => {
            let h = header(Kind::File, String::new(), e.size, if *executable { 0o755 } else { 0o644 });
            let content: Box<dyn Read> = match (from, digest) {
                (Content::Scratch(scratch), _) if e.size > 0 => {
                    let path = decode::scratch_path(scratch, index);
                    Box::new(std::fs::File::open(&path).map_err(UnpackError::io(&path))?)
                }
                (Content::Previous(previous), Some(d)) if e.size > 0 => {
                    let gone = || UnpackError::io(&e.path)(std::io::Error::other("the published copy is gone"));
                    let r = previous.open(&e.path, e.size).ok_or_else(gone)?;
                    Box::new(reuse::Verified::new(r, &e.path, e.size, d.clone()))
                }
                _ => empty(),
            };
            (h, content)
        }
        TocKind::Symlink { target } => (header(Kind::Symlink, target.clone(), 0, 0o777), empty()),
        TocKind::HardLink { target } => (header(Kind::HardLink, target.clone(), 0, 0o644), empty()),
        TocKind::Device(kind) => {
            let k = match *kind {
                "character device" => Kind::Char,
                "block device" => Kind::Block,
                _ => Kind::Fifo,
            };
            (header(k, String::new(), 0, 0o644), empty())
        }
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, FetchError> {
    tokio::task::spawn_blocking(f).await.map_err(task)
}
