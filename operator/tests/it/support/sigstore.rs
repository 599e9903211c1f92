//! The test-only Sigstore of `e2e/virtual-sigstore.py` (a CA, a CT log key
//! and a Rekor-style log key, with their trusted_root.json) and
//! sigstore-python as the independent verifier of what it makes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{repo_root, run};

/// The validators' Python, with sigstore-python; installed once if missing.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let prefix = std::env::var_os("OCISYNC_VALIDATORS")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/tmp/ocisync/validators".into());
        if !prefix.join("PINS").exists() || !std::fs::read_to_string(prefix.join("PINS")).unwrap().contains("sigstore")
        {
            run(Command::new(repo_root().join("e2e/setup/install-validators.sh")).env("OCISYNC_VALIDATORS", &prefix));
        }
        prefix.join("bin/python")
    })
}

pub struct Virtual {
    dir: tempfile::TempDir,
}

pub const GITHUB: &str = "https://token.actions.githubusercontent.com";

impl Virtual {
    pub fn new() -> Virtual {
        let dir = tempfile::tempdir().unwrap();
        let v = Virtual { dir };
        v.script(&["init", v.path()]);
        v
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn script(&self, args: &[&str]) -> std::process::Output {
        Command::new(python()).arg(repo_root().join("e2e/virtual-sigstore.py")).args(args).output().unwrap()
    }

    pub fn trusted_root(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("trusted_root.json")).unwrap()
    }

    /// The same CA with no CT log and no transparency log.
    pub fn ca_only_root(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca-only-root.json")).unwrap()
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A bundle for `digest` by `subject` from `issuer`; `extra` are the
    /// script's case options (`--tamper set`, `--untrusted-ca`, …).
    pub fn sign(&self, name: &str, digest: &str, subject: &str, issuer: &str, extra: &[&str]) -> PathBuf {
        let out = self.dir.path().join(format!("{name}.json"));
        let o = out.to_str().unwrap();
        let st = self.script(
            &[&["sign", self.path(), o, "--digest", digest, "--subject", subject, "--issuer", issuer], extra].concat(),
        );
        assert!(st.status.success(), "virtual-sigstore sign: {}", String::from_utf8_lossy(&st.stderr));
        out
    }

    /// A certificate from the CA (no SCT) for an existing public key.
    pub fn issue(&self, public_key: &Path, subject: &str, issuer: &str) -> PathBuf {
        let out = self.dir.path().join("issued.pem");
        let st = self.script(&[
            "issue",
            self.path(),
            out.to_str().unwrap(),
            "--public-key",
            public_key.to_str().unwrap(),
            "--subject",
            subject,
            "--issuer",
            issuer,
        ]);
        assert!(st.status.success(), "virtual-sigstore issue: {}", String::from_utf8_lossy(&st.stderr));
        out
    }

    /// Does sigstore-python verify `bundle` for `digest`, with this
    /// identity (or any, when `None`)?
    pub fn python_verifies(&self, bundle: &Path, digest: &str, identity: Option<(&str, &str)>) -> bool {
        let mut args = vec!["check", self.path(), bundle.to_str().unwrap(), "--digest", digest];
        if let Some((subject, issuer)) = identity {
            args.extend(["--subject", subject, "--issuer", issuer]);
        }
        let out = self.script(&args);
        match out.status.code() {
            Some(0) => true,
            Some(1) => false,
            _ => panic!("virtual-sigstore check: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}
