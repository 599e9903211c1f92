//! What an Artifact's content must carry: its own `spec.verify` and every
//! ClusterArtifactPolicy that covers it, with their keys read from Secrets.
//! The Artifact's keys are read only in its own namespace; a policy, being
//! cluster-scoped and written by an admin, names its Secret's namespace.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use super::credentials::{AccessError, CredentialSource};
use super::policies;
use crate::api::{Artifact, ClusterArtifactPolicy, ClusterArtifactPolicySpec};
use crate::verify::{Requirement, VerifyError, keys};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TrustError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("spec.verify: {0}")]
    Spec(String),
}

/// Predicate types a spec may list, and how long one may be.
const MAX_PREDICATE_TYPES: usize = 16;
const MAX_PREDICATE_TYPE_LEN: usize = 256;

fn predicate_types(types: &[String]) -> Result<(), String> {
    if types.len() > MAX_PREDICATE_TYPES {
        return Err(format!("predicateTypes: more than {MAX_PREDICATE_TYPES}"));
    }
    match types.iter().find(|t| t.is_empty() || t.len() > MAX_PREDICATE_TYPE_LEN) {
        Some(t) => Err(format!(
            "predicateTypes: {:?} is empty or longer than {MAX_PREDICATE_TYPE_LEN} bytes",
            t.chars().take(64).collect::<String>()
        )),
        None => Ok(()),
    }
}

pub(crate) struct TrustSource {
    pub(crate) policies: Store<ClusterArtifactPolicy>,
    pub(crate) namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl TrustSource {
    /// Does `policy` cover `artifact`, by its namespace's labels and its
    /// URL? `Err`: the policy cannot be read (it then covers, failing).
    pub(crate) fn covers(&self, policy: &ClusterArtifactPolicySpec, artifact: &Artifact) -> Result<bool, String> {
        let namespace = artifact.namespace().unwrap_or_default();
        let labels: BTreeMap<String, String> =
            self.namespaces.get(&ObjectRef::new(&namespace)).map(|n| n.labels().clone()).unwrap_or_default();
        policies::covers(policy, &labels, &artifact.spec.url)
    }

    /// The policies that cover `artifact` (by name, sorted), or the first
    /// error of one that cannot be read.
    pub(crate) fn covering(&self, artifact: &Artifact) -> Vec<(String, Result<Arc<ClusterArtifactPolicy>, String>)> {
        let mut out: Vec<_> = self
            .policies
            .state()
            .into_iter()
            .filter_map(|p| match self.covers(&p.spec, artifact) {
                Ok(true) => Some((p.name_any(), Ok(p))),
                Ok(false) => None,
                Err(e) => Some((p.name_any(), Err(e))),
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(crate) async fn requirements(
        &self,
        artifact: &Artifact,
        secrets: &CredentialSource,
    ) -> Result<Vec<Requirement>, TrustError> {
        let namespace = artifact.namespace().unwrap_or_default();
        let mut out = Vec::new();
        if let Some(v) = &artifact.spec.verify {
            let r = v.keys.as_ref().ok_or_else(|| {
                TrustError::Spec("keys.secretRef is required (keyless verification is not available yet)".into())
            })?;
            predicate_types(&v.predicate_types).map_err(TrustError::Spec)?;
            let fields = secrets.secret(&namespace, &r.secret_ref.name).await?;
            let keys = keys::from_entries(&format!("{namespace}/{}", r.secret_ref.name), &fields)?;
            out.push(Requirement::new("spec.verify".into(), keys, &v.predicate_types, v.transparency_log));
        }
        for (name, policy) in self.covering(artifact) {
            let required_by = format!("ClusterArtifactPolicy/{name}");
            let violation = |m: String| VerifyError::PolicyViolation {
                policy: required_by.clone(),
                inner: Box::new(VerifyError::BadKeys(m)),
            };
            let policy = policy.map_err(violation)?;
            let v = &policy.spec.verify;
            let r = v.keys.as_ref().ok_or_else(|| violation("spec.verify.keys is required".into()))?;
            predicate_types(&v.predicate_types).map_err(violation)?;
            let (ns, secret) = (&r.secret_ref.namespace, &r.secret_ref.name);
            let fields = secrets.secret(ns, secret).await.map_err(|e| violation(e.to_string()))?;
            let keys = keys::from_entries(&format!("{ns}/{secret}"), &fields).map_err(|e| violation(e.to_string()))?;
            out.push(Requirement::new(required_by, keys, &v.predicate_types, v.transparency_log));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn predicate_types_are_bounded() {
        let many: Vec<String> = (0..17).map(|i| format!("https://p/{i}")).collect();
        assert!(super::predicate_types(&many).is_err());
        assert!(super::predicate_types(&many[..16]).is_ok());
        assert!(super::predicate_types(&["".to_string()]).is_err());
        assert!(super::predicate_types(&["x".repeat(257)]).is_err());
        assert!(super::predicate_types(&[]).is_ok());
    }
}
