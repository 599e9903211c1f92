//! `ocisync verify` (an artifact's cosign signatures, by digest, with keys)
//! and `ocisync verify-blob` (a Sigstore bundle against a file or digest).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::{Format, RegistryArgs, exit_code, failed, output, setup, usage};
use crate::api::TransparencyLog;
use crate::pipeline::{self, PipelineError};
use crate::resolve;
use crate::status::Reason;
use crate::verify::{Key, Requirement};

/// Which signatures count, as an Artifact's `spec.verify` says it.
#[derive(Args, Debug)]
pub(super) struct SignatureArgs {
    /// Predicate types that count as a signature (repeatable). Default:
    /// cosign's `https://sigstore.dev/cosign/sign/v1` only.
    #[arg(long = "predicate-type", value_name = "URI")]
    predicate_types: Vec<String>,
    /// Required, IfPresent or Ignore.
    #[arg(long, value_enum, default_value_t = TlogArg::IfPresent)]
    transparency_log: TlogArg,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "PascalCase")]
enum TlogArg {
    Required,
    IfPresent,
    Ignore,
}

impl SignatureArgs {
    pub(super) fn requirement(&self, key_files: &[PathBuf]) -> Result<Vec<Requirement>, String> {
        if key_files.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = Vec::new();
        for f in key_files {
            let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            keys.push(Key::parse(&f.display().to_string(), &pem).map_err(|e| e.to_string())?);
        }
        let tlog = match self.transparency_log {
            TlogArg::Required => TransparencyLog::Required,
            TlogArg::IfPresent => TransparencyLog::IfPresent,
            TlogArg::Ignore => TransparencyLog::Ignore,
        };
        Ok(vec![Requirement::new("--key".into(), keys, &self.predicate_types, Some(tlog))])
    }
}

/// Verify an artifact's cosign signatures with public keys, as the
/// operator does: nothing is downloaded but the signatures.
#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    /// `registry/repository:tag` or `…@sha256:…`.
    reference: String,
    /// A PEM public key (`cosign.pub`); repeat for several. One valid
    /// signature by any of them passes.
    #[arg(long = "key", value_name = "FILE", required = true)]
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
        Ok(r) => r,
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
