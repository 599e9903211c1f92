//! Conditions, kstatus-style: `Ready`, `Reconciling` while work is pending
//! or being retried, `Stalled` when only a change by the user can help;
//! plus one detail condition per step (`Resolved`, `Fetched`, `Published`).
//! Pure: the reconcile says what happened, this says what the status shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Reason;

pub(crate) const READY: &str = "Ready";
pub(crate) const RECONCILING: &str = "Reconciling";
pub(crate) const STALLED: &str = "Stalled";
/// k8s-openapi writes an empty message as `null`, which the API server
/// refuses: every condition says something.
const SUCCEEDED: &str = "step succeeded";

/// The steps of a reconcile, in order; each owns a detail condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Resolve,
    Verify,
    Fetch,
    Publish,
}

impl Step {
    pub(crate) const ALL: [Step; 4] = [Step::Resolve, Step::Verify, Step::Fetch, Step::Publish];

    /// What a timeout says was going on.
    pub(crate) fn doing(self) -> &'static str {
        match self {
            Step::Resolve => "resolving",
            Step::Verify => "verifying signatures",
            Step::Fetch => "fetching",
            Step::Publish => "publishing",
        }
    }

    pub(crate) fn condition(self) -> &'static str {
        match self {
            Step::Resolve => "Resolved",
            Step::Verify => "Verified",
            Step::Fetch => "Fetched",
            Step::Publish => "Published",
        }
    }
}

/// How a reconcile ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every step succeeded; `message` says what is served. `verified`:
    /// signatures were required (and checked); without, no `Verified`.
    Synced { message: String, verified: bool },
    /// A step failed; the reason says whether retrying can help. `passed`:
    /// the steps this attempt completed; the others keep their last word.
    Failed { step: Step, reason: Reason, message: String, passed: Vec<Step> },
    /// The spec itself is wrong; nothing was attempted.
    InvalidSpec { message: String },
}

struct Want<'a> {
    type_: &'static str,
    status: bool,
    reason: Reason,
    message: &'a str,
}

/// The conditions after `outcome`, from the `existing` ones: a condition
/// whose status did not change keeps its `lastTransitionTime`; `Reconciling`
/// and `Stalled` are removed when false, as kstatus expects.
pub(crate) fn next(existing: &[Condition], outcome: &Outcome, generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let w = |type_, status, reason, message| Want { type_, status, reason, message };
    let mut wants = Vec::new();
    match outcome {
        Outcome::Synced { message, verified } => {
            wants.push(w(READY, true, Reason::Synced, message));
            for s in Step::ALL {
                if s != Step::Verify || *verified {
                    wants.push(w(s.condition(), true, Reason::Succeeded, SUCCEEDED));
                }
            }
        }
        Outcome::Failed { step, reason, message, passed } => {
            let stalled = reason.is_stalled();
            wants.push(w(READY, false, *reason, message));
            let flag = if stalled { STALLED } else { RECONCILING };
            let flag_reason = if stalled { *reason } else { Reason::RetryingAfterError };
            wants.push(w(flag, true, flag_reason, message));
            for s in Step::ALL {
                if s == *step {
                    wants.push(w(s.condition(), false, *reason, message));
                } else if passed.contains(&s) {
                    wants.push(w(s.condition(), true, Reason::Succeeded, SUCCEEDED));
                }
            }
        }
        Outcome::InvalidSpec { message } => {
            wants.push(w(READY, false, Reason::InvalidSpec, message));
            wants.push(w(STALLED, true, Reason::InvalidSpec, message));
        }
    }
    let mut out: Vec<Condition> = Vec::new();
    for want in wants {
        let status = if want.status { "True" } else { "False" }.to_string();
        let since = existing
            .iter()
            .find(|c| c.type_ == want.type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        out.push(Condition {
            type_: want.type_.to_string(),
            status,
            reason: want.reason.as_str().to_string(),
            message: want.message.to_string(),
            observed_generation: generation,
            last_transition_time: since,
        });
    }
    // Detail conditions of later steps that were not reached keep their
    // last word; after a sync without verification, `Verified` goes.
    let unverified = matches!(outcome, Outcome::Synced { verified: false, .. });
    for c in existing {
        if unverified && c.type_ == Step::Verify.condition() {
            continue;
        }
        if !out.iter().any(|o| o.type_ == c.type_) && Step::ALL.iter().any(|s| s.condition() == c.type_) {
            out.push(c.clone());
        }
    }
    out
}

pub(crate) const DRIFTED: &str = "Drifted";

/// Set `Drifted` (a pinned digest while the tag or range names another)
/// when `drift` says so, and drop it when it no longer does.
pub(crate) fn with_drift(
    mut conditions: Vec<Condition>,
    drift: Option<&str>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let existing = conditions.iter().position(|c| c.type_ == DRIFTED);
    match (drift, existing) {
        (None, Some(i)) => {
            conditions.remove(i);
        }
        (None, None) => {}
        (Some(message), at) => {
            let since = at.map_or_else(|| now.clone(), |i| conditions[i].last_transition_time.clone());
            let c = Condition {
                type_: DRIFTED.into(),
                status: "True".into(),
                reason: Reason::TagMoved.as_str().into(),
                message: message.into(),
                observed_generation: generation,
                last_transition_time: since,
            };
            match at {
                Some(i) => conditions[i] = c,
                None => conditions.push(c),
            }
        }
    }
    conditions
}

pub(crate) fn is_ready(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == READY && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn get<'a>(cs: &'a [Condition], t: &str) -> Option<&'a Condition> {
        cs.iter().find(|c| c.type_ == t)
    }

    #[test]
    fn synced_then_failed_then_synced() {
        let ok = Outcome::Synced { message: "3 files from v1@sha256:…".into(), verified: false };
        let a = next(&[], &ok, Some(1), &t(100));
        assert!(is_ready(&a));
        assert!(get(&a, RECONCILING).is_none() && get(&a, STALLED).is_none());
        assert_eq!(get(&a, "Published").unwrap().status, "True");
        assert!(a.iter().all(|c| !c.message.is_empty() && !c.reason.is_empty()), "{a:?}");

        let down = Outcome::Failed {
            step: Step::Resolve,
            reason: Reason::Unreachable,
            message: "cannot reach".into(),
            passed: vec![],
        };
        let b = next(&a, &down, Some(1), &t(200));
        assert!(!is_ready(&b));
        assert_eq!(get(&b, READY).unwrap().last_transition_time, t(200), "Ready changed");
        assert_eq!(get(&b, RECONCILING).unwrap().status, "True");
        assert_eq!(get(&b, "Resolved").unwrap().reason, "Unreachable");
        assert_eq!(get(&b, "Published").unwrap().status, "True", "the last publish still stands");
        assert_eq!(get(&b, "Published").unwrap().last_transition_time, t(100));

        let c = next(&b, &ok, Some(2), &t(300));
        assert!(is_ready(&c) && get(&c, RECONCILING).is_none());
        assert_eq!(get(&c, "Published").unwrap().last_transition_time, t(100), "never went false");
        assert_eq!(get(&c, READY).unwrap().observed_generation, Some(2));
    }

    #[test]
    fn verified_only_when_signatures_were_required() {
        let verified = Outcome::Synced { message: "m".into(), verified: true };
        let a = next(&[], &verified, Some(1), &t(1));
        assert_eq!(get(&a, "Verified").unwrap().status, "True");
        let refused = Outcome::Failed {
            step: Step::Verify,
            reason: Reason::UntrustedSigner,
            message: "no signature by a trusted key".into(),
            passed: vec![Step::Resolve],
        };
        let b = next(&a, &refused, Some(1), &t(2));
        assert!(!is_ready(&b));
        assert_eq!(get(&b, STALLED).unwrap().reason, "UntrustedSigner");
        assert_eq!(get(&b, "Verified").unwrap().reason, "UntrustedSigner");
        assert_eq!(get(&b, "Published").unwrap().status, "True", "the last good content stands");
        let plain = Outcome::Synced { message: "m".into(), verified: false };
        assert!(get(&next(&b, &plain, Some(2), &t(3)), "Verified").is_none(), "verification dropped from the spec");
    }

    #[test]
    fn drift_comes_and_goes() {
        let a = with_drift(vec![], Some("stable is now sha256:b"), Some(1), &t(1));
        assert_eq!(get(&a, DRIFTED).unwrap().reason, "TagMoved");
        let b = with_drift(a, Some("stable is now sha256:c"), Some(1), &t(2));
        assert_eq!(get(&b, DRIFTED).unwrap().last_transition_time, t(1), "still drifted");
        assert!(get(&with_drift(b, None, Some(1), &t(3)), DRIFTED).is_none());
    }

    #[test]
    fn stalled_and_invalid() {
        let unsafe_ = Outcome::Failed {
            step: Step::Fetch,
            reason: Reason::UnsafeContent,
            message: "../x".into(),
            passed: vec![Step::Resolve],
        };
        let a = next(&[], &unsafe_, Some(1), &t(1));
        assert_eq!(get(&a, STALLED).unwrap().reason, "UnsafeContent");
        assert!(get(&a, RECONCILING).is_none());
        assert_eq!(get(&a, "Resolved").unwrap().status, "True");
        assert!(get(&a, "Published").is_none(), "not reached");
        // a target in the way, found before fetching: Fetched keeps its last word
        let taken = Outcome::Failed {
            step: Step::Publish,
            reason: Reason::ConfigMapNotOwned,
            message: "taken".into(),
            passed: vec![Step::Resolve],
        };
        let c = next(&a, &taken, Some(1), &t(1));
        assert_eq!(get(&c, "Fetched").unwrap().reason, "UnsafeContent", "not fetched this time");
        assert_eq!(get(&c, "Published").unwrap().status, "False");
        let b = next(&a, &Outcome::InvalidSpec { message: "spec.url: …".into() }, Some(2), &t(2));
        assert_eq!(get(&b, READY).unwrap().reason, "InvalidSpec");
        assert_eq!(get(&b, STALLED).unwrap().last_transition_time, t(1), "still stalled");
    }
}
