//! Putting fetched files where they are used, behind one seam: a target
//! says whether it already holds a digest, whether it may be written, how
//! much it can hold, and publishes a fetched tree: a ConfigMap, or a
//! directory of the operator's shared volume.

pub(crate) mod configmap;
mod links;
pub(crate) mod volume;

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;

use crate::api::{FilesSummary, VolumeStatus};
use crate::fetch::FileReport;
use crate::fetch::partial::reuse::Previous;
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
    #[error(transparent)]
    Volume(#[from] volume::target::TargetError),
}

/// Where an Artifact's files go, checked and ready to use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    ConfigMap(configmap::Spec),
    Volume(volume::target::Spec),
}

impl Target {
    /// The most bytes the target can hold: fetching more is pointless, so
    /// the fetch limits are clamped to it.
    pub(crate) fn capacity(&self) -> Option<u64> {
        match self {
            Target::ConfigMap(_) => Some(configmap::MAX_CONFIGMAP_BYTES),
            Target::Volume(_) => None,
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
    volumes: Option<volume::target::Root>,
}

/// What a publish did, for status.
pub(crate) struct Published {
    pub(crate) files: FilesSummary,
    pub(crate) volume: Option<VolumeStatus>,
}

impl Targets {
    pub(crate) fn new(
        client: kube::Client,
        config_maps: Store<PartialObjectMeta<ConfigMap>>,
        volumes: Option<volume::target::Root>,
    ) -> Self {
        Targets { client, config_maps, volumes }
    }

    fn volume(&self, spec: &volume::target::Spec, owner: &Owner) -> Result<volume::Volume, PublishError> {
        let root = self.volumes.as_ref().ok_or(volume::target::TargetError::NoRoot)?;
        Ok(root.volume(&owner.namespace, spec))
    }

    /// Where a fetch for `target` unpacks: beside the volume's revisions
    /// (one rename publishes it), else this Artifact's work dir.
    pub(crate) fn fetch_dir(&self, target: &Target, owner: &Owner, work: &Path) -> Result<PathBuf, PublishError> {
        match target {
            Target::ConfigMap(_) => Ok(work.join("files")),
            Target::Volume(spec) => Ok(self.volume(spec, owner)?.staging()),
        }
    }

    /// A kept revision of a volume that holds `digest` becomes current
    /// again, with no download: what it holds, or `None`.
    pub(crate) async fn restore(
        &self,
        target: &Target,
        owner: &Owner,
        digest: &Digest,
    ) -> Result<Option<Published>, PublishError> {
        let Target::Volume(spec) = target else { return Ok(None) };
        let v = self.volume(spec, owner)?;
        let content = spec.content(&digest.to_string());
        let path = volume::target::Root::relative(&owner.namespace, spec);
        let restored = blocking(move || v.restore(&content)).await?;
        Ok(restored.map(|r| Published {
            files: r.marker.files.clone().unwrap_or_default(),
            volume: Some(VolumeStatus { path, revision: r.name }),
        }))
    }

    /// What the target holds now, for a delta sync to take files from: the
    /// volume's current revision, or the ConfigMap's keys.
    pub(crate) async fn previous(
        &self,
        target: &Target,
        owner: &Owner,
    ) -> Result<Option<std::sync::Arc<dyn Previous>>, PublishError> {
        match target {
            Target::ConfigMap(spec) => Ok(configmap::previous(&self.client, spec, owner)
                .await?
                .map(|p| std::sync::Arc::new(p) as std::sync::Arc<dyn Previous>)),
            Target::Volume(spec) => {
                let Some(root) = &self.volumes else { return Ok(None) };
                if !root.owned_by(&owner.namespace, spec, &owner.reference.name) {
                    return Ok(None);
                }
                let v = root.volume(&owner.namespace, spec);
                Ok(blocking(move || Ok(v.current().map(|r| v.dir.join(r.name)))).await?.map(|dir| {
                    std::sync::Arc::new(crate::fetch::partial::reuse::Tree(dir)) as std::sync::Arc<dyn Previous>
                }))
            }
        }
    }

    /// Does the target already hold `digest`? Answered from the watch
    /// cache: no request.
    pub(crate) fn is_current(&self, target: &Target, owner: &Owner, digest: &Digest) -> bool {
        match target {
            Target::ConfigMap(spec) => configmap::is_current(&self.config_maps, spec, owner, digest),
            // One small read of the marker; a missing volume is not current.
            Target::Volume(spec) => {
                let Some(root) = &self.volumes else { return false };
                root.owned_by(&owner.namespace, spec, &owner.reference.name)
                    && root
                        .volume(&owner.namespace, spec)
                        .current()
                        .is_some_and(|r| r.marker.content == spec.content(&digest.to_string()))
            }
        }
    }

    /// Fail early, before anything is downloaded, when the target cannot be
    /// written by this owner.
    pub(crate) async fn check(&self, target: &Target, owner: &Owner) -> Result<(), PublishError> {
        match target {
            Target::ConfigMap(spec) => configmap::check(&self.client, spec, owner).await.map(|_| ()),
            Target::Volume(spec) => {
                let root = self.volumes.clone().ok_or(volume::target::TargetError::NoRoot)?;
                let (spec, namespace, name) = (spec.clone(), owner.namespace.clone(), owner.reference.name.clone());
                tokio::task::spawn_blocking(move || {
                    let v = root.claim(&namespace, &spec, &name)?;
                    v.recover().map_err(volume::target::TargetError::from)
                })
                .await
                .map_err(|e| PublishError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })??;
                Ok(())
            }
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
    ) -> Result<Published, PublishError> {
        match target {
            Target::ConfigMap(spec) => {
                let files = configmap::publish(&self.client, spec, owner, digest, dir, files).await?;
                Ok(Published { files, volume: None })
            }
            Target::Volume(spec) => {
                let v = self.volume(spec, owner)?;
                let summary = volume::target::summary(files);
                let (content, digest, staged) =
                    (spec.content(&digest.to_string()), digest.to_string(), dir.to_path_buf());
                let marker_files = summary.clone();
                let r = blocking(move || v.publish_with(&staged, &digest, &content, Some(marker_files))).await?;
                let path = volume::target::Root::relative(&owner.namespace, spec);
                Ok(Published { files: summary, volume: Some(VolumeStatus { path, revision: r.name }) })
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, volume::VolumeError> + Send + 'static,
) -> Result<T, PublishError> {
    let joined = tokio::task::spawn_blocking(f).await;
    let r =
        joined.map_err(|e| PublishError::Io { path: PathBuf::new(), source: std::io::Error::other(e.to_string()) })?;
    r.map_err(|e| PublishError::Volume(e.into()))
}
