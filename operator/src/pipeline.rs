//! The one driver both the CLI and the controller call once a reference is
//! pinned to a digest: the manifest by that digest, then its files into a
//! directory. Verification (when asked for) slots in between the two, so
//! that nothing unverified is ever downloaded.

use std::path::Path;
use std::sync::Arc;

use crate::fetch::{self, FetchError, PullOptions, PullReport};
use crate::oci::{Platform, RegistryClient};
use crate::resolve::{self, Pinned, Resolution, ResolveError};
use crate::status::Reason;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PipelineError {
    #[error(transparent)]
    Manifest(#[from] ResolveError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("gave up after {0:?} (--timeout)")]
    Timeout(std::time::Duration),
}

impl From<&PipelineError> for Reason {
    fn from(e: &PipelineError) -> Self {
        match e {
            PipelineError::Manifest(e) => e.into(),
            PipelineError::Fetch(e) => e.into(),
            PipelineError::Timeout(_) => Reason::Timeout,
        }
    }
}

pub(crate) struct Pulled {
    pub(crate) resolution: Resolution,
    pub(crate) report: PullReport,
}

/// Fetch what `pinned` names into `out`, replacing it whole; on any error
/// `out` is as it was.
pub(crate) async fn run(
    client: Arc<RegistryClient>,
    pinned: &Pinned,
    platform: &Platform,
    opts: &PullOptions,
    out: &Path,
) -> Result<Pulled, PipelineError> {
    let resolution = resolve::manifest(&client, pinned, platform).await?;
    let report = fetch::pull(client, &resolution, opts, out).await?;
    Ok(Pulled { resolution, report })
}
