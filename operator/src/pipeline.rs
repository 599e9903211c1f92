//! The one driver both the CLI and the controller call once a reference is
//! pinned to a digest: its signatures (when asked for), the manifest by
//! that digest, then its files into a directory. Nothing unverified is
//! downloaded: verification needs only the signatures, found by digest.

use std::path::Path;
use std::sync::Arc;

use crate::api::SourceStatus;
use crate::fetch::partial::reuse::{Previous, Tree};
use crate::fetch::sources::Mirror;
use crate::fetch::{self, FetchError, PullOptions, PullReport};
use crate::oci::referrers;
use crate::oci::{Platform, Reference, RegistryClient, RegistryError};
use crate::publish::volume::{Revision, Volume, VolumeError};
use crate::resolve::{self, Pinned, Resolution, ResolveError};
use crate::status::Reason;
use crate::verify::{self, Evidence, Requirement, VerifyError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum PipelineError {
    #[error(transparent)]
    Manifest(#[from] ResolveError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("looking for signatures: {0}")]
    Discover(RegistryError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("gave up after {0:?} (--timeout)")]
    Timeout(std::time::Duration),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

impl From<&PipelineError> for Reason {
    fn from(e: &PipelineError) -> Self {
        match e {
            PipelineError::Manifest(e) => e.into(),
            PipelineError::Fetch(e) => e.into(),
            PipelineError::Discover(e) => e.into(),
            PipelineError::Verify(e) => e.into(),
            PipelineError::Timeout(_) => Reason::Timeout,
            PipelineError::Volume(VolumeError::Reserved(_)) => Reason::UnsafeContent,
            PipelineError::Volume(VolumeError::Io { source, .. }) => crate::status::io_reason(source),
        }
    }
}

/// Check `pinned`'s signatures against every requirement; `Ok` with no
/// evidence when there are none.
pub(crate) async fn verify(
    client: &RegistryClient,
    pinned: &Pinned,
    requirements: &[Requirement],
) -> Result<Vec<Evidence>, PipelineError> {
    if requirements.is_empty() {
        return Ok(Vec::new());
    }
    let repository = &pinned.reference.repository;
    let mut found = referrers::discover(client, repository, &pinned.digest).await.map_err(PipelineError::Discover)?;
    if requirements.iter().any(|r| r.notation.is_some()) {
        // A Notary Project payload names the manifest by digest, size and
        // media type: all three are checked, so the manifest (small, and
        // checked against the digest) is read; its layers are not.
        let (_, body) = client.manifest(repository, &pinned.digest).await.map_err(PipelineError::Discover)?;
        let subject = verify::notation::Subject {
            scope: format!("{}/{repository}", pinned.reference.registry),
            digest: pinned.digest.to_string(),
            size: body.len() as u64,
            media_type: media_type_of(&body),
        };
        found.crls = crls(client, requirements, &subject, &found).await;
        found.subject = Some(subject);
    }
    Ok(verify::check_all(requirements, &pinned.digest, &found)?)
}

/// The CRLs the Notation signatures' chains name, for the statements that
/// check revocation; one that cannot be had is recorded with why.
async fn crls(
    client: &RegistryClient,
    requirements: &[Requirement],
    subject: &verify::notation::Subject,
    found: &referrers::Discovered,
) -> verify::notation::revocation::Crls {
    let envelopes = || {
        found.candidates.iter().filter_map(|c| match &c.envelope {
            referrers::Envelope::Notation { media_type, bytes } => Some((media_type.as_str(), bytes.as_ref())),
            _ => None,
        })
    };
    let mut urls: Vec<String> = requirements
        .iter()
        .filter_map(|r| r.notation.as_deref())
        .filter_map(|cfg| verify::notation::statement(cfg, subject).ok())
        .flat_map(|st| verify::notation::crl_urls(st, envelopes()))
        .collect();
    urls.sort();
    urls.dedup();
    urls.truncate(verify::notation::MAX_CRLS);
    let fetched = futures::future::join_all(urls.iter().map(|u| client.crl(u))).await;
    urls.into_iter().zip(fetched).map(|(u, r)| (u, r.map(|b| b.to_vec()))).collect()
}

/// A manifest's own `mediaType` (every OCI and Docker manifest writes it).
fn media_type_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct M {
        media_type: Option<String>,
    }
    serde_json::from_slice::<M>(body)
        .ok()
        .and_then(|m| m.media_type)
        .unwrap_or_else(|| crate::oci::manifest::media::OCI_MANIFEST.to_string())
}

pub(crate) struct Pulled {
    pub(crate) resolution: Resolution,
    pub(crate) report: PullReport,
    /// What each source served (mirrors first, the origin last); only those
    /// that served anything. The same words in status and the CLI's output.
    pub(crate) served: Vec<SourceStatus>,
}

/// Fetch what `pinned` names into `out`, replacing it whole; on any error
/// `out` is as it was. What is named by digest comes from `opts.mirrors`
/// first; when a fetch through mirrors fails in a way a mirror can cause
/// (a refused or broken download, bytes that are not what the digest says),
/// it is done once more from the origin alone.
pub(crate) async fn run(
    client: Arc<RegistryClient>,
    pinned: &Pinned,
    platform: &Platform,
    opts: &PullOptions,
    out: &Path,
) -> Result<Pulled, PipelineError> {
    let origin = Arc::new(Mirror::new(client.clone(), &pinned.reference));
    let resolution = manifest(&origin, &opts.mirrors, pinned, platform).await?;
    let report = match fetch::pull(origin.clone(), &resolution, opts, out).await {
        Err(FetchError::Registry(e)) if !opts.mirrors.is_empty() => {
            tracing::info!(error = %e, "fetching through the mirrors failed; once more from the origin");
            let alone = PullOptions { mirrors: Vec::new(), ..opts.clone() };
            fetch::pull(origin.clone(), &resolution, &alone, out).await?
        }
        r => r?,
    };
    let served = opts
        .mirrors
        .iter()
        .map(|m| (m, "mirror"))
        .chain([(&origin, "origin")])
        .filter_map(|(m, role)| {
            let (manifests, layers, bytes) = m.served();
            (manifests + layers > 0).then(|| SourceStatus {
                url: m.url.clone(),
                role: role.into(),
                manifests: u32::try_from(manifests).unwrap_or(u32::MAX),
                layers: u32::try_from(layers).unwrap_or(u32::MAX),
                bytes,
            })
        })
        .collect();
    Ok(Pulled { resolution, report, served })
}

/// The manifest from the first mirror that has it whole and right, else
/// from the origin.
async fn manifest(
    origin: &Arc<Mirror>,
    mirrors: &[Arc<Mirror>],
    pinned: &Pinned,
    platform: &Platform,
) -> Result<Resolution, PipelineError> {
    if !pinned.is_fetched() {
        for m in mirrors {
            let at = Reference { repository: m.repository.clone(), ..pinned.reference.clone() };
            let there = Pinned::known(at, pinned.digest.clone());
            match resolve::manifest(&m.client, &there, platform).await {
                Ok(r) => {
                    m.served_manifest();
                    if r.manifest_digest != r.digest {
                        m.served_manifest();
                    }
                    return Ok(Resolution { reference: pinned.reference.clone(), ..r });
                }
                Err(e) => tracing::debug!(mirror = %m.url, error = %e, "mirror lacks the manifest"),
            }
        }
    }
    let r = resolve::manifest(&origin.client, pinned, platform).await?;
    if !pinned.is_fetched() {
        origin.served_manifest();
    }
    if r.manifest_digest != r.digest {
        origin.served_manifest();
    }
    Ok(r)
}

/// How a volume came to hold what was asked.
pub(crate) enum Placed {
    /// It already did: nothing was done.
    Current(Revision),
    /// A kept revision held it: switched back, nothing downloaded.
    Restored(Revision),
    Published(Revision, Box<Pulled>),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, PipelineError> {
    tokio::task::spawn_blocking(f).await.map_err(fetch::task)?.map_err(PipelineError::from)
}

/// Put what `pinned` names (selected as `content` says) into `volume` as
/// its current revision, fetching only when no kept revision holds it.
pub(crate) async fn into_volume(
    client: Arc<RegistryClient>,
    pinned: &Pinned,
    platform: &Platform,
    opts: &PullOptions,
    volume: &Volume,
    content: &str,
) -> Result<Placed, PipelineError> {
    let (v, key) = (volume.clone(), content.to_string());
    let held = blocking(move || {
        v.recover()?;
        let current = v.current();
        if let Some(c) = current.clone().filter(|c| c.marker.content == key) {
            return Ok(Err(Placed::Current(c)));
        }
        match v.restore(&key)? {
            Some(r) => Ok(Err(Placed::Restored(r))),
            None => Ok(Ok(current.map(|c| v.dir.join(c.name)))),
        }
    })
    .await?;
    let current = match held {
        Err(placed) => return Ok(placed),
        Ok(current) => current,
    };
    // The current revision's files that the new version has unchanged are
    // copied from it (delta sync); revisions are never written after publish.
    let previous = opts.previous.clone().or_else(|| current.map(|d| Arc::new(Tree(d)) as Arc<dyn Previous>));
    let opts = PullOptions { previous, ..opts.clone() };
    let staging = volume.staging();
    let pulled = run(client, pinned, platform, &opts, &staging).await?;
    let (v, digest, key) = (volume.clone(), pinned.digest.to_string(), content.to_string());
    let revision = blocking(move || v.publish(&staging, &digest, &key)).await?;
    Ok(Placed::Published(revision, Box::new(pulled)))
}
