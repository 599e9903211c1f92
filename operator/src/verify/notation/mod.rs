//! Notary Project signatures (what `notation sign` makes), checked as
//! `notation verify` checks them: the trust policy statement for the
//! repository, then for each signature found, in order, integrity (the
//! envelope, its chain's shape, the signature, the payload naming this
//! manifest), authenticity (anchored in a `ca:` store, a trusted
//! identity), expiry, the authentic timestamp and revocation, each
//! enforced or only logged as the statement's level says.

mod cbor;
mod chain;
pub(crate) mod envelope;
mod identity;
pub(crate) mod policy;
pub(crate) mod revocation;
pub(crate) mod store;
#[cfg(test)]
mod tests;
mod timestamp;

use std::path::Path;

use policy::{Action, Check, Identities, Policy, Statement, StoreType, VerifyTimestamp};
use store::Stores;

pub(crate) use envelope::{COSE, JWS};
#[cfg(any(test, fuzzing))]
pub(crate) use identity::parse_dn;

/// Every parser an envelope's bytes reach before any signature is
/// checked: the envelope, its payload, its certificates and their names.
#[cfg(any(test, fuzzing))]
pub(crate) fn parse_all(media_type: &str, bytes: &[u8]) {
    let Ok(env) = envelope::parse(media_type, bytes) else { return };
    let _ = serde_json::from_slice::<envelope::Payload>(&env.payload);
    for der in &env.chain {
        if let Ok(c) = chain::Cert::parse(der) {
            let _ = (c.key_alg(), identity::subject_dn(&c.cert.tbs_certificate.subject), revocation::crl_urls(&c));
        }
    }
    let _ = chain::validate(&env.chain);
}
/// The artifact type of a Notary Project signature manifest.
pub(crate) const SIGNATURE: &str = "application/vnd.cncf.notary.signature";

/// What verifies: a trust policy and its stores, from one place.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) policy: Policy,
    pub(crate) stores: Stores,
    /// Where it came from, for messages and status.
    pub(crate) source: String,
}

impl Config {
    /// notation's configuration directory (`~/.config/notation`).
    pub(crate) fn from_dir(dir: &Path) -> Result<Config, String> {
        let (policy, stores, source) = store::from_dir(dir)?;
        Ok(Config { policy, stores, source })
    }

    /// A Secret in Flux's layout.
    pub(crate) fn from_entries(
        source: &str,
        entries: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<Config, String> {
        let (policy, stores) = store::from_entries(source, entries)?;
        Ok(Config { policy, stores, source: source.to_string() })
    }
}

/// The manifest a signature must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject {
    /// `registry/repository`, as trust policy scopes name it.
    pub(crate) scope: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) media_type: String,
}

/// Why a signature was accepted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verified {
    pub(crate) envelope: &'static str,
    pub(crate) signer: String,
    /// sha256 of each certificate, the signing one first.
    pub(crate) chain: Vec<String>,
    pub(crate) signing_time: i64,
    /// A trusted RFC 3161 time and the authority that signed it.
    pub(crate) timestamp: Option<(String, i64)>,
    pub(crate) statement: String,
    pub(crate) level: String,
    /// Checks that failed but are only logged at this level.
    pub(crate) logged: Vec<String>,
}

impl Verified {
    /// A statement at level `skip`: nothing was verified, and status says so.
    pub(crate) fn skipped(st: &Statement) -> Verified {
        Verified {
            envelope: "",
            signer: String::new(),
            chain: Vec::new(),
            signing_time: 0,
            timestamp: None,
            statement: st.name.clone(),
            level: st.level.clone(),
            logged: vec!["signature verification skipped by the trust policy".into()],
        }
    }
}

/// How one signature failed, most telling last (as `verify::Rejection`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Failure {
    /// Authenticity, expiry, timestamp, revocation.
    Untrusted(String),
    /// A verification plugin, the signing-authority scheme.
    Unsupported(String),
    /// Integrity: a signature that does not match, or names another artifact.
    Mismatch(String),
}

/// The statement that applies, or why none does.
pub(crate) fn statement<'a>(cfg: &'a Config, subject: &Subject) -> Result<&'a Statement, String> {
    cfg.policy.applicable(&subject.scope).ok_or_else(|| {
        format!("no trust policy statement of {} applies to {} (registryScopes)", cfg.source, subject.scope)
    })
}

/// One signature against one statement, at `now` (seconds).
pub(crate) fn verify(
    st: &Statement,
    stores: &Stores,
    subject: &Subject,
    media_type: &str,
    bytes: &[u8],
    crls: &revocation::Crls,
    now: i64,
) -> Result<Verified, Failure> {
    // ---- integrity: always enforced
    let env = envelope::parse(media_type, bytes).map_err(|e| Failure::Mismatch(format!("unreadable envelope: {e}")))?;
    if env.signing_scheme == envelope::SCHEME_SIGNING_AUTHORITY {
        return Err(Failure::Unsupported(format!(
            "the {} signing scheme is not supported (only {})",
            envelope::SCHEME_SIGNING_AUTHORITY,
            envelope::SCHEME_X509
        )));
    }
    if let Some(p) = &env.plugin {
        return Err(Failure::Unsupported(format!(
            "the signature needs verification plugin {p:?}, which ocisync does not run"
        )));
    }
    if let Some(c) = env.unknown_critical.first() {
        return Err(Failure::Mismatch(format!("critical header {c:?} is not understood")));
    }
    if env.content_type != envelope::PAYLOAD_V1 {
        return Err(Failure::Mismatch(format!(
            "payload content type {:?}, not {}",
            env.content_type,
            envelope::PAYLOAD_V1
        )));
    }
    let certs = chain::validate(&env.chain).map_err(|e| Failure::Mismatch(format!("certificate chain: {e}")))?;
    let leaf = &certs[0];
    let key_alg = leaf.key_alg().map_err(|e| Failure::Mismatch(e.to_string()))?;
    if key_alg != env.alg {
        return Err(Failure::Mismatch(format!(
            "the envelope says {} but the signing certificate's key signs with {}",
            env.alg.name(),
            key_alg.name()
        )));
    }
    if !leaf.verifies(env.alg, &env.signed, &env.signature) {
        return Err(Failure::Mismatch(format!(
            "the {} signature does not verify with its certificate's key",
            env.kind.as_str()
        )));
    }
    let payload: envelope::Payload = serde_json::from_slice(&env.payload)
        .map_err(|e| Failure::Mismatch(format!("the payload is not a Notary Project payload: {e}")))?;
    let t = &payload.target_artifact;
    if t.digest != subject.digest || t.size != subject.size || t.media_type != subject.media_type {
        return Err(Failure::Mismatch(format!(
            "the signature is for {} ({}, {} bytes), not {} ({}, {} bytes)",
            t.digest, t.media_type, t.size, subject.digest, subject.media_type, subject.size
        )));
    }

    let mut logged = Vec::new();
    let mut outcome = |check: Check, result: Result<(), String>| -> Result<(), Failure> {
        match (result, st.action(check)) {
            (Ok(()), _) | (Err(_), Action::Skip) => Ok(()),
            (Err(e), Action::Log) => {
                logged.push(format!("{}: {e}", check.name()));
                Ok(())
            }
            (Err(e), Action::Enforce) => Err(Failure::Untrusted(e)),
        }
    };

    // ---- authenticity
    let anchors: Vec<&chain::Cert> =
        st.stores.iter().filter(|(t, _)| *t == StoreType::Ca).flat_map(|(t, n)| stores.certs(*t, n)).collect();
    let anchored = if anchors.is_empty() {
        Err(format!("statement {:?} names no ca: trust store with certificates", st.name))
    } else if certs.iter().any(|c| anchors.iter().any(|a| a.der == c.der)) {
        Ok(())
    } else {
        Err(format!(
            "the certificate chain of {:?} is not anchored in the trust stores of statement {:?}",
            leaf.subject, st.name
        ))
    };
    outcome(Check::Authenticity, anchored)?;
    outcome(Check::Authenticity, trusted_identity(st, leaf))?;

    // ---- expiry
    let expired = match env.expiry {
        Some(e) if now >= e => Err(format!("the signature expired at {}", time(e))),
        _ => Ok(()),
    };
    outcome(Check::Expiry, expired)?;

    // ---- authentic timestamp
    let (ts_result, timestamp) = authentic_time(st, stores, &env, &certs, now);
    outcome(Check::AuthenticTimestamp, ts_result)?;

    // ---- revocation
    if st.action(Check::Revocation) != Action::Skip {
        outcome(Check::Revocation, revoked(&certs, crls, now))?;
    }

    Ok(Verified {
        envelope: env.kind.as_str(),
        signer: leaf.subject.clone(),
        chain: certs.iter().map(chain::Cert::thumbprint).collect(),
        signing_time: env.signing_time,
        timestamp,
        statement: st.name.clone(),
        level: st.level.clone(),
        logged,
    })
}

fn trusted_identity(st: &Statement, leaf: &chain::Cert) -> Result<(), String> {
    let Identities::Subjects(ids) = &st.identities else { return Ok(()) };
    if ids.is_empty() {
        return Err(format!("statement {:?} has no x509.subject trusted identities", st.name));
    }
    let subject = identity::subject_dn(&leaf.cert.tbs_certificate.subject).ok_or_else(|| {
        format!(
            "the signing certificate's subject {:?} cannot be matched (repeated or multi-valued attributes)",
            leaf.subject
        )
    })?;
    if ids.iter().any(|(_, dn)| identity::is_subset(dn, &subject)) {
        Ok(())
    } else {
        Err(format!("signer {:?} is none of the trusted identities of statement {:?}", leaf.subject, st.name))
    }
}

/// notation's `verifyTimestamp`: the chain must be valid now, unless a
/// trusted timestamp (when the statement names a `tsa:` store, and, with
/// `afterCertExpiry`, only once a certificate has expired) says the
/// signature was made while it was.
fn authentic_time(
    st: &Statement,
    stores: &Stores,
    env: &envelope::Envelope,
    certs: &[chain::Cert],
    now: i64,
) -> (Result<(), String>, Option<(String, i64)>) {
    let tsa: Vec<&chain::Cert> =
        st.stores.iter().filter(|(t, _)| *t == StoreType::Tsa).flat_map(|(t, n)| stores.certs(*t, n)).collect();
    let has_tsa_store = st.stores.iter().any(|(t, _)| *t == StoreType::Tsa);
    let expired = certs.iter().any(|c| now > c.not_after);
    let use_timestamp = has_tsa_store && (st.verify_timestamp == VerifyTimestamp::Always || expired);
    if !use_timestamp {
        return (valid_at(certs, now, "now"), None);
    }
    let Some(token) = &env.timestamp else {
        return (Err("no timestamp countersignature in the envelope, and the trust policy asks for one".into()), None);
    };
    match timestamp::verify(token, &env.signature, &tsa) {
        Err(e) => (Err(format!("the timestamp countersignature: {e}")), None),
        Ok((authority, at)) => (valid_at(certs, at, "at the timestamp"), Some((authority, at))),
    }
}

fn valid_at(certs: &[chain::Cert], at: i64, when: &str) -> Result<(), String> {
    for c in certs {
        if at < c.not_before {
            return Err(format!("certificate {:?} is not valid {when}: valid from {}", c.subject, time(c.not_before)));
        }
        if at > c.not_after {
            return Err(format!(
                "certificate {:?} is not valid {when}: it expired at {}",
                c.subject,
                time(c.not_after)
            ));
        }
    }
    Ok(())
}

/// A revoked certificate, or one whose status is unknown, fails the check.
fn revoked(certs: &[chain::Cert], crls: &revocation::Crls, now: i64) -> Result<(), String> {
    match revocation::check(certs, crls, now) {
        revocation::Status::Good => Ok(()),
        revocation::Status::Revoked(m) => Err(m),
        revocation::Status::Unknown(m) => Err(format!("{m} (air-gapped? override revocation to skip)")),
    }
}

/// The CRLs `verify` will want for these envelopes: every URL their
/// chains name, when the statement checks revocation at all.
pub(crate) fn crl_urls<'a>(st: &Statement, envelopes: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<String> {
    if st.skips_all() || st.action(Check::Revocation) == Action::Skip {
        return Vec::new();
    }
    let mut urls: Vec<String> = envelopes
        .filter_map(|(mt, b)| envelope::parse(mt, b).ok())
        .filter_map(|e| e.chain.iter().map(|d| chain::Cert::parse(d)).collect::<Result<Vec<_>, _>>().ok())
        .flatten()
        .flat_map(|c| revocation::crl_urls(&c))
        .collect();
    urls.sort();
    urls.dedup();
    urls.truncate(MAX_CRLS);
    urls
}

/// CRLs fetched for one verification at most.
pub(crate) const MAX_CRLS: usize = 8;

pub(crate) fn time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_else(|_| secs.to_string())
}
