//! From layer bytes to files: layer kinds, selection, path safety, limits,
//! and the staging tree that is renamed into place only when all is well.
//! Reads byte streams; knows nothing of registries.

pub(crate) mod archive;
mod extract;
pub(crate) mod layer;
pub(crate) mod limits;
pub(crate) mod path;
pub(crate) mod select;
pub(crate) mod toc;
mod tree;
pub(crate) mod window;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::oci::Digest;

pub(crate) use extract::{unpack_entries, unpack_layer, whiteout};
pub(crate) use layer::LayerPlan;
pub(crate) use limits::{Budget, Limits};
pub(crate) use select::Selection;
pub(crate) use tree::{Staging, remove_below};

#[derive(Debug, thiserror::Error)]
pub(crate) enum UnpackError {
    #[error("unsafe path {path:?} in the artifact: {reason}")]
    UnsafePath { path: String, reason: String },
    #[error("link {path:?} points outside the output ({target:?})")]
    LinkEscapes { path: String, target: String },
    #[error("{path:?} is a {kind}, which is never unpacked")]
    UnsupportedEntry { path: String, kind: String },
    #[error(
        "layer {digest} has media type {media_type:?}, which is neither a tar nor a titled file; exclude it with a media-type filter"
    )]
    UnsupportedLayer { digest: String, media_type: String },
    #[error("{limit} limit of {max} exceeded")]
    LimitExceeded { limit: &'static str, max: u64 },
    #[error("layer {digest} is not a valid {format}: {message}")]
    Corrupt { digest: String, format: &'static str, message: String },
    /// Bytes read by range that are not what the digest vouching for them
    /// says (the TOC's in the manifest, a chunk's or a file's in the TOC).
    #[error("layer {digest}: {message}")]
    Mismatch { digest: String, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl UnpackError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| UnpackError::Io { path, source }
    }
}

/// One unpacked thing, by its path in the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Entry {
    File { size: u64, sha256: Digest, executable: bool },
    Symlink { target: String },
}

/// An OCI whiteout (`.wh.name`, `.wh..wh..opq`): a later layer deleting what
/// an earlier one wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Whiteout {
    Path(String),
    /// Everything below this directory ("" for the root).
    Opaque(String),
}

#[derive(Debug, Default)]
pub(crate) struct LayerReport {
    pub(crate) entries: BTreeMap<String, Entry>,
    pub(crate) whiteouts: Vec<Whiteout>,
    /// The layer carries a table of contents (declared or found by its footer).
    pub(crate) toc: Option<toc::Format>,
}
