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
use super::roots::{Holder, RootError, Roots};
use crate::api::{
    Artifact, ClusterArtifactPolicy, ClusterArtifactPolicySpec, Keyless, TransparencyLog, TrustedRootRef,
};
use crate::verify::{Requirement, VerifyError, keys, notation};

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

impl From<RootError> for TrustError {
    fn from(e: RootError) -> Self {
        match e {
            RootError::Access(e) => TrustError::Access(e),
            RootError::Verify(e) => TrustError::Verify(e),
        }
    }
}

pub(crate) struct TrustSource {
    pub(crate) policies: Store<ClusterArtifactPolicy>,
    pub(crate) namespaces: Store<PartialObjectMeta<Namespace>>,
    pub(crate) roots: Roots,
}

/// A Notation trust policy Secret; its content's digest is part of its
/// name, so a changed Secret makes verification run again.
fn notation_config(at: &str, fields: &BTreeMap<String, Vec<u8>>) -> Result<Arc<notation::Config>, VerifyError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (k, v) in fields {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    let source = format!("{at} (sha256:{})", &hex::encode(h.finalize())[..16]);
    notation::Config::from_entries(&source, fields).map(Arc::new).map_err(VerifyError::BadKeys)
}

/// Where a keyless block's trusted root is: (Secret or ConfigMap,
/// namespace, name); `None`: the embedded public-good root.
type RootAt = Option<(Holder, String, String)>;

fn root_at<R>(r: &Option<TrustedRootRef<R>>, at: impl Fn(&R) -> (String, String)) -> Result<RootAt, String> {
    let Some(r) = r else { return Ok(None) };
    match (&r.secret_ref, &r.config_map_ref) {
        (Some(s), None) => Ok(Some((Holder::Secret, at(s).0, at(s).1))),
        (None, Some(c)) => Ok(Some((Holder::ConfigMap, at(c).0, at(c).1))),
        _ => Err("keyless.trustedRoot: give one of secretRef or configMapRef".into()),
    }
}

impl TrustSource {
    /// Is `namespace` being deleted? Its ConfigMaps go first and its
    /// Artifacts after them, so for a while each Artifact's target is gone
    /// and it would be synced again: a download for nothing, then a write
    /// the API server refuses.
    pub(crate) fn terminating(&self, namespace: &str) -> bool {
        self.namespaces.get(&ObjectRef::new(namespace)).is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    }

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
            if v.keys.is_none() && v.keyless.is_none() && v.notation.is_none() {
                return Err(TrustError::Spec("give keys, keyless, notation, or several".into()));
            }
            if let Some(n) = &v.notation {
                let fields = secrets.secret(&namespace, &n.secret_ref.name).await?;
                let cfg = notation_config(&format!("{namespace}/{}", n.secret_ref.name), &fields)?;
                out.push(Requirement::notation("spec.verify.notation".into(), cfg));
            }
        }
        if let Some(v) = artifact.spec.verify.as_ref().filter(|v| v.keys.is_some() || v.keyless.is_some()) {
            predicate_types(&v.predicate_types).map_err(TrustError::Spec)?;
            let keys = match &v.keys {
                Some(r) => {
                    let fields = secrets.secret(&namespace, &r.secret_ref.name).await?;
                    keys::from_entries(&format!("{namespace}/{}", r.secret_ref.name), &fields)?
                }
                None => Vec::new(),
            };
            let req = Requirement::new("spec.verify".into(), keys, &v.predicate_types, v.transparency_log);
            let at = root_at(&v.keyless.as_ref().and_then(|k| k.trusted_root.clone()), |r| {
                (namespace.clone(), r.name.clone())
            })
            .map_err(TrustError::Spec)?;
            out.push(self.keyless(req, v.keyless.as_ref(), at, v.transparency_log, secrets).await?);
        }
        for (name, policy) in self.covering(artifact) {
            let required_by = format!("ClusterArtifactPolicy/{name}");
            let violation = |inner: VerifyError| VerifyError::PolicyViolation {
                policy: required_by.clone(),
                inner: Box::new(inner),
            };
            let bad = |m: String| violation(VerifyError::BadKeys(m));
            let policy = policy.map_err(bad)?;
            let v = &policy.spec.verify;
            if v.keys.is_none() && v.keyless.is_none() && v.notation.is_none() {
                return Err(bad("spec.verify: give keys, keyless, notation, or several".into()).into());
            }
            if let Some(n) = &v.notation {
                let (ns, secret) = (&n.secret_ref.namespace, &n.secret_ref.name);
                let fields = secrets.secret(ns, secret).await.map_err(|e| bad(e.to_string()))?;
                let cfg = notation_config(&format!("{ns}/{secret}"), &fields).map_err(|e| bad(e.to_string()))?;
                out.push(Requirement::notation(format!("{required_by}.notation"), cfg));
                if v.keys.is_none() && v.keyless.is_none() {
                    continue;
                }
            }
            predicate_types(&v.predicate_types).map_err(bad)?;
            let keys = match &v.keys {
                Some(r) => {
                    let (ns, secret) = (&r.secret_ref.namespace, &r.secret_ref.name);
                    let fields = secrets.secret(ns, secret).await.map_err(|e| bad(e.to_string()))?;
                    keys::from_entries(&format!("{ns}/{secret}"), &fields).map_err(|e| bad(e.to_string()))?
                }
                None => Vec::new(),
            };
            let req = Requirement::new(required_by.clone(), keys, &v.predicate_types, v.transparency_log);
            let at = root_at(&v.keyless.as_ref().and_then(|k| k.trusted_root.clone()), |r| {
                (r.namespace.clone(), r.name.clone())
            })
            .map_err(bad)?;
            let req =
                self.keyless(req, v.keyless.as_ref(), at, v.transparency_log, secrets).await.map_err(|e| match e {
                    TrustError::Verify(inner) => violation(inner),
                    other => bad(other.to_string()),
                })?;
            out.push(req);
        }
        Ok(out)
    }

    /// Add a keyless block (rules, trusted root) to a requirement, checking
    /// that the root can verify what is asked of it.
    async fn keyless<R>(
        &self,
        req: Requirement,
        keyless: Option<&Keyless<R>>,
        at: RootAt,
        tlog: Option<TransparencyLog>,
        secrets: &CredentialSource,
    ) -> Result<Requirement, TrustError> {
        let mut req = match keyless {
            Some(k) => {
                let rules = self.roots.rules(&k.identities, k.ignore_sct).map_err(TrustError::Spec)?;
                req.with_keyless(rules, tlog)
            }
            None => req,
        };
        if let Some((holder, ns, name)) = at {
            req = req.with_trust(self.roots.load(secrets, holder, &ns, &name).await?);
        }
        if let Some(k) = &req.keyless {
            let trust =
                req.trust().ok_or_else(|| VerifyError::BadTrustedRoot("the embedded root does not load".into()))?;
            trust.usable(true, k.tlog)?;
        }
        Ok(req)
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
