//! The real cosign 3, offline: a fresh key pair per signer, signatures made
//! without a transparency log (as the fixtures' README records), and
//! `cosign verify` to compare verdicts with.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{crane, run, tool};

const PASSWORD: &str = "test-password";

pub struct Signer {
    dir: tempfile::TempDir,
}

impl Signer {
    pub fn new() -> Signer {
        let dir = tempfile::tempdir().unwrap();
        run(Command::new(tool("cosign"))
            .arg("generate-key-pair")
            .current_dir(dir.path())
            .env("COSIGN_PASSWORD", PASSWORD));
        Signer { dir }
    }

    pub fn public_key(&self) -> PathBuf {
        self.dir.path().join("cosign.pub")
    }

    pub fn public_pem(&self) -> String {
        std::fs::read_to_string(self.public_key()).unwrap()
    }

    fn cosign(&self, verb: &str, reference: &str, extra: &[&str]) {
        run(Command::new(tool("cosign"))
            .arg(verb)
            .args(["--key", "cosign.key", "--use-signing-config=false", "--tlog-upload=false"])
            .args(["--allow-http-registry", "-y"])
            .args(extra)
            .arg(reference)
            .current_dir(self.dir.path())
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("HOME", self.dir.path()));
    }

    /// `cosign sign` (v3's default: a bundle as an OCI 1.1 referrer).
    pub fn sign(&self, reference: &str) {
        self.cosign("sign", reference, &[]);
    }

    /// A key-signed bundle that carries a certificate for the key instead of
    /// a key hint: `cosign sign --certificate --certificate-chain`.
    pub fn sign_with_certificate(&self, reference: &str, certificate: &Path, chain: &Path) {
        let (cert, chain) = (certificate.to_str().unwrap(), chain.to_str().unwrap());
        self.cosign("sign", reference, &["--certificate", cert, "--certificate-chain", chain]);
    }

    /// The legacy format, under the `sha256-<hex>.sig` tag.
    pub fn sign_legacy(&self, reference: &str) {
        self.cosign("sign", reference, &["--new-bundle-format=false"]);
    }

    /// An in-toto attestation of `predicate_type`, signed by the same key.
    pub fn attest(&self, reference: &str, predicate_type: &str) {
        let predicate = self.dir.path().join("predicate.json");
        std::fs::write(&predicate, br#"{"note":"not a signature"}"#).unwrap();
        self.cosign("attest", reference, &["--type", predicate_type, "--predicate", predicate.to_str().unwrap()]);
    }
}

/// `cosign verify --key` offline: its exit code.
pub fn cosign_verify(key: &Path, reference: &str) -> i32 {
    let home = tempfile::tempdir().unwrap();
    Command::new(tool("cosign"))
        .args(["verify", "--key"])
        .arg(key)
        .args(["--insecure-ignore-tlog", "--allow-http-registry", reference])
        .env("HOME", home.path())
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

/// The bundle cosign stored for `digest` in the referrers tag fallback.
pub fn bundle_of(host: &str, repo: &str, digest: &str) -> Vec<u8> {
    let json = |out: std::process::Output| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    let index = json(crane(&["manifest", &format!("{host}/{repo}:sha256-{}", &digest[7..])]));
    let sig = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let manifest = json(crane(&["manifest", &format!("{host}/{repo}@{sig}")]));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    crane(&["blob", &format!("{host}/{repo}@{layer}")]).stdout
}

/// Attach `bundle` to `digest` as a v0.3 bundle referrer, as another tool
/// (or an attacker with push rights) could.
pub fn attach_bundle(host: &str, repo: &str, digest: &str, bundle: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bundle.json"), bundle).unwrap();
    let t = "application/vnd.dev.sigstore.bundle.v0.3+json";
    run(Command::new(tool("oras"))
        .current_dir(dir.path())
        .args(["attach", "--plain-http", "--artifact-type", t, &format!("{host}/{repo}@{digest}")])
        .arg(format!("bundle.json:{t}")));
}
