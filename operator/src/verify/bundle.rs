//! Cosign v3's format: a Sigstore bundle v0.3 holding a DSSE envelope of an
//! in-toto statement about the artifact's manifest digest.

use serde::Deserialize;
use sigstore_types::bundle::VerificationMaterialContent;
use sigstore_types::{Bundle, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, Verifier};

use super::{Key, LogEntry, Rejection, Requirement};
use crate::api::TransparencyLog;
use crate::oci::Digest;

const IN_TOTO: &str = "application/vnd.in-toto+json";

pub(super) struct Verified<'a> {
    pub(super) key: &'a Key,
    pub(super) predicate_type: String,
    pub(super) tlog: Option<LogEntry>,
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
    verifier: Option<&Verifier>,
) -> Result<Verified<'a>, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|_| Rejection::Mismatch("the bundle is not UTF-8 JSON".into()))?;
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
        return Err(Rejection::Untrusted(
            "a keyless signature (a certificate); keyless identities are not configured".into(),
        ));
    };
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
                verifier.ok_or_else(|| Rejection::TlogInvalid("no trusted root to check it against".into()))?;
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
    Ok(Verified { key, predicate_type: statement.predicate_type, tlog })
}
