//! Against what cosign 3.1 wrote (operator/testdata/cosign-v3), and against
//! signatures and log entries made here with the crate's own key pairs.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use sigstore_crypto::KeyPair;

use super::*;
use crate::oci::referrers::{REKOR_BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/cosign-v3/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn key(file: &str) -> Key {
    Key::parse(file, &fixture(file)).unwrap()
}

fn digest_of(path: &str) -> Digest {
    // The fixtures' artifacts: v3-bundle signs artifact/; the others name
    // their own digest in their payloads.
    Digest::parse(String::from_utf8(fixture(path)).unwrap().trim()).unwrap()
}

fn artifact() -> Digest {
    digest_of("artifact/digest.txt")
}

fn req(keys: Vec<Key>, tlog: TransparencyLog) -> Requirement {
    Requirement::new("spec.verify".into(), keys, &[], Some(tlog))
}

fn found(envelope: Envelope) -> Discovered {
    let c = Candidate { found_by: FoundBy::ReferrersTag, manifest: Digest::of(b"sig"), envelope };
    Discovered { candidates: vec![c], ..Default::default() }
}

fn bundle(bytes: Vec<u8>) -> Discovered {
    found(Envelope::Bundle(Bytes::from(bytes)))
}

fn legacy_digest() -> Digest {
    let p: serde_json::Value = serde_json::from_slice(&fixture("legacy-sig-tag/payload.json")).unwrap();
    Digest::parse(p["critical"]["image"]["docker-manifest-digest"].as_str().unwrap()).unwrap()
}

fn legacy(payload: Vec<u8>, annotations: BTreeMap<String, String>) -> Discovered {
    found(Envelope::SimpleSigning { payload: Bytes::from(payload), annotations })
}

fn legacy_annotations() -> BTreeMap<String, String> {
    let m: serde_json::Value = serde_json::from_slice(&fixture("legacy-sig-tag/signature-manifest.json")).unwrap();
    serde_json::from_value(m["layers"][0]["annotations"].clone()).unwrap()
}

/// A bundle's JSON with a change made to it.
fn edited(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut b: serde_json::Value = serde_json::from_slice(&fixture("v3-bundle/bundle.json")).unwrap();
    f(&mut b);
    serde_json::to_vec(&b).unwrap()
}

#[test]
fn cosign_v3_bundles_verify_with_the_right_key() {
    let r = req(vec![key("other.pub"), key("cosign.pub")], TransparencyLog::IfPresent);
    let e = check(&r, &artifact(), &bundle(fixture("v3-bundle/bundle.json")), None).unwrap();
    assert_eq!(e.format, Format::SigstoreBundle);
    assert_eq!(e.key.as_deref(), Some("cosign.pub"), "the second key signed");
    assert_eq!(e.key_fingerprint, key("cosign.pub").fingerprint);
    assert_eq!(e.predicate_type.as_deref(), Some(COSIGN_SIGN_V1));
    assert_eq!(e.tlog, None);
    // cosign's hint is the same hash, base64
    let hint: serde_json::Value = serde_json::from_slice(&fixture("v3-bundle/bundle.json")).unwrap();
    assert_eq!(hint["verificationMaterial"]["publicKey"]["hint"], key("cosign.pub").hint());
    let annotated = check(&r, &digest_of_annotated(), &bundle(fixture("v3-bundle-annotated/bundle.json")), None);
    assert!(annotated.is_ok(), "{annotated:?}");
}

fn digest_of_annotated() -> Digest {
    let b: serde_json::Value = serde_json::from_slice(&fixture("v3-bundle-annotated/bundle.json")).unwrap();
    let payload =
        base64::engine::general_purpose::STANDARD.decode(b["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap();
    let s: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    Digest::parse(&format!("sha256:{}", s["subject"][0]["digest"]["sha256"].as_str().unwrap())).unwrap()
}

#[test]
fn what_is_not_a_valid_signature_and_why() {
    let right = || req(vec![key("cosign.pub")], TransparencyLog::IfPresent);
    let d = artifact();
    let flip = edited(|b| {
        let sig = b["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap().to_string();
        let mut raw = base64::engine::general_purpose::STANDARD.decode(sig).unwrap();
        let n = raw.len() - 1;
        raw[n] ^= 1;
        b["dsseEnvelope"]["signatures"][0]["sig"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
    });
    let payload = |statement: serde_json::Value| {
        edited(|b| {
            b["dsseEnvelope"]["payload"] =
                base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&statement).unwrap()).into();
        })
    };
    let attestation = payload(serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": d.hex()}}],
        "predicateType": "https://spdx.dev/Document", "predicate": {}
    }));
    type Case = (&'static str, Requirement, Digest, Vec<u8>, fn(&VerifyError) -> bool);
    let cases: Vec<Case> = vec![
        (
            "wrong key",
            req(vec![key("other.pub")], TransparencyLog::IfPresent),
            d.clone(),
            fixture("v3-bundle/bundle.json"),
            |e| matches!(e, VerifyError::UntrustedSigner(_)),
        ),
        ("flipped bit", right(), d.clone(), flip, |e| matches!(e, VerifyError::SignatureMismatch(_))),
        ("for another digest", right(), Digest::of(b"B"), fixture("v3-bundle/bundle.json"), |e| {
            matches!(e, VerifyError::SignatureMismatch(_))
        }),
        // the statement was swapped: its signature no longer verifies
        ("another predicate type", right(), d.clone(), attestation, |e| matches!(e, VerifyError::NoSignature { .. })),
        (
            "tlog required",
            req(vec![key("cosign.pub")], TransparencyLog::Required),
            d.clone(),
            fixture("v3-bundle/bundle.json"),
            |e| matches!(e, VerifyError::TransparencyLogMissing(_)),
        ),
        ("not json", right(), d.clone(), b"{".to_vec(), |e| matches!(e, VerifyError::SignatureMismatch(_))),
    ];
    for (name, r, digest, bytes, expected) in cases {
        let got = check(&r, &digest, &bundle(bytes), None);
        assert!(got.as_ref().is_err_and(expected), "{name}: {got:?}");
    }
    let none = check(
        &right(),
        &d,
        &Discovered { others: vec!["application/vnd.example.sbom.v1".into()], ..Default::default() },
        None,
    );
    assert_eq!(
        none.unwrap_err().to_string(),
        format!("no signature of {d} found (its referrers are not signatures: application/vnd.example.sbom.v1)")
    );
}

#[test]
fn an_attestation_by_the_right_key_is_not_a_signature_unless_asked_for() {
    // Signed here: the same key signs an SBOM statement about the digest.
    let signer = KeyPair::generate_ecdsa_p256().unwrap();
    let pem = pem_of(&signer);
    let k = Key::parse("k.pub", pem.as_bytes()).unwrap();
    let d = artifact();
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": d.hex()}}],
        "predicateType": "https://spdx.dev/Document", "predicate": {}
    });
    let b = signed_bundle(&signer, &k, &serde_json::to_vec(&statement).unwrap());
    let r = req(vec![k.clone()], TransparencyLog::IfPresent);
    assert!(matches!(check(&r, &d, &bundle(b.clone()), None), Err(VerifyError::NoSignature { .. })));
    let sbom = Requirement::new("spec.verify".into(), vec![k], &["https://spdx.dev/Document".into()], None);
    let e = check(&sbom, &d, &bundle(b), None).unwrap();
    assert_eq!(e.predicate_type.as_deref(), Some("https://spdx.dev/Document"));
}

fn pem_of(k: &KeyPair) -> String {
    let der = k.public_key_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

fn signed_bundle(signer: &KeyPair, k: &Key, statement: &[u8]) -> Vec<u8> {
    let t = "application/vnd.in-toto+json";
    let pae = [b"DSSEv1 ".as_slice(), format!("{} {t} {} ", t.len(), statement.len()).as_bytes(), statement].concat();
    let sig = signer.sign(&pae).unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": k.hint()}},
        "dsseEnvelope": {"payload": b64(statement), "payloadType": t, "signatures": [{"sig": b64(sig.as_bytes())}]}
    }))
    .unwrap()
}

#[test]
fn legacy_simplesigning_verifies_over_the_raw_payload() {
    let d = legacy_digest();
    let r = req(vec![key("cosign.pub")], TransparencyLog::IfPresent);
    let e = check(&r, &d, &legacy(fixture("legacy-sig-tag/payload.json"), legacy_annotations()), None).unwrap();
    assert_eq!(e.format, Format::SimpleSigning);
    assert_eq!(e.predicate_type, None);
    let wrong = req(vec![key("other.pub")], TransparencyLog::IfPresent);
    let got = check(&wrong, &d, &legacy(fixture("legacy-sig-tag/payload.json"), legacy_annotations()), None);
    assert!(matches!(got, Err(VerifyError::UntrustedSigner(_))), "{got:?}");
    let got = check(&r, &Digest::of(b"B"), &legacy(fixture("legacy-sig-tag/payload.json"), legacy_annotations()), None);
    assert!(matches!(got, Err(VerifyError::SignatureMismatch(_))), "another digest: {got:?}");
    let mut tampered = fixture("legacy-sig-tag/payload.json");
    let at = tampered.iter().position(|b| *b == b'}').unwrap();
    tampered.insert(at, b' ');
    let got = check(&r, &d, &legacy(tampered, legacy_annotations()), None);
    assert!(matches!(got, Err(VerifyError::UntrustedSigner(_))), "tampered payload: {got:?}");
    let required = req(vec![key("cosign.pub")], TransparencyLog::Required);
    let got = check(&required, &d, &legacy(fixture("legacy-sig-tag/payload.json"), legacy_annotations()), None);
    assert!(matches!(got, Err(VerifyError::TransparencyLogMissing(_))), "{got:?}");
}

/// A legacy signature logged in a Rekor made here: the SET is checked
/// against the log key of a trusted root, and the entry must describe
/// this signature.
#[test]
fn legacy_rekor_bundles_are_checked_against_the_log_key() {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let log = KeyPair::generate_ecdsa_p256().unwrap();
    let log_der = log.public_key_der().unwrap();
    let log_id = <sha2::Sha256 as sha2::Digest>::digest(log_der.as_bytes());
    let root = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{"baseUrl": "https://rekor.test", "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": b64(log_der.as_bytes()), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": "2020-01-01T00:00:00Z"}},
            "logId": {"keyId": b64(&log_id)}}],
        "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []
    });
    let trust = Trust::from_json(&root.to_string()).unwrap();

    let signer = KeyPair::generate_ecdsa_p256().unwrap();
    let k = Key::parse("k.pub", pem_of(&signer).as_bytes()).unwrap();
    let d = artifact();
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"r/x"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let sig = b64(signer.sign(payload.as_bytes()).unwrap().as_bytes());
    let entry = |sig: &str, payload: &str| {
        let body = serde_json::json!({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(payload.as_bytes()))}},
            "signature": {"content": sig, "publicKey": {"content": b64(pem_of(&signer).as_bytes())}}}});
        let body = b64(body.to_string().as_bytes());
        let canonical = format!(
            r#"{{"body":"{body}","integratedTime":1700000000,"logID":"{}","logIndex":42}}"#,
            hex::encode(log_id)
        );
        let set = b64(log.sign(canonical.as_bytes()).unwrap().as_bytes());
        serde_json::json!({"SignedEntryTimestamp": set, "Payload": {
            "body": body, "integratedTime": 1700000000, "logIndex": 42, "logID": hex::encode(log_id)}})
        .to_string()
    };
    let with = |set: String| {
        let a = BTreeMap::from([
            (SIGNATURE_ANNOTATION.to_string(), sig.clone()),
            (REKOR_BUNDLE_ANNOTATION.to_string(), set),
        ]);
        legacy(payload.clone().into_bytes(), a)
    };
    let r = req(vec![k.clone()], TransparencyLog::Required);
    let e = check(&r, &d, &with(entry(&sig, &payload)), Some(&trust)).unwrap();
    assert_eq!(e.tlog, Some(LogEntry { index: 42, integrated_time: Some(1_700_000_000) }));

    let bad = [
        ("an entry for another payload", entry(&sig, "{}")),
        ("a forged SET", entry(&sig, &payload).replace("\"SignedEntryTimestamp\":\"", "\"SignedEntryTimestamp\":\"AA")),
    ];
    for (name, set) in bad {
        let got = check(&r, &d, &with(set), Some(&trust));
        assert!(matches!(got, Err(VerifyError::TransparencyLogInvalid(_))), "{name}: {got:?}");
    }
    // Not in the trusted root (the public-good one): invalid, not ignored.
    let got = check(&req(vec![k.clone()], TransparencyLog::IfPresent), &d, &with(entry(&sig, &payload)), public_good());
    assert!(matches!(got, Err(VerifyError::TransparencyLogInvalid(_))), "{got:?}");
    // Ignore means not looked at.
    assert!(check(&req(vec![k], TransparencyLog::Ignore), &d, &with("garbage".into()), None).is_ok());
}

#[test]
fn keys_from_a_secret() {
    let entries = BTreeMap::from([
        ("cosign.pub".to_string(), fixture("cosign.pub")),
        ("other.pub".to_string(), fixture("other.pub")),
        ("README".to_string(), b"not a key".to_vec()),
    ]);
    let keys = keys::from_entries("ns/keys", &entries).unwrap();
    assert_eq!(keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["ns/keys/cosign.pub", "ns/keys/other.pub"]);
    let broken = BTreeMap::from([(
        "a.pub".to_string(),
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
    )]);
    assert!(
        matches!(keys::from_entries("ns/keys", &broken), Err(VerifyError::BadKeys(m)) if m.contains("ns/keys/a.pub"))
    );
    assert!(matches!(keys::from_entries("ns/keys", &BTreeMap::new()), Err(VerifyError::BadKeys(_))));
    // made with openssl: the key types cosign supports besides P-256
    for (file, alg) in [
        ("ed25519.pub", sigstore_crypto::KeyAlgorithm::Ed25519),
        ("p384.pub", sigstore_crypto::KeyAlgorithm::EcdsaP384),
        ("rsa.pub", sigstore_crypto::KeyAlgorithm::Rsa),
    ] {
        let pem = std::fs::read(format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(Key::parse(file, &pem).unwrap().algorithm, alg);
    }
}

#[test]
fn the_trust_fingerprint_follows_keys_and_policies() {
    let a = req(vec![key("cosign.pub")], TransparencyLog::IfPresent);
    let b = req(vec![key("other.pub")], TransparencyLog::IfPresent);
    let both = req(vec![key("other.pub"), key("cosign.pub")], TransparencyLog::IfPresent);
    let both_reordered = req(vec![key("cosign.pub"), key("other.pub")], TransparencyLog::IfPresent);
    let f = |r: &[Requirement]| fingerprint(r);
    assert_eq!(f(&[]), None);
    assert_ne!(f(std::slice::from_ref(&a)), f(std::slice::from_ref(&b)));
    assert_eq!(f(std::slice::from_ref(&both)), f(std::slice::from_ref(&both_reordered)));
    let required = req(vec![key("cosign.pub")], TransparencyLog::Required);
    assert_ne!(f(std::slice::from_ref(&a)), f(&[required]));
    let mut policy = a.clone();
    policy.required_by = "ClusterArtifactPolicy/p".into();
    assert_ne!(f(std::slice::from_ref(&a)), f(&[a.clone(), policy]));
}

#[test]
fn a_policy_failure_is_a_policy_violation() {
    let mut r = req(vec![key("other.pub")], TransparencyLog::IfPresent);
    r.required_by = "ClusterArtifactPolicy/signed".into();
    let got = check_all(&[r], &artifact(), &bundle(fixture("v3-bundle/bundle.json")));
    match got {
        Err(VerifyError::PolicyViolation { policy, inner }) => {
            assert_eq!(policy, "ClusterArtifactPolicy/signed");
            assert!(matches!(*inner, VerifyError::UntrustedSigner(_)));
        }
        other => panic!("{other:?}"),
    }
}

/// The embedded public-good trusted root, as `public_good()` builds it,
/// verifies a real Rekor entry of a key-signed bundle (the conformance
/// suite's managed-key happy path), and refuses it with a key that did not
/// sign it. Without a working root every log entry would be refused.
#[test]
fn the_embedded_trusted_root_verifies_a_real_log_entry() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/public-good");
    let read = |f: &str| std::fs::read(format!("{dir}/{f}")).unwrap();
    let bundle =
        sigstore_types::Bundle::from_json(std::str::from_utf8(&read("bundle.sigstore.json")).unwrap()).unwrap();
    let trust = public_good().expect("the embedded root loads");
    let signer = Key::parse("key.pub", &read("key.pub")).unwrap();
    let policy = sigstore_verify::PublicKeyVerificationPolicy::new(signer.der.clone());
    let result = trust.verifier.verify(read("a.txt").as_slice(), &bundle, &policy).unwrap();
    assert!(result.tlog_verified());
    assert!(result.integrated_time().is_some());
    let other = key("cosign.pub");
    let wrong = sigstore_verify::PublicKeyVerificationPolicy::new(other.der);
    assert!(trust.verifier.verify(read("a.txt").as_slice(), &bundle, &wrong).is_err());
}
