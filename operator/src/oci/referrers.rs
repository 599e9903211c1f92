//! Where cosign puts signatures, read by the digest this reconcile resolved
//! (the tag is never resolved again): the OCI 1.1 referrers API, its
//! tag-schema fallback (an index under `sha256-<hex>`), and the legacy
//! `sha256-<hex>.sig` tag. Everything read is bounded; what to read is
//! decided by the pure functions at the bottom.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::client::RegistryClient;
use super::digest::Digest;
use super::error::RegistryError;
use super::manifest::{Descriptor, ImageIndex, ImageManifest, Manifest, media};

pub(crate) const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Cosign's legacy signature as an OCI 1.1 referrer (its config media type).
pub(crate) const COSIGN_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub(crate) const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
use crate::verify::notation::{COSE as NOTATION_COSE, JWS as NOTATION_JWS, SIGNATURE as NOTATION};

/// What go-containerregistry writes as an entry's `artifactType` in the tag
/// fallback for cosign v3's bundles: the config's media type.
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub(crate) const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
pub(crate) const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";

/// Pages of the referrers API followed at most.
pub(crate) const MAX_PAGES: usize = 16;
/// Referrers listed at most, over all pages.
pub(crate) const MAX_REFERRERS: usize = 1000;
/// Signatures read at most from the referrers, and again from the `.sig`
/// tag (each its own budget, so junk in one cannot hide the other): each is
/// up to two requests, and a registry could list thousands.
pub(crate) const MAX_CANDIDATES: usize = 32;
/// A signature blob larger than this is not read: a bundle with a
/// certificate chain and log entries is a few KiB.
pub(crate) const MAX_SIGNATURE_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FoundBy {
    ReferrersApi,
    ReferrersTag,
    SignatureTag,
    /// None was looked for: a Notation trust policy at level `skip`.
    Skipped,
}

impl FoundBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FoundBy::ReferrersApi => "ReferrersAPI",
            FoundBy::ReferrersTag => "ReferrersTag",
            FoundBy::SignatureTag => "SignatureTag",
            FoundBy::Skipped => "Skipped",
        }
    }
}

/// A signature as stored, not yet believed.
#[derive(Debug, Clone)]
pub(crate) enum Envelope {
    /// A Sigstore bundle (JSON bytes).
    Bundle(Bytes),
    /// Cosign's legacy payload, with what its layer's annotations carry.
    SimpleSigning { payload: Bytes, annotations: BTreeMap<String, String> },
    /// A Notary Project envelope: JWS or COSE, by its media type.
    Notation { media_type: String, bytes: Bytes },
}

#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) found_by: FoundBy,
    /// The signature manifest's digest.
    pub(crate) manifest: Digest,
    pub(crate) envelope: Envelope,
}

/// What discovery found: candidates to verify, and what else it saw (for
/// the message when nothing verifies).
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovered {
    pub(crate) candidates: Vec<Candidate>,
    /// The manifest as a Notary Project payload names it, when a
    /// requirement needs it (filled in by the caller).
    pub(crate) subject: Option<crate::verify::notation::Subject>,
    /// CRLs the Notation signatures' chains name, fetched by the caller.
    pub(crate) crls: crate::verify::notation::revocation::Crls,
    /// Referrers that are not signatures, by artifact type.
    pub(crate) others: Vec<String>,
}

/// Every signature of `digest` in `repository`, wherever cosign may have put it.
pub(crate) async fn discover(
    client: &RegistryClient,
    repository: &str,
    digest: &Digest,
) -> Result<Discovered, RegistryError> {
    let mut found = Discovered::default();
    let (entries, found_by) = match listed(client, repository, digest).await? {
        Some(entries) => (entries, FoundBy::ReferrersApi),
        None => (fallback_index(client, repository, digest).await?, FoundBy::ReferrersTag),
    };
    let (wanted, others) = worth_reading(&entries, found_by);
    found.others = others;
    for desc in wanted {
        if found.candidates.len() >= MAX_CANDIDATES {
            break;
        }
        let (manifest, _) = client.manifest(repository, &desc.digest).await?;
        let Manifest::Image(m) = manifest else { continue };
        match signature_layers(&m, Some(digest)) {
            Some(layers) => {
                for layer in layers.into_iter().take(MAX_CANDIDATES - found.candidates.len()) {
                    let envelope = read_envelope(client, repository, layer).await?;
                    found.candidates.push(Candidate { found_by, manifest: desc.digest.clone(), envelope });
                }
            }
            None => found.others.push(kind_of(&m)),
        }
    }
    // The legacy tag: cosign (and ocisync) look there too, so an artifact
    // signed by an older cosign keeps verifying.
    match client.manifest_bytes(repository, &format!("sha256-{}.sig", digest.hex())).await {
        Ok((body, content_type)) => {
            let sig_digest = Digest::of(&body);
            if let Ok(Manifest::Image(m)) = Manifest::parse(&body, content_type.as_deref()) {
                for layer in signature_layers(&m, None).unwrap_or_default().into_iter().take(MAX_CANDIDATES) {
                    let envelope = read_envelope(client, repository, layer).await?;
                    let found_by = FoundBy::SignatureTag;
                    found.candidates.push(Candidate { found_by, manifest: sig_digest.clone(), envelope });
                }
            }
        }
        Err(RegistryError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(found)
}

/// The referrers API's list, all pages; `None` when there is no API.
async fn listed(
    client: &RegistryClient,
    repository: &str,
    digest: &Digest,
) -> Result<Option<Vec<Descriptor>>, RegistryError> {
    let mut all = Vec::new();
    let mut next: Option<String> = None;
    for page in 0..MAX_PAGES {
        let Some(p) = client.referrers_page(repository, digest, next.as_deref()).await? else {
            // A registry that answered the first page has the API; one that
            // stops answering half-way is broken, not API-less.
            return if page == 0 {
                Ok(None)
            } else {
                Err(RegistryError::Protocol(format!("the referrers of {digest} stopped on page {}", page + 1)))
            };
        };
        let index: ImageIndex = serde_json::from_slice(&p.body)
            .map_err(|e| RegistryError::Protocol(format!("referrers of {digest}: {e}")))?;
        // No `artifactType` query: cosign's two formats have two types,
        // and the filter is optional for registries anyway
        // (`OCI-Filters-Applied`); every entry's type is checked here.
        all.extend(index.manifests);
        if all.len() > MAX_REFERRERS {
            return Err(RegistryError::TooLarge {
                what: format!("the referrers list of {digest}"),
                limit: MAX_REFERRERS as u64,
            });
        }
        match p.next {
            Some(n) => next = Some(n),
            None => return Ok(Some(all)),
        }
    }
    Err(RegistryError::Protocol(format!("the referrers of {digest} go on past {MAX_PAGES} pages")))
}

/// The tag-schema fallback: an index under `sha256-<hex>`; none is empty.
async fn fallback_index(
    client: &RegistryClient,
    repository: &str,
    digest: &Digest,
) -> Result<Vec<Descriptor>, RegistryError> {
    match client.manifest_bytes(repository, &format!("sha256-{}", digest.hex())).await {
        Ok((body, content_type)) => match Manifest::parse(&body, content_type.as_deref()) {
            Ok(Manifest::Index(i)) if i.manifests.len() <= MAX_REFERRERS => Ok(i.manifests),
            Ok(Manifest::Index(_)) => Err(RegistryError::TooLarge {
                what: format!("the referrers tag of {digest}"),
                limit: MAX_REFERRERS as u64,
            }),
            // Something else under that tag is not a referrers index.
            _ => Ok(Vec::new()),
        },
        Err(RegistryError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

async fn read_envelope(
    client: &RegistryClient,
    repository: &str,
    layer: &Descriptor,
) -> Result<Envelope, RegistryError> {
    let bytes = client.small_blob(repository, layer, MAX_SIGNATURE_BYTES).await?;
    Ok(if layer.media_type == SIMPLESIGNING {
        Envelope::SimpleSigning { payload: bytes, annotations: layer.annotations.clone() }
    } else if layer.media_type == NOTATION_JWS || layer.media_type == NOTATION_COSE {
        Envelope::Notation { media_type: layer.media_type.clone(), bytes }
    } else {
        Envelope::Bundle(bytes)
    })
}

/// Which listed referrers may be signatures, and the types of the rest.
/// From the API an entry's `artifactType` is the manifest's own, so only
/// signature types are read. In the tag fallback cosign's entries carry the
/// config's media type (`…empty.v1+json`) or none: those are read to learn
/// what they are; entries another tool typed correctly as something else
/// are not.
pub(crate) fn worth_reading(entries: &[Descriptor], found_by: FoundBy) -> (Vec<&Descriptor>, Vec<String>) {
    let mut wanted = Vec::new();
    let mut others = Vec::new();
    for e in entries {
        let t = e.artifact_type.as_deref();
        let signature = matches!(t, Some(BUNDLE_V03 | COSIGN_SIG | NOTATION));
        let unknown = found_by == FoundBy::ReferrersTag && matches!(t, None | Some(EMPTY | ""));
        let is_manifest = e.media_type == media::OCI_MANIFEST || e.media_type == media::DOCKER_MANIFEST;
        if is_manifest && (signature || unknown) {
            wanted.push(e);
        } else {
            others.push(t.unwrap_or(&e.media_type).to_string());
        }
    }
    // Signatures first, so the read limit spends itself on them.
    wanted.sort_by_key(|e| !matches!(e.artifact_type.as_deref(), Some(BUNDLE_V03 | COSIGN_SIG | NOTATION)));
    (wanted, others)
}

/// The layers of a signature manifest that hold signatures, or `None` when
/// it is not one. `subject`: the digest a referrer must point at (the
/// legacy tag has no subject).
pub(crate) fn signature_layers<'a>(m: &'a ImageManifest, subject: Option<&Digest>) -> Option<Vec<&'a Descriptor>> {
    if let Some(want) = subject
        && m.subject.as_ref().map(|s| &s.digest) != Some(want)
    {
        return None;
    }
    let bundle = m.artifact_type.as_deref() == Some(BUNDLE_V03);
    // Both forms the Notary Project spec allows: the artifact type, or
    // (older registries, notation's tag-schema writes) the config's type.
    let notation = m.artifact_type.as_deref() == Some(NOTATION) || m.config.media_type == NOTATION;
    let layers: Vec<&Descriptor> = m
        .layers
        .iter()
        .filter(|l| {
            (bundle && l.media_type == BUNDLE_V03)
                || (notation && (l.media_type == NOTATION_JWS || l.media_type == NOTATION_COSE))
                || (l.media_type == SIMPLESIGNING && l.annotations.contains_key(SIGNATURE_ANNOTATION))
        })
        .collect();
    (!layers.is_empty()).then_some(layers)
}

/// What a non-signature referrer is, for messages.
fn kind_of(m: &ImageManifest) -> String {
    m.artifact_type.clone().unwrap_or_else(|| m.config.media_type.clone())
}

#[cfg(test)]
mod tests;
