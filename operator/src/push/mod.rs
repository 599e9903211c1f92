//! `ocisync push`: files and directories packed into one layer (eStargz by
//! default: any tar+gzip reader reads it, and ocisync and containerd's lazy
//! pullers read each file alone), under an OCI 1.1 manifest with the empty
//! config, uploaded with the registry client the pulls use, then tagged.
//! Blobs the repository already holds are not uploaded again.

pub(crate) mod layer;
mod members;
pub(crate) mod pack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::json;

use crate::oci::{Digest, Reference, RegistryClient, RegistryError};
use crate::status::Reason;
use crate::unpack::Selection;
use crate::unpack::toc::ESTARGZ_TOC_DIGEST;
use layer::{Format, Written};
use pack::PackError;

/// The artifact type when none is asked for.
pub(crate) const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.ocisync.files.v1";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// What the estargz library and containers/storage annotate an eStargz
/// layer with besides its TOC digest.
const UNCOMPRESSED_SIZE: &str = "io.containers.estargz.uncompressed-size";

#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("nothing to push: no file matched")]
    Empty,
    #[error("internal task failed: {0}")]
    Task(String),
}

impl From<&PushError> for Reason {
    fn from(e: &PushError) -> Self {
        match e {
            PushError::Registry(e) => e.into(),
            PushError::Pack(PackError::Refused { .. }) => Reason::UnsafeContent,
            PushError::Pack(PackError::TooMany) => Reason::LimitExceeded,
            PushError::Empty => Reason::NotFound,
            _ => Reason::Internal,
        }
    }
}

pub(crate) struct PushOptions {
    pub(crate) format: Format,
    pub(crate) chunk_size: u64,
    pub(crate) selection: Selection,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) artifact_type: String,
    /// Repositories of the same registry to mount blobs from.
    pub(crate) mount_from: Vec<String>,
}

/// What was pushed.
pub(crate) struct Pushed {
    pub(crate) digest: Digest,
    pub(crate) layer: Written,
    pub(crate) files: usize,
    /// Blobs uploaded, and mounted from another repository (the others
    /// were there already).
    pub(crate) uploaded: Vec<Digest>,
    pub(crate) mounted: Vec<Digest>,
}

/// Pack `inputs` in `scratch` (a private directory), upload, tag.
pub(crate) async fn push(
    client: &RegistryClient,
    reference: &Reference,
    inputs: Vec<PathBuf>,
    opts: PushOptions,
    scratch: &Path,
) -> Result<Pushed, PushError> {
    let blob = scratch.join("layer");
    let (format, chunk_size, selection) = (opts.format, opts.chunk_size, opts.selection.clone());
    let at = blob.clone();
    let (written, files) = tokio::task::spawn_blocking(move || -> Result<_, PushError> {
        let items = pack::walk(&inputs, &selection)?;
        let files = items.iter().filter(|i| matches!(i.kind, pack::ItemKind::File { .. })).count();
        if items.is_empty() {
            return Err(PushError::Empty);
        }
        Ok((layer::write(&items, format, chunk_size, &at)?, files))
    })
    .await
    .map_err(|e| PushError::Task(e.to_string()))??;

    let repo = &reference.repository;
    let (mut uploaded, mut mounted) = (Vec::new(), Vec::new());
    let config = scratch.join("config");
    tokio::fs::write(&config, b"{}").await.map_err(|e| PushError::Task(e.to_string()))?;
    for (path, digest, size) in [(&config, Digest::of(b"{}"), 2), (&blob, written.digest.clone(), written.size)] {
        if client.has_blob(repo, &digest).await? {
            continue;
        }
        match client.upload_blob(repo, path, &digest, size, &opts.mount_from).await? {
            true => mounted.push(digest),
            false => uploaded.push(digest),
        }
    }
    let manifest = manifest(&written, &opts);
    let digest = Digest::of(&manifest);
    let tag = reference.tag.clone().unwrap_or_else(|| digest.to_string());
    client.put_manifest(repo, &tag, MANIFEST_MEDIA_TYPE, Bytes::from(manifest)).await?;
    Ok(Pushed { digest, layer: written, files, uploaded, mounted })
}

/// The OCI 1.1 manifest: the empty config, `artifactType`, one layer with
/// its TOC digest (eStargz) and uncompressed size, the annotations asked.
fn manifest(written: &Written, opts: &PushOptions) -> Vec<u8> {
    // No title: readers that follow oras take a titled layer for one file
    // (or, marked for unpacking, for a tree under a directory of that name),
    // where this layer holds the files at their own paths, as `tar -C dir .`
    // and `flux push artifact` lay them out.
    let media_type = if written.zstd_toc.is_some() { ZSTD_LAYER_MEDIA_TYPE } else { LAYER_MEDIA_TYPE };
    let mut layer = json!({"mediaType": media_type, "digest": written.digest, "size": written.size});
    if let Some(toc) = &written.toc {
        layer["annotations"] = json!({
            ESTARGZ_TOC_DIGEST: toc,
            UNCOMPRESSED_SIZE: written.uncompressed.to_string(),
        });
    }
    if let Some((checksum, position)) = &written.zstd_toc {
        layer["annotations"]["io.containers.zstd-chunked.manifest-checksum"] = json!(checksum);
        layer["annotations"]["io.containers.zstd-chunked.manifest-position"] = json!(position);
    }
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": opts.artifact_type,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": Digest::of(b"{}"), "size": 2, "data": "e30="},
        "layers": [layer],
    });
    if !opts.annotations.is_empty() {
        m["annotations"] = json!(opts.annotations);
    }
    serde_json::to_vec(&m).unwrap_or_default()
}
