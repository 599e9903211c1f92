//! Envelopes the real notation 1.3.2 signed (`operator/testdata/notation/`,
//! made with `e2e/notation/pki.sh`, an `openssl ts` authority and a CRL on
//! loopback), checked at a fixed time inside their certificates' lives;
//! then those envelopes changed one field at a time, and trust policies.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use super::policy::Policy;
use super::revocation::Crls;
use super::*;

const JWS_RSA: &[u8] = include_bytes!("../../../testdata/notation/jws-rsa-timestamped.sig");
const COSE_EC: &[u8] = include_bytes!("../../../testdata/notation/cose-ec-timestamped.sig");
const COSE_REVOKED: &[u8] = include_bytes!("../../../testdata/notation/cose-revoked.sig");
const ROOT: &[u8] = include_bytes!("../../../testdata/notation/root.crt");
const TSA_ROOT: &[u8] = include_bytes!("../../../testdata/notation/tsa-root.crt");
const CRL: &[u8] = include_bytes!("../../../testdata/notation/root.crl");
const MANIFEST: &[u8] = include_bytes!("../../../testdata/notation/manifest.json");
const CRL_URL: &str = "http://127.0.0.1:5079/root.crl";
/// A minute after the fixtures were signed (2026-12-07); the leaves are
/// valid for 7 days, the roots for 30.
const NOW: i64 = 1_796_669_282;
const DAY: i64 = 86_400;

pub(super) fn subject() -> Subject {
    Subject {
        scope: "127.0.0.1:5077/app".into(),
        digest: crate::oci::Digest::of(MANIFEST).to_string(),
        size: MANIFEST.len() as u64,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
    }
}

pub(super) fn config(verification: Value, stores: &[&str], identities: &[&str]) -> Config {
    let policy = json!({"version": "1.0", "trustPolicies": [{
        "name": "p", "registryScopes": ["*"], "signatureVerification": verification,
        "trustStores": stores, "trustedIdentities": identities,
    }]});
    let entries: BTreeMap<String, Vec<u8>> = [
        ("trustpolicy.json".to_string(), serde_json::to_vec(&policy).unwrap()),
        ("root.crt".to_string(), ROOT.to_vec()),
        ("tsa-root.pem".to_string(), TSA_ROOT.to_vec()),
    ]
    .into();
    Config::from_entries("test", &entries).unwrap()
}

fn crls() -> Crls {
    [(CRL_URL.to_string(), Ok(CRL.to_vec()))].into()
}

fn check(cfg: &Config, mt: &str, bytes: &[u8], crls: &Crls, now: i64) -> Result<Verified, Failure> {
    let st = statement(cfg, &subject()).unwrap();
    verify(st, &cfg.stores, &subject(), mt, bytes, crls, now)
}

fn strict() -> Config {
    config(json!({"level": "strict"}), &["ca:acme", "tsa:tsa"], &["x509.subject:C=US, ST=WA, O=acme"])
}

#[test]
fn what_notation_signed_verifies() {
    let cfg = strict();
    let v = check(&cfg, JWS, JWS_RSA, &crls(), NOW).unwrap();
    assert_eq!((v.envelope, v.statement.as_str(), v.level.as_str()), ("JWS", "p", "strict"));
    assert_eq!(v.signer, "CN=builder,O=acme,L=Seattle,ST=WA,C=US");
    assert_eq!(v.chain.len(), 2);
    let (tsa, at) = v.timestamp.unwrap();
    assert!(tsa.contains("CN=Test TSA") && (NOW - 120..=NOW).contains(&at), "{tsa} {at}");
    let v = check(&cfg, COSE, COSE_EC, &crls(), NOW).unwrap();
    assert_eq!((v.envelope, v.signer.as_str()), ("COSE", "CN=builder-ec,O=acme,ST=WA,C=US"));
    assert!(v.logged.is_empty());
}

#[test]
fn a_timestamp_outlives_the_certificate() {
    let later = NOW + 8 * DAY;
    assert!(check(&strict(), JWS, JWS_RSA, &crls(), later).is_ok(), "the timestamp says it was signed in time");
    let after =
        config(json!({"level": "strict", "verifyTimestamp": "afterCertExpiry"}), &["ca:acme", "tsa:tsa"], &["*"]);
    assert!(check(&after, COSE, COSE_EC, &crls(), later).is_ok());
    let no_tsa = config(json!({"level": "strict"}), &["ca:acme"], &["*"]);
    let e = check(&no_tsa, JWS, JWS_RSA, &crls(), later).unwrap_err();
    assert!(matches!(&e, Failure::Untrusted(m) if m.contains("expired at")), "{e:?}");
    // as in notation, every certificate (the root too) need only have been
    // valid when the trusted timestamp was made
    assert!(check(&strict(), JWS, JWS_RSA, &crls(), NOW + 40 * DAY).is_ok());
    assert!(check(&no_tsa, JWS, JWS_RSA, &crls(), NOW + 40 * DAY).is_err());
}

#[test]
fn revocation_by_crl() {
    let cfg = strict();
    // the revoked envelope has no timestamp: a policy without tsa: store
    let cfg_no_tsa = config(json!({"level": "strict"}), &["ca:acme"], &["*"]);
    let e = check(&cfg_no_tsa, COSE, COSE_REVOKED, &crls(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Untrusted(m) if m.contains("is revoked") && m.contains(CRL_URL)), "{e:?}");
    let unreachable: Crls = [(CRL_URL.to_string(), Err("unreachable: connection refused".to_string()))].into();
    let e = check(&cfg_no_tsa, COSE, COSE_REVOKED, &unreachable, NOW).unwrap_err();
    assert!(matches!(&e, Failure::Untrusted(m) if m.contains("unknown") && m.contains("connection refused")), "{e:?}");
    let e = check(&cfg_no_tsa, COSE, COSE_REVOKED, &Crls::new(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Untrusted(m) if m.contains("not fetched")), "{e:?}");
    // a stale CRL is no answer
    let e = check(&cfg_no_tsa, COSE, COSE_REVOKED, &crls(), NOW + 8 * DAY).unwrap_err();
    assert!(matches!(&e, Failure::Untrusted(_)), "{e:?}");
    let skip = config(json!({"level": "strict", "override": {"revocation": "skip"}}), &["ca:acme"], &["*"]);
    assert!(check(&skip, COSE, COSE_REVOKED, &Crls::new(), NOW).is_ok());
    let log = config(json!({"level": "strict", "override": {"revocation": "log"}}), &["ca:acme"], &["*"]);
    let v = check(&log, COSE, COSE_REVOKED, &crls(), NOW).unwrap();
    assert!(v.logged[0].starts_with("revocation: "), "{:?}", v.logged);
    // the other leaves name no CRL: not revocable, nothing fetched
    assert!(check(&cfg, JWS, JWS_RSA, &Crls::new(), NOW).is_ok());
    let st = statement(&cfg, &subject()).unwrap();
    assert_eq!(crl_urls(st, [(JWS, JWS_RSA), (COSE, COSE_REVOKED)].into_iter()), vec![CRL_URL.to_string()]);
    assert!(crl_urls(statement(&skip, &subject()).unwrap(), [(COSE, COSE_REVOKED)].into_iter()).is_empty());
}

/// The JWS fixture with its protected header changed by `edit`, re-signed
/// by nobody: every case must fail before or at the signature.
fn jws_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut doc: Value = serde_json::from_slice(JWS_RSA).unwrap();
    let mut protected: Value =
        serde_json::from_slice(&url.decode(doc["protected"].as_str().unwrap()).unwrap()).unwrap();
    edit(protected.as_object_mut().unwrap());
    doc["protected"] = json!(url.encode(serde_json::to_vec(&protected).unwrap()));
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn changed_envelopes_are_refused_and_say_why() {
    let cfg = strict();
    let mismatch = |bytes: &[u8], says: &str| {
        let e = check(&cfg, JWS, bytes, &crls(), NOW).unwrap_err();
        assert!(matches!(&e, Failure::Mismatch(m) if m.contains(says)), "{says}: {e:?}");
    };
    let unsupported = |bytes: &[u8], says: &str| {
        let e = check(&cfg, JWS, bytes, &crls(), NOW).unwrap_err();
        assert!(matches!(&e, Failure::Unsupported(m) if m.contains(says)), "{says}: {e:?}");
    };
    mismatch(
        &jws_with(|p| {
            p.insert("crit".into(), json!(["io.cncf.notary.signingScheme", "com.example.must-understand"]));
            p.insert("com.example.must-understand".into(), json!(true));
        }),
        "critical header \"com.example.must-understand\" is not understood",
    );
    mismatch(&jws_with(|p| drop(p.remove("crit"))), "no crit header");
    mismatch(&jws_with(|p| drop(p.insert("crit".into(), json!(["x"])))), "signingScheme is not marked critical");
    mismatch(&jws_with(|p| drop(p.insert("alg".into(), json!("RS256")))), "RS256 is not one the Notary Project allows");
    mismatch(
        &jws_with(|p| drop(p.insert("alg".into(), json!("ES256")))),
        "the signing certificate's key signs with PS256",
    );
    mismatch(&jws_with(|p| drop(p.insert("cty".into(), json!("application/json")))), "payload content type");
    mismatch(&jws_with(|p| drop(p.remove("io.cncf.notary.signingTime"))), "no io.cncf.notary.signingTime");
    mismatch(
        &jws_with(|p| {
            p.insert("io.cncf.notary.expiry".into(), json!("2020-01-01T00:00:00Z"));
            p.insert("crit".into(), json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]));
        }),
        "expiry is not after the signing time",
    );
    mismatch(&jws_with(|p| drop(p.insert("io.cncf.notary.signingScheme".into(), json!("x509")))), "signing scheme");
    // only the signature is wrong
    mismatch(
        &jws_with(|p| drop(p.insert("io.cncf.notary.signingTime".into(), json!("2026-12-07T18:00:00Z")))),
        "does not verify",
    );
    unsupported(
        &jws_with(|p| {
            p.insert("io.cncf.notary.signingScheme".into(), json!("notary.x509.signingAuthority"));
            p.remove("io.cncf.notary.signingTime");
            p.insert("io.cncf.notary.authenticSigningTime".into(), json!("2026-12-07T18:00:00Z"));
        }),
        "notary.x509.signingAuthority signing scheme is not supported",
    );
    unsupported(
        &jws_with(|p| {
            p.insert("io.cncf.notary.verificationPlugin".into(), json!("com.amazonaws.signer.notation.plugin"));
            p.insert("crit".into(), json!(["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"]));
        }),
        "verification plugin \"com.amazonaws.signer.notation.plugin\"",
    );
    // the unprotected header: no chain, a chain in the wrong order
    let mut doc: Value = serde_json::from_slice(JWS_RSA).unwrap();
    doc["header"]["x5c"] = json!([]);
    mismatch(&serde_json::to_vec(&doc).unwrap(), "no certificate chain");
    let mut doc: Value = serde_json::from_slice(JWS_RSA).unwrap();
    let chain = doc["header"]["x5c"].as_array().unwrap().clone();
    doc["header"]["x5c"] = json!([chain[1], chain[0]]);
    mismatch(&serde_json::to_vec(&doc).unwrap(), "certificate chain");
    // the same signature over another manifest
    let other = Subject { size: 1, ..subject() };
    let st = statement(&cfg, &other).unwrap();
    let e = verify(st, &cfg.stores, &other, JWS, JWS_RSA, &crls(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Mismatch(m) if m.contains("the signature is for")), "{e:?}");
    // the JWS bytes read as COSE, and a COSE envelope cut short
    let e = check(&cfg, COSE, &COSE_EC[..COSE_EC.len() - 1], &crls(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Mismatch(m) if m.contains("not a COSE envelope")), "{e:?}");
    let e = check(&cfg, COSE, JWS_RSA, &crls(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Mismatch(m) if m.contains("not a COSE envelope")), "{e:?}");
}

#[test]
fn a_changed_cose_signature_does_not_verify() {
    let mut bytes = COSE_EC.to_vec();
    // the signature is the last item: 64 bytes of r||s
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    let e = check(&strict(), COSE, &bytes, &crls(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Mismatch(m) if m.contains("COSE signature does not verify")), "{e:?}");
}

#[test]
fn authenticity_and_levels() {
    let other_org = config(json!({"level": "strict"}), &["ca:acme", "tsa:tsa"], &["x509.subject:C=US, ST=WA, O=other"]);
    let e = check(&other_org, JWS, JWS_RSA, &crls(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Untrusted(m) if m.contains("none of the trusted identities")), "{e:?}");
    let narrower = config(json!({"level": "strict"}), &["ca:acme"], &["x509.subject:C=US, ST=WA, O=acme, CN=builder"]);
    assert!(check(&narrower, JWS, JWS_RSA, &crls(), NOW).is_ok(), "CN=builder matches");
    assert!(check(&narrower, COSE, COSE_EC, &crls(), NOW).is_err(), "CN=builder-ec does not");
    let audit = config(json!({"level": "audit"}), &["ca:acme"], &["x509.subject:C=US, ST=WA, O=other"]);
    let v = check(&audit, JWS, JWS_RSA, &crls(), NOW).unwrap();
    assert!(v.logged[0].starts_with("authenticity: "));
    // a ca: store without the root
    let entries: BTreeMap<String, Vec<u8>> = [
        (
            "trustpolicy.json".to_string(),
            serde_json::to_vec(&json!({"version": "1.0", "trustPolicies": [{
            "name": "p", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
            "trustStores": ["ca:x"], "trustedIdentities": ["*"]}]}))
            .unwrap(),
        ),
        ("tsa.crt".to_string(), TSA_ROOT.to_vec()),
    ]
    .into();
    let stranger = Config::from_entries("test", &entries).unwrap();
    let e = check(&stranger, JWS, JWS_RSA, &crls(), NOW).unwrap_err();
    assert!(matches!(&e, Failure::Untrusted(m) if m.contains("not anchored")), "{e:?}");
    // permissive logs an expired certificate, strict refuses it
    let permissive = config(json!({"level": "permissive"}), &["ca:acme"], &["*"]);
    let v = check(&permissive, JWS, JWS_RSA, &crls(), NOW + 8 * DAY).unwrap();
    assert!(v.logged[0].starts_with("authenticTimestamp: "), "{:?}", v.logged);
}

#[test]
fn trust_policies_are_checked_as_notation_checks_them() {
    let doc = |statements: Value| serde_json::to_vec(&json!({"version": "1.0", "trustPolicies": statements})).unwrap();
    let st = |name: &str, scopes: Value, v: Value| {
        json!({"name": name, "registryScopes": scopes, "signatureVerification": v,
               "trustStores": ["ca:acme"], "trustedIdentities": ["*"]})
    };
    let strict = json!({"level": "strict"});
    let refused: Vec<(Vec<u8>, &str)> = vec![
        (b"{}".to_vec(), "not a trust policy document"),
        (serde_json::to_vec(&json!({"version": "2.0", "trustPolicies": []})).unwrap(), "version \"2.0\""),
        (doc(json!([])), "no trust policy statements"),
        (
            doc(json!([st("a", json!(["*"]), strict.clone()), st("a", json!(["r.io/x"]), strict.clone())])),
            "two statements are named",
        ),
        (doc(json!([st("a", json!(["*"]), strict.clone()), st("b", json!(["*"]), strict.clone())])), "wildcard scope"),
        (doc(json!([st("a", json!(["r.io/x", "*"]), strict.clone())])), "must stand alone"),
        (doc(json!([st("a", json!(["r.io/x:v1"]), strict.clone())])), "no tag or digest"),
        (doc(json!([st("a", json!(["r.io"]), strict.clone())])), "is not a repository"),
        (doc(json!([st("a", json!([]), strict.clone())])), "no registryScopes"),
        (doc(json!([st("a", json!(["*"]), json!({"level": "lenient"}))])), "is not strict, permissive, audit or skip"),
        (
            doc(json!([st("a", json!(["*"]), json!({"level": "strict", "override": {"integrity": "log"}}))])),
            "integrity cannot be overridden",
        ),
        (
            doc(json!([st("a", json!(["*"]), json!({"level": "strict", "override": {"expiry": "skip"}}))])),
            "cannot be skipped",
        ),
        (
            doc(json!([st("a", json!(["*"]), json!({"level": "skip", "override": {"revocation": "log"}}))])),
            "cannot be overridden",
        ),
        (
            doc(json!([st("a", json!(["*"]), json!({"level": "strict", "verifyTimestamp": "never"}))])),
            "verifyTimestamp",
        ),
        (doc(json!([st("a", json!(["*"]), json!({"level": "skip"}))])), "takes no trustStores"),
        (
            doc(
                json!([{"name": "a", "registryScopes": ["*"], "signatureVerification": strict, "trustStores": ["ca:acme"]}]),
            ),
            "both trustStores and trustedIdentities",
        ),
        (
            doc(
                json!([{"name": "a", "registryScopes": ["*"], "signatureVerification": {"level": "strict"}, "trustStores": ["x509:acme"], "trustedIdentities": ["*"]}]),
            ),
            "trust store type",
        ),
        (
            doc(
                json!([{"name": "a", "registryScopes": ["*"], "signatureVerification": {"level": "strict"}, "trustStores": ["ca:../x"], "trustedIdentities": ["*"]}]),
            ),
            "trust store name",
        ),
        (
            doc(
                json!([{"name": "a", "registryScopes": ["*"], "signatureVerification": {"level": "strict"}, "trustStores": ["ca:a"], "trustedIdentities": ["*", "x509.subject:C=US,ST=WA,O=x"]}]),
            ),
            "wildcard identity",
        ),
        (
            doc(
                json!([{"name": "a", "registryScopes": ["*"], "signatureVerification": {"level": "strict"}, "trustStores": ["ca:a"], "trustedIdentities": ["x509.subject:CN=x"]}]),
            ),
            "names C, ST (or S) and O",
        ),
        (
            doc(
                json!([{"name": "a", "registryScopes": ["*"], "signatureVerification": {"level": "strict"}, "trustStores": ["ca:a"], "trustedIdentities": ["*"], "extra": 1}]),
            ),
            "unknown field",
        ),
        (vec![b' '; policy::MAX_POLICY + 1], "larger than"),
    ];
    for (bytes, says) in refused {
        let e = Policy::parse(&bytes).unwrap_err();
        assert!(e.contains(says), "{says:?}: {e}");
    }
    // the exact scope wins over the wildcard, as in notation
    let p = Policy::parse(&doc(json!([
        st("any", json!(["*"]), strict.clone()),
        st("x", json!(["r.io/team/x"]), json!({"level": "audit"}))
    ])))
    .unwrap();
    assert_eq!(p.applicable("r.io/team/x").unwrap().name, "x");
    assert_eq!(p.applicable("r.io/team/y").unwrap().name, "any");
    let only = Policy::parse(&doc(json!([st("x", json!(["r.io/team/x"]), strict)]))).unwrap();
    assert!(only.applicable("r.io/team").is_none());
    assert_eq!(only.statements[0].action(policy::Check::Revocation), policy::Action::Enforce);
}
