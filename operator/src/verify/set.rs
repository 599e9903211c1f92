//! The Rekor bundle of a legacy signature (`dev.sigstore.cosign/bundle`):
//! a signed entry timestamp (SET) over the log entry, and the entry itself,
//! which must describe this very signature, payload and key.

use serde::Deserialize;
use sigstore_crypto::KeyAlgorithm;
use sigstore_types::{DerPublicKey, LogKeyId, SignatureBytes};

use super::{Key, LogEntry, Rejection, Trust};

#[derive(Deserialize)]
struct RekorBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    set: String,
    #[serde(rename = "Payload")]
    payload: SetPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetPayload {
    body: String,
    integrated_time: i64,
    log_index: u64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct Body {
    kind: String,
    spec: Spec,
}

#[derive(Deserialize)]
struct Spec {
    data: Data,
    signature: Sig,
}

#[derive(Deserialize)]
struct Data {
    hash: Hash,
}

#[derive(Deserialize)]
struct Hash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct Sig {
    content: String,
    #[serde(rename = "publicKey")]
    public_key: Content,
}

#[derive(Deserialize)]
struct Content {
    content: String,
}

fn invalid(m: impl Into<String>) -> Rejection {
    Rejection::TlogInvalid(m.into())
}

pub(super) fn verify(
    annotation: &str,
    payload: &[u8],
    signature_b64: &str,
    key: &Key,
    trust: Option<&Trust>,
) -> Result<LogEntry, Rejection> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle: RekorBundle =
        serde_json::from_str(annotation).map_err(|e| invalid(format!("unreadable Rekor bundle: {e}")))?;
    let p = &bundle.payload;
    // The SET signs the canonical (RFC 8785) JSON of these four fields:
    // keys in order, no spaces; a base64 body, a hex log ID and two
    // integers have nothing to escape.
    if !p.body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        || !p.log_id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(invalid("the Rekor bundle's body or log ID is not what Rekor writes"));
    }
    let canonical = format!(
        r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
        p.body, p.integrated_time, p.log_id, p.log_index
    );
    let trust = trust.ok_or_else(|| invalid("no trusted root to check it against"))?;
    let log_id = LogKeyId::new(hex::decode(&p.log_id).map_err(|_| invalid("log ID is not hex"))?);
    let when = k8s_openapi::jiff::Timestamp::from_second(p.integrated_time)
        .map_err(|_| invalid("integrated time out of range"))?;
    let log_key = trust
        .root
        .rekor_key_for_log_at(&log_id, when)
        .map_err(|_| invalid(format!("log {} is not in the trusted root", p.log_id)))?;
    let scheme = KeyAlgorithm::from_spki(&log_key).map_err(|e| invalid(e.to_string()))?.default_signing_scheme();
    let set = SignatureBytes::from_base64(&bundle.set).map_err(|_| invalid("the SET is not base64"))?;
    sigstore_crypto::verify_signature(&log_key, canonical.as_bytes(), &set, scheme)
        .map_err(|_| invalid("the signed entry timestamp does not verify with the log's key"))?;
    // The entry must be about this signature, not another one by the same key.
    let body = b64.decode(&p.body).map_err(|_| invalid("the entry body is not base64"))?;
    let body: Body = serde_json::from_slice(&body).map_err(|e| invalid(format!("unreadable log entry: {e}")))?;
    if body.kind != "hashedrekord" {
        return Err(invalid(format!("a {} log entry; a legacy signature logs a hashedrekord", body.kind)));
    }
    let payload_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload));
    if body.spec.data.hash.algorithm != "sha256" || body.spec.data.hash.value != payload_hash {
        return Err(invalid("the log entry is for another payload"));
    }
    let same_sig = b64.decode(&body.spec.signature.content).ok() == b64.decode(signature_b64).ok();
    let logged_key = b64
        .decode(&body.spec.signature.public_key.content)
        .ok()
        .and_then(|pem| String::from_utf8(pem).ok())
        .and_then(|pem| DerPublicKey::from_pem(&pem).ok());
    if !same_sig || logged_key.as_ref() != Some(&key.der) {
        return Err(invalid("the log entry is for another signature or key"));
    }
    Ok(LogEntry { index: p.log_index, integrated_time: Some(p.integrated_time) })
}
