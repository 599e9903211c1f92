//! Which Artifacts a change of another object concerns. Pure: the caller
//! passes what the watches hold.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;

use crate::api::{Artifact, ClusterArtifactPolicySpec};

/// The Artifacts in `namespace` that read Secret `name`: by `secretRef`,
/// `certSecretRef`, `proxySecretRef`, `verify.keys.secretRef` or
/// `verify.keyless.trustedRoot.secretRef`, or as a pull secret of their
/// ServiceAccount.
pub(crate) fn secret_users<'a>(
    artifacts: impl IntoIterator<Item = &'a Artifact>,
    account: impl Fn(&str) -> Option<std::sync::Arc<ServiceAccount>>,
    namespace: &str,
    name: &str,
) -> Vec<&'a Artifact> {
    artifacts
        .into_iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .filter(|a| {
            let s = &a.spec;
            s.secret_ref.as_ref().is_some_and(|r| r.name == name)
                || s.cert_secret_ref.as_ref().is_some_and(|r| r.name == name)
                || s.proxy_secret_ref.as_ref().is_some_and(|r| r.name == name)
                || s.verify.as_ref().and_then(|v| v.keys.as_ref()).is_some_and(|k| k.secret_ref.name == name)
                || s.verify
                    .as_ref()
                    .and_then(|v| v.keyless.as_ref()?.trusted_root.as_ref()?.secret_ref.as_ref())
                    .is_some_and(|r| r.name == name)
                || s.service_account_name
                    .as_deref()
                    .and_then(&account)
                    .is_some_and(|sa| sa.image_pull_secrets.iter().flatten().any(|r| r.name == name))
        })
        .collect()
}

/// Does a policy read its keys or its trusted root from Secret
/// `namespace/name`?
pub(crate) fn policy_reads(policy: &ClusterArtifactPolicySpec, namespace: &str, name: &str) -> bool {
    let is = |r: &crate::api::NamespacedRef| r.namespace == namespace && r.name == name;
    policy.verify.keys.as_ref().is_some_and(|k| is(&k.secret_ref))
        || policy.verify.keyless.as_ref().and_then(|k| k.trusted_root.as_ref()?.secret_ref.as_ref()).is_some_and(is)
}

/// The Artifacts in `namespace` that use ServiceAccount `name`.
pub(crate) fn account_users<'a>(
    artifacts: impl IntoIterator<Item = &'a Artifact>,
    namespace: &str,
    name: &str,
) -> Vec<&'a Artifact> {
    artifacts
        .into_iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace) && a.spec.service_account_name.as_deref() == Some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn artifact(ns: &str, name: &str, spec: serde_json::Value) -> Artifact {
        let mut spec = spec;
        spec["url"] = json!("oci://r.io/app");
        serde_json::from_value(json!({
            "apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact",
            "metadata": {"name": name, "namespace": ns}, "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn a_secret_concerns_only_its_users() {
        let arts = [
            artifact("a", "direct", json!({"secretRef": {"name": "pull"}})),
            artifact("a", "cert", json!({"certSecretRef": {"name": "ca"}})),
            artifact("a", "proxied", json!({"proxySecretRef": {"name": "proxy"}})),
            artifact("a", "via-sa", json!({"serviceAccountName": "puller"})),
            artifact("a", "other-sa", json!({"serviceAccountName": "nobody"})),
            artifact("a", "anonymous", json!({})),
            artifact("a", "signed", json!({"verify": {"keys": {"secretRef": {"name": "keys"}}}})),
            artifact(
                "a",
                "keyless",
                json!({"verify": {"keyless": {"identities": [], "trustedRoot": {"secretRef": {"name": "root"}}}}}),
            ),
            artifact("b", "elsewhere", json!({"secretRef": {"name": "pull"}})),
        ];
        let puller: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "sa-pull"}]}))
                .unwrap();
        let puller = Arc::new(puller);
        let account = |n: &str| (n == "puller").then(|| puller.clone());
        let names = |v: Vec<&Artifact>| v.into_iter().map(|a| a.name_any()).collect::<Vec<_>>();
        let cases = [
            ("a", "pull", vec!["direct"]),
            ("a", "ca", vec!["cert"]),
            ("a", "proxy", vec!["proxied"]),
            ("a", "sa-pull", vec!["via-sa"]),
            ("a", "unrelated", vec![]),
            ("a", "keys", vec!["signed"]),
            ("a", "root", vec!["keyless"]),
            ("b", "pull", vec!["elsewhere"]),
        ];
        for (ns, secret, want) in cases {
            assert_eq!(names(secret_users(&arts, account, ns, secret)), want, "{ns}/{secret}");
        }
        assert_eq!(names(account_users(&arts, "a", "puller")), ["via-sa"]);
    }

    #[test]
    fn a_policy_reads_the_secret_it_names_in_its_namespace() {
        let p: ClusterArtifactPolicySpec =
            serde_json::from_value(json!({"verify": {"keys": {"secretRef": {"name": "k", "namespace": "sec"}}}}))
                .unwrap();
        assert!(policy_reads(&p, "sec", "k"));
        assert!(!policy_reads(&p, "other", "k"));
        assert!(!policy_reads(&p, "sec", "j"));
        let p: ClusterArtifactPolicySpec = serde_json::from_value(json!({"verify": {"keyless": {
            "identities": [], "trustedRoot": {"secretRef": {"name": "root", "namespace": "sec"}}}}}))
        .unwrap();
        assert!(policy_reads(&p, "sec", "root"));
        assert!(!policy_reads(&p, "other", "root"));
    }
}
