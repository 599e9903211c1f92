//! Keyless signatures on the real API server: bundles from the virtual
//! Sigstore (e2e/virtual-sigstore.py: its own CA, CT log and Rekor-style
//! log, and their trusted_root.json) attached with `oras attach`, each
//! cross-checked with sigstore-python so the generator and ocisync cannot
//! share a mistake; and cosign 3 signing with a certificate from that CA.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::signatures::{blob_gets, layer_of, refused};
use crate::support::cluster::{ControlPlane, Env, Spec};
use crate::support::cosign::{Signer, attach_bundle};
use crate::support::sigstore::{GITHUB, Virtual};
use crate::support::*;

const SUBJECT: &str = "https://github.com/org/app/.github/workflows/release.yml@refs/heads/main";
const GOOGLE: &str = "https://accounts.google.com";

fn root_secret(name: &str, root: &str) -> Value {
    json!({"metadata": {"name": name}, "stringData": {"trusted_root.json": root}})
}

fn id(issuer: &str, subject: &str) -> Value {
    json!({"issuer": issuer, "subject": subject})
}

fn keyless(host: &str, repo: &str, verify: Value) -> Spec {
    Spec::new(host, repo).tag("v1").set("verify", verify)
}

struct Case {
    repo: &'static str,
    sign: &'static [&'static str],
    identities: Value,
    /// Extra fields of `spec.verify.keyless`.
    keyless: Value,
    /// `Ok(rule)`: synced, matched by that rule; `Err(reason)`: refused.
    want: Result<&'static str, &'static str>,
    /// What sigstore-python says, with the identity it is given.
    python: (bool, Option<(&'static str, &'static str)>),
}

#[tokio::test(flavor = "multi_thread")]
async fn keyless_identities_and_logs_on_the_api_server() {
    let e = Env::new("keyless").await;
    let reg = Distribution::start();
    let host = reg.host();
    let v = Virtual::new();
    e.create_secret(root_secret("root", &v.trusted_root())).await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "trusted-root"}, "data": {"trusted_root.json": v.trusted_root()}
    }))
    .unwrap();
    e.config_maps().create(&PostParams::default(), &cm).await.unwrap();
    let right = || json!([id(GITHUB, SUBJECT)]);
    let pattern = json!([{"issuer": GITHUB, "subjectRegExp": r"https://github\.com/org/[^/]+/\.github/workflows/.+@refs/heads/main"}]);
    let case = |repo, sign, identities, want, python| Case { repo, sign, identities, keyless: json!({}), want, python };
    let ok = (true, Some((SUBJECT, GITHUB)));
    let no = (false, Some((SUBJECT, GITHUB)));
    let cases = [
        case("right", &[], right(), Ok("identities[0]"), ok),
        case(
            "second-of-two",
            &[],
            json!([id(GOOGLE, "ops@example.com"), id(GITHUB, SUBJECT)]),
            Ok("identities[1]"),
            ok,
        ),
        Case {
            keyless: json!({"trustedRoot": {"configMapRef": {"name": "trusted-root"}}}),
            ..case("pattern", &[], pattern, Ok("identities[0]"), (true, None))
        },
        case(
            "wrong-subject",
            &[],
            json!([id(GITHUB, "https://github.com/org/other/.github/workflows/x.yml@refs/heads/main")]),
            Err("UntrustedSigner"),
            (false, Some(("https://github.com/org/other/.github/workflows/x.yml@refs/heads/main", GITHUB))),
        ),
        case(
            "wrong-issuer",
            &[],
            json!([id(GOOGLE, SUBJECT)]),
            Err("UntrustedSigner"),
            (false, Some((SUBJECT, GOOGLE))),
        ),
        case("deprecated-issuer-oid", &["--issuer-oid", "v1"], right(), Ok("identities[0]"), ok),
        // Fulcio certificates live 10 minutes: expired now, valid when logged.
        case(
            "expired-logged-in-time",
            &["--not-before", "-1200", "--integrated", "-900"],
            right(),
            Ok("identities[0]"),
            ok,
        ),
        case(
            "expired-logged-late",
            &["--not-before", "-1200", "--integrated", "-300"],
            right(),
            Err("UntrustedSigner"),
            no,
        ),
        case("untrusted-ca", &["--untrusted-ca"], right(), Err("UntrustedSigner"), no),
        case("no-log-entry", &["--no-tlog"], right(), Err("TransparencyLogMissing"), no),
        case("tampered-set", &["--tamper", "set"], right(), Err("TransparencyLogInvalid"), no),
        case("proof-off-checkpoint", &["--tamper", "proof"], right(), Err("TransparencyLogInvalid"), no),
        case("no-sct", &["--no-sct"], right(), Err("UntrustedSigner"), no),
        // An explicit opt-out sigstore-python does not have.
        Case {
            keyless: json!({"ignoreSCT": true}),
            ..case("no-sct-ignored", &["--no-sct"], right(), Ok("identities[0]"), no)
        },
    ];
    let mut digests = Vec::new();
    for c in &cases {
        let d = push_files(&host, &format!("{}:v1", c.repo), &[("f.txt", c.repo.as_bytes())], &["--plain-http"]);
        let bundle = v.sign(c.repo, &d, SUBJECT, GITHUB, c.sign);
        let (python_ok, identity) = c.python;
        assert_eq!(v.python_verifies(&bundle, &d, identity), python_ok, "{}: sigstore-python disagrees", c.repo);
        attach_bundle(&host, c.repo, &d, &std::fs::read(&bundle).unwrap());
        let mut block = json!({"identities": c.identities, "trustedRoot": {"secretRef": {"name": "root"}}});
        block.as_object_mut().unwrap().extend(c.keyless.as_object().unwrap().clone());
        e.apply(c.repo, &keyless(&host, c.repo, json!({"keyless": block}))).await;
        digests.push(d);
    }
    for (c, d) in cases.iter().zip(&digests) {
        match c.want {
            Ok(rule) => {
                let st = e.synced(c.repo, d).await;
                let sig = &st["verification"]["signatures"][0];
                assert_eq!(sig["identity"], format!("spec.verify.keyless.{rule}"), "{}", c.repo);
                assert_eq!(sig["certificateSubject"], SUBJECT);
                assert_eq!(sig["certificateIssuer"], GITHUB);
                assert_eq!(
                    sig["certificateAuthority"],
                    "ocisync tests / virtual-sigstore CA (https://fulcio.virtual.test)"
                );
                assert!(sig.get("key").is_none());
                assert_eq!(sig["tlogIndex"], 4, "{}", c.repo);
                assert!(sig["integratedTime"].is_string());
                let root = sig["trustedRoot"].as_str().unwrap();
                let source = if c.repo == "pattern" { "ConfigMap keyless/trusted-root" } else { "Secret keyless/root" };
                assert!(root.starts_with(source), "{root}");
                assert_eq!(e.condition(c.repo, "Verified").await.unwrap().0, "True");
            }
            Err(reason) => refused(&e, c.repo, reason, &layer_of(&host, c.repo, d), || reg.access_log()).await,
        }
    }
}

/// `cosign sign --certificate --certificate-chain` with a certificate from
/// the CA for cosign's own key: no log entry, no SCT. It passes where the
/// log is `Ignore`d and the trusted root is that CA alone; a `Required` log
/// refuses it; a root with no log cannot serve `Required` at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_a_private_ca_without_a_log() {
    let e = Env::new("keyless-ca").await;
    let reg = Distribution::start();
    let host = reg.host();
    let v = Virtual::new();
    e.create_secret(root_secret("ca-only", &v.ca_only_root())).await;
    e.create_secret(root_secret("full", &v.trusted_root())).await;
    let d = push_files(&host, "app:v1", &[("app.yaml", b"private ca\n")], &["--plain-http"]);
    let signer = Signer::new();
    let cert = v.issue(&signer.public_key(), SUBJECT, GITHUB);
    signer.sign_with_certificate(&format!("{host}/app@{d}"), &cert, &v.ca_pem());
    let block = |root: &str, tlog: &str| json!({"transparencyLog": tlog, "keyless": {"identities": [id(GITHUB, SUBJECT)], "trustedRoot": {"secretRef": {"name": root}}}});
    let spec = |root, tlog| keyless(&host, "app", block(root, tlog));
    e.apply("ignored", &spec("ca-only", "Ignore").set("target", json!({"configMap": {"name": "ignored"}}))).await;
    e.apply("required", &spec("full", "Required").set("target", json!({"configMap": {"name": "required"}}))).await;
    e.apply("no-log", &spec("ca-only", "Required").set("target", json!({"configMap": {"name": "no-log"}}))).await;
    let st = e.synced("ignored", &d).await;
    let sig = &st["verification"]["signatures"][0];
    assert_eq!(sig["certificateSubject"], SUBJECT);
    assert!(sig.get("tlogIndex").is_none());
    assert_eq!(e.config_map("ignored").await.unwrap().data.unwrap()["app.yaml"], "private ca\n");
    let layer = layer_of(&host, "app", &d);
    let (reason, message) = e.ready("required", false).await;
    assert_eq!(reason, "TransparencyLogMissing", "{message}");
    let (reason, message) = e.ready("no-log", false).await;
    assert_eq!(reason, "InvalidTrustedRoot", "{message}");
    assert!(message.contains("lists no transparency log"), "{message}");
    assert!(e.config_map("required").await.is_none() && e.config_map("no-log").await.is_none());
    // Only the Artifact that verified downloaded the layer.
    assert_eq!(blob_gets(&reg.access_log(), &layer), 1);

    // The CLI, with the same root in a file: exit 0, or 11 for another
    // identity; `IfPresent` passes too, there being no entry to check.
    let root = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(root.path(), v.ca_only_root()).unwrap();
    let reference = format!("{host}/app:v1");
    let cli = |subject: &'static str, tlog: &'static str| {
        let (root, reference) = (root.path().to_str().unwrap().to_string(), reference.clone());
        async move {
            let args = ["verify", "--insecure", &reference, "--trusted-root", &root, "--transparency-log", tlog];
            let id = ["--certificate-identity", subject, "--certificate-oidc-issuer", GITHUB, "--output", "json"];
            ocisync(&[&args[..], &id[..]].concat()).await
        }
    };
    let out = cli(SUBJECT, "Ignore").await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verification"]["signatures"][0]["certificateSubject"], SUBJECT);
    assert_eq!(cli("https://github.com/org/other", "Ignore").await.status.code(), Some(11));
    assert_eq!(cli(SUBJECT, "IfPresent").await.status.code(), Some(0));
}

/// A cluster policy with a keyless block whose trusted root lives in the
/// platform team's namespace; a new root in that Secret re-verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_cluster_policy() {
    let e = Env::new("keyless-policy").await;
    let cp = ControlPlane::shared();
    let admin = cp.admin().await;
    let label = "ocisync.test/keyless-policy";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    let patch = json!({"metadata": {"labels": {label: "yes"}}});
    namespaces.patch("keyless-policy", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    cp.namespace(&admin, "keyless-policy-roots").await;
    let v = Virtual::new();
    let roots: Api<Secret> = Api::namespaced(admin.clone(), "keyless-policy-roots");
    let other = Virtual::new();
    let s = serde_json::from_value(root_secret("sigstore", &other.trusted_root())).unwrap();
    roots.create(&PostParams::default(), &s).await.unwrap();
    let policies: Api<ocisync::api::ClusterArtifactPolicy> = Api::all(admin.clone());
    let policy = serde_json::from_value(json!({
        "apiVersion": "ocisync.dev/v1alpha1", "kind": "ClusterArtifactPolicy",
        "metadata": {"name": "keyless-policy-github"},
        "spec": {
            "namespaceSelector": {"matchLabels": {label: "yes"}},
            "verify": {"keyless": {
                "identities": [{"issuer": GITHUB, "subjectRegExp": "https://github\\.com/org/.+"}],
                "trustedRoot": {"secretRef": {"name": "sigstore", "namespace": "keyless-policy-roots"}}
            }}
        }
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();

    let reg = Distribution::start();
    let host = reg.host();
    let d = push_files(&host, "app:v1", &[("app.yaml", b"keyless policy\n")], &["--plain-http"]);
    attach_bundle(&host, "app", &d, &std::fs::read(v.sign("app", &d, SUBJECT, GITHUB, &[])).unwrap());
    e.apply("app", &Spec::new(&host, "app").tag("v1").interval("2s")).await;
    // Signed by a CA the policy's root does not list.
    let (reason, message) = e.ready("app", false).await;
    assert_eq!(reason, "PolicyViolation", "{message}");
    assert!(e.config_map("app").await.is_none());
    // The platform team rotates its root to the one that signed.
    let patch = json!({"stringData": {"trusted_root.json": v.trusted_root()}});
    roots.patch("sigstore", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let st = e.synced("app", &d).await;
    let sig = &st["verification"]["signatures"][0];
    assert_eq!(sig["requiredBy"], "ClusterArtifactPolicy/keyless-policy-github");
    assert_eq!(sig["identity"], "ClusterArtifactPolicy/keyless-policy-github.keyless.identities[0]");
    assert!(sig["trustedRoot"].as_str().unwrap().starts_with("Secret keyless-policy-roots/sigstore"));
    policies.delete("keyless-policy-github", &DeleteParams::default()).await.unwrap();
}
