//! What the controller keeps of the objects it watches. Every reflector
//! holds its kind's objects for as long as the operator runs, so at 10,000
//! Artifacts each byte kept per object is 10 kB: an object is cut down, as
//! it arrives, to the fields some decision reads. `managedFields` alone is
//! most of an object that two managers wrote (a tree of field names per
//! manager, parsed into JSON values).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::core::{ObjectMeta, PartialObjectMeta};

use crate::api::{Artifact, REQUESTED_AT_ANNOTATION};
use crate::publish::configmap::DIGEST_ANNOTATION;

/// What of its metadata a kind keeps besides name, namespace, uid,
/// resourceVersion and generation. Nothing else (managed fields,
/// finalizers, creation time, …) is read on any kind.
struct Keep {
    annotations: &'static [&'static str],
    labels: bool,
    owners: bool,
}

fn cut(meta: &mut ObjectMeta, keep: Keep) {
    meta.managed_fields = None;
    meta.finalizers = None;
    meta.generate_name = None;
    meta.creation_timestamp = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| keep.annotations.contains(&k.as_str()));
    }
    if meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
        meta.annotations = None;
    }
    if !keep.labels || meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
        meta.labels = None;
    }
    if !keep.owners {
        meta.owner_references = None;
    }
}

/// An Artifact: its spec, status and the `requested-at` annotation
/// (`kubectl apply`'s copy of the whole object in
/// `last-applied-configuration` goes). Labels were for the server-side
/// selector.
pub(crate) fn artifact(a: &mut Artifact) {
    cut(&mut a.metadata, Keep { annotations: &[REQUESTED_AT_ANNOTATION], labels: false, owners: false });
}

/// An owned ConfigMap: who owns it and which digest it holds.
pub(crate) fn config_map(cm: &mut PartialObjectMeta<ConfigMap>) {
    cut(&mut cm.metadata, Keep { annotations: &[DIGEST_ANNOTATION], labels: false, owners: true });
}

/// A Secret: only that it exists and its version (content is read when an
/// Artifact needs it, and cached by version).
pub(crate) fn secret(s: &mut PartialObjectMeta<Secret>) {
    cut(&mut s.metadata, Keep { annotations: &[], labels: false, owners: false });
}

/// A ServiceAccount: its pull secrets, and the annotations credential
/// provider plugins are told of (`tokenAttributes`' keys).
pub(crate) fn account(sa: &mut ServiceAccount, plugin_keys: &[String]) {
    let told: Option<BTreeMap<String, String>> =
        sa.metadata.annotations.take().map(|a| a.into_iter().filter(|(k, _)| plugin_keys.contains(k)).collect());
    cut(&mut sa.metadata, Keep { annotations: &[], labels: false, owners: false });
    sa.metadata.annotations = told.filter(|a| !a.is_empty());
    sa.secrets = None;
}

/// A policy: its spec (there are few; their field trees still go).
pub(crate) fn policy(p: &mut crate::api::ClusterArtifactPolicy) {
    cut(&mut p.metadata, Keep { annotations: &[], labels: false, owners: false });
}

/// A namespace: its labels, which policies select on.
pub(crate) fn namespace(ns: &mut PartialObjectMeta<Namespace>) {
    cut(&mut ns.metadata, Keep { annotations: &[], labels: true, owners: false });
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;
    use serde_json::json;

    fn meta() -> serde_json::Value {
        json!({
            "name": "a", "namespace": "ns", "uid": "u-1", "resourceVersion": "7", "generation": 3,
            "creationTimestamp": "2026-11-30T00:00:00Z",
            "labels": {"team": "x"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                REQUESTED_AT_ANNOTATION: "now",
                DIGEST_ANNOTATION: "sha256:00",
            },
            "ownerReferences": [{"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "name": "a",
                                 "uid": "u-0", "controller": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:url": {}}}}],
            "finalizers": ["x"],
        })
    }

    #[test]
    fn an_artifact_keeps_what_a_reconcile_reads() {
        let mut a: Artifact = serde_json::from_value(json!({
            "apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "metadata": meta(),
            "spec": {"url": "oci://r.io/app"},
            "status": {"lastSyncedDigest": "sha256:11"},
        }))
        .unwrap();
        let spec = a.spec.clone();
        artifact(&mut a);
        assert_eq!((a.name_any(), a.namespace(), a.uid()), ("a".into(), Some("ns".into()), Some("u-1".into())));
        assert_eq!((a.resource_version(), a.metadata.generation), (Some("7".into()), Some(3)));
        assert_eq!(a.annotations().keys().collect::<Vec<_>>(), [REQUESTED_AT_ANNOTATION]);
        assert_eq!(a.spec, spec);
        assert_eq!(a.status.as_ref().and_then(|s| s.last_synced_digest.as_deref()), Some("sha256:11"));
        assert!(a.managed_fields().is_empty() && a.labels().is_empty() && a.finalizers().is_empty());
    }

    #[test]
    fn a_config_map_keeps_its_owner_and_digest() {
        let mut cm: PartialObjectMeta<ConfigMap> =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta()})).unwrap();
        config_map(&mut cm);
        assert_eq!(cm.annotations().keys().collect::<Vec<_>>(), [DIGEST_ANNOTATION]);
        assert_eq!(cm.owner_references().len(), 1);
        assert!(cm.managed_fields().is_empty() && cm.labels().is_empty());
    }

    #[test]
    fn secrets_accounts_and_namespaces_keep_what_they_are_read_for() {
        let mut s: PartialObjectMeta<Secret> =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta()})).unwrap();
        secret(&mut s);
        assert_eq!((s.name_any(), s.resource_version()), ("a".into(), Some("7".into())));
        assert!(s.annotations().is_empty() && s.managed_fields().is_empty());

        let mut sa: ServiceAccount = serde_json::from_value(json!({
            "metadata": meta(), "imagePullSecrets": [{"name": "pull"}], "secrets": [{"name": "token"}],
        }))
        .unwrap();
        let mut told = sa.clone();
        account(&mut sa, &[]);
        assert_eq!(sa.image_pull_secrets.as_ref().map(Vec::len), Some(1));
        assert!(sa.secrets.is_none() && sa.annotations().is_empty());
        account(&mut told, &[DIGEST_ANNOTATION.to_string()]);
        assert_eq!(told.annotations().keys().collect::<Vec<_>>(), [DIGEST_ANNOTATION], "a plugin's key stays");

        let mut ns: PartialObjectMeta<Namespace> =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta()})).unwrap();
        namespace(&mut ns);
        assert_eq!(ns.labels().get("team").map(String::as_str), Some("x"));
        assert!(ns.annotations().is_empty() && ns.managed_fields().is_empty());
    }
}
