//! Putting fetched files where they are used, behind one seam: a target
//! says whether it already holds a digest, whether it may be written, how
//! much it can hold, and publishes a fetched tree. A ConfigMap today; the
//! shared volume is the next target.

pub(crate) mod configmap;
mod links;
pub(crate) mod volume;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;

use crate::api::FilesSummary;
use crate::fetch::FileReport;
use crate::oci::Digest;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("{first:?} and {second:?} would both be key {key:?}; rename one, exclude one, or use another key style")]
    KeyCollision { key: String, first: String, second: String },
    #[error("{path:?} cannot be a ConfigMap key ({reason}); exclude it or rename it")]
    BadKey { path: String, reason: &'static str },
    #[error(
        "the files need {bytes} bytes, over the ConfigMap limit of {} bytes; select fewer files",
        configmap::MAX_CONFIGMAP_BYTES
    )]
    TooLarge { bytes: u64 },
    #[error("ConfigMap {namespace}/{name} exists and is not owned by this Artifact")]
    NotOwned { namespace: String, name: String },
    #[error("ConfigMap {namespace}/{name} is claimed by another writer: {message}")]
    Conflict { namespace: String, name: String, message: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where an Artifact's files go, checked and ready to use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    ConfigMap(configmap::Spec),
}

impl Target {
    /// The most bytes the target can hold: fetching more is pointless, so
    /// the fetch limits are clamped to it.
    pub(crate) fn capacity(&self) -> Option<u64> {
        match self {
            Target::ConfigMap(_) => Some(configmap::MAX_CONFIGMAP_BYTES),
        }
    }
}

/// The Artifact a target is written for.
pub(crate) struct Owner {
    pub(crate) namespace: String,
    pub(crate) uid: String,
    pub(crate) reference: OwnerReference,
}

/// The targets' side of the cluster: the API client and the metadata of the
/// ConfigMaps ocisync manages, from a watch.
pub(crate) struct Targets {
    client: kube::Client,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
}

impl Targets {
    pub(crate) fn new(client: kube::Client, config_maps: Store<PartialObjectMeta<ConfigMap>>) -> Self {
        Targets { client, config_maps }
    }

    /// Does the target already hold `digest`? Answered from the watch
    /// cache: no request.
    pub(crate) fn is_current(&self, target: &Target, owner: &Owner, digest: &Digest) -> bool {
        match target {
            Target::ConfigMap(spec) => configmap::is_current(&self.config_maps, spec, owner, digest),
        }
    }

    /// Fail early, before anything is downloaded, when the target cannot be
    /// written by this owner.
    pub(crate) async fn check(&self, target: &Target, owner: &Owner) -> Result<(), PublishError> {
        match target {
            Target::ConfigMap(spec) => configmap::check(&self.client, spec, owner).await.map(|_| ()),
        }
    }

    /// Publish the fetched tree `dir`, whose contents `files` lists.
    pub(crate) async fn publish(
        &self,
        target: &Target,
        owner: &Owner,
        digest: &Digest,
        dir: &std::path::Path,
        files: &[FileReport],
    ) -> Result<FilesSummary, PublishError> {
        match target {
            Target::ConfigMap(spec) => configmap::publish(&self.client, spec, owner, digest, dir, files).await,
        }
    }
}
