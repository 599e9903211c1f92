//! `ClusterArtifactPolicy`: what a cluster admin requires of every Artifact
//! it matches, on top of the Artifact's own `spec.verify`. An Artifact
//! cannot opt out: every matching policy must be satisfied.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::TransparencyLog;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ocisync.dev",
    version = "v1alpha1",
    kind = "ClusterArtifactPolicy",
    shortname = "cap",
    category = "ocisync",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterArtifactPolicySpec {
    /// The namespaces whose Artifacts this policy covers; empty: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Globs over Artifact URLs (`oci://registry.example/team/**`); `*`
    /// stays within a path segment, `**` crosses them. Empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// What a matching Artifact's content must carry.
    pub verify: PolicyVerify,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVerify {
    /// Public keys, every `*.pub` entry of this Secret (the policy is
    /// cluster-scoped, so the Secret is named with its namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<PolicyKeys>,
    /// As an Artifact's `spec.verify.keyless`; its trusted root's Secret
    /// or ConfigMap is named with its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<super::PolicyKeyless>,
    /// As an Artifact's `spec.verify.predicateTypes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicate_types: Vec<String>,
    /// As an Artifact's `spec.verify.transparencyLog`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::transparency_log_schema")]
    pub transparency_log: Option<TransparencyLog>,
    /// Notary Project signatures, as an Artifact's `spec.verify.notation`;
    /// the Secret is named with its namespace. With keys or keyless too,
    /// both a cosign and a Notation signature must verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notation: Option<PolicyKeys>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyKeys {
    pub secret_ref: NamespacedRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NamespacedRef {
    pub name: String,
    pub namespace: String,
}
