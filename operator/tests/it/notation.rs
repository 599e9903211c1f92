//! Notary Project signatures made by the real notation 1.3 (certificates
//! from OpenSSL, `e2e/notation/pki.sh`), stored on distribution 2.8 under
//! the referrers tag schema, and checked by `notation verify` and
//! `ocisync verify --notation` side by side: they must agree, case by case.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::signatures::{blob_gets, layer_of};
use crate::support::*;

/// A PKI, and notation configurations made from it.
struct Notation {
    dir: tempfile::TempDir,
}

/// Seconds the short-lived leaf is valid for.
const SHORT_LIFE: u64 = 10;

impl Notation {
    /// `crl_url`: where the revocable leaves say their CRL is.
    fn new(crl_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new(repo_root().join("e2e/notation/pki.sh"))
            .arg(dir.path())
            .env("CRL_URL", crl_url)
            .env("SHORT_LIFE", SHORT_LIFE.to_string()));
        // one signing configuration: every leaf as a named key
        let sign = dir.path().join("sign/notation");
        std::fs::create_dir_all(&sign).unwrap();
        let keys: Vec<Value> =
            ["rsa", "ec", "ec384", "ec521", "rsa4096", "other", "stranger", "short", "crl", "revoked", "crl-dead"]
                .iter()
                .map(|k| {
                    json!({"name": k, "keyPath": dir.path().join(format!("{k}.key")),
                       "certPath": dir.path().join(format!("{k}.chain.pem"))})
                })
                .collect();
        std::fs::write(sign.join("signingkeys.json"), json!({"default": "rsa", "keys": keys}).to_string()).unwrap();
        Notation { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn notation(&self, config_home: &Path) -> Command {
        let mut c = Command::new(tool("notation"));
        c.env("XDG_CONFIG_HOME", config_home).env("HOME", config_home).env_remove("NOTATION_USERNAME");
        c
    }

    /// `notation sign` with `key`, in `format`, plus `extra` flags.
    fn sign(&self, reference: &str, key: &str, format: &str, extra: &[&str]) {
        run(self
            .notation(&self.path("sign"))
            .args(["sign", "--insecure-registry", "--key", key, "--signature-format", format])
            .args(extra)
            .arg(reference));
    }

    /// A configuration directory with `policy` and a `ca:` store of `certs`;
    /// returns `$XDG_CONFIG_HOME` (its `notation/` is what `--notation` takes).
    fn verifier(&self, name: &str, policy: Value, stores: &[(&str, &str, &[&str])]) -> PathBuf {
        let home = self.path(&format!("verify-{name}"));
        let cfg = home.join("notation");
        for (kind, store, certs) in stores {
            let d = cfg.join("truststore/x509").join(kind).join(store);
            std::fs::create_dir_all(&d).unwrap();
            for c in *certs {
                std::fs::copy(self.path(c), d.join(c)).unwrap();
            }
        }
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("trustpolicy.json"), serde_json::to_vec_pretty(&policy).unwrap()).unwrap();
        home
    }

    /// `notation verify`'s exit code, and what it said.
    fn verify(&self, home: &Path, reference: &str) -> (i32, String) {
        let out = self.notation(home).args(["verify", "--insecure-registry", reference]).output().unwrap();
        (out.status.code().unwrap_or(-1), stderr(&out))
    }
}

fn policy(name: &str, scopes: &[&str], level: Value, identities: &[&str]) -> Value {
    json!({"version": "1.0", "trustPolicies": [{
        "name": name, "registryScopes": scopes, "signatureVerification": level,
        "trustStores": ["ca:acme"], "trustedIdentities": identities,
    }]})
}

const ACME: &str = "x509.subject:C=US, ST=WA, O=acme";
const JWS_MEDIA_TYPE: &str = "application/jose+json";

/// The envelope of the one Notation signature of `reference`, with its
/// media type (read with oras, as any client would).
fn envelope_of(host: &str, repo: &str, digest: &str) -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let refs = json(&oras(dir.path(), &["discover", "--format", "json", &format!("{host}/{repo}@{digest}")]));
    let sig = refs["referrers"][0]["digest"].as_str().or(refs["manifests"][0]["digest"].as_str()).unwrap().to_string();
    let m = json(&oras(dir.path(), &["manifest", "fetch", &format!("{host}/{repo}@{sig}")]));
    let layer = &m["layers"][0];
    let out = dir.path().join("env");
    oras(
        dir.path(),
        &[
            "blob",
            "fetch",
            "--output",
            out.to_str().unwrap(),
            &format!("{host}/{repo}@{}", layer["digest"].as_str().unwrap()),
        ],
    );
    (std::fs::read(out).unwrap(), layer["mediaType"].as_str().unwrap().to_string())
}

/// Attach `envelope` to `repo@digest` as a Notation signature, as a
/// signer would (oras attach writes the manifest notation writes).
fn attach(host: &str, repo: &str, digest: &str, envelope: &[u8], media_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sig"), envelope).unwrap();
    oras(
        dir.path(),
        &[
            "attach",
            "--artifact-type",
            "application/vnd.cncf.notary.signature",
            &format!("{host}/{repo}@{digest}"),
            &format!("sig:{media_type}"),
        ],
    );
}

/// The DER of a PEM certificate file.
fn pem_der(p: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(p).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// `template` (a JWS notation made) with its chain replaced by `chain`'s
/// certificates and signed again with `key`, as notation would sign it
/// (RSA-PSS, SHA-256, a salt of the hash's length): for certificates
/// notation refuses to sign with, so only by hand.
fn resign(n: &Notation, template: &[u8], chain: &str, key: &str) -> Vec<u8> {
    use base64::Engine as _;
    let (std_b64, url) = (base64::engine::general_purpose::STANDARD, base64::engine::general_purpose::URL_SAFE_NO_PAD);
    let mut doc: Value = serde_json::from_slice(template).unwrap();
    let pem = std::fs::read_to_string(n.path(chain)).unwrap();
    let certs: Vec<String> = pem
        .split("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .map(|b| b.lines().filter(|l| !l.starts_with("-----") && !l.is_empty()).collect())
        .collect();
    doc["header"]["x5c"] = json!(certs);
    let input = format!("{}.{}", doc["protected"].as_str().unwrap(), doc["payload"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in"), input).unwrap();
    let out = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest", "-sign"])
        .arg(n.path(key))
        .arg(dir.path().join("in")));
    doc["signature"] = json!(url.encode(out.stdout));
    let _ = std_b64;
    serde_json::to_vec(&doc).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ocisync_verify_agrees_with_notation_verify() {
    let reg = Distribution::start();
    let host = reg.host();
    // the CRLs and the timestamp authority (`openssl ts`), on loopback
    let port = free_port();
    let peer_dir = tempfile::tempdir().unwrap();
    let n = Notation::new(&format!("http://127.0.0.1:{port}"));
    for f in ["root.crl", "tsa.crt", "tsa.key", "tsa-rsa.crt", "tsa-rsa.key", "tsa-root.crt", "tsa-serial"] {
        std::fs::copy(n.path(f), peer_dir.path().join(f)).unwrap();
    }
    for cnf in ["tsa.cnf", "tsa-rsa.cnf"] {
        let text = std::fs::read_to_string(n.path(cnf)).unwrap();
        let moved = text.replace(n.dir.path().to_str().unwrap(), peer_dir.path().to_str().unwrap());
        std::fs::write(peer_dir.path().join(cnf), moved).unwrap();
    }
    let mut peer = Proc::spawn(
        "notation-peer",
        Command::new("python3")
            .arg(repo_root().join("e2e/notation/serve.py"))
            .arg(peer_dir.path())
            .arg(port.to_string()),
        peer_dir.path().join("serve.log"),
    );
    wait_for_port(port, &mut peer);
    let short_until = std::time::Instant::now() + std::time::Duration::from_secs(SHORT_LIFE + 2);
    let push =
        |repo: &str, body: &[u8]| push_files(&host, &format!("{repo}:v1"), &[("f.txt", body)], &["--plain-http"]);
    let at = |repo: &str, d: &str| format!("{host}/{repo}@{d}");

    let rsa = push("rsa-jws", b"1");
    n.sign(&at("rsa-jws", &rsa), "rsa", "jws", &[]);
    let ec = push("ec-cose", b"2");
    n.sign(&at("ec-cose", &ec), "ec", "cose", &[]);
    let ec384 = push("ec384-jws", b"3");
    n.sign(&at("ec384-jws", &ec384), "ec384", "jws", &[]);
    let rsa_cose = push("rsa-cose", b"4");
    n.sign(&at("rsa-cose", &rsa_cose), "rsa", "cose", &[]);
    let unsigned = push("unsigned", b"5");
    let other = push("other-org", b"6");
    n.sign(&at("other-org", &other), "other", "jws", &[]);
    let stranger = push("stranger", b"7");
    n.sign(&at("stranger", &stranger), "stranger", "cose", &[]);
    // a valid signature of rsa-jws, attached to another artifact
    let moved = push("moved", b"8");
    let (env, mt) = envelope_of(&host, "rsa-jws", &rsa);
    attach(&host, "moved", &moved, &env, &mt);
    // a signature with one byte changed, as the only signature of the very
    // manifest it names: signed in one repository, the manifest copied
    // byte for byte to another, the broken envelope attached there
    let original = push("corrupt-src", b"9");
    n.sign(&at("corrupt-src", &original), "rsa", "jws", &[]);
    crane(&["copy", &at("corrupt-src", &original), &format!("{host}/corrupt:v1")]);
    let (env, mt) = envelope_of(&host, "corrupt-src", &original);
    let mut doc: Value = serde_json::from_slice(&env).unwrap();
    let sig = doc["signature"].as_str().unwrap().to_string();
    let mid = sig.len() / 2;
    let c = if &sig[mid..=mid] == "A" { "B" } else { "A" };
    doc["signature"] = json!(format!("{}{c}{}", &sig[..mid], &sig[mid + 1..]));
    attach(&host, "corrupt", &original, &serde_json::to_vec(&doc).unwrap(), &mt);

    // a timestamped signature by the short-lived leaf (checked once it has expired)
    let stamped = push("stamped", b"12");
    let tsa_url = format!("http://127.0.0.1:{port}/tsa");
    let tsa_root = n.path("tsa-root.crt");
    n.sign(
        &at("stamped", &stamped),
        "short",
        "jws",
        &["--timestamp-url", &tsa_url, "--timestamp-root-cert", tsa_root.to_str().unwrap()],
    );
    let stamped_cose = push("stamped-cose", b"13");
    n.sign(
        &at("stamped-cose", &stamped_cose),
        "short",
        "cose",
        &["--timestamp-url", &tsa_url, "--timestamp-root-cert", tsa_root.to_str().unwrap()],
    );
    let stamped_rsa = push("stamped-rsa", b"13b");
    n.sign(
        &at("stamped-rsa", &stamped_rsa),
        "short",
        "jws",
        &["--timestamp-url", &format!("{tsa_url}-rsa"), "--timestamp-root-cert", tsa_root.to_str().unwrap()],
    );
    // a signature whose own expiry passes
    let expiring = push("expiring", b"14");
    n.sign(&at("expiring", &expiring), "rsa", "cose", &["--expiry", "2s"]);
    // revocation
    let revoked = push("revoked", b"15");
    n.sign(&at("revoked", &revoked), "revoked", "jws", &[]);
    let revocable = push("revocable", b"16");
    n.sign(&at("revocable", &revocable), "crl", "cose", &[]);
    let dead = push("dead-crl", b"17");
    n.sign(&at("dead-crl", &dead), "crl-dead", "jws", &[]);

    let ec521 = push("ec521-cose", b"18");
    n.sign(&at("ec521-cose", &ec521), "ec521", "cose", &[]);
    let rsa4096 = push("rsa4096-jws", b"19");
    n.sign(&at("rsa4096-jws", &rsa4096), "rsa4096", "jws", &[]);
    // certificates that break the rules, each signing a copy of `original`
    let (template, _) = envelope_of(&host, "corrupt-src", &original);
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
        crane(&["copy", &at("corrupt-src", &original), &format!("{host}/{repo}:v1")]);
        attach(&host, repo, &original, &resign(&n, &template, chain, key), JWS_MEDIA_TYPE);
    }

    let strict = json!({"level": "strict"});
    let trusted = [("ca", "acme", &["root.crt"][..])];
    let all = n.verifier("all", policy("all", &["*"], strict.clone(), &["*"]), &trusted);
    let acme_only = n.verifier("acme", policy("acme", &["*"], strict.clone(), &[ACME]), &trusted);

    let audit = n.verifier("audit", policy("audit", &["*"], json!({"level": "audit"}), &[ACME]), &trusted);
    let elsewhere = n.verifier(
        "elsewhere",
        policy("elsewhere", &[&format!("{host}/somewhere-else")], strict.clone(), &["*"]),
        &trusted,
    );
    let skip = n.verifier(
        "skip",
        json!({"version": "1.0", "trustPolicies": [{"name": "skip", "registryScopes": ["*"], "signatureVerification": {"level": "skip"}}]}),
        &[],
    );
    let scoped =
        n.verifier("scoped", policy("scoped", &[&format!("{host}/rsa-jws")], strict.clone(), &[ACME]), &trusted);

    let with_tsa = |name: &str, verification: Value| {
        let mut p = policy(name, &["*"], verification, &[ACME]);
        p["trustPolicies"][0]["trustStores"] = json!(["ca:acme", "tsa:tsa"]);
        n.verifier(name, p, &[("ca", "acme", &["root.crt"][..]), ("tsa", "tsa", &["tsa-root.crt"][..])])
    };
    let tsa_always = with_tsa("tsa-always", json!({"level": "strict"}));
    let tsa_after = with_tsa("tsa-after", json!({"level": "strict", "verifyTimestamp": "afterCertExpiry"}));
    let permissive =
        n.verifier("permissive", policy("permissive", &["*"], json!({"level": "permissive"}), &[ACME]), &trusted);
    let no_revocation = n.verifier(
        "no-revocation",
        policy("no-revocation", &["*"], json!({"level": "strict", "override": {"revocation": "skip"}}), &[ACME]),
        &trusted,
    );
    // the short-lived leaf has expired by now
    tokio::time::sleep(short_until.saturating_duration_since(std::time::Instant::now())).await;

    // (what, reference, configuration, notation's verdict, ocisync's exit
    // code, and its envelope or what its message says)
    let moved_says = format!("signature is for {rsa}");
    let cases: Vec<(&str, String, &PathBuf, bool, i32, &str)> = vec![
        ("RSA-2048 JWS", at("rsa-jws", &rsa), &all, true, 0, "JWS"),
        ("ECDSA P-256 COSE", at("ec-cose", &ec), &all, true, 0, "COSE"),
        ("ECDSA P-384 JWS", at("ec384-jws", &ec384), &acme_only, true, 0, "JWS"),
        ("RSA COSE", at("rsa-cose", &rsa_cose), &acme_only, true, 0, "COSE"),
        ("ECDSA P-521 COSE", at("ec521-cose", &ec521), &acme_only, true, 0, "COSE"),
        ("RSA-4096 JWS", at("rsa4096-jws", &rsa4096), &acme_only, true, 0, "JWS"),
        ("an exact registry scope", at("rsa-jws", &rsa), &scoped, true, 0, "JWS"),
        ("unsigned", at("unsigned", &unsigned), &all, false, 10, "no Notary Project signature"),
        ("another organisation", at("other-org", &other), &acme_only, false, 11, "none of the trusted identities"),
        ("another organisation under audit", at("other-org", &other), &audit, true, 0, "JWS"),
        ("an untrusted root", at("stranger", &stranger), &all, false, 11, "not anchored in the trust stores"),
        ("a signature of another artifact", at("moved", &moved), &all, false, 12, &moved_says),
        ("a corrupted envelope", at("corrupt", &original), &all, false, 12, "does not verify with its certificate"),
        ("no statement for the repository", at("rsa-jws", &rsa), &elsewhere, false, 11, "no trust policy statement"),
        ("level skip", at("unsigned", &unsigned), &skip, true, 0, ""),
        ("an expired certificate, timestamped (JWS)", at("stamped", &stamped), &tsa_always, true, 0, "JWS"),
        ("an expired certificate, timestamped (COSE)", at("stamped-cose", &stamped_cose), &tsa_after, true, 0, "COSE"),
        (
            "an expired certificate, timestamped by an RSA authority",
            at("stamped-rsa", &stamped_rsa),
            &tsa_always,
            true,
            0,
            "JWS",
        ),
        ("an expired certificate, no tsa store", at("stamped", &stamped), &acme_only, false, 11, "expired at"),
        ("an expired certificate, permissive", at("stamped", &stamped), &permissive, true, 0, "JWS"),
        (
            "no timestamp where the policy wants one",
            at("rsa-jws", &rsa),
            &tsa_always,
            false,
            11,
            "no timestamp countersignature",
        ),
        (
            "a signature past its expiry, strict",
            at("expiring", &expiring),
            &acme_only,
            false,
            11,
            "the signature expired",
        ),
        ("a signature past its expiry, permissive", at("expiring", &expiring), &permissive, true, 0, "COSE"),
        ("a revoked leaf", at("revoked", &revoked), &acme_only, false, 11, "is revoked"),
        ("a revocable leaf in good standing", at("revocable", &revocable), &acme_only, true, 0, "COSE"),
        (
            "a CRL that cannot be fetched",
            at("dead-crl", &dead),
            &acme_only,
            false,
            11,
            "revocation status of certificate",
        ),
        ("a CRL that cannot be fetched, revocation skipped", at("dead-crl", &dead), &no_revocation, true, 0, "JWS"),
        ("a revoked leaf, revocation skipped", at("revoked", &revoked), &no_revocation, true, 0, "JWS"),
    ];
    let mut cases = cases;
    for (repo, _, _, code, says) in &broken {
        cases.push((repo, at(repo, &original), &acme_only, *code == 0, *code, says));
    }
    for (what, reference, home, notation_ok, ours, says) in &cases {
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
            assert!(message.contains(says), "{what}: {message}");
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
        assert_eq!(sig["envelope"], *says, "{what}");
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
    // `trustpolicy.oci.json`, the name notation-go reads first since 1.2
    // (Debian's notation 1.3.2 is built against an older notation-go and
    // reads only `trustpolicy.json`, so this is ocisync's alone): alone, it
    // is the policy; beside `trustpolicy.json`, it wins
    let oci_json = n.verifier("oci-json", policy("oci-json", &["*"], strict.clone(), &[ACME]), &trusted);
    let cfg = oci_json.join("notation");
    std::fs::rename(cfg.join("trustpolicy.json"), cfg.join("trustpolicy.oci.json")).unwrap();
    let args = |c: &Path| {
        ["verify".to_string(), at("rsa-jws", &rsa), "--notation".into(), c.display().to_string(), "--insecure".into()]
    };
    let out = ocisync(&args(&cfg).iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let other_org = policy("oci-json", &["*"], strict.clone(), &["x509.subject:C=US, ST=WA, O=other"]);
    std::fs::write(cfg.join("trustpolicy.oci.json"), other_org.to_string()).unwrap();
    std::fs::write(cfg.join("trustpolicy.json"), policy("old", &["*"], strict.clone(), &["*"]).to_string()).unwrap();
    let out = ocisync(&args(&cfg).iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.status.code(), Some(11), "trustpolicy.oci.json wins: {}", stderr(&out));

    // pull --notation: nothing of an artifact that does not verify is
    // downloaded or written; one that does is
    let trust = all.join("notation");
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("out");
    for (repo, d) in [("unsigned", &unsigned), ("stranger", &stranger)] {
        let refused = pull(&at(repo, d), &target, &["--notation", trust.to_str().unwrap()]).await;
        assert_eq!(refused.status.code(), Some(if repo == "unsigned" { 10 } else { 11 }), "{}", stderr(&refused));
        assert!(!target.exists());
        assert_eq!(blob_gets(&reg.access_log(), &layer_of(&host, repo, d)), 0, "{repo}: no layer read");
    }
    let ok = pull(&at("ec-cose", &ec), &target, &["--notation", trust.to_str().unwrap()]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(std::fs::read(target.join("f.txt")).unwrap(), b"2");

    // the CRL was fetched from its distribution point
    let log = std::fs::read_to_string(peer_dir.path().join("access.log")).unwrap();
    assert!(log.lines().any(|l| l == "GET /root.crl"), "{log}");
}

/// A Secret in Flux's layout: `trustpolicy.json` and the CA certificate.
fn flux_secret(name: &str, n: &Notation, identities: &[&str]) -> Value {
    let policy = json!({"version": "1.0", "trustPolicies": [{
        "name": "flux", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:flux"], "trustedIdentities": identities,
    }]});
    json!({"metadata": {"name": name}, "stringData": {
        "trustpolicy.json": policy.to_string(),
        "ca.crt": std::fs::read_to_string(n.path("root.crt")).unwrap(),
    }})
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
