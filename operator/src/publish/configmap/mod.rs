//! The ConfigMap target: one ConfigMap per Artifact, written by server-side
//! apply under a field manager of its own, owned by the Artifact, never
//! taken from anyone else.

mod render;

pub(crate) use render::MAX_CONFIGMAP_BYTES;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Owner, PublishError};
use crate::api::{FileStatus, FilesSummary, KeyStyle};
use crate::fetch::FileReport;
use crate::oci::Digest;

pub(crate) const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ocisync");
pub(crate) const ARTIFACT_LABEL: &str = "ocisync.dev/artifact";
pub(crate) const DIGEST_ANNOTATION: &str = "ocisync.dev/digest";
/// Files listed by path in the Artifact's status; the rest are counted.
const LISTED_FILES: usize = 50;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    pub(crate) name: String,
    /// The Artifact's name, for the `ocisync.dev/artifact` label.
    pub(crate) artifact: String,
    pub(crate) keys: KeyStyle,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// Each Artifact applies under its own field manager, so that when two
/// Artifacts name one ConfigMap the API server sees two managers and
/// reports the conflict, instead of one silently overwriting the other.
fn field_manager(owner: &Owner) -> String {
    format!("ocisync-{}", owner.uid)
}

fn owned_by(cm: &impl Resource, owner: &Owner) -> bool {
    cm.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == owner.uid)
}

pub(super) fn is_current(
    store: &Store<PartialObjectMeta<ConfigMap>>,
    spec: &Spec,
    owner: &Owner,
    digest: &Digest,
) -> bool {
    let Some(cm) = store.get(&ObjectRef::new(&spec.name).within(&owner.namespace)) else { return false };
    owned_by(&*cm, owner) && cm.annotations().get(DIGEST_ANNOTATION) == Some(&digest.to_string())
}

/// `Ok(true)`: the ConfigMap exists and is ours; `Ok(false)`: it does not
/// exist. Someone else's is an error: it is never taken over.
pub(super) async fn check(client: &kube::Client, spec: &Spec, owner: &Owner) -> Result<bool, PublishError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
    // From the API server's watch cache (resourceVersion=0), not a quorum
    // read of etcd: at thousands of syncs these reads were as costly to the
    // server as the writes. The cache trails by moments; a ConfigMap
    // someone creates within them is still refused by the apply wherever its
    // fields clash with ours (no force over fields we do not own).
    match api.get_metadata_opt_with(&spec.name, &kube::api::GetParams::any()).await? {
        None => Ok(false),
        Some(cm) if owned_by(&cm, owner) => Ok(true),
        Some(_) => Err(PublishError::NotOwned { namespace: owner.namespace.clone(), name: spec.name.clone() }),
    }
}

/// The files of this Artifact's ConfigMap, by the path each key stands for:
/// what a delta sync may take instead of fetching.
pub(super) struct Previous {
    keys: KeyStyle,
    data: BTreeMap<String, Vec<u8>>,
}

impl crate::fetch::partial::reuse::Previous for Previous {
    fn open(&self, path: &str, size: u64) -> Option<Box<dyn std::io::Read + Send>> {
        // at most a ConfigMap's 1 MiB, copied
        let content = self.data.get(&render::key_for(path, self.keys).ok()?)?;
        (content.len() as u64 == size)
            .then(|| Box::new(std::io::Cursor::new(content.clone())) as Box<dyn std::io::Read + Send>)
    }
}

/// This Artifact's ConfigMap as it is now, if there is one and it is ours.
pub(super) async fn previous(
    client: &kube::Client,
    spec: &Spec,
    owner: &Owner,
) -> Result<Option<Previous>, PublishError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
    let Some(cm) = api.get_opt(&spec.name).await? else { return Ok(None) };
    if !owned_by(&cm, owner) {
        return Ok(None);
    }
    let text = cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes()));
    let binary = cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0));
    Ok(Some(Previous { keys: spec.keys, data: text.chain(binary).collect() }))
}

pub(super) async fn publish(
    client: &kube::Client,
    spec: &Spec,
    owner: &Owner,
    digest: &Digest,
    dir: &Path,
    files: &[FileReport],
) -> Result<FilesSummary, PublishError> {
    // Keys and size come from the report: nothing is read unless it fits.
    let keys = render::plan(files, spec.keys)?;
    let mut contents = Vec::with_capacity(keys.len());
    for k in &keys {
        let path = dir.join(&k.source);
        let bytes = tokio::fs::read(&path).await.map_err(|source| PublishError::Io { path, source })?;
        contents.push((k.key.clone(), bytes));
    }
    let rendered = render::render(contents);
    // Checked again, though the reconcile checked before fetching: the fetch
    // takes time, and an apply without force onto a ConfigMap someone made
    // meanwhile would merge into it wherever our fields do not clash.
    let ours = check(client, spec, owner).await?;
    let mut labels = spec.labels.clone();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert(ARTIFACT_LABEL.into(), spec.artifact.clone());
    let mut annotations = spec.annotations.clone();
    annotations.insert(DIGEST_ANNOTATION.into(), digest.to_string());
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec.name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner.reference],
        },
        "data": rendered.data,
        "binaryData": rendered.binary_data,
    });
    // Force only over what is already ours (fields an older ocisync wrote
    // under another manager name); on a ConfigMap we are creating, a
    // concurrent creator makes this fail instead of merging.
    let mut params = PatchParams::apply(&field_manager(owner));
    params.force = ours;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &owner.namespace);
    match api.patch(&spec.name, &params, &Patch::Apply(&body)).await {
        Ok(_) => {}
        // 409: another manager holds fields we set; 422 on a create: another
        // owner already claims to be the controller.
        Err(kube::Error::Api(s)) if s.code == 409 || (s.code == 422 && !ours && s.message.contains("Controller")) => {
            return Err(PublishError::Conflict {
                namespace: owner.namespace.clone(),
                name: spec.name.clone(),
                message: s.message.chars().take(300).collect(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(summary(&keys))
}

fn summary(keys: &[render::Key]) -> FilesSummary {
    let list: Vec<FileStatus> = keys
        .iter()
        .take(LISTED_FILES)
        .map(|k| FileStatus { path: k.path.clone(), size: k.size, sha256: k.sha256.to_string() })
        .collect();
    FilesSummary {
        count: keys.len() as u64,
        bytes: keys.iter().map(|k| k.size).sum(),
        truncated: keys.len() > list.len(),
        list,
    }
}
