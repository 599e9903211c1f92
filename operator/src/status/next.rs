//! The next `ArtifactStatus`, from the last one and what a reconcile did.
//! Pure, so that "what changed" (and so whether to write at all) is decided
//! without the API server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, Outcome};
use crate::api::{
    ArtifactStatus, Drift, FilesSummary, SignatureEvidence, SourceStatus, TransferStatus, VerificationStatus,
    VolumeStatus,
};
use crate::fetch::{LayerRead, PullReport, Read};
use crate::oci::Digest;
use crate::verify::Evidence;

/// What a successful sync serves.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Served {
    pub(crate) tag: Option<String>,
    pub(crate) digest: Digest,
    pub(crate) drift: Option<Drift>,
    /// `None` when nothing had to be fetched or published.
    pub(crate) published: Option<FilesSummary>,
    /// Where a volume target put them.
    pub(crate) volume: Option<VolumeStatus>,
    /// The evidence for this digest; `None` when no signature is required.
    pub(crate) verification: Option<VerificationStatus>,
    /// Where what was published came from.
    pub(crate) sources: Vec<SourceStatus>,
    /// How it was read; `None` when nothing was fetched.
    pub(crate) transfer: Option<TransferStatus>,
}

impl Served {
    /// The Ready message: what is served, and a drift if there is one.
    pub(crate) fn describe(&self, previous: &ArtifactStatus) -> String {
        let n = self.published.as_ref().or(previous.files.as_ref()).map_or(0, |f| f.count);
        let mut m = format!("{n} files from {}", self.revision());
        if let Some(d) = &self.drift {
            m += &format!("; pinned, while {} is now {}", d.tag.as_deref().unwrap_or("the range"), d.latest);
        }
        m
    }

    fn revision(&self) -> String {
        match &self.tag {
            Some(t) => format!("{t}@{}", self.digest),
            None => self.digest.to_string(),
        }
    }
}

/// The evidence of a verification, as status shows it.
pub(crate) fn verification_status(digest: &Digest, trust: &str, evidence: &[Evidence]) -> VerificationStatus {
    let time = |secs: i64| k8s_openapi::jiff::Timestamp::from_second(secs).ok().map(Time);
    VerificationStatus {
        digest: digest.to_string(),
        trust: trust.to_string(),
        verified_at: Time(k8s_openapi::jiff::Timestamp::now()),
        signatures: evidence
            .iter()
            .map(|e| SignatureEvidence {
                required_by: e.required_by.clone(),
                format: e.format.as_str().into(),
                found_by: e.found_by.as_str().into(),
                signature_digest: e.signature.to_string(),
                key_fingerprint: e.key_fingerprint.clone(),
                key: e.key.clone(),
                certificate_subject: e
                    .keyless
                    .as_ref()
                    .map(|k| k.subject.clone())
                    .or_else(|| e.notation.as_ref().map(|n| n.signer.clone())),
                envelope: e.notation.as_ref().map(|n| n.envelope.to_string()),
                certificate_chain: e.notation.as_ref().map(|n| n.chain.clone()).unwrap_or_default(),
                signing_time: e.notation.as_ref().and_then(|n| time(n.signing_time)),
                trust_policy: e.notation.as_ref().map(|n| format!("{} ({})", n.statement, n.level)),
                logged_failures: e.notation.as_ref().map(|n| n.logged.clone()).unwrap_or_default(),
                certificate_issuer: e.keyless.as_ref().map(|k| k.issuer.clone()),
                identity: e.keyless.as_ref().map(|k| format!("{}.{}", e.required_by, k.rule)),
                certificate_authority: e.keyless.as_ref().and_then(|k| k.authority.clone()),
                trusted_root: e.trusted_root.clone(),
                predicate_type: e.predicate_type.clone(),
                tlog_index: e.tlog.as_ref().map(|t| t.index),
                integrated_time: e.tlog.as_ref().and_then(|t| t.integrated_time).and_then(time),
                timestamp_authority: e.timestamp.as_ref().map(|t| t.0.clone()),
                signed_timestamp: e.timestamp.as_ref().and_then(|t| time(t.1)),
            })
            .collect(),
    }
}

/// How a pull read its layers, as status shows it.
pub(crate) fn transfer_status(report: &PullReport) -> TransferStatus {
    let fetched = report.layers.iter().filter(|l| !l.from_cache);
    let (ranged, whole): (Vec<&LayerRead>, Vec<&LayerRead>) = fetched.partition(|l| l.read == Read::Ranges);
    TransferStatus {
        bytes_from_registry: report.registry_bytes,
        layers_whole: u32::try_from(whole.len()).unwrap_or(u32::MAX),
        layers_ranged: u32::try_from(ranged.len()).unwrap_or(u32::MAX),
        range_requests: ranged.iter().map(|l| l.requests).fold(0u32, u32::saturating_add),
        files_from_registry: report.files_from_registry(),
        files_reused: report.reused().0,
        bytes_reused: report.reused().1,
        whole_reason: report.layers.iter().find_map(|l| l.reason.clone()),
    }
}

/// The status after `outcome`. Equal to `old` when nothing changed, in
/// which case nothing is written.
pub(crate) fn next_status(
    old: &ArtifactStatus,
    outcome: &Outcome,
    served: Option<&Served>,
    generation: Option<i64>,
    requested_at: Option<&str>,
    now: &Time,
) -> ArtifactStatus {
    let mut new = ArtifactStatus {
        observed_generation: generation,
        last_handled_requested_at: requested_at.map(str::to_string),
        conditions: conditions::next(&old.conditions, outcome, generation, now),
        ..old.clone()
    };
    if let Some(s) = served {
        new.tag = s.tag.clone();
        new.digest = Some(s.digest.to_string());
        new.revision = Some(s.revision());
        new.drift = s.drift.clone();
        new.verification = s.verification.clone();
        let message = s.drift.as_ref().map(|d| {
            format!("pinned to {}, while {} names {}", d.pinned, d.tag.as_deref().unwrap_or("the range"), d.latest)
        });
        new.conditions = conditions::with_drift(new.conditions, message.as_deref(), generation, now);
        if let Some(files) = &s.published {
            new.files = Some(files.clone());
            new.volume = s.volume.clone();
            new.sources = s.sources.clone();
            new.transfer = s.transfer.clone();
            new.last_synced_digest = Some(s.digest.to_string());
            new.last_synced_at = Some(now.clone());
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Reason;
    use crate::status::conditions::Step;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn served(published: bool) -> Served {
        Served {
            tag: Some("v1".into()),
            digest: digest('a'),
            drift: None,
            published: published.then(|| FilesSummary { count: 2, bytes: 10, ..Default::default() }),
            volume: None,
            verification: None,
            sources: Vec::new(),
            transfer: None,
        }
    }

    #[test]
    fn an_unchanged_sync_writes_nothing() {
        let ok = |s: &Served, old: &ArtifactStatus| Outcome::Synced { message: s.describe(old), verified: false };
        let first = served(true);
        let a = next_status(
            &ArtifactStatus::default(),
            &ok(&first, &Default::default()),
            Some(&first),
            Some(1),
            None,
            &t(1),
        );
        assert_eq!(a.revision.as_deref(), Some(format!("v1@{}", digest('a')).as_str()));
        assert_eq!(a.last_synced_at, Some(t(1)));
        let again = served(false);
        let b = next_status(&a, &ok(&again, &a), Some(&again), Some(1), None, &t(2));
        assert_eq!(a, b, "same digest, nothing published: the status is equal, so it is not written");
    }

    #[test]
    fn a_failure_keeps_what_is_served() {
        let s = served(true);
        let a = next_status(
            &Default::default(),
            &Outcome::Synced { message: "m".into(), verified: false },
            Some(&s),
            Some(1),
            None,
            &t(1),
        );
        let down = Outcome::Failed {
            step: Step::Resolve,
            reason: Reason::Unreachable,
            message: "down".into(),
            passed: vec![],
        };
        let b = next_status(&a, &down, None, Some(1), None, &t(2));
        assert_eq!((b.digest, b.files, b.last_synced_at), (a.digest, a.files, a.last_synced_at));
        assert!(!conditions::is_ready(&b.conditions));
    }

    #[test]
    fn drift_is_recorded_and_cleared() {
        let mut s = served(false);
        s.drift =
            Some(Drift { pinned: digest('a').to_string(), latest: digest('b').to_string(), tag: Some("v1".into()) });
        let a = next_status(
            &Default::default(),
            &Outcome::Synced { message: "m".into(), verified: false },
            Some(&s),
            Some(1),
            None,
            &t(1),
        );
        assert!(a.drift.is_some() && a.conditions.iter().any(|c| c.type_ == conditions::DRIFTED));
        assert!(s.describe(&a).contains("pinned, while v1 is now"));
        s.drift = None;
        let b =
            next_status(&a, &Outcome::Synced { message: "m".into(), verified: false }, Some(&s), Some(1), None, &t(2));
        assert!(b.drift.is_none() && !b.conditions.iter().any(|c| c.type_ == conditions::DRIFTED));
    }
}
