//! The pure decisions of a reconcile: once the digest is known, is there
//! anything to do; after it ends, what to remember and when to come back.

use std::time::Duration;

use super::plan::jittered;
use crate::oci::Digest;
use crate::status::Reason;
use crate::status::conditions::Step;

/// What a sync's result depends on. The same inputs give the same content,
/// and the same verdict: a sync that stalled on them stalls again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub(crate) digest: Digest,
    pub(crate) generation: Option<i64>,
    /// A fingerprint of the trust material (keys in Secrets, cluster
    /// policies) that verification will use: rotating a key re-verifies
    /// though the Artifact's generation did not change. `None` until
    /// verification exists.
    pub(crate) trust: Option<String>,
}

/// A failed step, with what the status should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) step: Step,
    pub(crate) reason: Reason,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new<E>(step: Step, e: &E) -> Self
    where
        E: std::fmt::Display,
        for<'a> &'a E: Into<Reason>,
    {
        let reason = e.into();
        let message = match reason {
            // the path and the OS's words, then what to do about it
            Reason::NoSpace => format!("no space left: {e}; free space there or give it more"),
            _ => e.to_string(),
        };
        Failure { step, reason, message }
    }
}

/// What the status and the target say about the last sync.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed<'a> {
    pub(crate) last_synced_digest: Option<&'a str>,
    pub(crate) observed_generation: Option<i64>,
    pub(crate) ready: bool,
    /// The target holds the last synced digest (from the watch cache).
    pub(crate) target_current: bool,
    /// The trust fingerprint the last sync was verified with.
    pub(crate) trust: Option<&'a str>,
    /// The inputs a previous attempt stalled on, and how.
    pub(crate) stalled: Option<&'a (Inputs, Failure)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The target holds this digest, synced under this spec: nothing to do.
    UpToDate,
    /// These very inputs stalled before: report it again, fetch nothing.
    StillStalled(Failure),
    /// Fetch and publish.
    Sync,
}

pub(crate) fn decide(inputs: &Inputs, seen: &Observed) -> Decision {
    if let Some((stalled_on, failure)) = seen.stalled
        && stalled_on == inputs
    {
        return Decision::StillStalled(failure.clone());
    }
    let unchanged = seen.last_synced_digest.is_some_and(|d| d == inputs.digest.to_string())
        && seen.observed_generation == inputs.generation
        && seen.trust == inputs.trust.as_deref()
        && seen.ready
        && seen.target_current;
    if unchanged { Decision::UpToDate } else { Decision::Sync }
}

/// Remember a stalled failure against its inputs, so the same inputs are
/// not fetched again? Yes when the content itself is the problem; not when
/// the target is in the way (a ConfigMap someone else owns) or the
/// signatures are: either can change without any of the inputs changing
/// (a signature is pushed for the same digest), and checking is cheap.
pub(crate) fn remember(failure: &Failure) -> bool {
    failure.reason.is_stalled()
        && !matches!(failure.reason, Reason::ConfigMapNotOwned | Reason::VolumeNotOwned)
        && !failure.reason.is_verification()
}

/// 5 s, 10 s, 20 s … up to 5 minutes.
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5).saturating_mul(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(300))
}

/// When to reconcile again. A success or a stall waits for the interval
/// (a stall may be fixed by a change no watch sees, like a foreign
/// ConfigMap going away); a transient failure backs off, not capped by the
/// interval: with a short interval, failing Artifacts would otherwise
/// retry in a hot loop and starve the healthy ones.
pub(crate) fn requeue(result: Result<(), Reason>, interval: Duration, failures: u32, seed: u64) -> Duration {
    match result {
        Ok(()) => jittered(interval, seed),
        Err(r) if r.is_stalled() => jittered(interval, seed),
        Err(_) => backoff(failures),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn inputs(c: char, generation: i64) -> Inputs {
        Inputs { digest: d(c), generation: Some(generation), trust: None }
    }

    #[test]
    fn decisions() {
        let a = d('a').to_string();
        let synced = Observed {
            last_synced_digest: Some(&a),
            observed_generation: Some(1),
            ready: true,
            target_current: true,
            ..Default::default()
        };
        let too_big = Failure { step: Step::Publish, reason: Reason::ContentTooLarge, message: "big".into() };
        let stalled_on_b = (inputs('b', 1), too_big.clone());
        let cases: Vec<(&str, Inputs, Observed, Decision)> = vec![
            ("unchanged", inputs('a', 1), synced.clone(), Decision::UpToDate),
            ("new digest", inputs('b', 1), synced.clone(), Decision::Sync),
            ("new generation", inputs('a', 2), synced.clone(), Decision::Sync),
            ("not ready", inputs('a', 1), Observed { ready: false, ..synced.clone() }, Decision::Sync),
            (
                "target edited or gone",
                inputs('a', 1),
                Observed { target_current: false, ..synced.clone() },
                Decision::Sync,
            ),
            (
                "a rotated key",
                Inputs { trust: Some("k2".into()), ..inputs('a', 1) },
                Observed { trust: Some("k1"), ..synced.clone() },
                Decision::Sync,
            ),
            ("never synced", inputs('a', 1), Observed::default(), Decision::Sync),
            (
                "stalled on these inputs",
                inputs('b', 1),
                Observed { stalled: Some(&stalled_on_b), ..synced.clone() },
                Decision::StillStalled(too_big.clone()),
            ),
            (
                "stalled, then the digest moved",
                inputs('c', 1),
                Observed { stalled: Some(&stalled_on_b), ..synced.clone() },
                Decision::Sync,
            ),
            (
                "stalled, then the spec changed",
                inputs('b', 2),
                Observed { stalled: Some(&stalled_on_b), ..synced.clone() },
                Decision::Sync,
            ),
        ];
        for (name, inputs, seen, want) in cases {
            assert_eq!(decide(&inputs, &seen), want, "{name}");
        }
    }

    #[test]
    fn what_is_remembered() {
        let f = |reason| Failure { step: Step::Fetch, reason, message: String::new() };
        assert!(remember(&f(Reason::UnsafeContent)));
        assert!(remember(&f(Reason::ContentTooLarge)));
        assert!(!remember(&f(Reason::ConfigMapNotOwned)), "the owner may delete it; checked before any fetch");
        assert!(!remember(&f(Reason::Unreachable)));
        assert!(!remember(&f(Reason::UntrustedSigner)), "the right key may sign the same digest later");
    }

    #[test]
    fn requeues() {
        let i = Duration::from_secs(60);
        let cases = [
            (Ok(()), 0, i, i + i / 10),
            (Err(Reason::UnsafeContent), 3, i, i + i / 10),
            (Err(Reason::Unreachable), 1, Duration::from_secs(5), Duration::from_secs(5)),
            (Err(Reason::Unreachable), 3, Duration::from_secs(20), Duration::from_secs(20)),
            (Err(Reason::Timeout), 30, Duration::from_secs(300), Duration::from_secs(300)),
        ];
        for (result, failures, lo, hi) in cases {
            let got = requeue(result, i, failures, 7);
            assert!(got >= lo && got <= hi, "{result:?} after {failures}: {got:?}");
        }
        // a short interval does not make failures retry faster
        assert_eq!(requeue(Err(Reason::Unreachable), Duration::from_secs(1), 4, 0), Duration::from_secs(40));
    }
}
