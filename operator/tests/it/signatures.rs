//! Signature verification with the real cosign 3 (fresh key pairs each
//! run), on distribution 2.8 (no referrers API: the tag fallback), on
//! ferro-oci-server (the referrers API) and in the legacy `.sig` format.
//! Every refusal is shown on the real API server, and the registry's access
//! log shows that no layer of an unverified artifact was downloaded.

use std::sync::atomic::Ordering;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::cluster::{ControlPlane, Env, Spec};
use crate::support::cosign::{Signer, attach_bundle, bundle_of, cosign_verify};
use crate::support::*;

/// A Secret holding public keys as `*.pub` entries.
fn keys(name: &str, pems: &[(&str, String)]) -> Value {
    let data: serde_json::Map<String, Value> = pems.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"metadata": {"name": name}, "stringData": data})
}

fn verified(host: &str, repo: &str, secret: &str) -> Spec {
    Spec::new(host, repo).tag("v1").set("verify", json!({"keys": {"secretRef": {"name": secret}}}))
}

/// The artifact's one layer: its digest, to look for in access logs.
pub(super) fn layer_of(host: &str, repo: &str, digest: &str) -> String {
    let m: Value = serde_json::from_slice(&crane(&["manifest", &format!("{host}/{repo}@{digest}")]).stdout).unwrap();
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

pub(super) fn blob_gets(log: &[String], blob: &str) -> usize {
    log.iter().filter(|l| l.contains("GET ") && l.contains(&format!("/blobs/{blob}"))).count()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// cosign v3's default format on a registry without the referrers API:
/// found through the `sha256-<hex>` index, whose entry cosign mistypes.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_signed_bundle_verifies_through_the_tag_fallback() {
    let e = Env::new("sig-fallback").await;
    let reg = Distribution::start();
    let d = push_files(&reg.host(), "app:v1", &[("app.yaml", b"replicas: 2\n")], &["--plain-http"]);
    let signer = Signer::new();
    signer.sign(&format!("{}/app@{d}", reg.host()));
    e.create_secret(keys("keys", &[("cosign.pub", signer.public_pem())])).await;
    e.apply("app", &verified(&reg.host(), "app", "keys")).await;
    let st = e.synced("app", &d).await;
    assert_eq!(e.condition("app", "Verified").await.unwrap().0, "True");
    let sig = &st["verification"]["signatures"][0];
    assert_eq!(st["verification"]["digest"], d);
    assert_eq!(sig["requiredBy"], "spec.verify");
    assert_eq!(sig["format"], "SigstoreBundle");
    assert_eq!(sig["foundBy"], "ReferrersTag");
    assert_eq!(sig["key"], "sig-fallback/keys/cosign.pub");
    assert_eq!(sig["predicateType"], "https://sigstore.dev/cosign/sign/v1");
    assert_eq!(sig["keyFingerprint"], fingerprint(&signer.public_pem()));
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["app.yaml"], "replicas: 2\n");
}

/// sha256 of the DER SubjectPublicKeyInfo, computed here from the PEM.
fn fingerprint(pem: &str) -> String {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    sha256(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap())
}

/// On a registry with the referrers API the signature is found through it,
/// page by page.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_signed_bundle_verifies_through_the_referrers_api_across_pages() {
    let e = Env::new("sig-api").await;
    let reg = Ferro::start().await;
    let d = reg.push("app:v1", &[("app.yaml", b"replicas: 3\n")]).await;
    let (host, reference, subject) = (reg.host(), format!("{}/app@{d}", reg.host()), d.clone());
    // four other referrers first, then the signature: with two a page, it is on the third
    blocking(move || {
        let d = subject;
        for i in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("sbom.json"), format!("{{\"n\":{i}}}")).unwrap();
            oras(
                dir.path(),
                &[
                    "attach",
                    "--artifact-type",
                    "application/vnd.example.sbom.v1",
                    &format!("{host}/app@{d}"),
                    "sbom.json",
                ],
            );
        }
    })
    .await;
    let signer = Signer::new();
    let pem = signer.public_pem();
    blocking(move || {
        signer.sign(&reference);
        signer
    })
    .await;
    reg.hooks.referrers_page.store(2, Ordering::SeqCst);
    e.create_secret(keys("keys", &[("cosign.pub", pem)])).await;
    e.apply("app", &verified(&reg.host(), "app", "keys")).await;
    let st = e.synced("app", &d).await;
    assert_eq!(st["verification"]["signatures"][0]["foundBy"], "ReferrersAPI");
    let pages =
        reg.hooks.log.lock().unwrap().iter().filter(|l| l.starts_with("GET ") && l.contains("/referrers/")).count();
    assert!(pages >= 3, "five referrers at two a page: {pages} pages read");
}

/// The legacy format (`--new-bundle-format=false`), under the `.sig` tag.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_signature_verifies_from_the_sig_tag() {
    let e = Env::new("sig-legacy").await;
    let reg = Distribution::start();
    let d = push_files(&reg.host(), "app:v1", &[("app.yaml", b"legacy\n")], &["--plain-http"]);
    let signer = Signer::new();
    signer.sign_legacy(&format!("{}/app@{d}", reg.host()));
    e.create_secret(keys("keys", &[("cosign.pub", signer.public_pem())])).await;
    e.apply("app", &verified(&reg.host(), "app", "keys")).await;
    let st = e.synced("app", &d).await;
    let sig = &st["verification"]["signatures"][0];
    assert_eq!(sig["format"], "SimpleSigning");
    assert_eq!(sig["foundBy"], "SignatureTag");
}

/// Each way a signature can be wrong gets its own reason on the real API
/// server, no ConfigMap, and no download of the artifact's layer.
#[tokio::test(flavor = "multi_thread")]
async fn what_fails_verification_is_never_fetched() {
    let e = Env::new("sig-refused").await;
    let reg = Distribution::start();
    let host = reg.host();
    let signer = Signer::new();
    let stranger = Signer::new();
    e.create_secret(keys("keys", &[("cosign.pub", signer.public_pem())])).await;
    let push =
        |repo: &str, body: &[u8]| push_files(&host, &format!("{repo}:v1"), &[("f.txt", body)], &["--plain-http"]);

    let wrong = push("wrong-key", b"1");
    stranger.sign(&format!("{host}/wrong-key@{wrong}"));
    let unsigned = push("unsigned", b"2");
    let a = push("signed-a", b"A");
    signer.sign(&format!("{host}/signed-a@{a}"));
    let b = push("b-with-a", b"B");
    attach_bundle(&host, "b-with-a", &b, &bundle_of(&host, "signed-a", &a));
    let flipped = push("flipped", b"3");
    let donor = push("donor", b"3");
    // donor and flipped have the same content, so the same digest: sign
    // the donor's repository, take its bundle, break it, attach it to flipped
    signer.sign(&format!("{host}/donor@{donor}"));
    let mut bundle: Value = serde_json::from_slice(&bundle_of(&host, "donor", &donor)).unwrap();
    flip_signature(&mut bundle);
    attach_bundle(&host, "flipped", &flipped, &serde_json::to_vec(&bundle).unwrap());
    let attested = push("attested", b"4");
    signer.attest(&format!("{host}/attested@{attested}"), "https://example.com/custom/v1");

    let cases = [
        ("wrong-key", &wrong, "UntrustedSigner"),
        ("unsigned", &unsigned, "NoSignature"),
        ("b-with-a", &b, "SignatureMismatch"),
        ("flipped", &flipped, "SignatureMismatch"),
        ("attested", &attested, "NoSignature"),
    ];
    for (repo, _, _) in &cases {
        e.apply(repo, &verified(&host, repo, "keys")).await;
    }
    for (repo, digest, reason) in &cases {
        refused(&e, repo, reason, &layer_of(&host, repo, digest), || reg.access_log()).await;
    }
    // cosign itself passes the attestation: it counts any attestation by
    // the key as a signature; ocisync does not.
    assert_eq!(cosign_verify(&signer.public_key(), &format!("{host}/attested@{attested}")), 0);
    let stalled = e.condition("wrong-key", "Stalled").await.unwrap();
    assert_eq!(stalled.1, "UntrustedSigner", "only a new key or signature helps");
}

/// `repo`'s Artifact refused with `reason` (Ready and Verified), nothing
/// published, and `layer` never in the registry's request log, read once
/// the refusal is in.
pub(super) async fn refused(e: &Env, repo: &str, reason: &str, layer: &str, log: impl Fn() -> Vec<String>) {
    let (got, message) = e.ready(repo, false).await;
    assert_eq!(got, reason, "{repo}: {message}");
    let (status, verified_reason, _) = e.condition(repo, "Verified").await.unwrap();
    assert_eq!((status.as_str(), verified_reason.as_str()), ("False", reason), "{repo}");
    assert!(e.config_map(repo).await.is_none(), "{repo}: nothing unverified is published");
    assert_eq!(blob_gets(&log(), layer), 0, "{repo}: its layer was never downloaded");
}

fn flip_signature(bundle: &mut Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = &mut bundle["dsseEnvelope"]["signatures"][0]["sig"];
    let mut raw = b64.decode(sig.as_str().unwrap()).unwrap();
    let n = raw.len();
    raw[n - 1] ^= 1;
    *sig = json!(b64.encode(raw));
}

/// Two keys where the second signed; then the Secret loses that key (the
/// last good content stays, Ready goes False); then it gets it back.
#[tokio::test(flavor = "multi_thread")]
async fn rotating_keys_in_the_secret_reverifies() {
    let e = Env::new("sig-rotate").await;
    let reg = Distribution::start();
    let d = push_files(&reg.host(), "app:v1", &[("app.yaml", b"v1\n")], &["--plain-http"]);
    let (signer, other) = (Signer::new(), Signer::new());
    signer.sign(&format!("{}/app@{d}", reg.host()));
    e.create_secret(keys("keys", &[("a-other.pub", other.public_pem()), ("b-signer.pub", signer.public_pem())])).await;
    e.apply("app", &verified(&reg.host(), "app", "keys")).await;
    let st = e.synced("app", &d).await;
    assert_eq!(st["verification"]["signatures"][0]["key"], "sig-rotate/keys/b-signer.pub");
    let trust = st["verification"]["trust"].clone();

    // the signer's key leaves the Secret
    let secrets = e.secrets();
    let patch = async |p: Value| {
        secrets.patch("keys", &PatchParams::default(), &Patch::Merge(&p)).await.unwrap();
    };
    patch(json!({"data": {"b-signer.pub": null}})).await;
    let (reason, _) = e.ready("app", false).await;
    assert_eq!(reason, "UntrustedSigner");
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["app.yaml"], "v1\n", "the last good content stays");

    patch(json!({"stringData": {"b-signer.pub": signer.public_pem()}})).await;
    e.ready("app", true).await;
    let st = e.status("app").await;
    assert_eq!(st["verification"]["trust"], trust, "the same keys: the same fingerprint");
}

/// A cluster policy covers a labelled namespace: an Artifact there with no
/// `spec.verify` cannot sync unsigned content, and syncs once it is signed.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_policy_cannot_be_opted_out_of() {
    let e = Env::new("sig-policy").await;
    let cp = ControlPlane::shared();
    let admin = cp.admin().await;
    let label = "ocisync.test/require-signed";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces
        .patch("sig-policy", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"labels": {label: "yes"}}})))
        .await
        .unwrap();
    cp.namespace(&admin, "sig-policy-keys").await;
    let signer = Signer::new();
    let policy_keys: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(admin.clone(), "sig-policy-keys");
    let s = serde_json::from_value(keys("platform", &[("platform.pub", signer.public_pem())])).unwrap();
    policy_keys.create(&PostParams::default(), &s).await.unwrap();
    let policies: Api<ocisync::api::ClusterArtifactPolicy> = Api::all(admin.clone());
    let policy = serde_json::from_value(json!({
        "apiVersion": "ocisync.dev/v1alpha1", "kind": "ClusterArtifactPolicy",
        "metadata": {"name": "sig-policy-require-signed"},
        "spec": {
            "namespaceSelector": {"matchLabels": {label: "yes"}},
            "verify": {"keys": {"secretRef": {"name": "platform", "namespace": "sig-policy-keys"}}}
        }
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();

    let reg = Distribution::start();
    let d = push_files(&reg.host(), "app:v1", &[("app.yaml", b"policy\n")], &["--plain-http"]);
    e.apply("app", &Spec::new(&reg.host(), "app").tag("v1").interval("2s")).await;
    let (reason, message) = e.ready("app", false).await;
    assert_eq!(reason, "PolicyViolation", "{message}");
    assert!(message.contains("ClusterArtifactPolicy/sig-policy-require-signed"), "{message}");
    assert!(e.config_map("app").await.is_none());
    assert_eq!(blob_gets(&reg.access_log(), &layer_of(&reg.host(), "app", &d)), 0);

    signer.sign(&format!("{}/app@{d}", reg.host()));
    let st = e.synced("app", &d).await;
    assert_eq!(st["verification"]["signatures"][0]["requiredBy"], "ClusterArtifactPolicy/sig-policy-require-signed");
    assert_eq!(st["verification"]["signatures"][0]["key"], "sig-policy-keys/platform/platform.pub");
    policies.delete("sig-policy-require-signed", &DeleteParams::default()).await.unwrap();
}

/// `ocisync verify` agrees with `cosign verify --key` wherever cosign is
/// right, and says which way it failed in its exit code.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_agrees_with_cosign() {
    let reg = Distribution::start();
    let host = reg.host();
    let (signer, stranger) = (Signer::new(), Signer::new());
    let push =
        |repo: &str, body: &[u8]| push_files(&host, &format!("{repo}:v1"), &[("f.txt", body)], &["--plain-http"]);
    let signed = push("signed", b"1");
    signer.sign(&format!("{host}/signed@{signed}"));
    let legacy = push("legacy", b"2");
    signer.sign_legacy(&format!("{host}/legacy@{legacy}"));
    push("unsigned", b"3");
    let attested = push("attested", b"4");
    signer.attest(&format!("{host}/attested@{attested}"), "https://example.com/custom/v1");
    let key = signer.public_key();
    let other = stranger.public_key();
    // (reference, key, cosign's exit code, ours)
    let cases = [
        (format!("{host}/signed:v1"), &key, 0, 0),
        (format!("{host}/legacy:v1"), &key, 0, 0),
        (format!("{host}/signed:v1"), &other, 1, 11),
        (format!("{host}/unsigned:v1"), &key, 10, 10),
        // cosign counts an attestation as a signature; ocisync does not
        (format!("{host}/attested:v1"), &key, 0, 10),
    ];
    for (reference, key, cosign_rc, ours) in cases {
        assert_eq!(cosign_verify(key, &reference), cosign_rc, "cosign on {reference}");
        let out =
            ocisync(&["verify", &reference, "--key", key.to_str().unwrap(), "--insecure", "--output", "json"]).await;
        assert_eq!(out.status.code(), Some(ours), "ocisync on {reference}: {}", stderr(&out));
        if ours == 0 {
            let doc = json(&out);
            assert_eq!(
                doc["verification"]["signatures"][0]["keyFingerprint"],
                fingerprint(&std::fs::read_to_string(key).unwrap())
            );
        }
    }
    // A's signature attached to B: both refuse it; ocisync says why
    let b = push("b-with-a", b"B");
    attach_bundle(&host, "b-with-a", &b, &bundle_of(&host, "signed", &signed));
    let reference = format!("{host}/b-with-a:v1");
    assert_ne!(cosign_verify(&key, &reference), 0, "cosign refuses it too");
    let out = ocisync(&["verify", &reference, "--key", key.to_str().unwrap(), "--insecure"]).await;
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));

    // pull --verify-key: a refused artifact writes nothing
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("out");
    let refused = pull(&format!("{host}/unsigned:v1"), &target, &["--verify-key", key.to_str().unwrap()]).await;
    assert_eq!(refused.status.code(), Some(10));
    assert!(!target.exists());
    let ok = pull(&format!("{host}/signed:v1"), &target, &["--verify-key", key.to_str().unwrap()]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(std::fs::read(target.join("f.txt")).unwrap(), b"1");
}

/// The same refusals on a registry with the referrers API, where cosign
/// stores no tag index: each found through the API, refused with its
/// reason, and no layer requested.
#[tokio::test(flavor = "multi_thread")]
async fn the_referrers_api_refuses_the_same_way() {
    let e = Env::new("sig-refused-api").await;
    let reg = Ferro::start().await;
    let host = reg.host();
    let (signer, stranger) = (Signer::new(), Signer::new());
    e.create_secret(keys("keys", &[("cosign.pub", signer.public_pem())])).await;
    let wrong = reg.push("wrong-key:v1", &[("f.txt", b"1")]).await;
    let unsigned = reg.push("unsigned:v1", &[("f.txt", b"2")]).await;
    let attested = reg.push("attested:v1", &[("f.txt", b"3")]).await;
    let a = reg.push("signed-a:v1", &[("f.txt", b"A")]).await;
    let b = reg.push("b-with-a:v1", &[("f.txt", b"B")]).await;
    let (h, w, t, sa) = (host.clone(), wrong.clone(), attested.clone(), a.clone());
    let signer = blocking(move || {
        stranger.sign(&format!("{h}/wrong-key@{w}"));
        signer.attest(&format!("{h}/attested@{t}"), "https://example.com/custom/v1");
        signer.sign(&format!("{h}/signed-a@{sa}"));
        signer
    })
    .await;
    // A's bundle, read through the referrers API, attached to B
    let bundle = api_bundle(&host, "signed-a", &a).await;
    let (h, bb) = (host.clone(), b.clone());
    blocking(move || attach_bundle(&h, "b-with-a", &bb, &bundle)).await;

    let cases = [
        ("wrong-key", &wrong, "UntrustedSigner"),
        ("unsigned", &unsigned, "NoSignature"),
        ("attested", &attested, "NoSignature"),
        ("b-with-a", &b, "SignatureMismatch"),
    ];
    for (repo, _, _) in &cases {
        e.apply(repo, &verified(&host, repo, "keys")).await;
    }
    for (repo, digest, reason) in &cases {
        let layer = api_json(&host, &format!("/v2/{repo}/manifests/{digest}")).await["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        refused(&e, repo, reason, &layer, || reg.hooks.log.lock().unwrap().clone()).await;
        let log = reg.hooks.log.lock().unwrap().clone();
        assert!(log.iter().any(|l| l.starts_with("GET ") && l.contains(&format!("/v2/{repo}/referrers/"))), "{repo}");
    }
    drop(signer);
}

async fn api_json(host: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{host}{path}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

/// The one bundle referring to `digest`, through the referrers API.
async fn api_bundle(host: &str, repo: &str, digest: &str) -> Vec<u8> {
    let index = api_json(host, &format!("/v2/{repo}/referrers/{digest}")).await;
    let sig = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let manifest = api_json(host, &format!("/v2/{repo}/manifests/{sig}")).await;
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    reqwest::get(format!("http://{host}/v2/{repo}/blobs/{layer}")).await.unwrap().bytes().await.unwrap().to_vec()
}

/// A new policy re-evaluates the Artifacts it covers at once (the interval
/// here is an hour): an unsigned Artifact that synced goes to
/// `PolicyViolation`, its last good content stays; the policy's removal
/// lets it be Ready again.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_reevaluates_at_once() {
    let e = Env::new("sig-policy-change").await;
    let admin = ControlPlane::shared().admin().await;
    let reg = Distribution::start();
    let d = push_files(&reg.host(), "app:v1", &[("app.yaml", b"unsigned\n")], &["--plain-http"]);
    e.apply("app", &Spec::new(&reg.host(), "app").tag("v1").interval("1h")).await;
    e.synced("app", &d).await;
    assert!(e.condition("app", "Verified").await.is_none(), "nothing was required");

    let signer = Signer::new();
    e.create_secret(keys("platform", &[("platform.pub", signer.public_pem())])).await;
    let policies: Api<ocisync::api::ClusterArtifactPolicy> = Api::all(admin.clone());
    let name = "sig-policy-change-repo";
    let policy = serde_json::from_value(json!({
        "apiVersion": "ocisync.dev/v1alpha1", "kind": "ClusterArtifactPolicy",
        "metadata": {"name": name},
        "spec": {
            "urls": [format!("oci://{}/app", reg.host())],
            "verify": {"keys": {"secretRef": {"name": "platform", "namespace": "sig-policy-change"}}}
        }
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    let (reason, _) = e.ready("app", false).await;
    assert_eq!(reason, "PolicyViolation");
    assert_eq!(e.config_map("app").await.unwrap().data.unwrap()["app.yaml"], "unsigned\n", "the last content stays");

    policies.delete(name, &DeleteParams::default()).await.unwrap();
    e.ready("app", true).await;
    assert!(e.condition("app", "Verified").await.is_none());
    assert!(e.status("app").await.get("verification").is_none());
}

/// `ocisync verify-blob` on a real public-good bundle (the conformance
/// suite's managed-key case, in operator/testdata): by file and by digest
/// with its key, refused with another key and for other content.
#[tokio::test(flavor = "multi_thread")]
async fn verify_blob_checks_a_real_bundle_offline() {
    let dir = repo_root().join("operator/testdata/public-good");
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let digest = sha256(&std::fs::read(dir.join("a.txt")).unwrap());
    let other_key = repo_root().join("operator/testdata/cosign-v3/cosign.pub");
    let tmp = tempfile::tempdir().unwrap();
    let other_file = tmp.path().join("b.txt");
    std::fs::write(&other_file, b"not what was signed\n").unwrap();
    let cases = [
        (p("a.txt"), p("key.pub"), 0),
        (digest.clone(), p("key.pub"), 0),
        (p("a.txt"), other_key.to_str().unwrap().to_string(), 12),
        (other_file.to_str().unwrap().to_string(), p("key.pub"), 12),
    ];
    for (input, key, code) in cases {
        let out = ocisync(&["verify-blob", &input, "--bundle", &p("bundle.sigstore.json"), "--key", &key]).await;
        assert_eq!(out.status.code(), Some(code), "{input} with {key}: {}", stderr(&out));
    }
}
