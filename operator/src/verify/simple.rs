//! Cosign's legacy format: a simplesigning JSON payload naming the manifest
//! digest, signed as raw bytes, the signature in a layer annotation, an
//! optional Rekor bundle (SET) in another.

use std::collections::BTreeMap;

use serde::Deserialize;
use sigstore_crypto::{KeyAlgorithm, SigningScheme};
use sigstore_types::SignatureBytes;

use super::{Key, LogEntry, Rejection, Requirement, Trust};
use crate::api::TransparencyLog;
use crate::oci::Digest;
use crate::oci::referrers::{CERTIFICATE_ANNOTATION, REKOR_BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION};

const COSIGN_TYPE: &str = "cosign container image signature";

pub(super) struct Verified<'a> {
    pub(super) key: &'a Key,
    pub(super) tlog: Option<LogEntry>,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(rename = "type")]
    type_: String,
    image: Image,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Cosign signs legacy payloads with SHA-256 whatever the curve.
fn schemes(algorithm: KeyAlgorithm) -> &'static [SigningScheme] {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => &[SigningScheme::EcdsaP256Sha256],
        KeyAlgorithm::EcdsaP384 => &[SigningScheme::EcdsaP384Sha256, SigningScheme::EcdsaP384Sha384],
        KeyAlgorithm::Ed25519 => &[SigningScheme::Ed25519],
        KeyAlgorithm::Rsa => &[SigningScheme::RsaPkcs1Sha256],
        _ => &[],
    }
}

pub(super) fn verify<'a>(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    digest: &Digest,
    req: &'a Requirement,
    trust: Option<&Trust>,
) -> Result<Verified<'a>, Rejection> {
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| Rejection::Mismatch(format!("the simplesigning payload is unreadable: {e}")))?;
    if p.critical.type_ != COSIGN_TYPE {
        return Err(Rejection::NotASignature(format!("a simplesigning payload of type {:?}", p.critical.type_)));
    }
    if p.critical.image.digest != digest.to_string() {
        return Err(Rejection::OtherDigest(format!("a legacy signature of {}, not {digest}", p.critical.image.digest)));
    }
    if annotations.contains_key(CERTIFICATE_ANNOTATION) {
        return Err(Rejection::Untrusted(
            "a keyless signature (a certificate); keyless identities are not configured".into(),
        ));
    }
    let b64 = annotations.get(SIGNATURE_ANNOTATION).map(String::as_str).unwrap_or_default();
    let sig = SignatureBytes::from_base64(b64)
        .map_err(|_| Rejection::Mismatch("the signature annotation is not base64".into()))?;
    let key = req
        .keys
        .iter()
        .find(|k| {
            schemes(k.algorithm).iter().any(|s| sigstore_crypto::verify_signature(&k.der, payload, &sig, *s).is_ok())
        })
        .ok_or_else(|| Rejection::Untrusted(format!("none of {} key(s) made this signature", req.keys.len())))?;
    let set = annotations.get(REKOR_BUNDLE_ANNOTATION);
    let tlog = match (req.tlog, set) {
        (TransparencyLog::Ignore, _) => None,
        (TransparencyLog::Required, None) => {
            return Err(Rejection::TlogMissing(format!("the legacy signature by {} has no Rekor bundle", key.name)));
        }
        (TransparencyLog::IfPresent, None) => None,
        (_, Some(set)) => Some(super::set::verify(set, payload, b64, key, trust)?),
    };
    Ok(Verified { key, tlog })
}
