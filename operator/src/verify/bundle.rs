//! Cosign v3's format: a Sigstore bundle v0.3 holding a DSSE envelope of an
//! in-toto statement about the artifact's manifest digest.

use serde::Deserialize;
use sigstore_types::bundle::VerificationMaterialContent;
use sigstore_types::{Bundle, SignatureContent};
use sigstore_verify::PublicKeyVerificationPolicy;

use super::{Key, LogEntry, Rejection, Requirement, Trust, keyless};
use crate::api::TransparencyLog;
use crate::oci::Digest;

const IN_TOTO: &str = "application/vnd.in-toto+json";

pub(super) enum Verified<'a> {
    Key { key: &'a Key, predicate_type: String, tlog: Option<LogEntry> },
    Keyless { predicate_type: String, v: keyless::Verified },
}

/// The log entry kinds `sigstore-verify` reads. Rekor v2's `dsse 0.0.2`
/// (what cosign makes for an image against Rekor v2) is not among them.
const KNOWN_ENTRIES: [(&str, &str); 4] =
    [("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2"), ("dsse", "0.0.1"), ("intoto", "0.0.2")];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    #[serde(default)]
    verification_material: Option<PeekMaterial>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekMaterial {
    #[serde(default)]
    tlog_entries: Vec<PeekEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekEntry {
    kind_version: Option<KindVersion>,
}

#[derive(Deserialize)]
struct KindVersion {
    kind: String,
    version: String,
}

/// A log entry of a kind that cannot be checked, named, before the bundle
/// is parsed (the parser refuses it with a generic error).
pub(super) fn unsupported_entry(text: &str) -> Option<String> {
    let peek: Peek = serde_json::from_str(text).ok()?;
    peek.verification_material?.tlog_entries.into_iter().filter_map(|e| e.kind_version).find_map(|kv| {
        (!KNOWN_ENTRIES.contains(&(kv.kind.as_str(), kv.version.as_str()))).then(|| {
            format!(
                "a {} {} entry (Rekor v2 DSSE entries are not supported yet; sign against Rekor v1)",
                kv.kind.chars().take(32).collect::<String>(),
                kv.version.chars().take(16).collect::<String>()
            )
        })
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(default)]
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

pub(super) fn verify<'a>(
    bytes: &[u8],
    digest: &Digest,
    req: &'a Requirement,
    trust: Option<&Trust>,
) -> Result<Verified<'a>, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|_| Rejection::Mismatch("the bundle is not UTF-8 JSON".into()))?;
    if let Some(what) = unsupported_entry(text) {
        return Err(Rejection::Unsupported(what));
    }
    let bundle = Bundle::from_json(text).map_err(|e| Rejection::Mismatch(format!("unreadable bundle: {e}")))?;
    let SignatureContent::DsseEnvelope(envelope) = &bundle.content else {
        return Err(Rejection::NotASignature("a bundle signing a blob, not an in-toto statement".into()));
    };
    if envelope.payload_type != IN_TOTO {
        return Err(Rejection::NotASignature(format!("a DSSE envelope of {:?}", envelope.payload_type)));
    }
    // Not yet authenticated: read only to say what it claims to be. Every
    // path below still needs a valid signature to pass.
    let statement: Statement = serde_json::from_slice(envelope.payload.as_bytes())
        .map_err(|e| Rejection::Mismatch(format!("the in-toto statement is unreadable: {e}")))?;
    if !req.predicate_types.contains(&statement.predicate_type) {
        return Err(Rejection::NotASignature(format!(
            "an attestation of predicate type {:?}",
            statement.predicate_type
        )));
    }
    if !statement.subject.iter().any(|s| s.digest.get("sha256").map(String::as_str) == Some(digest.hex())) {
        return Err(Rejection::OtherDigest(format!(
            "a signature whose statement is about another digest, not {digest}"
        )));
    }
    let VerificationMaterialContent::PublicKey(hinted) = &bundle.verification_material.content else {
        let k = req.keyless.as_ref().ok_or_else(|| {
            Rejection::Untrusted(format!("a keyless signature, and {} lists no keyless identities", req.required_by))
        })?;
        let trust = trust.ok_or_else(|| Rejection::Untrusted("no trusted root to check it against".into()))?;
        let v = keyless::verify(&bundle, envelope, digest, &k.rules, k.tlog, trust)?;
        return Ok(Verified::Keyless { predicate_type: statement.predicate_type, v });
    };
    if req.keys.is_empty() {
        return Err(Rejection::Untrusted(format!("a key-signed signature, and {} lists no keys", req.required_by)));
    }
    let pae = envelope.pae();
    let key = req
        .keys
        .iter()
        .find(|k| {
            sigstore_crypto::verify_signature(
                &k.der,
                &pae,
                &envelope.signature.sig,
                k.algorithm.default_signing_scheme(),
            )
            .is_ok()
        })
        .ok_or_else(|| match req.keys.iter().find(|k| !hinted.hint.is_empty() && k.hint() == hinted.hint) {
            Some(k) => Rejection::Mismatch(format!("the signature does not verify with {}, the key it names", k.name)),
            None => Rejection::Untrusted(format!("none of {} key(s) made this signature", req.keys.len())),
        })?;
    let entries = &bundle.verification_material.tlog_entries;
    let tlog = match (req.tlog, entries.is_empty()) {
        (TransparencyLog::Ignore, _) => None,
        (TransparencyLog::Required, true) => {
            return Err(Rejection::TlogMissing(format!("the signature by {} has no log entry", key.name)));
        }
        (TransparencyLog::IfPresent, true) => None,
        (_, false) => {
            let verifier =
                &trust.ok_or_else(|| Rejection::TlogInvalid("no trusted root to check it against".into()))?.verifier;
            let artifact = sigstore_types::Sha256Hash::from_hex(digest.hex())
                .map_err(|e| Rejection::Mismatch(format!("digest: {e}")))?;
            let result = verifier
                .verify(artifact, &bundle, &PublicKeyVerificationPolicy::new(key.der.clone()))
                .map_err(|e| Rejection::TlogInvalid(e.to_string()))?;
            let first = &entries[0];
            Some(LogEntry {
                index: first.log_index.get(),
                integrated_time: result.integrated_time().or(first.integrated_time).map(|t| t.as_second()),
            })
        }
    };
    Ok(Verified::Key { key, predicate_type: statement.predicate_type, tlog })
}
