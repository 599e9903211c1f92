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
pub(crate) mod keyless;
#[cfg(test)]
mod keyless_tests;
pub(crate) mod keys;
pub(crate) mod notation;
mod set;
mod simple;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

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
    pub(crate) keyless: Option<Keyless>,
    pub(crate) predicate_types: Vec<String>,
    /// For key-signed signatures.
    pub(crate) tlog: TransparencyLog,
    /// The logs' keys and, for keyless, the CAs; `None`: the embedded
    /// public-good root.
    pub(crate) trust: Option<Arc<Trust>>,
    /// A Notary Project trust policy: this requirement is then met by a
    /// Notation signature alone (with cosign asked for too, that is a
    /// requirement of its own, and both must pass).
    pub(crate) notation: Option<Arc<notation::Config>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Keyless {
    pub(crate) rules: keyless::Rules,
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
        Requirement {
            required_by,
            keys,
            keyless: None,
            predicate_types,
            tlog: tlog.unwrap_or_default(),
            trust: None,
            notation: None,
        }
    }

    /// Met by a Notation signature that `cfg`'s trust policy accepts.
    pub(crate) fn notation(required_by: String, cfg: Arc<notation::Config>) -> Self {
        Requirement { notation: Some(cfg), ..Requirement::new(required_by, Vec::new(), &[], None) }
    }

    /// Keyless signatures count too; the log is `Required` unless the spec
    /// says otherwise.
    pub(crate) fn with_keyless(mut self, rules: keyless::Rules, tlog: Option<TransparencyLog>) -> Self {
        self.keyless = Some(Keyless { rules, tlog: tlog.unwrap_or(TransparencyLog::Required) });
        self
    }

    pub(crate) fn with_trust(mut self, trust: Arc<Trust>) -> Self {
        self.trust = Some(trust);
        self
    }

    pub(crate) fn trust(&self) -> Option<&Trust> {
        self.trust.as_deref().or_else(|| public_good())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    SigstoreBundle,
    SimpleSigning,
    Notation,
}

impl Format {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::SigstoreBundle => "SigstoreBundle",
            Format::SimpleSigning => "SimpleSigning",
            Format::Notation => "Notation",
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
    /// Where the key came from; `None` for keyless.
    pub(crate) key: Option<String>,
    pub(crate) key_fingerprint: String,
    pub(crate) keyless: Option<KeylessEvidence>,
    pub(crate) predicate_type: Option<String>,
    pub(crate) tlog: Option<LogEntry>,
    /// The trusted root, when one was used (keyless, or a log entry).
    pub(crate) trusted_root: Option<String>,
    /// An RFC 3161 signed time (seconds) and its authority.
    pub(crate) timestamp: Option<(String, i64)>,
    pub(crate) notation: Option<notation::Verified>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeylessEvidence {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// `identities[i]` of the requirement.
    pub(crate) rule: String,
    pub(crate) authority: Option<String>,
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
    #[error("no signature by a trusted signer: {0}")]
    UntrustedSigner(String),
    #[error("signature does not match: {0}")]
    SignatureMismatch(String),
    #[error("no transparency log entry, and spec.verify.transparencyLog is Required: {0}")]
    TransparencyLogMissing(String),
    #[error("the transparency log entry does not verify: {0}")]
    TransparencyLogInvalid(String),
    #[error("{0}")]
    BadKeys(String),
    #[error("trusted root: {0}")]
    BadTrustedRoot(String),
    #[error("unsupported transparency log entry: {0}")]
    UnsupportedLogEntry(String),
    #[error("not supported: {0}")]
    Unsupported(String),
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
    Unsupported(String),
    UnsupportedSignature(String),
    Mismatch(String),
}

/// A `trusted_root.json` larger than this is not one (public-good's is
/// about 10 KiB).
pub(crate) const MAX_TRUSTED_ROOT: usize = 1 << 20;

/// A trusted root: the CAs, logs and timestamp authorities signatures are
/// checked against.
pub(crate) struct Trust {
    pub(crate) root: TrustedRoot,
    pub(crate) verifier: Verifier,
    /// Where it came from, with its content's digest: for status.
    pub(crate) source: String,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl Trust {
    pub(crate) fn from_json(json: &str) -> Result<Trust, String> {
        Trust::load("a trusted root", json.as_bytes()).map_err(|e| e.to_string())
    }

    /// Read a `trusted_root.json` that `source` (a Secret, a ConfigMap, a
    /// file) holds.
    pub(crate) fn load(source: &str, bytes: &[u8]) -> Result<Trust, VerifyError> {
        let bad = |m: String| VerifyError::BadTrustedRoot(format!("{source}: {m}"));
        if bytes.len() > MAX_TRUSTED_ROOT {
            return Err(bad(format!("larger than {MAX_TRUSTED_ROOT} bytes")));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 JSON".into()))?;
        let root = TrustedRoot::from_json(text).map_err(|e| bad(e.to_string()))?;
        let verifier = Verifier::new(&root).map_err(|e| bad(e.to_string()))?;
        let digest = hex::encode(Sha256::digest(bytes));
        Ok(Trust { root, verifier, source: format!("{source} (sha256:{})", &digest[..16]) })
    }

    /// Can this root check what a requirement asks? Keyless needs a CA, a
    /// required log needs a log key.
    pub(crate) fn usable(&self, keyless: bool, tlog: TransparencyLog) -> Result<(), VerifyError> {
        let bad = |m: &str| VerifyError::BadTrustedRoot(format!("{}: {m}", self.source));
        if keyless && self.root.certificate_authorities.is_empty() {
            return Err(bad("lists no certificate authority, so no keyless signature can verify"));
        }
        if tlog == TransparencyLog::Required && self.root.tlogs.is_empty() {
            return Err(bad("lists no transparency log, and transparencyLog is Required"));
        }
        Ok(())
    }
}

pub(crate) const PUBLIC_GOOD: &str = "embedded public-good Sigstore root";

/// Used when no trusted root is configured: the public-good Sigstore root
/// built into the crate, never fetched.
pub(crate) fn public_good() -> Option<&'static Trust> {
    static T: OnceLock<Option<Trust>> = OnceLock::new();
    T.get_or_init(|| {
        Trust::load(PUBLIC_GOOD, SIGSTORE_PRODUCTION_TRUSTED_ROOT.as_bytes())
            .ok()
            .map(|t| Trust { source: PUBLIC_GOOD.to_string(), ..t })
    })
    .as_ref()
}

/// Check every requirement against what discovery found; all must pass.
pub(crate) fn check_all(
    requirements: &[Requirement],
    digest: &Digest,
    found: &Discovered,
) -> Result<Vec<Evidence>, VerifyError> {
    requirements
        .iter()
        .map(|r| {
            check(r, digest, found, r.trust()).map_err(|e| match r.required_by.starts_with("ClusterArtifactPolicy/") {
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
    if let Some(cfg) = &req.notation {
        return check_notation(req, cfg, digest, found);
    }
    let mut worst: Option<Rejection> = None;
    for c in &found.candidates {
        match candidate(req, digest, c, trust) {
            Ok(e) => return Ok(e),
            Err(r) => worst = worst.max(Some(r)),
        }
    }
    Err(rejected(worst, digest, found))
}

/// The error for the most telling rejection.
fn rejected(worst: Option<Rejection>, digest: &Digest, found: &Discovered) -> VerifyError {
    match worst {
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
        Some(Rejection::Unsupported(m)) => VerifyError::UnsupportedLogEntry(m),
        Some(Rejection::UnsupportedSignature(m)) => VerifyError::Unsupported(m),
    }
}

/// A Notation requirement: the statement for the repository, then the
/// first Notation signature it accepts (as `notation verify`, which tries
/// each in turn). A statement at level `skip` passes without one.
fn check_notation(
    req: &Requirement,
    cfg: &notation::Config,
    digest: &Digest,
    found: &Discovered,
) -> Result<Evidence, VerifyError> {
    let subject = found
        .subject
        .as_ref()
        .ok_or_else(|| VerifyError::Unsupported("a Notation check without the manifest's descriptor".into()))?;
    let st = notation::statement(cfg, subject).map_err(VerifyError::UntrustedSigner)?;
    let evidence = |found_by, signature: Digest, v: notation::Verified| Evidence {
        required_by: req.required_by.clone(),
        format: Format::Notation,
        found_by,
        signature,
        key: None,
        key_fingerprint: v.chain.first().map(|t| format!("sha256:{t}")).unwrap_or_default(),
        keyless: None,
        predicate_type: None,
        tlog: None,
        trusted_root: Some(cfg.source.clone()),
        timestamp: v.timestamp.clone(),
        notation: Some(v),
    };
    if st.skips_all() {
        let v = notation::Verified::skipped(st);
        return Ok(evidence(FoundBy::Skipped, digest.clone(), v));
    }
    let now = jiff::Timestamp::now().as_second();
    let mut worst: Option<Rejection> = None;
    for c in &found.candidates {
        let Envelope::Notation { media_type, bytes } = &c.envelope else {
            worst = worst.max(Some(Rejection::NotASignature("a cosign signature".into())));
            continue;
        };
        match notation::verify(st, &cfg.stores, subject, media_type, bytes, &found.crls, now) {
            Ok(v) => return Ok(evidence(c.found_by, c.manifest.clone(), v)),
            Err(f) => {
                let r = match f {
                    notation::Failure::Untrusted(m) => Rejection::Untrusted(m),
                    notation::Failure::Unsupported(m) => Rejection::UnsupportedSignature(m),
                    notation::Failure::Mismatch(m) => Rejection::Mismatch(m),
                };
                worst = worst.max(Some(r));
            }
        }
    }
    Err(match worst {
        None | Some(Rejection::NotASignature(_)) => VerifyError::NoSignature {
            digest: digest.to_string(),
            detail: " (no Notary Project signature among its referrers)".into(),
        },
        w => rejected(w, digest, found),
    })
}

fn candidate(req: &Requirement, digest: &Digest, c: &Candidate, trust: Option<&Trust>) -> Result<Evidence, Rejection> {
    let evidence = |format, key: &Key, predicate_type, tlog: Option<LogEntry>| Evidence {
        required_by: req.required_by.clone(),
        format,
        found_by: c.found_by,
        signature: c.manifest.clone(),
        key: Some(key.name.clone()),
        key_fingerprint: key.fingerprint.clone(),
        keyless: None,
        predicate_type,
        trusted_root: tlog.as_ref().and(trust).map(|t| t.source.clone()),
        tlog,
        timestamp: None,
        notation: None,
    };
    match &c.envelope {
        Envelope::Bundle(bytes) => match bundle::verify(bytes, digest, req, trust)? {
            bundle::Verified::Key { key, predicate_type, tlog } => {
                Ok(evidence(Format::SigstoreBundle, key, Some(predicate_type), tlog))
            }
            bundle::Verified::Keyless { predicate_type, v } => Ok(Evidence {
                required_by: req.required_by.clone(),
                format: Format::SigstoreBundle,
                found_by: c.found_by,
                signature: c.manifest.clone(),
                key: None,
                key_fingerprint: v.key_fingerprint,
                keyless: Some(KeylessEvidence {
                    subject: v.subject,
                    issuer: v.issuer,
                    rule: format!("keyless.identities[{}]", v.rule),
                    authority: v.authority,
                }),
                predicate_type: Some(predicate_type),
                tlog: v.tlog,
                trusted_root: trust.map(|t| t.source.clone()),
                timestamp: v.timestamp,
                notation: None,
            }),
        },
        Envelope::SimpleSigning { payload, annotations } => {
            let v = simple::verify(payload, annotations, digest, req, trust)?;
            Ok(evidence(Format::SimpleSigning, v.key, None, v.tlog))
        }
        Envelope::Notation { .. } => Err(Rejection::NotASignature("a Notation signature".into())),
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
        if let Some(k) = &r.keyless {
            h.update(k.rules.canonical.as_bytes());
            h.update(format!("{:?}", k.tlog).as_bytes());
        }
        h.update(r.trust().map(|t| t.source.as_str()).unwrap_or("").as_bytes());
        if let Some(n) = &r.notation {
            h.update(n.source.as_bytes());
        }
        h.update([1]);
    }
    Some(format!("sha256:{}", hex::encode(h.finalize())))
}
