//! `ocisync verify` (an artifact's cosign signatures, by digest, with keys)
//! and `ocisync verify-blob` (a Sigstore bundle against a file or digest).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{Format, RegistryArgs, exit_code, failed, output, setup, usage};
use crate::api::{Identity, TransparencyLog};
use crate::pipeline::{self, PipelineError};
use crate::resolve;
use crate::status::Reason;
use crate::verify::keyless::Rules;
use crate::verify::{Key, Requirement, Trust};

/// Which signatures count, as an Artifact's `spec.verify` says it.
#[derive(Args, Debug, Default)]
pub(super) struct SignatureArgs {
    /// Predicate types that count as a signature (repeatable). Default:
    /// cosign's `https://sigstore.dev/cosign/sign/v1` only.
    #[arg(long = "predicate-type", value_name = "URI")]
    predicate_types: Vec<String>,
    /// Required, IfPresent or Ignore. Default: IfPresent for keys,
    /// Required for keyless.
    #[arg(long, value_enum)]
    transparency_log: Option<TlogArg>,
    /// Keyless: the certificate's subject (SAN URI or email), exactly.
    #[arg(long, value_name = "SUBJECT", conflicts_with = "certificate_identity_regexp")]
    certificate_identity: Option<String>,
    /// Keyless: a pattern the whole subject must match.
    #[arg(long, value_name = "REGEXP")]
    certificate_identity_regexp: Option<String>,
    /// Keyless: the certificate's OIDC issuer, exactly.
    #[arg(long, value_name = "URL", conflicts_with = "certificate_oidc_issuer_regexp")]
    certificate_oidc_issuer: Option<String>,
    /// Keyless: a pattern the whole OIDC issuer must match.
    #[arg(long, value_name = "REGEXP")]
    certificate_oidc_issuer_regexp: Option<String>,
    /// A `trusted_root.json` (CAs, logs, timestamp authorities). Default:
    /// the public-good Sigstore root built into ocisync, never fetched.
    #[arg(long, value_name = "FILE")]
    trusted_root: Option<PathBuf>,
    /// Keyless: accept a certificate without a valid SCT.
    #[arg(long)]
    insecure_ignore_sct: bool,
    /// Notation: a directory laid out as notation's own configuration
    /// (`trustpolicy.oci.json` or `trustpolicy.json`, and
    /// `truststore/x509/<ca|tsa|signingAuthority>/<name>/*`), such as
    /// `~/.config/notation`. A Notary Project signature must then verify
    /// under the statement for this repository; with `--key` or an
    /// identity too, both kinds must.
    #[arg(long, value_name = "DIR")]
    notation: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "PascalCase")]
enum TlogArg {
    Required,
    IfPresent,
    Ignore,
}

impl SignatureArgs {
    fn identity(&self) -> Option<Identity> {
        let id = Identity {
            issuer: self.certificate_oidc_issuer.clone(),
            issuer_reg_exp: self.certificate_oidc_issuer_regexp.clone(),
            subject: self.certificate_identity.clone(),
            subject_reg_exp: self.certificate_identity_regexp.clone(),
        };
        (id != Identity::default()).then_some(id)
    }

    /// The requirement these flags and `key_files` make; none when neither
    /// a key nor an identity is given.
    pub(super) fn requirement(&self, key_files: &[PathBuf]) -> Result<Vec<Requirement>, String> {
        let mut all = self.cosign_requirement(key_files)?;
        if let Some(dir) = &self.notation {
            let cfg = crate::verify::notation::Config::from_dir(dir)?;
            all.push(Requirement::notation("--notation".into(), std::sync::Arc::new(cfg)));
        }
        Ok(all)
    }

    fn cosign_requirement(&self, key_files: &[PathBuf]) -> Result<Vec<Requirement>, String> {
        let identity = self.identity();
        if key_files.is_empty() && identity.is_none() {
            return Ok(Vec::new());
        }
        let mut keys = Vec::new();
        for f in key_files {
            let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            keys.push(Key::parse(&f.display().to_string(), &pem).map_err(|e| e.to_string())?);
        }
        let tlog = self.transparency_log.map(|t| match t {
            TlogArg::Required => TransparencyLog::Required,
            TlogArg::IfPresent => TransparencyLog::IfPresent,
            TlogArg::Ignore => TransparencyLog::Ignore,
        });
        let by = if keys.is_empty() { "--certificate-identity" } else { "--key" };
        let mut req = Requirement::new(by.into(), keys, &self.predicate_types, tlog);
        if let Some(id) = identity {
            let rules = Rules::compile(&[id], self.insecure_ignore_sct)?;
            req = req.with_keyless(rules, tlog);
        }
        if let Some(p) = &self.trusted_root {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let trust = Trust::load(&p.display().to_string(), &bytes).map_err(|e| e.to_string())?;
            if let Some(k) = &req.keyless {
                trust.usable(true, k.tlog).map_err(|e| e.to_string())?;
            }
            req = req.with_trust(std::sync::Arc::new(trust));
        }
        Ok(vec![req])
    }
}

/// Verify an artifact's signatures, as the operator does: cosign's with
/// public keys or keyless identities, Notation's with a trust policy and
/// its stores. Nothing is downloaded but the signatures (and, for
/// Notation, the manifest the signature names).
#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    /// `registry/repository:tag` or `…@sha256:…`.
    reference: String,
    /// A PEM public key (`cosign.pub`); repeat for several. One valid
    /// signature by any of them (or by the keyless identity) passes.
    #[arg(long = "key", value_name = "FILE", required_unless_present_any = ["certificate_identity", "certificate_identity_regexp", "notation"])]
    keys: Vec<PathBuf>,
    #[command(flatten)]
    signature: SignatureArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub(super) struct VerifyBlobArgs {
    /// The file, or `sha256:<hex>` (taken as a digest unless a file of that name exists).
    file_or_digest: String,
    /// The Sigstore bundle (JSON).
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// A PEM public key (managed-key bundles).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["certificate_identity", "certificate_oidc_issuer"])]
    key: Option<PathBuf>,
    /// The signing certificate's identity (SAN), exactly.
    #[arg(long, requires = "certificate_oidc_issuer")]
    certificate_identity: Option<String>,
    /// The certificate's OIDC issuer, exactly.
    #[arg(long, requires = "certificate_identity")]
    certificate_oidc_issuer: Option<String>,
    /// A `trusted_root.json`; default: the public-good root embedded in ocisync (never fetched).
    #[arg(long, value_name = "FILE")]
    trusted_root: Option<PathBuf>,
    /// Use the embedded staging trusted root instead of the public-good one.
    #[arg(long)]
    staging: bool,
}

pub(super) async fn verify(args: VerifyArgs) -> ExitCode {
    let (reference, client) = match setup(&args.reference, &args.registry) {
        Ok(x) => x,
        Err(msg) => return usage(&msg),
    };
    let requirements = match args.signature.requirement(&args.keys) {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => {
            return usage(
                "give --key, --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp], or --notation",
            );
        }
        Err(msg) => return usage(&msg),
    };
    let limit = args.registry.timeout;
    let result = tokio::time::timeout(limit, async {
        let pinned = resolve::reference(&client, &reference).await?;
        let evidence = pipeline::verify(&client, &pinned, &requirements).await?;
        Ok::<_, PipelineError>((pinned, evidence))
    })
    .await
    .unwrap_or(Err(PipelineError::Timeout(limit)));
    match result {
        Ok((pinned, evidence)) => {
            output::verified(args.output, &pinned, &requirements, &evidence);
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e, args.output),
    }
}

pub(super) fn verify_blob(args: VerifyBlobArgs) -> ExitCode {
    use crate::verify::Trust;
    use crate::verify::blob::{self, Input, Signer};
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let setup = || -> Result<(String, Signer, Trust), String> {
        let bundle = String::from_utf8(read(&args.bundle)?).map_err(|_| "the bundle is not UTF-8".to_string())?;
        let signer = match (&args.key, &args.certificate_identity, &args.certificate_oidc_issuer) {
            (Some(k), _, _) => {
                Signer::Key(Key::parse(&k.display().to_string(), &read(k)?).map_err(|e| e.to_string())?.der)
            }
            (None, Some(identity), Some(issuer)) => {
                Signer::Identity { identity: identity.clone(), issuer: issuer.clone() }
            }
            _ => return Err("give --key, or --certificate-identity and --certificate-oidc-issuer".into()),
        };
        let root = match (&args.trusted_root, args.staging) {
            (Some(p), _) => String::from_utf8(read(p)?).map_err(|_| "the trusted root is not UTF-8".to_string())?,
            (None, true) => sigstore_trust_root::SIGSTORE_STAGING_TRUSTED_ROOT.to_string(),
            (None, false) => sigstore_trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT.to_string(),
        };
        let trust = Trust::from_json(&root).map_err(|e| format!("trusted root: {e}"))?;
        Ok((bundle, signer, trust))
    };
    let (bundle, signer, trust) = match setup() {
        Ok(x) => x,
        Err(msg) => return usage(&msg),
    };
    let digest = args
        .file_or_digest
        .strip_prefix("sha256:")
        .filter(|_| !Path::new(&args.file_or_digest).exists())
        .and_then(|hex| sigstore_types::Sha256Hash::from_hex(hex).ok());
    let bytes;
    let input = match digest {
        Some(d) => Input::Digest(d),
        None => match read(Path::new(&args.file_or_digest)) {
            Ok(b) => {
                bytes = b;
                Input::Bytes(&bytes)
            }
            Err(msg) => return usage(&msg),
        },
    };
    match blob::verify(&bundle, input, &signer, &trust) {
        Ok(v) => {
            println!("verified {}", args.file_or_digest);
            if let (Some(i), Some(u)) = (&v.identity, &v.issuer) {
                println!("  identity {i} (issuer {u})");
            }
            if let Some(t) = v.integrated_time {
                println!("  logged   at {t} (seconds since the epoch)");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(Reason::from(&e)))
        }
    }
}
