//! Notary Project signatures made by the real notation 1.3 (certificates
//! from OpenSSL, `e2e/notation/pki.sh`), stored on distribution 2.8 under
//! the referrers tag schema, and checked by `notation verify` and
//! `ocisync verify --notation` side by side: they must agree, case by case.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::signatures::{blob_gets, layer_of};
use crate::support::notation::*;
use crate::support::*;

/// One artifact and one trust policy: what `notation verify` says, and what
/// `ocisync verify --notation` must say (its exit code, and its envelope or
/// a part of its message).
struct Case {
    what: &'static str,
    reference: String,
    home: PathBuf,
    notation_ok: bool,
    ours: i32,
    says: String,
}

fn case(what: &'static str, reference: String, home: &Path, notation_ok: bool, ours: i32, says: &str) -> Case {
    Case { what, reference, home: home.to_path_buf(), notation_ok, ours, says: says.to_string() }
}

/// Run both verifiers on every case; they must agree, and ocisync's
/// evidence or reason must be what the case says.
async fn agree(n: &Notation, cases: &[Case]) {
    for Case { what, reference, home, notation_ok, ours, says } in cases {
        let (theirs, said) = n.verify(home, reference);
        assert_eq!(theirs == 0, *notation_ok, "{what}: notation verify said {theirs}: {said}");
        let dir = home.join("notation");
        let out =
            ocisync(&["verify", reference, "--notation", dir.to_str().unwrap(), "--insecure", "--output", "json"])
                .await;
        assert_eq!(out.status.code(), Some(*ours), "{what}: {}", stderr(&out));
        let doc = json(&out);
        if *ours != 0 {
            let message = doc["error"]["message"].as_str().unwrap();
            assert!(message.contains(says.as_str()), "{what}: {message}");
            continue;
        }
        let sig = &doc["verification"]["signatures"][0];
        assert_eq!(sig["format"], "Notation", "{what}");
        assert_eq!(sig["requiredBy"], "--notation", "{what}");
        if says.is_empty() {
            assert_eq!(sig["foundBy"], "Skipped", "{what}");
            assert_eq!(sig["trustPolicy"], "skip (skip)", "{what}");
            continue;
        }
        assert_eq!(sig["envelope"], says.as_str(), "{what}");
        assert_eq!(sig["foundBy"], "ReferrersTag", "{what}");
        let chain = sig["certificateChain"].as_array().unwrap();
        assert_eq!(chain.len(), 2, "{what}: {sig}");
        assert_eq!(chain[1], sha256(&pem_der(&n.path("root.crt")))[7..], "{what}: the root's thumbprint");
        assert!(sig["certificateSubject"].as_str().unwrap().contains("O=acme") || what.contains("audit"), "{what}");
        let logged = sig["loggedFailures"].as_array().map(Vec::as_slice).unwrap_or_default();
        let first = logged.first().and_then(Value::as_str).unwrap_or_default();
        match *what {
            w if w.contains("audit") => assert!(first.starts_with("authenticity: "), "{what}: {logged:?}"),
            w if w.contains("permissive") && w.contains("certificate") => {
                assert!(first.starts_with("authenticTimestamp: "), "{what}: {logged:?}")
            }
            w if w.contains("permissive") => assert!(first.starts_with("expiry: "), "{what}: {logged:?}"),
            _ => assert!(logged.is_empty(), "{what}: {logged:?}"),
        }
        if what.contains("timestamped") {
            assert!(sig["timestampAuthority"].as_str().unwrap().contains("CN=Test TSA"), "{what}: {sig}");
            assert!(sig["signedTimestamp"].is_string(), "{what}");
        }
    }
}

/// A registry, and one artifact per name pushed and signed as asked.
struct Artifacts {
    reg: Distribution,
}

impl Artifacts {
    fn host(&self) -> String {
        self.reg.host()
    }

    /// Push `repo:v1` (one file, `body`) and return its digest.
    fn push(&self, repo: &str, body: &[u8]) -> String {
        push_files(&self.host(), &format!("{repo}:v1"), &[("f.txt", body)], &["--plain-http"])
    }

    fn at(&self, repo: &str, digest: &str) -> String {
        format!("{}/{repo}@{digest}", self.host())
    }

    /// Push, then sign with notation (`key`, `format`, `extra` flags).
    fn signed(&self, n: &Notation, repo: &str, body: &[u8], key: &str, format: &str, extra: &[&str]) -> String {
        let d = self.push(repo, body);
        n.sign(&self.at(repo, &d), key, format, extra);
        d
    }
}

/// Signers, identities, scopes, levels and integrity: both verifiers on
/// the same artifacts, then `trustpolicy.oci.json` and `pull --notation`.
#[tokio::test(flavor = "multi_thread")]
async fn ocisync_verify_agrees_with_notation_verify() {
    let a = Artifacts { reg: Distribution::start() };
    let host = a.host();
    let n = Notation::new("http://127.0.0.1:9");
    let rsa = a.signed(&n, "rsa-jws", b"1", "rsa", "jws", &[]);
    let ec = a.signed(&n, "ec-cose", b"2", "ec", "cose", &[]);
    let ec384 = a.signed(&n, "ec384-jws", b"3", "ec384", "jws", &[]);
    let rsa_cose = a.signed(&n, "rsa-cose", b"4", "rsa", "cose", &[]);
    let ec521 = a.signed(&n, "ec521-cose", b"18", "ec521", "cose", &[]);
    let rsa4096 = a.signed(&n, "rsa4096-jws", b"19", "rsa4096", "jws", &[]);
    let unsigned = a.push("unsigned", b"5");
    let other = a.signed(&n, "other-org", b"6", "other", "jws", &[]);
    let stranger = a.signed(&n, "stranger", b"7", "stranger", "cose", &[]);
    // a valid signature of rsa-jws, attached to another artifact
    let moved = a.push("moved", b"8");
    let (env, mt) = envelope_of(&host, "rsa-jws", &rsa);
    attach(&host, "moved", &moved, &env, &mt);
    // a signature with one byte changed, as the only signature of the very
    // manifest it names: signed in one repository, the manifest copied
    // byte for byte to another, the broken envelope attached there
    let original = a.signed(&n, "corrupt-src", b"9", "rsa", "jws", &[]);
    crane(&["copy", &a.at("corrupt-src", &original), &format!("{host}/corrupt:v1")]);
    let (template, mt) = envelope_of(&host, "corrupt-src", &original);
    let mut doc: Value = serde_json::from_slice(&template).unwrap();
    let sig = doc["signature"].as_str().unwrap().to_string();
    let mid = sig.len() / 2;
    let c = if &sig[mid..=mid] == "A" { "B" } else { "A" };
    doc["signature"] = json!(format!("{}{c}{}", &sig[..mid], &sig[mid + 1..]));
    attach(&host, "corrupt", &original, &serde_json::to_vec(&doc).unwrap(), &mt);
    // certificates that break the rules, each signing a copy of `original`
    let broken = [
        ("bad-ku", "bad-ku.chain.pem", "bad-ku.key", 12, "key usage must be digitalSignature only"),
        ("bad-eku", "bad-eku.chain.pem", "bad-eku.key", 12, "extended key usage serverAuth"),
        ("ca-leaf", "ca-leaf.chain.pem", "ca-leaf.key", 12, "is a CA"),
        ("no-ku", "no-ku.chain.pem", "no-ku.key", 12, "key usage extension must be present"),
        ("sha1", "sha1.chain.pem", "sha1.key", 12, "SHA-1"),
        ("under-not-ca", "under-not-ca.chain.pem", "under-not-ca.key", 12, "is not a CA"),
        ("not-yet-valid", "future.chain.pem", "future.key", 11, "valid from"),
        // the same chain as notation's own signature, signed again by hand:
        // this must verify, or the cases above show nothing
        ("resigned", "rsa.chain.pem", "rsa.key", 0, "JWS"),
    ];
    for (repo, chain, key, _, _) in &broken {
        crane(&["copy", &a.at("corrupt-src", &original), &format!("{host}/{repo}:v1")]);
        attach(&host, repo, &original, &resign(&n, &template, chain, key), JWS_MEDIA_TYPE);
    }

    let strict = json!({"level": "strict"});
    let trusted = [("ca", "acme", &["root.crt"][..])];
    let all = n.verifier("all", policy("all", &["*"], strict.clone(), &["*"]), &trusted);
    let acme = n.verifier("acme", policy("acme", &["*"], strict.clone(), &[ACME]), &trusted);
    let audit = n.verifier("audit", policy("audit", &["*"], json!({"level": "audit"}), &[ACME]), &trusted);
    let elsewhere = policy("elsewhere", &[&format!("{host}/somewhere-else")], strict.clone(), &["*"]);
    let elsewhere = n.verifier("elsewhere", elsewhere, &trusted);
    let skip = json!({"version": "1.0", "trustPolicies": [{"name": "skip", "registryScopes": ["*"],
                      "signatureVerification": {"level": "skip"}}]});
    let skip = n.verifier("skip", skip, &[]);
    let scoped =
        n.verifier("scoped", policy("scoped", &[&format!("{host}/rsa-jws")], strict.clone(), &[ACME]), &trusted);

    let mut cases = vec![
        case("RSA-2048 JWS", a.at("rsa-jws", &rsa), &all, true, 0, "JWS"),
        case("ECDSA P-256 COSE", a.at("ec-cose", &ec), &all, true, 0, "COSE"),
        case("ECDSA P-384 JWS", a.at("ec384-jws", &ec384), &acme, true, 0, "JWS"),
        case("RSA COSE", a.at("rsa-cose", &rsa_cose), &acme, true, 0, "COSE"),
        case("ECDSA P-521 COSE", a.at("ec521-cose", &ec521), &acme, true, 0, "COSE"),
        case("RSA-4096 JWS", a.at("rsa4096-jws", &rsa4096), &acme, true, 0, "JWS"),
        case("an exact registry scope", a.at("rsa-jws", &rsa), &scoped, true, 0, "JWS"),
        case("unsigned", a.at("unsigned", &unsigned), &all, false, 10, "no Notary Project signature"),
        case("another organisation", a.at("other-org", &other), &acme, false, 11, "none of the trusted identities"),
        case("another organisation under audit", a.at("other-org", &other), &audit, true, 0, "JWS"),
        case("an untrusted root", a.at("stranger", &stranger), &all, false, 11, "not anchored in the trust stores"),
        case("a signature of another artifact", a.at("moved", &moved), &all, false, 12, &format!("is for {rsa}")),
        case("a corrupted envelope", a.at("corrupt", &original), &all, false, 12, "does not verify with its"),
        case("no statement for the repository", a.at("rsa-jws", &rsa), &elsewhere, false, 11, "no trust policy"),
        case("level skip", a.at("unsigned", &unsigned), &skip, true, 0, ""),
    ];
    for (repo, _, _, code, says) in &broken {
        cases.push(case(repo, a.at(repo, &original), &acme, *code == 0, *code, says));
    }
    agree(&n, &cases).await;

    // `trustpolicy.oci.json`, the name notation-go reads first since 1.2
    // (Debian's notation 1.3.2 is built against an older notation-go and
    // reads only `trustpolicy.json`, so this is ocisync's alone): alone, it
    // is the policy; beside `trustpolicy.json`, it wins
    let oci_json = n.verifier("oci-json", policy("oci-json", &["*"], strict.clone(), &[ACME]), &trusted);
    let cfg = oci_json.join("notation");
    std::fs::rename(cfg.join("trustpolicy.json"), cfg.join("trustpolicy.oci.json")).unwrap();
    let reference = a.at("rsa-jws", &rsa);
    let args = ["verify", &reference, "--notation", cfg.to_str().unwrap(), "--insecure"];
    let out = ocisync(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let other_org = policy("oci-json", &["*"], strict.clone(), &["x509.subject:C=US, ST=WA, O=other"]);
    std::fs::write(cfg.join("trustpolicy.oci.json"), other_org.to_string()).unwrap();
    std::fs::write(cfg.join("trustpolicy.json"), policy("old", &["*"], strict, &["*"]).to_string()).unwrap();
    let out = ocisync(&args).await;
    assert_eq!(out.status.code(), Some(11), "trustpolicy.oci.json wins: {}", stderr(&out));

    // pull --notation: nothing of an artifact that does not verify is
    // downloaded or written; one that does is
    let trust = all.join("notation");
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("out");
    for (repo, d, code) in [("unsigned", &unsigned, 10), ("stranger", &stranger, 11)] {
        let refused = pull(&a.at(repo, d), &target, &["--notation", trust.to_str().unwrap()]).await;
        assert_eq!(refused.status.code(), Some(code), "{}", stderr(&refused));
        assert!(!target.exists());
        assert_eq!(blob_gets(&a.reg.access_log(), &layer_of(&host, repo, d)), 0, "{repo}: no layer read");
    }
    let ok = pull(&a.at("ec-cose", &ec), &target, &["--notation", trust.to_str().unwrap()]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(std::fs::read(target.join("f.txt")).unwrap(), b"2");
}

/// Time and revocation: timestamps from ECDSA and RSA authorities (`openssl
/// ts` on loopback) over a certificate that has since expired, signature
/// expiry, and CRLs served on loopback (revoked, in good standing, out of
/// reach), under the levels and overrides that change their verdicts.
#[tokio::test(flavor = "multi_thread")]
async fn ocisync_and_notation_agree_on_time_and_revocation() {
    let a = Artifacts { reg: Distribution::start() };
    let (n, peer) = Notation::with_peer();
    let short_until = std::time::Instant::now() + std::time::Duration::from_secs(SHORT_LIFE + 2);
    let tsa_root = n.path("tsa-root.crt");
    let stamp = |path: &str| {
        [
            "--timestamp-url".to_string(),
            format!("{}/{path}", peer.url),
            "--timestamp-root-cert".into(),
            tsa_root.display().to_string(),
        ]
    };
    let (ec_tsa, rsa_tsa) = (stamp("tsa"), stamp("tsa-rsa"));
    let ec_tsa: Vec<&str> = ec_tsa.iter().map(String::as_str).collect();
    let rsa_tsa: Vec<&str> = rsa_tsa.iter().map(String::as_str).collect();
    // timestamped signatures by the short-lived leaf (checked once it has expired)
    let stamped = a.signed(&n, "stamped", b"12", "short", "jws", &ec_tsa);
    let stamped_cose = a.signed(&n, "stamped-cose", b"13", "short", "cose", &ec_tsa);
    let stamped_rsa = a.signed(&n, "stamped-rsa", b"13b", "short", "jws", &rsa_tsa);
    let plain = a.signed(&n, "plain", b"1", "rsa", "jws", &[]);
    // a signature whose own expiry passes
    let expiring = a.signed(&n, "expiring", b"14", "rsa", "cose", &["--expiry", "2s"]);
    let revoked = a.signed(&n, "revoked", b"15", "revoked", "jws", &[]);
    let revocable = a.signed(&n, "revocable", b"16", "crl", "cose", &[]);
    let dead = a.signed(&n, "dead-crl", b"17", "crl-dead", "jws", &[]);

    let trusted = [("ca", "acme", &["root.crt"][..])];
    let with_tsa = |name: &str, verification: Value| {
        let mut p = policy(name, &["*"], verification, &[ACME]);
        p["trustPolicies"][0]["trustStores"] = json!(["ca:acme", "tsa:tsa"]);
        n.verifier(name, p, &[("ca", "acme", &["root.crt"][..]), ("tsa", "tsa", &["tsa-root.crt"][..])])
    };
    let tsa_always = with_tsa("tsa-always", json!({"level": "strict"}));
    let tsa_after = with_tsa("tsa-after", json!({"level": "strict", "verifyTimestamp": "afterCertExpiry"}));
    let acme = n.verifier("acme", policy("acme", &["*"], json!({"level": "strict"}), &[ACME]), &trusted);
    let permissive =
        n.verifier("permissive", policy("permissive", &["*"], json!({"level": "permissive"}), &[ACME]), &trusted);
    let skip_revocation = json!({"level": "strict", "override": {"revocation": "skip"}});
    let no_revocation =
        n.verifier("no-revocation", policy("no-revocation", &["*"], skip_revocation, &[ACME]), &trusted);
    // the short-lived leaf has expired by now
    tokio::time::sleep(short_until.saturating_duration_since(std::time::Instant::now())).await;

    let cases = [
        case("an expired certificate, timestamped (JWS)", a.at("stamped", &stamped), &tsa_always, true, 0, "JWS"),
        case(
            "an expired certificate, timestamped (COSE)",
            a.at("stamped-cose", &stamped_cose),
            &tsa_after,
            true,
            0,
            "COSE",
        ),
        case(
            "an expired certificate, timestamped by an RSA authority",
            a.at("stamped-rsa", &stamped_rsa),
            &tsa_always,
            true,
            0,
            "JWS",
        ),
        case("an expired certificate, no tsa store", a.at("stamped", &stamped), &acme, false, 11, "expired at"),
        case("an expired certificate, permissive", a.at("stamped", &stamped), &permissive, true, 0, "JWS"),
        case(
            "no timestamp where the policy wants one",
            a.at("plain", &plain),
            &tsa_always,
            false,
            11,
            "no timestamp countersignature",
        ),
        case(
            "a signature past its expiry, strict",
            a.at("expiring", &expiring),
            &acme,
            false,
            11,
            "the signature expired",
        ),
        case("a signature past its expiry, permissive", a.at("expiring", &expiring), &permissive, true, 0, "COSE"),
        case("a revoked leaf", a.at("revoked", &revoked), &acme, false, 11, "is revoked"),
        case("a revocable leaf in good standing", a.at("revocable", &revocable), &acme, true, 0, "COSE"),
        case(
            "a CRL that cannot be fetched",
            a.at("dead-crl", &dead),
            &acme,
            false,
            11,
            "revocation status of certificate",
        ),
        case(
            "a CRL that cannot be fetched, revocation skipped",
            a.at("dead-crl", &dead),
            &no_revocation,
            true,
            0,
            "JWS",
        ),
        case("a revoked leaf, revocation skipped", a.at("revoked", &revoked), &no_revocation, true, 0, "JWS"),
    ];
    agree(&n, &cases).await;
    // the CRL was fetched from its distribution point
    assert!(peer.requests().iter().any(|l| l == "GET /root.crl"), "{:?}", peer.requests());
}

/// The operator with a Flux user's Secret unchanged: a Notation-signed
/// artifact syncs, with its evidence in status; an unsigned one and one
/// signed by another organisation are refused with their reason, and none
/// of their layers is downloaded. With cosign asked for too, both must pass.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_verifies_notation_with_a_flux_secret() {
    use crate::support::cluster::{Env, Spec};
    use crate::support::cosign::Signer;

    let e = Env::new("notation-op").await;
    let reg = Distribution::start();
    let host = reg.host();
    let n = Notation::new("http://127.0.0.1:9");
    let push =
        |repo: &str, body: &[u8]| push_files(&host, &format!("{repo}:v1"), &[("app.yaml", body)], &["--plain-http"]);
    let signed = push("signed", b"signed: true\n");
    n.sign(&format!("{host}/signed@{signed}"), "ec", "cose", &[]);
    let bare = push("bare", b"signed: false\n");
    let foreign = push("foreign", b"signed: elsewhere\n");
    n.sign(&format!("{host}/foreign@{foreign}"), "other", "jws", &[]);
    let both = push("both", b"signed: twice\n");
    n.sign(&format!("{host}/both@{both}"), "rsa", "jws", &[]);

    e.create_secret(flux_secret("notation-trust", &n, &[ACME])).await;
    let cosigner = Signer::new();
    e.create_secret(json!({"metadata": {"name": "cosign"}, "stringData": {"cosign.pub": cosigner.public_pem()}})).await;
    let notation = json!({"notation": {"secretRef": {"name": "notation-trust"}}});
    for repo in ["signed", "bare", "foreign"] {
        e.apply(repo, &Spec::new(&host, repo).tag("v1").set("verify", notation.clone())).await;
    }
    let mut with_cosign = notation.clone();
    with_cosign["keys"] = json!({"secretRef": {"name": "cosign"}});
    e.apply("both", &Spec::new(&host, "both").tag("v1").set("verify", with_cosign)).await;

    let st = e.synced("signed", &signed).await;
    assert_eq!(e.condition("signed", "Verified").await.unwrap().0, "True");
    let sig = &st["verification"]["signatures"][0];
    assert_eq!(sig["requiredBy"], "spec.verify.notation");
    assert_eq!(sig["format"], "Notation");
    assert_eq!(sig["envelope"], "COSE");
    assert_eq!(sig["foundBy"], "ReferrersTag");
    assert_eq!(sig["certificateSubject"], "CN=builder-ec,O=acme,ST=WA,C=US");
    assert_eq!(sig["trustPolicy"], "flux (strict)");
    assert!(sig["trustedRoot"].as_str().unwrap().starts_with("notation-op/notation-trust (sha256:"), "{sig}");
    assert_eq!(sig["certificateChain"].as_array().unwrap().len(), 2);
    assert!(sig["signingTime"].is_string());
    assert_eq!(e.config_map("signed").await.unwrap().data.unwrap()["app.yaml"], "signed: true\n");

    for (name, digest, reason, says) in [
        ("bare", &bare, "NoSignature", "no Notary Project signature"),
        ("foreign", &foreign, "UntrustedSigner", "none of the trusted identities"),
        ("both", &both, "NoSignature", ""),
    ] {
        let (r, message) = e.ready(name, false).await;
        assert_eq!(r, reason, "{name}: {message}");
        assert!(message.contains(says), "{name}: {message}");
        assert!(e.config_map(name).await.is_none(), "{name}");
        assert_eq!(blob_gets(&reg.access_log(), &layer_of(&host, name, digest)), 0, "{name}: nothing downloaded");
    }
    // the cosign signature too, and `both` passes both requirements
    cosigner.sign(&format!("{host}/both@{both}"));
    let st = e.synced("both", &both).await;
    let by: Vec<&str> = st["verification"]["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["requiredBy"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["spec.verify.notation", "spec.verify"]);
}

/// A cluster policy that requires Notation signatures, with its trust
/// policy Secret in a namespace of the admin's: an unsigned artifact in a
/// guarded namespace is refused, a signed one syncs.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_policy_requires_notation() {
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

    use crate::support::cluster::{ControlPlane, Env, Spec};

    let e = Env::new("notation-guarded").await;
    let cp = ControlPlane::shared();
    let admin = cp.admin().await;
    let label = "ocisync.test/require-notation";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let patch = json!({"metadata": {"labels": {label: "yes"}}});
    namespaces.patch("notation-guarded", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    cp.namespace(&admin, "notation-policy-trust").await;
    let n = Notation::new("http://127.0.0.1:9");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(admin.clone(), "notation-policy-trust");
    let s = serde_json::from_value(flux_secret("platform", &n, &["*"])).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let policies: Api<ocisync::api::ClusterArtifactPolicy> = Api::all(admin.clone());
    let policy = serde_json::from_value(json!({
        "apiVersion": "ocisync.dev/v1alpha1", "kind": "ClusterArtifactPolicy",
        "metadata": {"name": "notation-required"},
        "spec": {
            "namespaceSelector": {"matchLabels": {label: "yes"}},
            "verify": {"notation": {"secretRef": {"name": "platform", "namespace": "notation-policy-trust"}}}
        }
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();

    let reg = Distribution::start();
    let host = reg.host();
    let d = push_files(&host, "app:v1", &[("app.yaml", b"guarded\n")], &["--plain-http"]);
    e.apply("app", &Spec::new(&host, "app").tag("v1").interval("2s")).await;
    let (reason, message) = e.ready("app", false).await;
    assert_eq!(reason, "PolicyViolation", "{message}");
    assert!(message.contains("ClusterArtifactPolicy/notation-required"), "{message}");
    assert!(message.contains("no Notary Project signature"), "{message}");
    assert!(e.config_map("app").await.is_none());

    n.sign(&format!("{host}/app@{d}"), "rsa", "jws", &[]);
    let st = e.synced("app", &d).await;
    let sig = &st["verification"]["signatures"][0];
    assert_eq!(sig["requiredBy"], "ClusterArtifactPolicy/notation-required.notation");
    assert_eq!(sig["format"], "Notation");
    policies.delete("notation-required", &DeleteParams::default()).await.unwrap();
}

/// On a registry with the referrers API, notation (told not to use the tag
/// schema) stores its signatures as OCI 1.1 referrers with their
/// `artifactType`: found through the API, and both verifiers agree.
#[tokio::test(flavor = "multi_thread")]
async fn notation_signatures_are_found_through_the_referrers_api() {
    let reg = Ferro::start().await;
    let host = reg.host();
    let n = Notation::new("http://127.0.0.1:9");
    let d = reg.push("app:v1", &[("f.txt", b"referrers")]).await;
    let reference = format!("{host}/app@{d}");
    let home = n.verifier(
        "api",
        policy("api", &["*"], json!({"level": "strict"}), &[ACME]),
        &[("ca", "acme", &["root.crt"][..])],
    );
    for format in ["jws", "cose"] {
        let (n2, r2) = (&n, reference.clone());
        tokio::task::block_in_place(|| n2.sign(&r2, "ec", format, &["--force-referrers-tag=false"]));
    }
    let (theirs, said) = tokio::task::block_in_place(|| n.verify(&home, &reference));
    assert_eq!(theirs, 0, "{said}");
    let cfg = home.join("notation");
    let out =
        ocisync(&["verify", &reference, "--notation", cfg.to_str().unwrap(), "--insecure", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sig = &json(&out)["verification"]["signatures"][0];
    assert_eq!(sig["foundBy"], "ReferrersAPI");
    assert_eq!(sig["format"], "Notation");
    let log = reg.hooks.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.starts_with("GET ") && l.contains("/referrers/")), "{log:?}");
    let fallback = format!("/manifests/sha256-{}", &d[7..]);
    assert!(!log.iter().any(|l| l.ends_with(&fallback)), "no tag schema: {log:?}");
}
