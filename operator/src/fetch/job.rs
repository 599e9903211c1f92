//! One layer's download and unpack, in one pass: the download task hashes
//! the bytes and hands them through a small bounded channel to a blocking
//! thread that decompresses and writes. With a blob cache, the bytes come
//! from it when it holds the digest (hashed again on the way), and a
//! download is written to it as it streams, kept only once it verified.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::cache::BlobCache;
use super::partial::reuse::Previous;
use super::partial::{self, Outcome};
use super::sources::{Mirror, blob_from_mirrors};
use super::{FetchError, LayerRead, Progress, Read as How, task};
use crate::oci::{Digest, RegistryError};
use crate::unpack::layer::LayerKind;
use crate::unpack::{self, Budget, LayerPlan, LayerReport, Selection};

pub(super) struct LayerJob {
    pub(super) origin: Arc<Mirror>,
    pub(super) mirrors: Vec<Arc<Mirror>>,
    pub(super) plan: LayerPlan,
    pub(super) dir: PathBuf,
    pub(super) selection: Arc<Selection>,
    pub(super) budget: Arc<Budget>,
    pub(super) progress: Option<Arc<dyn Progress>>,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) cache: Option<Arc<BlobCache>>,
    /// Read only the selected files' chunks when the layer has a TOC.
    pub(super) partial: bool,
    /// Content published before, whose files a ranged read takes instead
    /// of fetching them when they are what the TOC says.
    pub(super) previous: Option<Arc<dyn Previous>>,
}

/// Where a layer's bytes come from.
enum Source {
    Registry(reqwest::Response, Arc<Mirror>),
    Cache(PathBuf),
}

impl LayerJob {
    pub(super) async fn run(self) -> Result<(usize, LayerReport, LayerRead), FetchError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        let desc = &self.plan.descriptor;
        let mut read = LayerRead {
            digest: desc.digest.clone(),
            read: How::Whole,
            reason: None,
            requests: 0,
            bytes: 0,
            from_cache: false,
            files_fetched: 0,
            files_reused: 0,
            bytes_reused: 0,
        };
        let cache = self.cache.clone().filter(|c| c.fits(desc.size));
        let cached = || cache.as_ref().and_then(|c| c.get(&desc.digest));
        // Readers of a cached blob go at once; on a miss, one sync fetches
        // the digest while the others wait for it, then read the cache.
        let mut hit = cached();
        let fetching = match (&cache, &hit) {
            (Some(c), None) => Some(c.lock(&desc.digest).await),
            _ => None,
        };
        if fetching.is_some() {
            hit = cached();
        }
        // Ranged reads go to the first mirror that answers, else the
        // origin; a layer already in the cache is read from it, whole.
        let (mut whole, mut before) = (None, partial::Ranges::default());
        if let (LayerKind::Indexed(_, format), true, None) = (&self.plan.kind, self.partial, &hit) {
            match partial::read(&self, *format).await.map_err(|e| self.through_mirrors(e))? {
                Outcome::Read(report, cost, files) => {
                    read.read = How::Ranges;
                    (read.requests, read.bytes) = (cost.requests, cost.bytes);
                    (read.files_fetched, read.files_reused) = (files.fetched, files.reused);
                    read.bytes_reused = files.bytes_reused;
                    if let Some(p) = &self.progress {
                        // the bar counts the layer; the rest is not needed
                        p.advance(desc.size.saturating_sub(cost.bytes));
                    }
                    return Ok((self.plan.index, report, read));
                }
                Outcome::Whole { reason, response, cost } => {
                    read.reason = Some(reason);
                    (whole, before) = (response, cost);
                }
            }
        }
        let source = match (hit, whole) {
            (Some(path), _) => Source::Cache(path),
            (None, Some((r, from))) => Source::Registry(r, from),
            (None, None) => match blob_from_mirrors(&self.mirrors, desc).await {
                Some((m, r)) => Source::Registry(r, m),
                None => {
                    Source::Registry(self.origin.client.blob(&self.origin.repository, desc).await?, self.origin.clone())
                }
            },
        };
        let from_cache = matches!(source, Source::Cache(_));
        read.from_cache = from_cache;
        // Two chunks in flight per layer. hyper hands out chunks of up to
        // ~400 KiB, so a deeper queue costs megabytes per layer and, measured
        // on the 256 MiB bench, is no faster.
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let (kind, digest, dir) = (self.plan.kind.clone(), desc.digest.clone(), self.dir.clone());
        let (selection, budget) = (self.selection.clone(), self.budget.clone());
        let unpacker = tokio::task::spawn_blocking(move || {
            unpack::unpack_layer(&kind, &digest, ChannelReader::new(rx), &dir, &selection, &budget)
        });
        let downloaded = self.download(source, cache.as_ref(), tx).await;
        if from_cache && downloaded.is_err() {
            // Not what its name says (a disk error, tampering): dropped, and
            // the next attempt downloads it.
            if let Some(c) = &cache {
                c.evict(&desc.digest);
            }
        }
        let unpacked = unpacker.await.map_err(task)?;
        // A bad download explains a failed unpack better than the unpack does.
        let received = downloaded?;
        // the TOC read before deciding on the whole layer counts too
        (read.requests, read.bytes) = (before.requests, before.bytes);
        if !from_cache {
            read.requests = read.requests.saturating_add(1);
            read.bytes = read.bytes.saturating_add(received);
        }
        let unpacked = unpacked?;
        let files = unpacked.entries.values().filter(|e| matches!(e, unpack::Entry::File { .. })).count();
        read.files_fetched = u32::try_from(files).unwrap_or(u32::MAX);
        Ok((self.plan.index, unpacked, read))
    }

    /// A ranged read through mirrors whose TOC or chunks were not what the
    /// manifest's digests say may be the mirror's doing: said as a registry
    /// error, so that the pull is done once more from the origin alone,
    /// whose answer decides.
    fn through_mirrors(&self, e: FetchError) -> FetchError {
        match e {
            FetchError::Unpack(u @ (unpack::UnpackError::Mismatch { .. } | unpack::UnpackError::Corrupt { .. }))
                if !self.mirrors.is_empty() =>
            {
                RegistryError::Protocol(format!("read by range through mirrors: {u}")).into()
            }
            e => e,
        }
    }

    /// Stream the blob to the unpacker, hashing as it goes. When the unpacker
    /// stops early (the tar ended, or it failed) the rest is still read and
    /// hashed: the digest decides whether its verdict stands.
    async fn download(
        &self,
        source: Source,
        cache: Option<&Arc<BlobCache>>,
        tx: mpsc::Sender<Bytes>,
    ) -> Result<u64, FetchError> {
        let desc = &self.plan.descriptor;
        let what = || format!("layer {}", desc.digest);
        let mut tx = Some(tx);
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let (mut body, mut keep, from) = match source {
            Source::Registry(r, from) => {
                let keep = match cache.and_then(|c| Some((c, c.reserve(desc.size)?))) {
                    Some((c, room)) => Keep::open(c.temp(), room).await,
                    None => None,
                };
                (r.bytes_stream().map(|c| c.map_err(|e| crate::oci::error::chain(&e))).boxed(), keep, Some(from))
            }
            Source::Cache(path) => (file_chunks(path).await.map_err(|e| FetchError::from(io(&what(), e)))?, None, None),
        };
        while let Some(chunk) = body.next().await {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(FetchError::Cancelled);
            }
            let chunk = chunk.map_err(|message| RegistryError::Interrupted { what: what(), message })?;
            received += chunk.len() as u64;
            if received > desc.size {
                return Err(RegistryError::SizeMismatch { what: what(), expected: desc.size, actual: received }.into());
            }
            hasher.update(&chunk);
            if let Some(m) = &from {
                m.client.observe_blob_bytes(chunk.len() as u64);
            }
            if let Some(k) = &mut keep
                && !k.write(&chunk).await
            {
                keep = None;
            }
            if let Some(p) = &self.progress {
                p.advance(chunk.len() as u64);
            }
            if let Some(t) = &tx
                && t.send(chunk).await.is_err()
            {
                tx = None;
            }
        }
        // what a mirror served wrongly is said to be the mirror's
        let what = || match &from {
            Some(m) if !Arc::ptr_eq(m, &self.origin) => format!("{} from mirror {}", what(), m.url),
            _ => what(),
        };
        if received != desc.size {
            return Err(RegistryError::SizeMismatch { what: what(), expected: desc.size, actual: received }.into());
        }
        let actual = Digest::from_hasher(hasher);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch { what: what(), expected: desc.digest.clone(), actual }.into());
        }
        if let (Some(k), Some(c)) = (keep.take(), cache) {
            k.into_cache(c, &desc.digest, received).await;
        }
        if let Some(m) = &from {
            m.served_layer(received);
        }
        Ok(received)
    }
}

fn io(what: &str, e: std::io::Error) -> RegistryError {
    RegistryError::Interrupted { what: what.to_string(), message: format!("reading the blob cache: {e}") }
}

type Chunks = futures::stream::BoxStream<'static, Result<Bytes, String>>;

/// A cached blob as a stream of chunks.
async fn file_chunks(path: PathBuf) -> std::io::Result<Chunks> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path).await?;
    Ok(futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 << 10];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(format!("reading the blob cache: {e}")), None)),
        }
    })
    .boxed())
}

/// A download being written to the cache; removed unless it verified.
struct Keep {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    kept: bool,
    /// Its room in the cache, held until it is an entry or gone.
    _room: super::cache::Reservation,
}

impl Keep {
    async fn open(path: PathBuf, room: super::cache::Reservation) -> Option<Keep> {
        let file = tokio::fs::File::create(&path).await.ok()?;
        Some(Keep { path, file: Some(file), kept: false, _room: room })
    }

    /// `false` when the cache cannot take it (disk full): the download
    /// goes on without it.
    async fn write(&mut self, chunk: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt as _;
        match &mut self.file {
            Some(f) => f.write_all(chunk).await.is_ok(),
            None => false,
        }
    }

    async fn into_cache(mut self, cache: &BlobCache, digest: &Digest, size: u64) {
        use tokio::io::AsyncWriteExt as _;
        if let Some(mut f) = self.file.take()
            && f.flush().await.is_ok()
        {
            drop(f);
            cache.insert(digest, &self.path, size);
            self.kept = true;
        }
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The blocking side of the channel, as a `Read`.
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    pub(super) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader { rx, cur: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}
