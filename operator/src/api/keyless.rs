//! `spec.verify.keyless`: who may have signed with a short-lived Fulcio
//! certificate, and which trusted root (CAs, logs, timestamp authorities)
//! vouches for it. Shared by Artifacts and ClusterArtifactPolicies; only
//! the reference to the trusted root differs (a policy names a namespace).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalRef, NamespacedRef};

/// Keyless signatures: one signature whose certificate matches any one of
/// `identities` passes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Keyless<R> {
    /// Who may have signed; any one matching is enough. Each names the
    /// OIDC issuer and the subject (the certificate's SAN: a URI such as a
    /// GitHub Actions workflow ref, or an email), exactly or by a regular
    /// expression that must match the whole value.
    #[schemars(length(min = 1, max = 32))]
    pub identities: Vec<Identity>,
    /// A `trusted_root.json` (key `trusted_root.json`). Default: the
    /// public-good Sigstore root built into ocisync. Never fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_root: Option<TrustedRootRef<R>>,
    /// Accept certificates without a valid Signed Certificate Timestamp
    /// even when the trusted root lists CT logs.
    #[serde(default, rename = "ignoreSCT", skip_serializing_if = "std::ops::Not::not")]
    pub ignore_sct: bool,
}

/// One identity rule: `issuer` or `issuerRegExp`, and `subject` or
/// `subjectRegExp`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_reg_exp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_reg_exp: Option<String>,
}

/// Where the `trusted_root.json` is: one of a Secret or a ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedRootRef<R> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<R>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<R>,
}

/// An Artifact's keyless block: the trusted root is in its namespace.
pub type ArtifactKeyless = Keyless<LocalRef>;
/// A policy's keyless block: the trusted root's namespace is named.
pub type PolicyKeyless = Keyless<NamespacedRef>;
