//! The two envelopes the Notary Project signs in, read into one shape:
//! JWS (flattened JSON serialization) and COSE_Sign1. Only the reading is
//! here; what the fields must say is checked by the caller, and the
//! signature by `chain::verify_signature` over `signed`.

use base64::Engine as _;
use serde::Deserialize;

use super::cbor::{self, Value};

pub(crate) const JWS: &str = "application/jose+json";
pub(crate) const COSE: &str = "application/cose";
pub(crate) const PAYLOAD_V1: &str = "application/vnd.cncf.notary.payload.v1+json";
pub(crate) const SCHEME_X509: &str = "notary.x509";
pub(crate) const SCHEME_SIGNING_AUTHORITY: &str = "notary.x509.signingAuthority";
/// A signature that asks for a verification plugin (AWS Signer's, for one).
pub(crate) const VERIFICATION_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
/// Certificates in one envelope's chain at most: real chains have 2 to 4.
pub(crate) const MAX_CHAIN: usize = 10;

const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";
const SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";

/// The signature algorithms the Notary Project allows, each tied to one
/// key: RSA-PSS by modulus size, ECDSA by curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

impl Alg {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Es512 => "ES512",
        }
    }

    fn from_jws(name: &str) -> Option<Alg> {
        [Alg::Ps256, Alg::Ps384, Alg::Ps512, Alg::Es256, Alg::Es384, Alg::Es512].into_iter().find(|a| a.name() == name)
    }

    /// COSE's registered algorithm numbers (RFC 9053, RFC 8230).
    fn from_cose(n: i64) -> Option<Alg> {
        Some(match n {
            -37 => Alg::Ps256,
            -38 => Alg::Ps384,
            -39 => Alg::Ps512,
            -7 => Alg::Es256,
            -35 => Alg::Es384,
            -36 => Alg::Es512,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Jws,
    Cose,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Jws => "JWS",
            Kind::Cose => "COSE",
        }
    }
}

/// What an envelope says, not yet believed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub(crate) kind: Kind,
    pub(crate) alg: Alg,
    pub(crate) content_type: String,
    pub(crate) signing_scheme: String,
    /// Seconds since the epoch.
    pub(crate) signing_time: i64,
    pub(crate) expiry: Option<i64>,
    /// Critical headers beyond the ones the spec defines.
    pub(crate) unknown_critical: Vec<String>,
    /// `io.cncf.notary.verificationPlugin`, when a signature names one.
    pub(crate) plugin: Option<String>,
    pub(crate) payload: Vec<u8>,
    /// The bytes the signature covers.
    pub(crate) signed: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    /// DER, the signing certificate first.
    pub(crate) chain: Vec<Vec<u8>>,
    /// An RFC 3161 token over `signature`.
    pub(crate) timestamp: Option<Vec<u8>>,
    pub(crate) signing_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct EnvelopeError(pub(crate) String);

fn bad(m: impl Into<String>) -> EnvelopeError {
    EnvelopeError(m.into())
}

pub(crate) fn parse(media_type: &str, bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    match media_type {
        JWS => jws(bytes),
        COSE => cose(bytes),
        other => Err(bad(format!("an envelope of media type {other}, neither {JWS} nor {COSE}"))),
    }
}

// ---- JWS ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    payload: String,
    protected: String,
    header: Unprotected,
    signature: String,
}

#[derive(Deserialize)]
struct Unprotected {
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(rename = "io.cncf.notary.timestampSignature", default)]
    timestamp: Option<String>,
    #[serde(rename = "io.cncf.notary.signingAgent", default)]
    signing_agent: Option<String>,
}

fn jws(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let std = base64::engine::general_purpose::STANDARD;
    let f: Flattened = serde_json::from_slice(bytes).map_err(|e| bad(format!("not a JWS envelope: {e}")))?;
    let raw = url.decode(&f.protected).map_err(|_| bad("the JWS protected header is not base64url"))?;
    let protected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&raw).map_err(|e| bad(format!("the JWS protected header is not a JSON object: {e}")))?;
    let text = |k: &str| protected.get(k).and_then(|v| v.as_str());
    let alg_name = text("alg").ok_or_else(|| bad("the JWS protected header has no alg"))?;
    let alg = Alg::from_jws(alg_name)
        .ok_or_else(|| bad(format!("signature algorithm {alg_name} is not one the Notary Project allows")))?;
    let time = |k: &str| -> Result<Option<i64>, EnvelopeError> {
        match protected.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .map(|t| Some(t.as_second()))
                .ok_or_else(|| bad(format!("{k} is not an RFC 3339 time"))),
        }
    };
    let crit: Vec<String> = match protected.get("crit") {
        None => Vec::new(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("a crit entry that is not a string")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("crit is not an array")),
    };
    let present = |k: &str| protected.contains_key(k);
    let fields = Fields {
        alg,
        content_type: text("cty").map(str::to_string),
        signing_scheme: text(SIGNING_SCHEME).map(str::to_string),
        signing_time: time(SIGNING_TIME)?,
        authentic_signing_time: present(AUTHENTIC_SIGNING_TIME),
        expiry: time(EXPIRY)?,
        crit,
        plugin: text(VERIFICATION_PLUGIN).map(str::to_string),
    };
    if f.header.x5c.len() > MAX_CHAIN {
        return Err(bad(format!("a certificate chain of more than {MAX_CHAIN} certificates")));
    }
    let chain = f
        .header
        .x5c
        .iter()
        .map(|c| std.decode(c).map_err(|_| bad("an x5c certificate is not base64")))
        .collect::<Result<_, _>>()?;
    let timestamp = match &f.header.timestamp {
        Some(t) => Some(std.decode(t).map_err(|_| bad("the timestamp countersignature is not base64"))?),
        None => None,
    };
    let payload = url.decode(&f.payload).map_err(|_| bad("the JWS payload is not base64url"))?;
    let signature = url.decode(&f.signature).map_err(|_| bad("the JWS signature is not base64url"))?;
    let signed = format!("{}.{}", f.protected, f.payload).into_bytes();
    fields.into_envelope(Kind::Jws, payload, signed, signature, chain, timestamp, f.header.signing_agent)
}

// ---- COSE -----------------------------------------------------------------

const COSE_SIGN1_TAG: u64 = 18;
const LABEL_ALG: i64 = 1;
const LABEL_CRIT: i64 = 2;
const LABEL_CONTENT_TYPE: i64 = 3;
const LABEL_X5CHAIN: i64 = 33;
/// CBOR's tag for a time as seconds since the epoch.
const EPOCH_TIME_TAG: u64 = 1;

fn cose(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let v = cbor::decode(bytes).map_err(|e| bad(format!("not a COSE envelope: {e}")))?;
    let Value::Tag(COSE_SIGN1_TAG, inner) = v else {
        return Err(bad("not a COSE_Sign1 message (CBOR tag 18)"));
    };
    let Value::Array(parts) = *inner else { return Err(bad("a COSE_Sign1 message is an array of four")) };
    let [Value::Bytes(protected_raw), unprotected @ Value::Map(_), payload, Value::Bytes(signature)] = parts.as_slice()
    else {
        return Err(bad("a COSE_Sign1 message is [protected, unprotected, payload, signature]"));
    };
    let Value::Bytes(payload) = payload else {
        return Err(bad("a detached COSE payload is not a Notary Project signature"));
    };
    let protected = cbor::decode(protected_raw).map_err(|e| bad(format!("the COSE protected header: {e}")))?;
    if !matches!(protected, Value::Map(_)) {
        return Err(bad("the COSE protected header is not a map"));
    }
    let alg_n = protected
        .by_int(LABEL_ALG)
        .and_then(Value::as_int)
        .ok_or_else(|| bad("the COSE protected header has no alg"))?;
    let alg = Alg::from_cose(alg_n)
        .ok_or_else(|| bad(format!("COSE algorithm {alg_n} is not one the Notary Project allows")))?;
    let text = |v: Option<&Value>| match v {
        Some(Value::Text(t)) => Some(t.to_string()),
        _ => None,
    };
    let time = |k: &str| -> Result<Option<i64>, EnvelopeError> {
        match protected.by_text(k) {
            None => Ok(None),
            Some(Value::Tag(EPOCH_TIME_TAG, t)) => match **t {
                Value::Uint(_) | Value::Nint(_) => t.as_int().map(Some),
                // notation writes integers; a float is truncated as Go's decoder does
                Value::Float(f) if f.is_finite() && f.abs() < 1e15 => Some(Some(f.trunc() as i64)),
                _ => None,
            }
            .ok_or_else(|| bad(format!("{k} is not a time"))),
            Some(_) => Err(bad(format!("{k} is not a CBOR epoch time (tag 1)"))),
        }
    };
    let crit = match protected.by_int(LABEL_CRIT) {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|l| match l {
                Value::Text(t) => Ok(t.to_string()),
                l => l
                    .as_int()
                    .map(|n| n.to_string())
                    .ok_or_else(|| bad("a crit label that is neither text nor an integer")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("crit is not an array")),
    };
    let fields = Fields {
        alg,
        content_type: text(protected.by_int(LABEL_CONTENT_TYPE)),
        signing_scheme: text(protected.by_text(SIGNING_SCHEME)),
        signing_time: time(SIGNING_TIME)?,
        authentic_signing_time: protected.by_text(AUTHENTIC_SIGNING_TIME).is_some(),
        expiry: time(EXPIRY)?,
        crit,
        plugin: text(protected.by_text(VERIFICATION_PLUGIN)),
    };
    let chain = match unprotected.by_int(LABEL_X5CHAIN) {
        None => Vec::new(),
        Some(Value::Array(certs)) if certs.len() <= MAX_CHAIN => certs
            .iter()
            .map(|c| match c {
                Value::Bytes(b) => Ok(b.to_vec()),
                _ => Err(bad("an x5chain entry is not a byte string")),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => return Err(bad(format!("a certificate chain of more than {MAX_CHAIN} certificates"))),
        Some(_) => return Err(bad("x5chain is not an array")),
    };
    let timestamp = match unprotected.by_text(TIMESTAMP_SIGNATURE) {
        None => None,
        Some(Value::Bytes(b)) => Some(b.to_vec()),
        Some(_) => return Err(bad("the timestamp countersignature is not a byte string")),
    };
    let agent = text(unprotected.by_text(SIGNING_AGENT));
    let mut signed = Vec::with_capacity(protected_raw.len() + payload.len() + 24);
    cbor::head(4, 4, &mut signed);
    cbor::head(3, 10, &mut signed);
    signed.extend_from_slice(b"Signature1");
    cbor::bytes(protected_raw, &mut signed);
    cbor::bytes(&[], &mut signed);
    cbor::bytes(payload, &mut signed);
    fields.into_envelope(Kind::Cose, payload.to_vec(), signed, signature.to_vec(), chain, timestamp, agent)
}

// ---- both -----------------------------------------------------------------

struct Fields {
    alg: Alg,
    content_type: Option<String>,
    signing_scheme: Option<String>,
    signing_time: Option<i64>,
    authentic_signing_time: bool,
    expiry: Option<i64>,
    crit: Vec<String>,
    plugin: Option<String>,
}

impl Fields {
    /// The rules both envelopes share (notation-core-go's
    /// `validateProtectedHeaders` and `validateCriticalHeaders`, and the
    /// spec's "MUST reject a critical header it does not understand").
    #[allow(clippy::too_many_arguments)]
    fn into_envelope(
        self,
        kind: Kind,
        payload: Vec<u8>,
        signed: Vec<u8>,
        signature: Vec<u8>,
        chain: Vec<Vec<u8>>,
        timestamp: Option<Vec<u8>>,
        signing_agent: Option<String>,
    ) -> Result<Envelope, EnvelopeError> {
        let scheme = self.signing_scheme.ok_or_else(|| bad(format!("no {SIGNING_SCHEME} header")))?;
        let content_type = self.content_type.ok_or_else(|| bad("no content type header"))?;
        if scheme == SCHEME_X509 && self.authentic_signing_time {
            return Err(bad(format!("{AUTHENTIC_SIGNING_TIME} must not be present under {SCHEME_X509}")));
        }
        let signing_time = match (scheme.as_str(), self.signing_time) {
            (SCHEME_X509, Some(t)) => t,
            (SCHEME_X509, None) => return Err(bad(format!("no {SIGNING_TIME} header"))),
            // read no further: the caller refuses the scheme by name
            (SCHEME_SIGNING_AUTHORITY, _) => 0,
            (other, _) => return Err(bad(format!("signing scheme {other:?} is not one the Notary Project defines"))),
        };
        if self.crit.is_empty() {
            return Err(bad("no crit header"));
        }
        let mut must = vec![SIGNING_SCHEME];
        if self.expiry.is_some() {
            must.push(EXPIRY);
        }
        if let Some(m) = must.iter().find(|m| !self.crit.iter().any(|c| c == *m)) {
            return Err(bad(format!("{m} is not marked critical")));
        }
        if let Some(e) = self.expiry
            && e <= signing_time
            && scheme == SCHEME_X509
        {
            return Err(bad("the expiry is not after the signing time"));
        }
        let known = [SIGNING_SCHEME, EXPIRY, AUTHENTIC_SIGNING_TIME];
        let unknown_critical =
            self.crit.into_iter().filter(|c| !known.contains(&c.as_str()) && c != VERIFICATION_PLUGIN).collect();
        if chain.is_empty() {
            return Err(bad("the envelope carries no certificate chain"));
        }
        if signature.is_empty() {
            return Err(bad("the envelope's signature is empty"));
        }
        if payload.is_empty() {
            return Err(bad("the envelope's payload is empty"));
        }
        Ok(Envelope {
            kind,
            alg: self.alg,
            content_type,
            signing_scheme: scheme,
            signing_time,
            expiry: self.expiry,
            unknown_critical,
            plugin: self.plugin,
            payload,
            signed,
            signature,
            chain,
            timestamp,
            signing_agent,
        })
    }
}

/// The payload: which artifact the signature is for.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Payload {
    pub(crate) target_artifact: Target,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Target {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
}
