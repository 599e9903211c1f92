//! Signature bytes in, verdict and evidence out; no I/O. A requirement (the
//! Artifact's `spec.verify`, or one cluster policy) is met by one signature
//! that a listed key made over this digest, of an allowed predicate type,
//! with its transparency log entry checked as the requirement says.
//!
//! Bundles with a log entry go through `sigstore-verify`; it refuses
//! key-signed bundles with neither a log entry nor a signed timestamp
//! (what `cosign sign --tlog-upload=false` makes), so those, and legacy
//! simplesigning payloads, are checked here with the crate's primitives.

pub(crate) mod blob;
mod bundle;
pub(crate) mod keys;
mod set;
mod simple;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};
use sigstore_trust_root::{SIGSTORE_PRODUCTION_TRUSTED_ROOT, TrustedRoot};
use sigstore_verify::Verifier;

use crate::api::TransparencyLog;
use crate::oci::Digest;
use crate::oci::referrers::{Candidate, Discovered, Envelope, FoundBy};
pub(crate) use keys::Key;

/// Cosign's predicate type for a plain signature.
pub(crate) const COSIGN_SIGN_V1: &str = "https://sigstore.dev/cosign/sign/v1";

#[derive(Debug, Clone)]
pub(crate) struct Requirement {
    /// `spec.verify` or `ClusterArtifactPolicy/<name>`: who asked.
    pub(crate) required_by: String,
    pub(crate) keys: Vec<Key>,
    pub(crate) predicate_types: Vec<String>,
    pub(crate) tlog: TransparencyLog,
}

impl Requirement {
    pub(crate) fn new(
        required_by: String,
        keys: Vec<Key>,
        predicate_types: &[String],
        tlog: Option<TransparencyLog>,
    ) -> Self {
        let predicate_types =
            if predicate_types.is_empty() { vec![COSIGN_SIGN_V1.to_string()] } else { predicate_types.to_vec() };
        Requirement { required_by, keys, predicate_types, tlog: tlog.unwrap_or_default() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    SigstoreBundle,
    SimpleSigning,
}

impl Format {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::SigstoreBundle => "SigstoreBundle",
            Format::SimpleSigning => "SimpleSigning",
        }
    }
}

/// Why one requirement was met.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evidence {
    pub(crate) required_by: String,
    pub(crate) format: Format,
    pub(crate) found_by: FoundBy,
    pub(crate) signature: Digest,
    pub(crate) key: String,
    pub(crate) key_fingerprint: String,
    pub(crate) predicate_type: Option<String>,
    pub(crate) tlog: Option<LogEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogEntry {
    pub(crate) index: u64,
    /// Seconds since the epoch.
    pub(crate) integrated_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error("no signature of {digest} found{detail}")]
    NoSignature { digest: String, detail: String },
    #[error("no signature by a trusted key: {0}")]
    UntrustedSigner(String),
    #[error("signature does not match: {0}")]
    SignatureMismatch(String),
    #[error("no transparency log entry, and spec.verify.transparencyLog is Required: {0}")]
    TransparencyLogMissing(String),
    #[error("the transparency log entry does not verify: {0}")]
    TransparencyLogInvalid(String),
    #[error("{0}")]
    BadKeys(String),
    #[error("{policy} is not satisfied: {inner}")]
    PolicyViolation { policy: String, inner: Box<VerifyError> },
}

/// How one candidate failed one requirement. Ordered: when nothing
/// verifies, the most telling failure is reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rejection {
    NotASignature(String),
    Untrusted(String),
    OtherDigest(String),
    TlogMissing(String),
    TlogInvalid(String),
    Mismatch(String),
}

/// The logs' keys, for log entries in key-signed signatures.
pub(crate) struct Trust {
    pub(crate) root: TrustedRoot,
    pub(crate) verifier: Verifier,
}

impl Trust {
    pub(crate) fn from_json(json: &str) -> Result<Trust, String> {
        let root = TrustedRoot::from_json(json).map_err(|e| e.to_string())?;
        let verifier = Verifier::new(&root).map_err(|e| e.to_string())?;
        Ok(Trust { root, verifier })
    }
}

/// A configurable trusted root comes with keyless verification (the next
/// step); until then log entries are checked against the public-good
/// Sigstore root embedded in the crate, never fetched.
pub(crate) fn public_good() -> Option<&'static Trust> {
    static T: OnceLock<Option<Trust>> = OnceLock::new();
    T.get_or_init(|| Trust::from_json(SIGSTORE_PRODUCTION_TRUSTED_ROOT).ok()).as_ref()
}

/// Check every requirement against what discovery found; all must pass.
pub(crate) fn check_all(
    requirements: &[Requirement],
    digest: &Digest,
    found: &Discovered,
) -> Result<Vec<Evidence>, VerifyError> {
    let trust = public_good();
    requirements
        .iter()
        .map(|r| {
            check(r, digest, found, trust).map_err(|e| match r.required_by.starts_with("ClusterArtifactPolicy/") {
                true => VerifyError::PolicyViolation { policy: r.required_by.clone(), inner: Box::new(e) },
                false => e,
            })
        })
        .collect()
}

/// One requirement: the first candidate that meets it, or the most telling
/// reason none did.
pub(crate) fn check(
    req: &Requirement,
    digest: &Digest,
    found: &Discovered,
    trust: Option<&Trust>,
) -> Result<Evidence, VerifyError> {
    let mut worst: Option<Rejection> = None;
    for c in &found.candidates {
        match candidate(req, digest, c, trust) {
            Ok(e) => return Ok(e),
            Err(r) => worst = worst.max(Some(r)),
        }
    }
    Err(match worst {
        None | Some(Rejection::NotASignature(_)) => {
            let mut seen: Vec<String> = found.others.clone();
            if let Some(Rejection::NotASignature(what)) = &worst {
                seen.push(what.clone());
            }
            seen.sort();
            seen.dedup();
            let detail = if seen.is_empty() {
                String::new()
            } else {
                format!(" (its referrers are not signatures: {})", seen.join(", "))
            };
            VerifyError::NoSignature { digest: digest.to_string(), detail }
        }
        Some(Rejection::Untrusted(m)) => VerifyError::UntrustedSigner(m),
        Some(Rejection::OtherDigest(m) | Rejection::Mismatch(m)) => VerifyError::SignatureMismatch(m),
        Some(Rejection::TlogMissing(m)) => VerifyError::TransparencyLogMissing(m),
        Some(Rejection::TlogInvalid(m)) => VerifyError::TransparencyLogInvalid(m),
    })
}

fn candidate(req: &Requirement, digest: &Digest, c: &Candidate, trust: Option<&Trust>) -> Result<Evidence, Rejection> {
    let evidence = |format, key: &Key, predicate_type, tlog| Evidence {
        required_by: req.required_by.clone(),
        format,
        found_by: c.found_by,
        signature: c.manifest.clone(),
        key: key.name.clone(),
        key_fingerprint: key.fingerprint.clone(),
        predicate_type,
        tlog,
    };
    match &c.envelope {
        Envelope::Bundle(bytes) => {
            let v = bundle::verify(bytes, digest, req, trust.map(|t| &t.verifier))?;
            Ok(evidence(Format::SigstoreBundle, v.key, Some(v.predicate_type), v.tlog))
        }
        Envelope::SimpleSigning { payload, annotations } => {
            let v = simple::verify(payload, annotations, digest, req, trust)?;
            Ok(evidence(Format::SimpleSigning, v.key, None, v.tlog))
        }
    }
}

/// A fingerprint of everything verification depends on besides the
/// digest: rotating a key, or changing a policy, changes it.
pub(crate) fn fingerprint(requirements: &[Requirement]) -> Option<String> {
    if requirements.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for r in requirements {
        h.update(r.required_by.as_bytes());
        h.update([0]);
        let mut keys: Vec<&str> = r.keys.iter().map(|k| k.fingerprint.as_str()).collect();
        keys.sort_unstable();
        for k in keys {
            h.update(k.as_bytes());
            h.update([0]);
        }
        for p in &r.predicate_types {
            h.update(p.as_bytes());
            h.update([0]);
        }
        h.update(format!("{:?}", r.tlog).as_bytes());
        h.update([1]);
    }
    Some(format!("sha256:{}", hex::encode(h.finalize())))
}
