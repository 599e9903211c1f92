//! What an Artifact document's `spec.verify` asks for, built from the same
//! tree: its keys, keyless trusted root and Notation trust policy read from
//! the Secret and ConfigMap documents beside it, as the cluster would read
//! them from the API (the Artifact's namespace; `default` when it names
//! none). Encrypted Secrets (SOPS, sealed) do not read: give the flags.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Deserialize;

use super::find::documents;
use crate::api::{Artifact, ClusterArtifactPolicy};
use crate::verify::keyless::Rules;
use crate::verify::{Key, Requirement, Trust, keys, notation};

/// (kind, namespace, name)
type Name = (String, Option<String>, String);

/// A Secret or ConfigMap of the tree, by kind, namespace and name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Objects {
    by_name: BTreeMap<Name, BTreeMap<String, Vec<u8>>>,
    /// Namespace documents' labels, by name.
    pub(crate) namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) policies: Vec<ClusterArtifactPolicy>,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Meta>,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default, rename = "stringData")]
    string_data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Objects {
    /// Add the Secrets and ConfigMaps of one file's text.
    pub(crate) fn read(&mut self, text: &str) {
        for (_, doc) in documents(text) {
            let Ok(d) = serde_saphyr::from_str::<Doc>(doc) else { continue };
            if d.kind.as_deref() == Some("ClusterArtifactPolicy")
                && d.api_version.as_deref().is_some_and(|v| v.starts_with("ocisync.dev/"))
            {
                if let Ok(p) = serde_saphyr::from_str::<ClusterArtifactPolicy>(doc) {
                    self.policies.push(p);
                }
                continue;
            }
            let (Some(kind), Some("v1"), Some(meta)) = (d.kind, d.api_version.as_deref(), d.metadata) else { continue };
            if kind == "Namespace" {
                if let Some(name) = meta.name {
                    self.namespaces.insert(name, meta.labels);
                }
                continue;
            }
            if kind != "Secret" && kind != "ConfigMap" {
                continue;
            }
            let Some(name) = meta.name else { continue };
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut fields = BTreeMap::new();
            for (k, v) in d.data {
                // a Secret's data is base64; a ConfigMap's is text
                let bytes = if kind == "Secret" { b64.decode(v.trim()).ok() } else { Some(v.into_bytes()) };
                if let Some(b) = bytes {
                    fields.insert(k, b);
                }
            }
            fields.extend(d.string_data.into_iter().map(|(k, v)| (k, v.into_bytes())));
            self.by_name.insert((kind, meta.namespace, name), fields);
        }
    }

    /// A named object of `kind` in `namespace` (or one that names no namespace).
    fn get(&self, kind: &str, namespace: &str, name: &str) -> Result<&BTreeMap<String, Vec<u8>>, String> {
        let k = |ns: Option<String>| (kind.to_string(), ns, name.to_string());
        self.by_name
            .get(&k(Some(namespace.to_string())))
            .or_else(|| self.by_name.get(&k(None)))
            .ok_or_else(|| format!("{kind} {namespace}/{name} is not in the tree (give the verify flags instead)"))
    }
}

/// The requirements `artifact`'s `spec.verify` makes, from `objects`.
pub(crate) fn requirements(artifact: &Artifact, objects: &Objects) -> Result<Vec<Requirement>, String> {
    let Some(v) = &artifact.spec.verify else { return Ok(Vec::new()) };
    let ns = artifact.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut out = Vec::new();
    if let Some(n) = &v.notation {
        let fields = objects.get("Secret", &ns, &n.secret_ref.name)?;
        let cfg = notation::Config::from_entries(&format!("{ns}/{}", n.secret_ref.name), fields)?;
        out.push(Requirement::notation("spec.verify.notation".into(), Arc::new(cfg)));
    }
    if v.keys.is_none() && v.keyless.is_none() {
        return Ok(out);
    }
    let keys: Vec<Key> = match &v.keys {
        Some(k) => {
            let fields = objects.get("Secret", &ns, &k.secret_ref.name)?;
            keys::from_entries(&format!("{ns}/{}", k.secret_ref.name), fields).map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    let mut req = Requirement::new("spec.verify".into(), keys, &v.predicate_types, v.transparency_log);
    if let Some(k) = &v.keyless {
        req = req.with_keyless(Rules::compile(&k.identities, k.ignore_sct)?, v.transparency_log);
        if let Some(root) = &k.trusted_root {
            let (kind, name) = match (&root.secret_ref, &root.config_map_ref) {
                (Some(s), None) => ("Secret", &s.name),
                (None, Some(c)) => ("ConfigMap", &c.name),
                _ => return Err("keyless.trustedRoot: give one of secretRef or configMapRef".into()),
            };
            let fields = objects.get(kind, &ns, name)?;
            let bytes = fields
                .get(crate::controller::credentials::TRUSTED_ROOT_KEY)
                .ok_or_else(|| format!("{kind} {ns}/{name} has no trusted_root.json"))?;
            let trust = Trust::load(&format!("{kind} {ns}/{name}"), bytes).map_err(|e| e.to_string())?;
            req = req.with_trust(Arc::new(trust));
        }
    }
    out.push(req);
    Ok(out)
}

/// The requirements of the tree's cluster policies that cover `artifact`
/// (by its namespace's labels in the tree, and its URL), each named
/// `ClusterArtifactPolicy/<name>` as the operator names it.
pub(crate) fn policy_requirements(artifact: &Artifact, objects: &Objects) -> Result<Vec<Requirement>, String> {
    let ns = artifact.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let labels = objects.namespaces.get(&ns).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for p in &objects.policies {
        let name = p.metadata.name.clone().unwrap_or_default();
        let by = format!("ClusterArtifactPolicy/{name}");
        if !crate::controller::policies::covers(&p.spec, &labels, &artifact.spec.url)
            .map_err(|e| format!("{by}: {e}"))?
        {
            continue;
        }
        let v = &p.spec.verify;
        let secret = |r: &crate::api::NamespacedRef| {
            objects.get("Secret", &r.namespace, &r.name).map_err(|e| format!("{by}: {e}"))
        };
        if let Some(n) = &v.notation {
            let cfg = notation::Config::from_entries(
                &format!("{}/{}", n.secret_ref.namespace, n.secret_ref.name),
                secret(&n.secret_ref)?,
            )?;
            out.push(Requirement::notation(format!("{by}.notation"), Arc::new(cfg)));
        }
        if v.keys.is_none() && v.keyless.is_none() {
            continue;
        }
        let keys = match &v.keys {
            Some(k) => {
                keys::from_entries(&format!("{}/{}", k.secret_ref.namespace, k.secret_ref.name), secret(&k.secret_ref)?)
                    .map_err(|e| format!("{by}: {e}"))?
            }
            None => Vec::new(),
        };
        let mut req = Requirement::new(by.clone(), keys, &v.predicate_types, v.transparency_log);
        if let Some(k) = &v.keyless {
            req = req.with_keyless(Rules::compile(&k.identities, k.ignore_sct)?, v.transparency_log);
        }
        out.push(req);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../testdata/p384.pub");

    #[test]
    fn keys_come_from_the_secret_beside_the_artifact() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        let tree = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: cosign, namespace: team}}\ndata:\n  cosign.pub: {b64}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: other}}\nstringData: {{cosign.pub: \"x\"}}\n"
        );
        let mut objects = Objects::default();
        objects.read(&tree);
        let artifact = |ns: &str, secret: &str| -> Artifact {
            serde_saphyr::from_str(&format!(
                "apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {{name: a, namespace: {ns}}}\n\
                 spec: {{url: oci://r.io/a, verify: {{keys: {{secretRef: {{name: {secret}}}}}}}}}\n"
            ))
            .unwrap()
        };
        let reqs = requirements(&artifact("team", "cosign"), &objects).unwrap();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].keys[0].name, "team/cosign/cosign.pub");
        let e = requirements(&artifact("elsewhere", "cosign"), &objects).unwrap_err();
        assert!(e.contains("Secret elsewhere/cosign is not in the tree"), "{e}");
        assert!(requirements(&artifact("any", "other"), &objects).is_err(), "a key that does not read");
    }
}
