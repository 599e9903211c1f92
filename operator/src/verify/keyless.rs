//! Keyless signatures: a short-lived certificate from a trusted root's CA
//! for a CI or user identity. `sigstore-verify` checks the chain at the
//! signing time it can prove (a log entry's SET, an RFC 3161 timestamp),
//! the SCT, the log entry and the signature; the identity rules are ours,
//! because they OR several issuer/subject pairs and allow patterns.
//!
//! A certificate with no proven signing time (no log entry, no timestamp:
//! `cosign sign --certificate … --tlog-upload=false`) can only pass when
//! the log is not required; its chain is then checked at the current time,
//! as cosign does with `--insecure-ignore-tlog`.

use regex::{Regex, RegexBuilder};
use rustls_pki_types::{CertificateDer, UnixTime};
use sigstore_crypto::{CertificateInfo, WEBPKI_VERIFICATION_ALGS, parse_certificate_info};
use sigstore_types::bundle::VerificationMaterialContent;
use sigstore_types::{Bundle, DerCertificate, DsseEnvelope, Sha256Hash};
use sigstore_verify::{Error, VerificationPolicy};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::der::Decode;

use super::{LogEntry, Rejection, Trust};
use crate::api::{Identity, TransparencyLog};
use crate::oci::Digest;

/// Identity rules a spec may list, and how long one value or pattern may be.
pub(crate) const MAX_IDENTITIES: usize = 32;
const MAX_VALUE: usize = 1024;
/// Compiled size per pattern: a tenant's pattern cannot cost the operator
/// more than this, whatever it says.
const MAX_COMPILED: usize = 256 * 1024;
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), as webpki wants it.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Pattern(Regex),
}

impl Matcher {
    fn new(field: &str, exact: &Option<String>, pattern: &Option<String>) -> Result<Matcher, String> {
        match (exact, pattern) {
            (Some(v), None) if !v.is_empty() && v.len() <= MAX_VALUE => Ok(Matcher::Exact(v.clone())),
            (None, Some(p)) if !p.is_empty() && p.len() <= MAX_VALUE => RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(MAX_COMPILED)
                .build()
                .map(Matcher::Pattern)
                .map_err(|e| format!("{field}RegExp is not a valid pattern: {}", first_line(&e.to_string()))),
            (Some(_), Some(_)) => Err(format!("give {field} or {field}RegExp, not both")),
            (None, None) => Err(format!("{field} or {field}RegExp is required")),
            _ => Err(format!("{field}: empty or longer than {MAX_VALUE} bytes")),
        }
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(v) => v == value,
            Matcher::Pattern(r) => r.is_match(value),
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// The identity rules of one requirement, compiled once.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    rules: Vec<(Matcher, Matcher)>,
    pub(crate) ignore_sct: bool,
    /// What the rules say, for the trust fingerprint.
    pub(crate) canonical: String,
}

impl Rules {
    pub(crate) fn compile(identities: &[Identity], ignore_sct: bool) -> Result<Rules, String> {
        if identities.is_empty() || identities.len() > MAX_IDENTITIES {
            return Err(format!("keyless.identities: give 1 to {MAX_IDENTITIES}"));
        }
        let rules = identities
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let issuer = Matcher::new("issuer", &id.issuer, &id.issuer_reg_exp);
                let subject = Matcher::new("subject", &id.subject, &id.subject_reg_exp);
                issuer.and_then(|a| Ok((a, subject?))).map_err(|e| format!("keyless.identities[{i}]: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Rules { rules, ignore_sct, canonical: Rules::canonical(identities, ignore_sct) })
    }

    /// What a list of rules says, as text: the trust fingerprint's input,
    /// and the key rules are shared under.
    pub(crate) fn canonical(identities: &[Identity], ignore_sct: bool) -> String {
        serde_json::to_string(&(identities, ignore_sct)).unwrap_or_default()
    }

    /// The first rule that `subject` and `issuer` satisfy.
    pub(crate) fn matching(&self, subject: &str, issuer: &str) -> Option<usize> {
        self.rules.iter().position(|(i, s)| i.matches(issuer) && s.matches(subject))
    }
}

pub(super) struct Verified {
    pub(super) subject: String,
    pub(super) issuer: String,
    pub(super) rule: usize,
    pub(super) authority: Option<String>,
    pub(super) key_fingerprint: String,
    pub(super) tlog: Option<LogEntry>,
    /// An RFC 3161 time and the authority trusted for it.
    pub(super) timestamp: Option<(String, i64)>,
}

pub(super) fn verify(
    bundle: &Bundle,
    envelope: &DsseEnvelope,
    digest: &Digest,
    rules: &Rules,
    tlog: TransparencyLog,
    trust: &Trust,
) -> Result<Verified, Rejection> {
    let material = &bundle.verification_material;
    let entries = &material.tlog_entries;
    let stamped = !material.timestamp_verification_data.rfc3161_timestamps.is_empty();
    if tlog == TransparencyLog::Required && entries.is_empty() {
        return Err(Rejection::TlogMissing("the keyless signature has no transparency log entry".into()));
    }
    let leaf = bundle.signing_certificate().ok_or_else(|| Rejection::Mismatch("no signing certificate".into()))?;
    let (info, tlog_entry, timestamp) = if entries.is_empty() && !stamped {
        (untimed(bundle, leaf, envelope, rules, trust)?, None, None)
    } else {
        let mut policy = VerificationPolicy::any_identity();
        if rules.ignore_sct || trust.root.ctlogs.is_empty() {
            policy = policy.skip_sct();
        }
        if tlog == TransparencyLog::Ignore || entries.is_empty() {
            policy = policy.skip_tlog_unsafe();
        }
        let artifact = Sha256Hash::from_hex(digest.hex()).map_err(|e| Rejection::Mismatch(format!("digest: {e}")))?;
        let result = trust.verifier.verify(artifact, bundle, &policy).map_err(rejection)?;
        let info = result.certificate().cloned().ok_or_else(|| Rejection::Mismatch("no certificate".into()))?;
        let logged: Vec<i64> = entries.iter().filter_map(|e| e.integrated_time).map(|t| t.as_second()).collect();
        let tsa = result.verified_timestamps().iter().map(|t| t.as_second()).filter(|t| !logged.contains(t)).min();
        let tlog_entry = (!entries.is_empty() && tlog != TransparencyLog::Ignore).then(|| LogEntry {
            index: entries[0].log_index.get(),
            integrated_time: result.integrated_time().map(|t| t.as_second()),
        });
        let timestamp = tsa.filter(|_| stamped).map(|t| (timestamp_authority(trust), t));
        (info, tlog_entry, timestamp)
    };
    let subject = info.identity.as_ref().map(|i| i.as_str().to_string()).unwrap_or_default();
    let issuer = info.issuer.clone().unwrap_or_default();
    let rule = rules.matching(&subject, &issuer).ok_or_else(|| {
        Rejection::Untrusted(format!(
            "a certificate for {subject:?} from issuer {issuer:?} matches none of {} keyless identities",
            rules.rules.len()
        ))
    })?;
    Ok(Verified {
        subject,
        issuer,
        rule,
        authority: authority(bundle, leaf, trust),
        key_fingerprint: super::keys::spki_fingerprint(info.public_key.as_bytes()),
        tlog: tlog_entry,
        timestamp,
    })
}

fn rejection(e: Error) -> Rejection {
    let m = e.to_string();
    match e {
        Error::Certificate(_) => Rejection::Untrusted(m),
        Error::TransparencyLog(_) | Error::Timestamp(_) => Rejection::TlogInvalid(m),
        Error::UnsupportedBundle(_) => Rejection::Unsupported(m),
        _ => Rejection::Mismatch(m),
    }
}

/// A certificate with no proven signing time: chain, EKU and validity now,
/// then the signature with its key.
fn untimed(
    bundle: &Bundle,
    leaf: &DerCertificate,
    envelope: &DsseEnvelope,
    rules: &Rules,
    trust: &Trust,
) -> Result<CertificateInfo, Rejection> {
    if !rules.ignore_sct && !trust.root.ctlogs.is_empty() {
        return Err(Rejection::Untrusted(
            "the certificate has no log entry or timestamp, and its SCT is only checked with one; \
             set keyless.ignoreSCT to accept it"
                .into(),
        ));
    }
    let now = jiff::Timestamp::now();
    let anchors: Vec<_> = trust
        .root
        .certificate_authorities
        .iter()
        .filter(|ca| ca.valid_for.is_none_or(|w| w.contains(now)))
        .flat_map(|ca| ca.cert_chain.certificates.iter())
        .filter_map(|c| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(c.raw_bytes.as_bytes())).ok().map(|a| a.to_owned())
        })
        .collect();
    let intermediates: Vec<CertificateDer<'_>> = match &bundle.verification_material.content {
        VerificationMaterialContent::X509CertificateChain { certificates } => {
            certificates.iter().skip(1).map(|c| CertificateDer::from(c.raw_bytes.as_bytes())).collect()
        }
        _ => Vec::new(),
    };
    let leaf_der = CertificateDer::from(leaf.as_bytes());
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| Rejection::Mismatch(format!("certificate: {e}")))?;
    let seconds = u64::try_from(now.as_second()).unwrap_or(0);
    ee.verify_for_usage(
        WEBPKI_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
        KeyUsage::required(CODE_SIGNING),
        None,
        None,
    )
    .map_err(|e| Rejection::Untrusted(format!("the certificate does not chain to a trusted CA now: {e:?}")))?;
    let info = parse_certificate_info(leaf).map_err(|e| Rejection::Mismatch(format!("certificate: {e}")))?;
    sigstore_crypto::verify_signature(
        &info.public_key,
        &envelope.pae(),
        &envelope.signature.sig,
        info.key_algorithm.default_signing_scheme(),
    )
    .map_err(|_| Rejection::Mismatch("the signature does not verify with the certificate's key".into()))?;
    Ok(info)
}

/// The trusted root's CA that issued the leaf (or the bundle's last
/// intermediate): the one holding a certificate whose subject is that
/// issuer.
fn authority(bundle: &Bundle, leaf: &DerCertificate, trust: &Trust) -> Option<String> {
    let top = match &bundle.verification_material.content {
        VerificationMaterialContent::X509CertificateChain { certificates } => {
            certificates.last().map(|c| &c.raw_bytes).unwrap_or(leaf)
        }
        _ => leaf,
    };
    let issuer = x509_cert::Certificate::from_der(top.as_bytes()).ok()?.tbs_certificate.issuer;
    trust.root.certificate_authorities.iter().find_map(|ca| {
        let holds = ca.cert_chain.certificates.iter().any(|c| {
            x509_cert::Certificate::from_der(c.raw_bytes.as_bytes()).is_ok_and(|c| c.tbs_certificate.subject == issuer)
        });
        holds.then(|| name(ca.subject.organization.as_deref(), ca.subject.common_name.as_deref(), &ca.uri))
    })
}

fn timestamp_authority(trust: &Trust) -> String {
    match trust.root.timestamp_authorities.as_slice() {
        [one] => name(
            one.subject.organization.as_deref(),
            one.subject.common_name.as_deref(),
            one.uri.as_deref().unwrap_or(""),
        ),
        many => format!("one of the trusted root's {} timestamp authorities", many.len()),
    }
}

fn name(organization: Option<&str>, common_name: Option<&str>, uri: &str) -> String {
    let parts: Vec<&str> = [organization, common_name].into_iter().flatten().filter(|s| !s.is_empty()).collect();
    match (parts.is_empty(), uri.is_empty()) {
        (false, true) => parts.join(" / "),
        (false, false) => format!("{} ({uri})", parts.join(" / ")),
        (true, _) => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(issuer: (&str, bool), subject: (&str, bool)) -> Identity {
        let pick = |(v, re): (&str, bool), want_re: bool| (re == want_re).then(|| v.to_string());
        Identity {
            issuer: pick(issuer, false),
            issuer_reg_exp: pick(issuer, true),
            subject: pick(subject, false),
            subject_reg_exp: pick(subject, true),
        }
    }

    #[test]
    fn identities_are_ored_anchored_and_exact_where_not_patterns() {
        const GH: &str = "https://token.actions.githubusercontent.com";
        let rules = Rules::compile(
            &[
                id((GH, false), ("https://github.com/org/app/.github/workflows/release.yml@refs/heads/main", false)),
                id(("https://accounts.example", false), ("ops@example.com", false)),
                id((GH, false), (r"https://github\.com/org/[^/]+/\.github/workflows/.*@refs/tags/v.*", true)),
                id((r"https://issuer\.(one|two)\.example", true), ("x", false)),
            ],
            false,
        )
        .unwrap();
        let cases = [
            ("https://github.com/org/app/.github/workflows/release.yml@refs/heads/main", GH, Some(0)),
            ("ops@example.com", "https://accounts.example", Some(1)),
            ("https://github.com/org/lib/.github/workflows/ci.yml@refs/tags/v1.2", GH, Some(2)),
            // Anchored: a pattern must match the whole value.
            ("evil https://github.com/org/lib/.github/workflows/ci.yml@refs/tags/v1", GH, None),
            ("https://github.com/org/lib/.github/workflows/ci.yml@refs/heads/main", GH, None),
            // The right subject from the wrong issuer.
            ("ops@example.com", GH, None),
            ("ops@example.com.evil", "https://accounts.example", None),
            ("x", "https://issuer.two.example", Some(3)),
            ("x", "https://issuer.two.example.evil", None),
            ("x", "https://issuer.three.example", None),
            ("", "", None),
        ];
        for (subject, issuer, want) in cases {
            assert_eq!(rules.matching(subject, issuer), want, "{subject} / {issuer}");
        }
    }

    #[test]
    fn bad_rules_are_refused_with_their_place() {
        let both = Identity { subject_reg_exp: Some(".*".into()), ..id(("i", false), ("s", false)) };
        let cases: [(Vec<Identity>, &str); 6] = [
            (vec![], "give 1 to 32"),
            (vec![id(("i", false), ("s", false)); 33], "give 1 to 32"),
            (vec![id(("i", false), ("s", false)), both], "identities[1]: give subject or subjectRegExp, not both"),
            (vec![Identity { subject: Some("s".into()), ..Default::default() }], "issuer or issuerRegExp is required"),
            (vec![id(("i", false), ("(unclosed", true))], "subjectRegExp is not a valid pattern"),
            (vec![id(("i", false), ("a{1000}{1000}", true))], "subjectRegExp is not a valid pattern"),
        ];
        for (ids, want) in cases {
            let err = Rules::compile(&ids, false).unwrap_err();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
        let long = id(("i", false), (&"s".repeat(1025), false));
        assert!(Rules::compile(&[long], false).unwrap_err().contains("longer than 1024"));
    }

    #[test]
    fn the_fingerprint_text_follows_the_rules() {
        let a = Rules::compile(&[id(("i", false), ("s", false))], false).unwrap();
        let b = Rules::compile(&[id(("i", false), ("s", true))], false).unwrap();
        let c = Rules::compile(&[id(("i", false), ("s", false))], true).unwrap();
        assert_ne!(a.canonical, b.canonical);
        assert_ne!(a.canonical, c.canonical);
    }
}
