//! Which `ClusterArtifactPolicy` objects cover an Artifact. Pure: the
//! caller passes the namespace's labels and the Artifact's URL.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};

use crate::api::ClusterArtifactPolicySpec;

/// Does `policy` cover an Artifact at `url` in a namespace with `labels`?
/// A policy that cannot be read (a bad glob or selector) covers everything:
/// it must fail closed, with its error, not quietly cover nothing.
pub(crate) fn covers(
    policy: &ClusterArtifactPolicySpec,
    labels: &BTreeMap<String, String>,
    url: &str,
) -> Result<bool, String> {
    if let Some(s) = &policy.namespace_selector {
        let selector = Selector::try_from(s.clone()).map_err(|e| format!("spec.namespaceSelector: {e}"))?;
        if !selector.matches(labels) {
            return Ok(false);
        }
    }
    if policy.urls.is_empty() {
        return Ok(true);
    }
    for pattern in &policy.urls {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("spec.urls: {pattern:?}: {e}"))?;
        if glob.compile_matcher().is_match(url) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: serde_json::Value) -> ClusterArtifactPolicySpec {
        let mut v = v;
        v["verify"] = json!({});
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn policies_cover_by_namespace_labels_and_url() {
        let prod = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let dev = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        let none = BTreeMap::new();
        let url = "oci://r.io/team/app";
        let cases = [
            (json!({}), &none, url, Ok(true)),
            (json!({"namespaceSelector": {}}), &none, url, Ok(true)),
            (json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}), &prod, url, Ok(true)),
            (json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}), &dev, url, Ok(false)),
            (json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}), &none, url, Ok(false)),
            (
                json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}}),
                &none,
                url,
                Ok(true),
            ),
            (json!({"urls": ["oci://r.io/team/*"]}), &none, url, Ok(true)),
            (json!({"urls": ["oci://r.io/*"]}), &none, url, Ok(false)),
            (json!({"urls": ["oci://r.io/**"]}), &none, url, Ok(true)),
            (json!({"urls": ["oci://other.io/**", "oci://r.io/team/app"]}), &none, url, Ok(true)),
            (json!({"urls": ["oci://r.io.evil/**"]}), &none, url, Ok(false)),
            (json!({"urls": ["oci://r.io/[team"]}), &none, url, Err(())),
            (
                json!({"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Bogus", "values": []}]}}),
                &none,
                url,
                Err(()),
            ),
        ];
        for (p, labels, url, want) in cases {
            let got = covers(&policy(p.clone()), labels, url).map_err(|_| ());
            assert_eq!(got, want, "{p}");
        }
    }
}
