//! The streaming engine: an image manifest's selected layers, fetched by
//! digest, unpacked into a staging tree, and committed. It does not know
//! where the digest came from (see `resolve`) or where the files go next
//! (see `publish`).
//!
//! Each layer is one pass: the download task hashes the bytes and hands them
//! through a small bounded channel to a blocking thread that decompresses
//! and writes. Nothing holds a whole layer in memory, and nothing is
//! committed until every digest, size and limit has checked out.

pub(crate) mod cache;
mod job;
pub(crate) mod list;
pub(crate) mod partial;
pub(crate) mod sources;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::oci::{Digest, RegistryError};
use crate::resolve::Resolution;
use crate::unpack::{self, Budget, Entry, Limits, Selection, Staging, UnpackError};
use job::LayerJob;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("internal task failed: {0}")]
    Task(String),
    #[error("cancelled because another layer failed")]
    Cancelled,
}

/// Told how many bytes a pull will download, and as they arrive.
pub(crate) trait Progress: Send + Sync {
    fn start(&self, total_bytes: u64);
    fn advance(&self, bytes: u64);
}

#[derive(Clone)]
pub(crate) struct PullOptions {
    pub(crate) selection: Selection,
    pub(crate) limits: Limits,
    /// Layers fetched at once.
    pub(crate) concurrency: usize,
    pub(crate) progress: Option<Arc<dyn Progress>>,
    /// Layers read from, and kept in, a cache shared with other syncs.
    pub(crate) cache: Option<Arc<cache::BlobCache>>,
    /// Registries tried before the origin for what is named by digest.
    pub(crate) mirrors: Vec<Arc<sources::Mirror>>,
    /// Read only the selected files' chunks of layers with a table of
    /// contents, when that is well under the layer (`--no-partial`,
    /// `spec.partial: Never` turn it off).
    pub(crate) partial: bool,
    /// What was published before (`--out`, a volume's current revision, a
    /// ConfigMap): files of a ranged read that are already there, byte for
    /// byte as the TOC says, are taken from it (delta sync).
    pub(crate) previous: Option<Arc<dyn partial::reuse::Previous>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        // Four layers at once keep two cores busy to the end of a pull
        // while costing well under a MiB each.
        PullOptions {
            selection: Selection::all(),
            limits: Limits::default(),
            concurrency: 4,
            progress: None,
            cache: None,
            mirrors: Vec::new(),
            partial: true,
            previous: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileReport {
    pub(crate) path: String,
    #[serde(flatten)]
    pub(crate) entry: Entry,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PullReport {
    pub(crate) files: Vec<FileReport>,
    /// Bytes of file content in the output.
    pub(crate) bytes: u64,
    pub(crate) layers_fetched: usize,
    pub(crate) layers_skipped: usize,
    /// The fetched layers that carry a table of contents (eStargz,
    /// zstd:chunked), in manifest order.
    pub(crate) indexed: Vec<IndexedLayer>,
    /// How each fetched layer was read, in manifest order.
    pub(crate) layers: Vec<LayerRead>,
    /// Bytes that came from registries (ranges and whole layers; not the
    /// cache's).
    pub(crate) registry_bytes: u64,
}

impl PullReport {
    /// Files whose content came from registries (not the blob cache, not
    /// reused).
    pub(crate) fn files_from_registry(&self) -> u32 {
        self.layers.iter().filter(|l| !l.from_cache).map(|l| l.files_fetched).fold(0, u32::saturating_add)
    }

    /// Files taken from what was published before, and their bytes.
    pub(crate) fn reused(&self) -> (u32, u64) {
        self.layers
            .iter()
            .fold((0u32, 0u64), |(f, b), l| (f.saturating_add(l.files_reused), b.saturating_add(l.bytes_reused)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Read {
    /// The whole blob, its digest checked.
    Whole,
    /// Only the selected files' chunks, by range, through the TOC's digests.
    Ranges,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LayerRead {
    pub(crate) digest: Digest,
    pub(crate) read: Read,
    /// Why a layer with a table of contents was read whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Requests to a registry, and the bytes they brought.
    pub(crate) requests: u32,
    pub(crate) bytes: u64,
    pub(crate) from_cache: bool,
    /// Files whose content this read brought (from the registry, or the
    /// blob cache when `fromCache`).
    pub(crate) files_fetched: u32,
    /// Files taken from what was published before, and their bytes.
    pub(crate) files_reused: u32,
    pub(crate) bytes_reused: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct IndexedLayer {
    pub(crate) digest: Digest,
    pub(crate) format: crate::unpack::toc::Format,
}

/// Fetch the resolved manifest's selected files into `out`, replacing it
/// whole and atomically; on any error `out` is as it was.
pub(crate) async fn pull(
    origin: Arc<sources::Mirror>,
    res: &Resolution,
    opts: &PullOptions,
    out: &Path,
) -> Result<PullReport, FetchError> {
    let plans = unpack::layer::plan(&res.manifest.layers, &opts.selection)?;
    let budget = Arc::new(Budget::new(opts.limits));
    for p in &plans {
        budget.check_layer_size(p.descriptor.size)?;
    }
    // Every byte downloaded is hashed and checked against its size, so the
    // descriptors bound the download; what a tar carries after its end is
    // downloaded too, and counts here.
    let download = plans.iter().fold(0u64, |n, p| n.saturating_add(p.descriptor.size));
    budget.check_download(download)?;
    if let Some(pr) = &opts.progress {
        pr.start(download);
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
            origin: origin.clone(),
            mirrors: opts.mirrors.clone(),
            dir: staging.layer_dir(plan.index),
            plan,
            selection: selection.clone(),
            budget: budget.clone(),
            progress: opts.progress.clone(),
            cancel: cancel.clone(),
            cache: opts.cache.clone(),
            partial: opts.partial,
            previous: opts.previous.clone(),
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
    reports.sort_by_key(|(i, _, _)| *i);
    let indexed = reports
        .iter()
        .filter_map(|(i, r, _)| {
            Some(IndexedLayer { digest: res.manifest.layers.get(*i)?.digest.clone(), format: r.toc? })
        })
        .collect();
    let (reports, layers): (Vec<(usize, unpack::LayerReport)>, Vec<LayerRead>) =
        reports.into_iter().map(|(i, r, read)| ((i, r), read)).unzip();
    let registry_bytes = layers.iter().fold(0u64, |n, l| n.saturating_add(l.bytes));
    let merged = tokio::task::spawn_blocking(move || -> Result<_, UnpackError> {
        let merged = staging.merge(reports)?;
        staging.commit()?;
        Ok(merged)
    })
    .await
    .map_err(task)??;

    let files: Vec<FileReport> = merged.into_iter().map(|(path, entry)| FileReport { path, entry }).collect();
    let bytes =
        files.iter().fold(0u64, |n, f| if let Entry::File { size, .. } = f.entry { n.saturating_add(size) } else { n });
    Ok(PullReport { files, bytes, layers_fetched, layers_skipped, indexed, layers, registry_bytes })
}

pub(crate) fn task(e: impl std::fmt::Display) -> FetchError {
    FetchError::Task(e.to_string())
}
