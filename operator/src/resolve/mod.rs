//! Every way a spec or a reference becomes a digest: a tag by one HEAD
//! (a GET when the registry omits the digest header), the highest tag in a
//! semver range, a pinned digest with drift from the tag beside it; and the
//! manifest that digest names, platform chosen from an index.
//!
//! Sharing resolutions between Artifacts is the controller's business; this
//! module answers one question at a time.

mod follow;
pub(crate) mod semver;

pub(crate) use follow::{Version, choose, pick_tag};

use bytes::Bytes;

use crate::oci::client::verify_manifest;
use crate::oci::{Digest, ImageManifest, Manifest, Platform, Reference, RegistryClient, RegistryError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("no tag of {repository} is in the range {range:?}")]
    NoMatchingTag { repository: String, range: String },
    #[error("{0} is an index inside an index, which is not supported")]
    NestedIndex(Digest),
}

/// A reference pinned to a digest. When resolving needed a GET, the
/// manifest's bytes are kept so they are not fetched twice.
#[derive(Debug, Clone)]
pub(crate) struct Pinned {
    pub(crate) reference: Reference,
    pub(crate) digest: Digest,
    fetched: Option<(Bytes, Option<String>)>,
}

impl Pinned {
    /// A digest known already (a pin, or a shared resolution).
    pub(crate) fn known(reference: Reference, digest: Digest) -> Self {
        Pinned { reference, digest, fetched: None }
    }

    /// The manifest came with the resolution (a GET, not a HEAD).
    pub(crate) fn is_fetched(&self) -> bool {
        self.fetched.is_some()
    }
}

/// What a reference names now: a pinned digest as it is, without a request;
/// a tag by one HEAD, or a GET when the registry sends no digest header.
pub(crate) async fn reference(client: &RegistryClient, reference: &Reference) -> Result<Pinned, ResolveError> {
    if let Some(d) = &reference.digest {
        return Ok(Pinned::known(reference.clone(), d.clone()));
    }
    let (repo, tag) = (&reference.repository, reference.manifest_ref());
    if let Some(d) = client.head_manifest(repo, &tag).await? {
        return Ok(Pinned::known(reference.clone(), d));
    }
    let (body, content_type) = client.manifest_bytes(repo, &tag).await?;
    Ok(Pinned { reference: reference.clone(), digest: Digest::of(&body), fetched: Some((body, content_type)) })
}

/// The digest alone, for the controller's shared resolutions.
pub(crate) async fn digest(client: &RegistryClient, r: &Reference) -> Result<Digest, ResolveError> {
    Ok(reference(client, r).await?.digest)
}

/// A pinned reference and the image manifest whose layers are the files.
#[derive(Debug, Clone)]
pub(crate) struct Resolution {
    pub(crate) reference: Reference,
    /// What the reference names: an index's digest when it is an index.
    pub(crate) digest: Digest,
    /// The image manifest taken; differs from `digest` for an index.
    pub(crate) manifest_digest: Digest,
    /// The platform chosen from an index.
    pub(crate) platform: Option<Platform>,
    pub(crate) manifest: ImageManifest,
}

/// The manifest a pinned digest names (and for an index, the one for
/// `platform`), each checked against its digest.
pub(crate) async fn manifest(
    client: &RegistryClient,
    pinned: &Pinned,
    platform: &Platform,
) -> Result<Resolution, ResolveError> {
    let repo = &pinned.reference.repository;
    let digest = pinned.digest.clone();
    let top = match &pinned.fetched {
        Some((bytes, ct)) => verify_manifest(&digest, bytes, ct.as_deref())?,
        None => client.manifest(repo, &digest).await?.0,
    };
    let reference = pinned.reference.clone();
    match top {
        Manifest::Image(m) => {
            Ok(Resolution { reference, manifest_digest: digest.clone(), digest, platform: None, manifest: *m })
        }
        Manifest::Index(index) => {
            let entry = index.select(platform).map_err(RegistryError::from)?;
            let chosen = entry.platform.clone();
            match client.manifest(repo, &entry.digest).await?.0 {
                Manifest::Image(m) => Ok(Resolution {
                    reference,
                    digest,
                    manifest_digest: entry.digest.clone(),
                    platform: chosen,
                    manifest: *m,
                }),
                Manifest::Index(_) => Err(ResolveError::NestedIndex(entry.digest.clone())),
            }
        }
    }
}
