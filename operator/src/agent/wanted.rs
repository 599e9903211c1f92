//! What the agent should publish, from the Artifact it watches: the digest
//! the operator synced, only once the operator says it is ready, and when
//! signatures were required, only the digest they were verified for.

use crate::api::Artifact;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// Publish this digest.
    Digest(String),
    /// Nothing yet, and why (for `--one-time`'s message and the log).
    Wait(String),
}

pub(crate) fn wanted(artifact: &Artifact) -> Wanted {
    let Some(status) = &artifact.status else { return Wanted::Wait("the operator has not reported yet".into()) };
    if status.observed_generation != artifact.metadata.generation {
        return Wanted::Wait("the operator has not seen the latest spec yet".into());
    }
    let condition = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
    let Some(digest) = &status.last_synced_digest else {
        let why = condition("Ready").map_or("no sync yet".to_string(), |c| format!("{}: {}", c.reason, c.message));
        return Wanted::Wait(why);
    };
    match condition("Ready") {
        Some(c) if c.status == "True" => {}
        Some(c) => return Wanted::Wait(format!("the Artifact is not Ready ({}: {})", c.reason, c.message)),
        None => return Wanted::Wait("the Artifact has no Ready condition".into()),
    }
    // The operator syncs only verified digests when verification is asked
    // for; a verification on record must be for this very digest.
    let asked = artifact.spec.verify.is_some() || status.verification.is_some();
    if asked {
        let verified = status.verification.as_ref().is_some_and(|v| &v.digest == digest)
            && condition("Verified").is_some_and(|c| c.status == "True");
        if !verified {
            return Wanted::Wait(format!("{digest} is not verified"));
        }
    }
    Wanted::Digest(digest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn artifact(verify: bool, status: serde_json::Value) -> Artifact {
        let mut spec = json!({"url": "oci://r.io/app"});
        if verify {
            spec["verify"] = json!({"keys": {"secretRef": {"name": "k"}}});
        }
        serde_json::from_value(json!({
            "apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact",
            "metadata": {"name": "a", "namespace": "n", "generation": 2},
            "spec": spec, "status": status
        }))
        .unwrap()
    }

    fn cond(t: &str, s: &str) -> serde_json::Value {
        json!({"type": t, "status": s, "reason": "R", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn only_a_ready_and_where_asked_verified_digest_is_published() {
        let d = "sha256:aa";
        let verification = json!({"digest": d, "trust": "t", "verifiedAt": "2026-01-01T00:00:00Z"});
        let cases = [
            ("no status", artifact(false, json!(null)), None),
            (
                "ready",
                artifact(
                    false,
                    json!({"observedGeneration": 2, "lastSyncedDigest": d, "conditions": [cond("Ready", "True")]}),
                ),
                Some(d),
            ),
            (
                "old generation",
                artifact(
                    false,
                    json!({"observedGeneration": 1, "lastSyncedDigest": d, "conditions": [cond("Ready", "True")]}),
                ),
                None,
            ),
            (
                "not ready",
                artifact(
                    false,
                    json!({"observedGeneration": 2, "lastSyncedDigest": d, "conditions": [cond("Ready", "False")]}),
                ),
                None,
            ),
            (
                "never synced",
                artifact(false, json!({"observedGeneration": 2, "conditions": [cond("Ready", "False")]})),
                None,
            ),
            (
                "verify asked, none on record",
                artifact(
                    true,
                    json!({"observedGeneration": 2, "lastSyncedDigest": d, "conditions": [cond("Ready", "True")]}),
                ),
                None,
            ),
            (
                "verified",
                artifact(
                    true,
                    json!({"observedGeneration": 2, "lastSyncedDigest": d, "verification": verification, "conditions": [cond("Ready", "True"), cond("Verified", "True")]}),
                ),
                Some(d),
            ),
            (
                "verified another digest",
                artifact(
                    true,
                    json!({"observedGeneration": 2, "lastSyncedDigest": "sha256:bb", "verification": verification, "conditions": [cond("Ready", "True"), cond("Verified", "True")]}),
                ),
                None,
            ),
            (
                "a policy verified it",
                artifact(
                    false,
                    json!({"observedGeneration": 2, "lastSyncedDigest": d, "verification": verification, "conditions": [cond("Ready", "True"), cond("Verified", "True")]}),
                ),
                Some(d),
            ),
            (
                "a policy's verdict is False",
                artifact(
                    false,
                    json!({"observedGeneration": 2, "lastSyncedDigest": d, "verification": verification, "conditions": [cond("Ready", "True"), cond("Verified", "False")]}),
                ),
                None,
            ),
        ];
        for (name, a, want) in cases {
            let got = wanted(&a);
            match want {
                Some(d) => assert_eq!(got, Wanted::Digest(d.into()), "{name}"),
                None => assert!(matches!(got, Wanted::Wait(_)), "{name}: {got:?}"),
            }
        }
    }
}
