//! `ocisync check PATH…`: a merge gate for a GitOps repository, with no
//! cluster. Every Artifact document is checked as the cluster would check
//! it: against the CRD's schema (offline, the schema this build serves),
//! as a spec the operator accepts, its digest (pinned, or what its tag or
//! range names) present in the registry, and its signatures verifying
//! under its own `spec.verify` and every `ClusterArtifactPolicy` of the
//! tree that covers its namespace.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{Format, RegistryArgs, usage, verify};
use crate::controller::plan::Plan;
use crate::gitops::{self, schema};
use crate::pipeline::{self, PipelineError};
use crate::resolve;
use crate::status::Reason;

#[derive(Args, Debug)]
pub(super) struct CheckArgs {
    /// YAML files, or directories to walk (hidden entries are skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Verify `spec.verify` with these keys instead of the tree's Secrets
    /// (repeatable); cluster policies always use the tree's.
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<PathBuf>,
    #[command(flatten)]
    signature: verify::SignatureArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// One Artifact and the first check it failed.
struct Row {
    file: PathBuf,
    line: usize,
    name: String,
    digest: Option<String>,
    failed: Option<(&'static str, String, String)>,
}

pub(super) async fn check(args: CheckArgs) -> ExitCode {
    let flags = match args.signature.requirement(&args.keys) {
        Ok(r) => r,
        Err(m) => return usage(&m),
    };
    let (texts, objects) = match gitops::read_tree(&args.paths) {
        Ok(t) => t,
        Err(m) => return usage(&m),
    };
    let crd = schema::artifact_schema();
    let mut rows = Vec::new();
    for (file, text) in &texts {
        for (line, doc) in gitops::artifact_documents(text) {
            let mut row = Row { file: file.clone(), line, name: String::new(), digest: None, failed: None };
            row.failed = one(&args, &flags, &objects, &crd, doc, &mut row).await.err();
            rows.push(row);
        }
    }
    report(&args, &rows);
    if rows.iter().any(|r| r.failed.is_some()) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// The checks of one document, in order; the first failure: (check, reason, message).
async fn one(
    args: &CheckArgs,
    flags: &[crate::verify::Requirement],
    objects: &gitops::Objects,
    crd: &serde_json::Value,
    doc: &str,
    row: &mut Row,
) -> Result<(), (&'static str, String, String)> {
    let fail = |check: &'static str, reason: &str, m: String| (check, reason.to_string(), m);
    let value: serde_json::Value =
        serde_saphyr::from_str(doc).map_err(|e| fail("schema", "InvalidSpec", e.to_string()))?;
    row.name = value["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut errs = schema::validate(crd, &value);
    errs.retain(|e| !e.starts_with(".apiVersion") && !e.starts_with(".kind") && !e.starts_with(".metadata"));
    if value["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        errs.insert(0, ".metadata.name: is required".into());
    }
    if !errs.is_empty() {
        return Err(fail("schema", "InvalidSpec", errs.join("; ")));
    }
    let artifact: crate::api::Artifact =
        serde_json::from_value(value).map_err(|e| fail("schema", "InvalidSpec", e.to_string()))?;
    let plan = Plan::new(&row.name, &artifact.spec).map_err(|e| fail("spec", "InvalidSpec", e.to_string()))?;
    let mut requirements = match (artifact.spec.verify.is_some(), flags.is_empty()) {
        (true, false) => flags.to_vec(),
        (true, true) => {
            gitops::requirements(&artifact, objects).map_err(|m| fail("verify", "InvalidVerificationKeys", m))?
        }
        (false, _) => Vec::new(),
    };
    requirements
        .extend(gitops::policy_requirements(&artifact, objects).map_err(|m| fail("policy", "PolicyViolation", m))?);
    let (client, registry) = super::pin::client_for(&plan, artifact.spec.insecure, &args.registry)
        .map_err(|m| fail("digest", "InvalidSpec", m))?;
    let repo = &plan.repository;
    let run = async {
        let reference = match &plan.pin {
            Some(d) => crate::oci::Reference { digest: Some(d.clone()), tag: None, ..repo.clone() },
            None => {
                let tag = super::pin::followed_tag(&client, &plan).await?;
                crate::oci::Reference { tag: Some(tag), digest: None, ..repo.clone() }
            }
        };
        // a pinned digest must be there: one HEAD, as for a tag (resolving a
        // digest alone asks the registry nothing)
        let digest = match &reference.digest {
            Some(d) => {
                client.head_manifest(&repo.repository, &d.to_string()).await.map_err(resolve::ResolveError::from)?;
                d.clone()
            }
            None => resolve::digest(&client, &reference).await?,
        };
        let pinned = resolve::Pinned::known(reference, digest.clone());
        Ok::<_, PipelineError>((pinned, digest))
    };
    let limit = registry.timeout;
    let (pinned, digest) = match tokio::time::timeout(limit, run).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(fail("digest", &format!("{:?}", Reason::from(&e)), e.to_string())),
        Err(_) => return Err(fail("digest", "Timeout", format!("gave up after {limit:?}"))),
    };
    row.digest = Some(digest.to_string());
    match tokio::time::timeout(limit, pipeline::verify(&client, &pinned, &requirements)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(fail("verify", &format!("{:?}", Reason::from(&e)), e.to_string())),
        Err(_) => Err(fail("verify", "Timeout", format!("gave up after {limit:?}"))),
    }
}

fn report(args: &CheckArgs, rows: &[Row]) {
    match args.output {
        Format::Json => {
            let doc: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({"file": r.file, "line": r.line, "name": r.name, "digest": r.digest, "ok": r.failed.is_none(),
                           "failed": r.failed.as_ref().map(|(c, reason, m)| json!({"check": c, "reason": reason, "message": m}))})
                })
                .collect();
            println!("{:#}", json!({ "artifacts": doc }));
        }
        Format::Text => {
            for r in rows {
                let at = format!("{}:{}", r.file.display(), r.line);
                match &r.failed {
                    None => println!("ok      {at}  {}", r.name),
                    Some((c, reason, m)) => println!("FAILED  {at}  {}  {c}: {reason}: {m}", r.name),
                }
            }
            let failed = rows.iter().filter(|r| r.failed.is_some()).count();
            eprintln!("{} Artifacts, {failed} failed", rows.len());
        }
    }
}
