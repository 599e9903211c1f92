//! `ocisync pin PATH…`: every Artifact document in the YAML files under
//! PATH that follows a tag or a semver range is resolved, the new digest
//! verified as asked, and written into its `spec.ref.digest`, nothing else
//! of the file changed. A digest that does not verify is never written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{Format, RegistryArgs, exit_code, setup, usage, verify};
use crate::controller::plan::Plan;
use crate::gitops::{self, Edit};
use crate::pipeline::{self, PipelineError};
use crate::resolve::{self, Version};
use crate::status::Reason;

#[derive(Args, Debug)]
pub(super) struct PinArgs {
    /// YAML files, or directories to walk (hidden entries are skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print what would change (as a unified diff); write nothing.
    #[arg(long)]
    dry_run: bool,
    /// A public key new digests must be signed with (repeatable), as
    /// `verify --key`. An Artifact with `spec.verify` is pinned only when
    /// its new digest verifies: with what these flags give, or, without
    /// them, with the keys, trusted root or trust policy its `spec.verify`
    /// names, read from the Secrets and ConfigMaps of the same tree.
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<PathBuf>,
    #[command(flatten)]
    signature: verify::SignatureArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// One Artifact looked at.
struct Pinned {
    file: PathBuf,
    line: usize,
    name: String,
    before: Option<String>,
    after: Option<String>,
    verified: bool,
    error: Option<(Reason, String)>,
    /// `registry/repository`, and whether its spec says plain HTTP.
    repository: String,
    insecure: bool,
    /// What the move changes: files added, removed, changed.
    files: Option<(usize, usize, usize)>,
    /// The signatures that verified, as `verify --output json` shows them.
    evidence: Option<serde_json::Value>,
}

impl Pinned {
    fn moved(&self) -> bool {
        self.error.is_none() && self.after.is_some() && self.after != self.before
    }
}

pub(super) async fn pin(args: PinArgs) -> ExitCode {
    let requirements = match args.signature.requirement(&args.keys) {
        Ok(r) => r,
        Err(m) => return usage(&m),
    };
    let (texts, objects) = match gitops::read_tree(&args.paths) {
        Ok(t) => t,
        Err(m) => return usage(&m),
    };
    let mut results = Vec::new();
    let mut edits: BTreeMap<PathBuf, (String, Vec<Edit>)> = BTreeMap::new();
    for (file, text) in texts {
        let found = match gitops::find_in(&text) {
            Ok(f) => f,
            Err(m) => return usage(&format!("{}: {m}", file.display())),
        };
        for f in found {
            let name = f.artifact.metadata.name.clone().unwrap_or_default();
            let before = f.artifact.spec.reference.as_ref().and_then(|r| r.digest.clone());
            let repository = crate::oci::Reference::parse(&f.artifact.spec.url)
                .map(|r| format!("{}/{}", r.registry, r.repository))
                .unwrap_or_default();
            let mut r = Pinned {
                file: file.clone(),
                line: f.line,
                name,
                before,
                after: None,
                verified: false,
                error: None,
                repository,
                insecure: f.artifact.spec.insecure,
                files: None,
                evidence: None,
            };
            if f.follow.is_none() {
                if r.before.is_none() {
                    let m =
                        "it follows `latest` without saying so: write spec.ref.tag for pin to write a digest beside it";
                    r.error = Some((Reason::InvalidSpec, m.into()));
                }
                results.push(r); // else pinned by digest alone: nothing to follow
                continue;
            }
            let wants_verify = f.artifact.spec.verify.is_some();
            // the flags, when given, else what spec.verify names in the tree
            let own = match (wants_verify, requirements.is_empty()) {
                (true, true) => match gitops::requirements(&f.artifact, &objects) {
                    Ok(r) => r,
                    Err(m) => {
                        r.error = Some((Reason::InvalidVerificationKeys, format!("spec.verify: {m}")));
                        results.push(r);
                        continue;
                    }
                },
                (true, false) => requirements.clone(),
                (false, _) => Vec::new(),
            };
            match resolve_and_verify(&f.artifact, &args.registry, &own).await {
                Ok((digest, evidence)) => {
                    r.verified = wants_verify;
                    r.evidence = evidence;
                    match gitops::pin_edit(&text, &f, &digest) {
                        Ok(Some(e)) => {
                            edits.entry(file.clone()).or_insert_with(|| (text.clone(), Vec::new())).1.push(e)
                        }
                        Ok(None) => {}
                        Err(m) => r.error = Some((Reason::InvalidSpec, m)),
                    }
                    r.after = Some(digest);
                }
                Err(e) => r.error = Some(e),
            }
            results.push(r);
        }
    }
    // write (or show) each changed file whole, replaced atomically
    let mut write_error = None;
    for (file, (text, file_edits)) in &edits {
        let new = gitops::apply(text, file_edits);
        if args.dry_run {
            if let crate::diff::Patch::Text(t) = crate::diff::patch(
                &file.display().to_string(),
                &file.display().to_string(),
                text.as_bytes(),
                new.as_bytes(),
            ) {
                print!("{t}");
            }
        } else if let Err(e) = replace(file, &new) {
            write_error = Some(format!("{}: {e}", file.display()));
        }
    }
    // what each moved pin changes, from the two versions' listings (their
    // tables of contents where they have them)
    for r in results.iter_mut().filter(|r| r.moved()) {
        let Some(before) = &r.before else { continue };
        let mut registry = args.registry.clone();
        registry.insecure |= r.insecure;
        let from = super::files::From::plain(registry);
        let (a, b) =
            (format!("{}@{before}", r.repository), format!("{}@{}", r.repository, r.after.as_deref().unwrap_or("")));
        let all = crate::unpack::Selection::new::<&str>(&[], &[], &[]);
        if let (Ok(sel), true) = (all, !r.repository.is_empty()) {
            let (x, y) = (super::files::list(&a, &from, sel.clone()).await, super::files::list(&b, &from, sel).await);
            if let (Ok(x), Ok(y)) = (x, y) {
                let changes = crate::diff::changes(&x.files, &y.files);
                let count = |s: char| changes.iter().filter(|c| c.status() == s).count();
                r.files = Some((count('A'), count('D'), count('M')));
            }
        }
    }
    report(&args, &results);
    if let Some(m) = write_error {
        eprintln!("error: {m}");
        return ExitCode::from(1);
    }
    match results.iter().find_map(|r| r.error.as_ref()) {
        Some((reason, _)) => ExitCode::from(exit_code(*reason)),
        None => ExitCode::SUCCESS,
    }
}

fn report(args: &PinArgs, results: &[Pinned]) {
    match args.output {
        Format::Json => {
            let doc: Vec<_> = results
                .iter()
                .map(|r| {
                    json!({"file": r.file, "line": r.line, "name": r.name, "before": r.before, "after": r.after,
                           "moved": r.moved(), "verified": r.verified,
                           "files": r.files.map(|(a, d, m)| json!({"added": a, "removed": d, "changed": m})),
                           "verification": r.evidence,
                           "error": r.error.as_ref().map(|(reason, m)| json!({"reason": reason, "message": m}))})
                })
                .collect();
            println!("{:#}", json!({ "artifacts": doc, "dryRun": args.dry_run }));
        }
        Format::Text => {
            for r in results {
                let at = format!("{}:{} {}", r.file.display(), r.line, r.name);
                match (&r.error, &r.after) {
                    (Some((reason, m)), _) => eprintln!("{at}: not pinned: {m} ({reason:?})"),
                    (None, Some(d)) if Some(d) == r.before.as_ref() => eprintln!("{at}: already {d}"),
                    (None, Some(d)) => eprintln!(
                        "{at}: {} -> {d}{}{}",
                        r.before.as_deref().unwrap_or("(none)"),
                        if r.verified { " (verified)" } else { "" },
                        r.files
                            .map(|(a, x, m)| format!("; files: {a} added, {x} removed, {m} changed"))
                            .unwrap_or_default()
                    ),
                    (None, None) => eprintln!("{at}: pinned by digest alone, nothing to follow"),
                }
            }
        }
    }
}

/// A client for the Artifact's repository: the registry flags, and plain
/// HTTP when its spec says so too.
pub(super) fn client_for(
    plan: &Plan,
    insecure: bool,
    registry: &RegistryArgs,
) -> Result<(crate::oci::RegistryClient, RegistryArgs), String> {
    let mut registry = registry.clone();
    registry.insecure |= insecure;
    let repo = &plan.repository;
    let (_, client) = setup(&format!("{}/{}", repo.registry, repo.repository), &registry)?;
    Ok((client, registry))
}

/// The tag the plan follows now: a range reads the tag list, and the
/// highest match wins, as the operator picks it.
pub(super) async fn followed_tag(client: &crate::oci::RegistryClient, plan: &Plan) -> Result<String, PipelineError> {
    let repo = &plan.repository;
    Ok(match &plan.follow {
        Some(v @ Version::Semver { .. }) => {
            let tags = client.tags(&repo.repository).await.map_err(resolve::ResolveError::from)?;
            resolve::pick_tag(v, &repo.repository, &tags)?
        }
        Some(Version::Tag(t)) => t.clone(),
        // a plan follows nothing only beside a pin; its default is `latest`
        None => "latest".into(),
    })
}

/// What the Artifact's tag or range names now, verified by `requirements`.
async fn resolve_and_verify(
    artifact: &crate::api::Artifact,
    registry: &RegistryArgs,
    requirements: &[crate::verify::Requirement],
) -> Result<(String, Option<serde_json::Value>), (Reason, String)> {
    let name = artifact.metadata.name.clone().unwrap_or_default();
    let plan = Plan::new(&name, &artifact.spec).map_err(|e| (Reason::InvalidSpec, e.to_string()))?;
    let (client, registry) =
        client_for(&plan, artifact.spec.insecure, registry).map_err(|m| (Reason::InvalidSpec, m))?;
    let repo = &plan.repository;
    let run = async {
        let tag = followed_tag(&client, &plan).await?;
        let reference = crate::oci::Reference { tag: Some(tag), digest: None, ..repo.clone() };
        let pinned = resolve::reference(&client, &reference).await?;
        let evidence = pipeline::verify(&client, &pinned, requirements).await?;
        let shown = (!evidence.is_empty()).then(|| {
            let trust = crate::verify::fingerprint(requirements).unwrap_or_default();
            serde_json::to_value(crate::status::verification_status(&pinned.digest, &trust, &evidence))
                .unwrap_or_default()
        });
        Ok::<_, PipelineError>((pinned.digest.to_string(), shown))
    };
    let limit = registry.timeout;
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err((Reason::from(&e), e.to_string())),
        Err(_) => Err((Reason::Timeout, format!("gave up after {limit:?} (--timeout)"))),
    }
}

/// Replace `file` whole: a temporary file beside it, its mode kept, renamed over it.
fn replace(file: &Path, text: &str) -> std::io::Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.ocisync-pin-{}", std::process::id()));
    let perms = std::fs::metadata(file)?.permissions();
    std::fs::write(&tmp, text)?;
    std::fs::set_permissions(&tmp, perms)?;
    std::fs::rename(&tmp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
