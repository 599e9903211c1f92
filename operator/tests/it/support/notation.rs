//! The Notation harness: certificates made with OpenSSL
//! (`e2e/notation/pki.sh`), the real notation 1.3 signing with them and
//! verifying with trust policies written here, and the few by-hand steps
//! no tool does (reading an envelope back, attaching or re-signing one).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::*;

/// A PKI, and notation configurations made from it.
pub struct Notation {
    pub dir: tempfile::TempDir,
}

/// The CRLs and the timestamp authorities (`e2e/notation/serve.py`: `openssl
/// ts`), on loopback, for one PKI; stopped on drop.
pub struct Peer {
    _proc: Proc,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl Peer {
    /// What it was asked, as `METHOD /path` lines.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Seconds the short-lived leaf is valid for.
pub const SHORT_LIFE: u64 = 10;

impl Notation {
    /// `crl_url`: where the revocable leaves say their CRL is.
    pub fn new(crl_url: &str) -> Self {
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

    /// A PKI whose revocable leaves name a CRL the returned peer serves, and
    /// the peer, which also answers timestamp requests for both authorities.
    pub fn with_peer() -> (Notation, Peer) {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let n = Notation::new(&url);
        let dir = tempfile::tempdir().unwrap();
        for f in ["root.crl", "tsa.crt", "tsa.key", "tsa-rsa.crt", "tsa-rsa.key", "tsa-root.crt", "tsa-serial"] {
            std::fs::copy(n.path(f), dir.path().join(f)).unwrap();
        }
        for cnf in ["tsa.cnf", "tsa-rsa.cnf"] {
            let text = std::fs::read_to_string(n.path(cnf)).unwrap();
            let moved = text.replace(n.dir.path().to_str().unwrap(), dir.path().to_str().unwrap());
            std::fs::write(dir.path().join(cnf), moved).unwrap();
        }
        let mut proc = Proc::spawn(
            "notation-peer",
            Command::new("python3")
                .arg(repo_root().join("e2e/notation/serve.py"))
                .arg(dir.path())
                .arg(port.to_string()),
            dir.path().join("serve.log"),
        );
        wait_for_port(port, &mut proc);
        (n, Peer { _proc: proc, dir, url })
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn notation(&self, config_home: &Path) -> Command {
        let mut c = Command::new(tool("notation"));
        c.env("XDG_CONFIG_HOME", config_home).env("HOME", config_home).env_remove("NOTATION_USERNAME");
        c
    }

    /// `notation sign` with `key`, in `format`, plus `extra` flags.
    pub fn sign(&self, reference: &str, key: &str, format: &str, extra: &[&str]) {
        run(self
            .notation(&self.path("sign"))
            .args(["sign", "--insecure-registry", "--key", key, "--signature-format", format])
            .args(extra)
            .arg(reference));
    }

    /// A configuration directory with `policy` and a `ca:` store of `certs`;
    /// returns `$XDG_CONFIG_HOME` (its `notation/` is what `--notation` takes).
    pub fn verifier(&self, name: &str, policy: Value, stores: &[(&str, &str, &[&str])]) -> PathBuf {
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
    pub fn verify(&self, home: &Path, reference: &str) -> (i32, String) {
        let out = self.notation(home).args(["verify", "--insecure-registry", reference]).output().unwrap();
        (out.status.code().unwrap_or(-1), stderr(&out))
    }
}

pub fn policy(name: &str, scopes: &[&str], level: Value, identities: &[&str]) -> Value {
    json!({"version": "1.0", "trustPolicies": [{
        "name": name, "registryScopes": scopes, "signatureVerification": level,
        "trustStores": ["ca:acme"], "trustedIdentities": identities,
    }]})
}

pub const ACME: &str = "x509.subject:C=US, ST=WA, O=acme";
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";

/// The envelope of the one Notation signature of `reference`, with its
/// media type (read with oras, as any client would).
pub fn envelope_of(host: &str, repo: &str, digest: &str) -> (Vec<u8>, String) {
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
pub fn attach(host: &str, repo: &str, digest: &str, envelope: &[u8], media_type: &str) {
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
pub fn pem_der(p: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(p).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// `template` (a JWS notation made) with its chain replaced by `chain`'s
/// certificates and signed again with `key`, as notation would sign it
/// (RSA-PSS, SHA-256, a salt of the hash's length): for certificates
/// notation refuses to sign with, so only by hand.
pub fn resign(n: &Notation, template: &[u8], chain: &str, key: &str) -> Vec<u8> {
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

/// A Secret in Flux's layout: `trustpolicy.json` and the CA certificate.
pub fn flux_secret(name: &str, n: &Notation, identities: &[&str]) -> Value {
    let policy = json!({"version": "1.0", "trustPolicies": [{
        "name": "flux", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:flux"], "trustedIdentities": identities,
    }]});
    json!({"metadata": {"name": name}, "stringData": {
        "trustpolicy.json": policy.to_string(),
        "ca.crt": std::fs::read_to_string(n.path("root.crt")).unwrap(),
    }})
}
