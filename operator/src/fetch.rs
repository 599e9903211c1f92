//! The path every driver follows: resolve a reference to a digest, fetch the
//! manifest and layers by that digest, unpack the selected files into a
//! staging tree, and commit it. `ocisync pull` and the controller both drive
//! this.
//!
//! Each layer is one pass: the download task hashes the bytes and hands them
//! through a small bounded channel to a blocking thread that decompresses
//! and writes. Nothing holds a whole layer in memory, and nothing is
//! committed until every digest, size and limit has checked out.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::oci::client::verify_manifest;
use crate::oci::{Digest, ImageManifest, Manifest, Platform, Reference, RegistryClient, RegistryError};
use crate::unpack::{self, Budget, Entry, LayerPlan, LayerReport, Limits, Selection, Staging, UnpackError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("{0} is an index inside an index, which is not supported")]
    NestedIndex(Digest),
    #[error("internal task failed: {0}")]
    Task(String),
    #[error("cancelled because another layer failed")]
    Cancelled,
}

/// What went wrong, in the words a status condition or an exit code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    NotFound,
    Unauthorized,
    Unreachable,
    DigestMismatch,
    LimitExceeded,
    UnsafeContent,
    Unsupported,
    RegistryError,
    Internal,
}

impl FetchError {
    pub fn reason(&self) -> Reason {
        use RegistryError as R;
        use UnpackError as U;
        match self {
            FetchError::Registry(e) => match e {
                R::NotFound { .. } => Reason::NotFound,
                R::Unauthorized { .. } | R::Denied { .. } => Reason::Unauthorized,
                R::Unreachable { .. } | R::Interrupted { .. } => Reason::Unreachable,
                R::DigestMismatch { .. } | R::SizeMismatch { .. } => Reason::DigestMismatch,
                R::TooLarge { .. } => Reason::LimitExceeded,
                R::Manifest(_) => Reason::Unsupported,
                R::Status { .. } | R::Protocol(_) => Reason::RegistryError,
                R::Config(_) => Reason::Internal,
            },
            FetchError::Unpack(e) => match e {
                U::UnsafePath { .. } | U::LinkEscapes { .. } | U::UnsupportedEntry { .. } => Reason::UnsafeContent,
                U::LimitExceeded { .. } => Reason::LimitExceeded,
                U::UnsupportedLayer { .. } | U::Corrupt { .. } => Reason::Unsupported,
                U::Io { .. } => Reason::Internal,
            },
            FetchError::NestedIndex(_) => Reason::Unsupported,
            FetchError::Task(_) | FetchError::Cancelled => Reason::Internal,
        }
    }
}

/// A reference pinned to content: the digest it resolved to and the image
/// manifest whose layers are the files.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub reference: Reference,
    /// What the reference names: an index's digest when it is an index.
    pub digest: Digest,
    /// The image manifest taken; differs from `digest` for an index.
    pub manifest_digest: Digest,
    /// The platform chosen from an index.
    pub platform: Option<Platform>,
    pub manifest: ImageManifest,
}

/// The digest a reference names right now: a pinned digest as is, a tag by
/// one HEAD (a GET only when the registry omits the digest header).
pub async fn resolve_digest(client: &RegistryClient, reference: &Reference) -> Result<Digest, FetchError> {
    match &reference.digest {
        Some(d) => Ok(d.clone()),
        None => Ok(client.resolve(&reference.repository, &reference.manifest_ref()).await?.digest),
    }
}

/// Resolve and fetch the manifest (and for an index, the one for `platform`),
/// each checked against its digest.
pub async fn resolve(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Result<Resolution, FetchError> {
    let repo = &reference.repository;
    let (digest, manifest) = match &reference.digest {
        Some(d) => (d.clone(), client.manifest(repo, d).await?.0),
        None => {
            let r = client.resolve(repo, &reference.manifest_ref()).await?;
            let m = match r.manifest {
                Some((bytes, ct)) => verify_manifest(&r.digest, &bytes, ct.as_deref())?,
                None => client.manifest(repo, &r.digest).await?.0,
            };
            (r.digest, m)
        }
    };
    match manifest {
        Manifest::Image(m) => Ok(Resolution {
            reference: reference.clone(),
            manifest_digest: digest.clone(),
            digest,
            platform: None,
            manifest: *m,
        }),
        Manifest::Index(index) => {
            let entry = index.select(platform).map_err(RegistryError::from)?;
            let chosen = entry.platform.clone();
            match client.manifest(repo, &entry.digest).await?.0 {
                Manifest::Image(m) => Ok(Resolution {
                    reference: reference.clone(),
                    digest,
                    manifest_digest: entry.digest.clone(),
                    platform: chosen,
                    manifest: *m,
                }),
                Manifest::Index(_) => Err(FetchError::NestedIndex(entry.digest.clone())),
            }
        }
    }
}

/// Told how many bytes a pull will download, and as they arrive.
pub trait Progress: Send + Sync {
    fn start(&self, total_bytes: u64);
    fn advance(&self, bytes: u64);
}

#[derive(Clone)]
pub struct PullOptions {
    pub selection: Selection,
    pub limits: Limits,
    /// Layers fetched at once.
    pub concurrency: usize,
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        // Four layers at once keep two cores busy to the end of a pull
        // while costing well under a MiB each.
        PullOptions { selection: Selection::all(), limits: Limits::default(), concurrency: 4, progress: None }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullReport {
    pub files: Vec<FileReport>,
    /// Bytes of file content in the output.
    pub bytes: u64,
    pub layers_fetched: usize,
    pub layers_skipped: usize,
}

/// Fetch the resolved manifest's selected files into `out`, replacing it
/// whole and atomically; on any error `out` is as it was.
pub async fn pull(
    client: Arc<RegistryClient>,
    res: &Resolution,
    opts: &PullOptions,
    out: &Path,
) -> Result<PullReport, FetchError> {
    let plans = unpack::layer::plan(&res.manifest.layers, &opts.selection)?;
    let budget = Arc::new(Budget::new(opts.limits));
    for p in &plans {
        budget.check_layer_size(p.descriptor.size)?;
    }
    if let Some(pr) = &opts.progress {
        pr.start(plans.iter().map(|p| p.descriptor.size).sum());
    }
    let staging = {
        let out = out.to_path_buf();
        tokio::task::spawn_blocking(move || Staging::new(&out)).await.map_err(task)??
    };
    let layers_fetched = plans.len();
    let layers_skipped = res.manifest.layers.len() - layers_fetched;

    let cancel = Arc::new(AtomicBool::new(false));
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let selection = Arc::new(opts.selection.clone());
    let mut tasks = JoinSet::new();
    for plan in plans {
        let layer = LayerJob {
            client: client.clone(),
            repository: res.reference.repository.clone(),
            dir: staging.layer_dir(plan.index),
            plan,
            selection: selection.clone(),
            budget: budget.clone(),
            progress: opts.progress.clone(),
            cancel: cancel.clone(),
        };
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(task)?;
            layer.run().await
        });
    }
    let mut reports = Vec::new();
    let mut failure: Option<FetchError> = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(task).and_then(|r| r) {
            Ok(r) => reports.push(r),
            Err(e) => {
                cancel.store(true, Ordering::Relaxed);
                // The first real error explains the failure; the others
                // were only cancelled because of it.
                if failure.as_ref().is_none_or(|f| matches!(f, FetchError::Cancelled)) {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        // Removing a large staging tree is blocking work; keep it off the
        // runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(staging)).await;
        return Err(e);
    }
    reports.sort_by_key(|(i, _)| *i);
    let merged = tokio::task::spawn_blocking(move || -> Result<_, UnpackError> {
        let merged = staging.merge(reports)?;
        staging.commit()?;
        Ok(merged)
    })
    .await
    .map_err(task)??;

    let files: Vec<FileReport> = merged.into_iter().map(|(path, entry)| FileReport { path, entry }).collect();
    let bytes = files.iter().map(|f| if let Entry::File { size, .. } = f.entry { size } else { 0 }).sum();
    Ok(PullReport { files, bytes, layers_fetched, layers_skipped })
}

fn task(e: impl std::fmt::Display) -> FetchError {
    FetchError::Task(e.to_string())
}

struct LayerJob {
    client: Arc<RegistryClient>,
    repository: String,
    plan: LayerPlan,
    dir: PathBuf,
    selection: Arc<Selection>,
    budget: Arc<Budget>,
    progress: Option<Arc<dyn Progress>>,
    cancel: Arc<AtomicBool>,
}

impl LayerJob {
    async fn run(self) -> Result<(usize, LayerReport), FetchError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(FetchError::Cancelled);
        }
        let desc = &self.plan.descriptor;
        let response = self.client.blob(&self.repository, desc).await?;
        // Two chunks in flight per layer. hyper hands out chunks of up to
        // ~400 KiB, so a deeper queue costs megabytes per layer and, measured
        // on the 256 MiB bench, is no faster.
        let (tx, rx) = mpsc::channel::<Bytes>(2);
        let (kind, digest, dir) = (self.plan.kind.clone(), desc.digest.clone(), self.dir.clone());
        let (selection, budget) = (self.selection.clone(), self.budget.clone());
        let unpacker = tokio::task::spawn_blocking(move || {
            unpack::unpack_layer(&kind, &digest, ChannelReader { rx, cur: Bytes::new() }, &dir, &selection, &budget)
        });
        let downloaded = self.download(response, tx).await;
        let unpacked = unpacker.await.map_err(task)?;
        // A bad download explains a failed unpack better than the unpack does.
        downloaded?;
        Ok((self.plan.index, unpacked?))
    }

    /// Stream the blob to the unpacker, hashing as it goes. When the unpacker
    /// stops early (the tar ended, or it failed) the rest is still read and
    /// hashed: the digest decides whether its verdict stands.
    async fn download(&self, response: reqwest::Response, tx: mpsc::Sender<Bytes>) -> Result<(), FetchError> {
        let desc = &self.plan.descriptor;
        let what = || format!("layer {}", desc.digest);
        let mut tx = Some(tx);
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(FetchError::Cancelled);
            }
            let chunk = chunk
                .map_err(|e| RegistryError::Interrupted { what: what(), message: crate::oci::error::chain(&e) })?;
            received += chunk.len() as u64;
            if received > desc.size {
                return Err(RegistryError::SizeMismatch { what: what(), expected: desc.size, actual: received }.into());
            }
            hasher.update(&chunk);
            self.client.observe_blob_bytes(chunk.len() as u64);
            if let Some(p) = &self.progress {
                p.advance(chunk.len() as u64);
            }
            if let Some(t) = &tx
                && t.send(chunk).await.is_err()
            {
                tx = None;
            }
        }
        if received != desc.size {
            return Err(RegistryError::SizeMismatch { what: what(), expected: desc.size, actual: received }.into());
        }
        let actual = Digest::from_hasher(hasher);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch { what: what(), expected: desc.digest.clone(), actual }.into());
        }
        Ok(())
    }
}

/// The blocking side of the channel, as a `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
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
