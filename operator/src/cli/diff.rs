//! `ocisync diff REF_A REF_B`: the files added, removed and changed
//! between two versions of an artifact, from the tables of contents alone
//! where every layer has one; with `--patch`, unified diffs of the changed
//! text files, reading only those files.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::files::{self, Fail, Listed, Scratch};
use super::output::human_bytes;
use super::{Format, failed, usage};
use crate::diff::{self, Change, Patch};
use crate::unpack::{Entry, Selection};

#[derive(Args, Debug)]
pub(super) struct DiffArgs {
    /// The version before: oci://host[:port]/repo[:tag][@sha256:…]
    before: String,
    /// The version after.
    after: String,
    #[command(flatten)]
    from: files::From,
    /// Only files matching this glob (repeatable).
    #[arg(long = "select", value_name = "GLOB")]
    select: Vec<String>,
    /// Leave out files matching this glob (repeatable; wins over --select).
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Also print unified diffs (as `diff -u`) of the changed text files;
    /// only those files are read. Binary files, and files over 1 MiB, are
    /// named, not shown.
    #[arg(short = 'p', long)]
    patch: bool,
    /// Exit 1 when the versions differ (as `diff` and `git diff --exit-code`).
    #[arg(long)]
    exit_code: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

pub(super) async fn diff(args: DiffArgs) -> ExitCode {
    let selection = match Selection::new(&args.select, &args.exclude, &[]) {
        Ok(s) => s,
        Err(e) => return usage(&e.to_string()),
    };
    let listed = async {
        let a = files::list(&args.before, &args.from, selection.clone()).await?;
        let b = files::list(&args.after, &args.from, selection).await?;
        Ok::<_, Fail>((a, b))
    };
    let (a, b) = match listed.await {
        Ok(x) => x,
        Err(Fail::Usage(msg)) => return usage(&msg),
        Err(Fail::Pipeline(e)) => return failed(&e, args.output),
    };
    let changes = diff::changes(&a.files, &b.files);
    let (patches, patch_bytes) = if args.patch {
        match patches(&args, &changes).await {
            Ok(p) => p,
            Err(Fail::Usage(msg)) => return usage(&msg),
            Err(Fail::Pipeline(e)) => return failed(&e, args.output),
        }
    } else {
        (Vec::new(), 0)
    };
    let registry_bytes = a.registry_bytes.saturating_add(b.registry_bytes).saturating_add(patch_bytes);
    match args.output {
        Format::Json => {
            let side = |r: &str, l: &Listed| {
                json!({"reference": r, "digest": l.digest, "from": if l.from_toc { "toc" } else { "layers" },
                       "registryBytes": l.registry_bytes})
            };
            let doc = json!({
                "before": side(&args.before, &a),
                "after": side(&args.after, &b),
                "changes": changes.iter().map(|c| {
                    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                    v["status"] = json!(c.status().to_string());
                    if let Some((_, p)) = patches.iter().find(|(path, _)| *path == c.path) {
                        v["patch"] = match p {
                            Patch::Text(t) => json!(t),
                            Patch::Binary => json!({"binary": true}),
                            Patch::TooLarge => json!({"tooLarge": true}),
                        };
                    }
                    v
                }).collect::<Vec<_>>(),
                "registryBytes": registry_bytes,
            });
            println!("{doc:#}");
        }
        Format::Text => {
            for c in &changes {
                println!("{}  {:>10}  {:>10}  {}", c.status(), size(&c.before), size(&c.after), c.path);
            }
            for (path, p) in &patches {
                match p {
                    Patch::Text(t) => print!("{t}"),
                    Patch::Binary => println!("Binary files a/{path} and b/{path} differ"),
                    Patch::TooLarge => println!(
                        "Files a/{path} and b/{path} differ (over {} or too far apart to show)",
                        human_bytes(diff::MAX_SHOWN as u64)
                    ),
                }
            }
            let count = |s: char| changes.iter().filter(|c| c.status() == s).count();
            let how = |l: &Listed| if l.from_toc { "tables of contents" } else { "layers" };
            let read = match (a.from_toc, b.from_toc) {
                (x, y) if x == y => format!("the {}", how(&a)),
                _ => format!("the {} (before) and the {} (after)", how(&a), how(&b)),
            };
            eprintln!(
                "{} added, {} removed, {} changed; listed from {read}{}: {} from the registry",
                count('A'),
                count('D'),
                count('M'),
                if args.patch { ", the changed files read" } else { "" },
                human_bytes(registry_bytes)
            );
        }
    }
    if args.exit_code && !changes.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn size(e: &Option<Entry>) -> String {
    match e {
        Some(Entry::File { size, .. }) => size.to_string(),
        Some(Entry::Symlink { target }) => format!("-> {target}"),
        None => "-".into(),
    }
}

/// The changed regular files of both versions, fetched (only they) into a
/// private directory, their unified diffs, and the bytes that cost.
async fn patches(args: &DiffArgs, changes: &[Change]) -> Result<(Vec<(String, Patch)>, u64), Fail> {
    let paths: Vec<&str> = changes.iter().filter(|c| c.both_files()).map(|c| c.path.as_str()).collect();
    if paths.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let globs: Vec<String> = paths.iter().map(|p| globset::escape(p)).collect();
    let selection = Selection::new(&globs, &[], &[]).map_err(|e| Fail::Usage(e.to_string()))?;
    let scratch = Scratch::new().map_err(|e| Fail::Usage(format!("cannot make a temporary directory: {e}")))?;
    let (a_dir, b_dir) = (scratch.path().join("a"), scratch.path().join("b"));
    let a = files::fetch(&args.before, &args.from, selection.clone(), &a_dir).await?;
    let b = files::fetch(&args.after, &args.from, selection, &b_dir).await?;
    let bytes = a.report.registry_bytes.saturating_add(b.report.registry_bytes);
    let patches = paths
        .into_iter()
        .map(|p| {
            let (a, b) = (read(&a_dir.join(p)), read(&b_dir.join(p)));
            let patch = match (a, b) {
                (Some(a), Some(b)) => diff::patch(&format!("a/{p}"), &format!("b/{p}"), &a, &b),
                _ => Patch::TooLarge,
            };
            (p.to_string(), patch)
        })
        .collect();
    Ok((patches, bytes))
}

/// A file of at most `MAX_SHOWN` bytes; `None` past that.
fn read(p: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(p).ok()?;
    (meta.len() <= diff::MAX_SHOWN as u64).then(|| std::fs::read(p).ok()).flatten()
}
