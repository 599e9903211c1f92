//! Keyless verification against real public-good and Rekor v2 bundles
//! from the Sigstore conformance suite (operator/testdata/public-good).
//! The virtual Sigstore cases run end to end in tests/it/keyless.rs.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::api::Identity;

const BEACON: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const GITHUB: &str = "https://token.actions.githubusercontent.com";
const SLSA: &str = "https://slsa.dev/provenance/v1";

fn testdata(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/public-good/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The statements' subject: a.txt.
fn a_txt() -> Digest {
    Digest::of(&testdata("a.txt"))
}

fn found(bytes: Vec<u8>) -> Discovered {
    let envelope = Envelope::Bundle(Bytes::from(bytes));
    let c = Candidate { found_by: FoundBy::ReferrersApi, manifest: Digest::of(b"sig"), envelope };
    Discovered { candidates: vec![c], ..Default::default() }
}

fn id(issuer: &str, subject: &str) -> Identity {
    Identity { issuer: Some(issuer.into()), subject: Some(subject.into()), ..Default::default() }
}

fn keyless(ids: &[Identity], tlog: Option<TransparencyLog>) -> Requirement {
    let rules = keyless::Rules::compile(ids, false).unwrap();
    Requirement::new("spec.verify".into(), vec![], &[SLSA.into()], tlog).with_keyless(rules, tlog)
}

fn check_one(req: &Requirement, bundle: Vec<u8>) -> Result<Evidence, VerifyError> {
    check_all(std::slice::from_ref(req), &a_txt(), &found(bundle)).map(|mut v| v.remove(0))
}

#[test]
fn a_public_good_keyless_bundle_verifies_with_its_evidence() {
    let e = check_one(&keyless(&[id(GITHUB, BEACON)], None), testdata("keyless/dsse-v1.sigstore.json")).unwrap();
    let k = e.keyless.as_ref().unwrap();
    assert_eq!((k.subject.as_str(), k.issuer.as_str(), k.rule.as_str()), (BEACON, GITHUB, "keyless.identities[0]"));
    assert_eq!(k.authority.as_deref(), Some("sigstore.dev / sigstore (https://fulcio.sigstore.dev)"));
    assert_eq!(e.trusted_root.as_deref(), Some(PUBLIC_GOOD));
    assert_eq!(e.key, None);
    let tlog = e.tlog.unwrap();
    assert!(tlog.integrated_time.is_some(), "the SET proves when it was logged");
    assert!(e.key_fingerprint.starts_with("sha256:"));
}

#[test]
fn identities_are_ored_and_may_be_patterns() {
    let bundle = || testdata("keyless/dsse-v1.sigstore.json");
    let second = keyless(&[id(GITHUB, "https://github.com/someone/else"), id(GITHUB, BEACON)], None);
    assert_eq!(check_one(&second, bundle()).unwrap().keyless.unwrap().rule, "keyless.identities[1]");
    let pattern = Identity {
        issuer: Some(GITHUB.into()),
        subject_reg_exp: Some(
            r"https://github\.com/sigstore-conformance/[^/]+/\.github/workflows/.*@refs/heads/main".into(),
        ),
        ..Default::default()
    };
    assert!(check_one(&keyless(&[pattern], None), bundle()).is_ok());
    let cases = [
        (id(GITHUB, "https://github.com/sigstore-conformance/other"), "matches none of 1 keyless identities"),
        (id("https://accounts.google.com", BEACON), "matches none of 1 keyless identities"),
    ];
    for (rule, want) in cases {
        match check_one(&keyless(&[rule], None), bundle()) {
            Err(VerifyError::UntrustedSigner(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // Only keys configured: a keyless signature is not trusted.
    let keys_only = Requirement::new("spec.verify".into(), vec![], &[SLSA.into()], None);
    assert!(
        matches!(check_one(&keys_only, bundle()), Err(VerifyError::UntrustedSigner(m)) if m.contains("no keyless"))
    );
    // The statement names a.txt, not another digest.
    let other = check_all(&[keyless(&[id(GITHUB, BEACON)], None)], &Digest::of(b"x"), &found(bundle())).map(|_| ());
    assert!(matches!(other, Err(VerifyError::SignatureMismatch(_))), "{other:?}");
}

#[test]
fn rekor_v2_entries_verify_and_unknown_kinds_are_named() {
    let root = Trust::load("rekor2 root", &testdata("keyless/rekor2-trusted_root.json")).unwrap();
    let req = keyless(&[id(GITHUB, BEACON)], None).with_trust(Arc::new(root));
    let e = check_one(&req, testdata("keyless/dsse-rekor2.sigstore.json")).unwrap();
    assert!(e.timestamp.is_some(), "a Rekor v2 entry has no integrated time: the RFC 3161 timestamp dates it");
    assert_eq!(e.tlog.as_ref().unwrap().integrated_time, None);
    // The same bundle against the public-good root: its log and TSA are not there.
    assert!(check_one(&keyless(&[id(GITHUB, BEACON)], None), testdata("keyless/dsse-rekor2.sigstore.json")).is_err());
    let mut b: serde_json::Value = serde_json::from_slice(&testdata("keyless/dsse-v1.sigstore.json")).unwrap();
    b["verificationMaterial"]["tlogEntries"][0]["kindVersion"] =
        serde_json::json!({"kind": "dsse", "version": "0.0.2"});
    let got = check_one(&keyless(&[id(GITHUB, BEACON)], None), serde_json::to_vec(&b).unwrap());
    assert!(matches!(got, Err(VerifyError::UnsupportedLogEntry(m)) if m.contains("dsse 0.0.2")));
}

#[test]
fn the_log_is_required_for_keyless_unless_the_spec_says_otherwise() {
    let mut b: serde_json::Value = serde_json::from_slice(&testdata("keyless/dsse-v1.sigstore.json")).unwrap();
    b["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    let bytes = serde_json::to_vec(&b).unwrap();
    let got = check_one(&keyless(&[id(GITHUB, BEACON)], None), bytes.clone());
    assert!(matches!(got, Err(VerifyError::TransparencyLogMissing(_))), "{got:?}");
    // Without a log entry there is no signing time; the certificate
    // (long expired, and with an SCT the public-good root could check
    // only with a time) is refused either way.
    let got = check_one(&keyless(&[id(GITHUB, BEACON)], Some(TransparencyLog::Ignore)), bytes);
    assert!(matches!(got, Err(VerifyError::UntrustedSigner(_))), "{got:?}");
}

#[test]
fn a_trusted_root_must_be_able_to_verify_what_is_asked() {
    let mut root: serde_json::Value =
        serde_json::from_str(sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT).unwrap();
    let full = Trust::load("full", root.to_string().as_bytes()).unwrap();
    assert!(full.usable(true, TransparencyLog::Required).is_ok());
    root["certificateAuthorities"] = serde_json::json!([]);
    let no_ca = Trust::load("ConfigMap ns/root", root.to_string().as_bytes()).unwrap();
    assert!(
        matches!(no_ca.usable(true, TransparencyLog::IfPresent), Err(VerifyError::BadTrustedRoot(m)) if m.contains("no certificate authority"))
    );
    assert!(no_ca.usable(false, TransparencyLog::Required).is_ok(), "keys need no CA");
    root["tlogs"] = serde_json::json!([]);
    let no_log = Trust::load("x", root.to_string().as_bytes()).unwrap();
    assert!(
        matches!(no_log.usable(false, TransparencyLog::Required), Err(VerifyError::BadTrustedRoot(m)) if m.contains("no transparency log"))
    );
    for (bytes, want) in [(b"{".to_vec(), "Secret ns/r: "), (vec![b' '; MAX_TRUSTED_ROOT + 1], "larger than")] {
        match Trust::load("Secret ns/r", &bytes) {
            Err(VerifyError::BadTrustedRoot(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_fingerprint_follows_identities_and_the_root() {
    let a = keyless(&[id(GITHUB, BEACON)], None);
    let b = keyless(&[id(GITHUB, "https://github.com/x")], None);
    let root = Trust::load("rekor2 root", &testdata("keyless/rekor2-trusted_root.json")).unwrap();
    let c = keyless(&[id(GITHUB, BEACON)], None).with_trust(Arc::new(root));
    let f = |r: &Requirement| fingerprint(std::slice::from_ref(r)).unwrap();
    assert_ne!(f(&a), f(&b));
    assert_ne!(f(&a), f(&c));
    assert_eq!(f(&a), f(&keyless(&[id(GITHUB, BEACON)], None)));
}
