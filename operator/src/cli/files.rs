//! `ocisync ls` and `ocisync cat`: an artifact's files, and one file's
//! bytes, through the same resolve → verify → fetch path as `pull`. Where
//! layers carry a table of contents, `ls` reads only the TOCs and `cat` only
//! the file's chunks; otherwise the layers are read, as `crane export | tar
//! -t` / `tar -xO` would.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use super::output::human_bytes;
use super::{Format, RegistryArgs, failed, setup, usage, verify};
use crate::fetch::sources::Mirror;
use crate::fetch::{self, FileReport, LayerRead, PullOptions};
use crate::oci::Platform;
use crate::pipeline::{self, PipelineError};
use crate::resolve;
use crate::unpack::{Entry, Selection};

/// What both commands read from.
#[derive(Args, Debug)]
pub(super) struct Source {
    /// oci://host[:port]/repo[:tag][@sha256:…]
    reference: String,
    #[command(flatten)]
    from: From,
}

/// How a reference is read: the flags `ls`, `cat` and `diff` share.
#[derive(Args, Debug)]
pub(super) struct From {
    /// Platform to take from an image index, os/arch[/variant]; default: this machine's.
    #[arg(long)]
    platform: Option<String>,
    /// Verify the signatures with this public key first (repeatable);
    /// nothing is read unless one verifies.
    #[arg(long = "verify-key", value_name = "FILE")]
    verify_keys: Vec<PathBuf>,
    #[command(flatten)]
    signature: verify::SignatureArgs,
    /// Read whole layers (and check each one's digest) even where a table
    /// of contents would do.
    #[arg(long)]
    no_partial: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
pub(super) struct LsArgs {
    #[command(flatten)]
    source: Source,
    /// Only files matching this glob (repeatable).
    #[arg(long = "select", value_name = "GLOB")]
    select: Vec<String>,
    /// Leave out files matching this glob (repeatable; wins over --select).
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
}

#[derive(Args, Debug)]
pub(super) struct CatArgs {
    #[command(flatten)]
    source: Source,
    /// The file's path in the artifact (as `ocisync ls` prints it).
    path: String,
}

impl From {
    /// This machine's platform, no signature asked for, with `registry`'s
    /// flags: how `pin` lists the versions it moves between.
    pub(super) fn plain(registry: RegistryArgs) -> From {
        From {
            platform: None,
            verify_keys: Vec::new(),
            signature: verify::SignatureArgs::default(),
            no_partial: false,
            registry,
        }
    }
}

/// What was listed, and what it cost.
pub(super) struct Listed {
    pub(super) files: Vec<FileReport>,
    pub(super) layers: Vec<LayerRead>,
    pub(super) registry_bytes: u64,
    pub(super) from_toc: bool,
    pub(super) digest: String,
}

pub(super) async fn ls(args: LsArgs) -> ExitCode {
    let selection = match Selection::new(&args.select, &args.exclude, &[]) {
        Ok(s) => s,
        Err(e) => return usage(&e.to_string()),
    };
    let src = &args.source;
    let listed = list(&src.reference, &src.from, selection).await;
    let listed = match listed {
        Ok(l) => l,
        Err(Fail::Usage(msg)) => return usage(&msg),
        Err(Fail::Pipeline(e)) => return failed(&e, args.output),
    };
    match args.output {
        Format::Json => {
            let doc = json!({
                "reference": src.reference,
                "digest": listed.digest,
                "from": if listed.from_toc { "toc" } else { "layers" },
                "files": listed.files,
                "layers": listed.layers,
                "registryBytes": listed.registry_bytes,
            });
            println!("{doc:#}");
        }
        Format::Text => {
            for f in &listed.files {
                match &f.entry {
                    Entry::File { size, .. } => println!("{size:>12}  {}", f.path),
                    Entry::Symlink { target } => println!("{:>12}  {} -> {target}", "", f.path),
                }
            }
            let how = if listed.from_toc { "tables of contents" } else { "layers" };
            eprintln!(
                "{} files, read from the {how}: {} from the registry",
                listed.files.len(),
                human_bytes(listed.registry_bytes)
            );
        }
    }
    ExitCode::SUCCESS
}

pub(super) async fn cat(args: CatArgs) -> ExitCode {
    let path = args.path.trim_start_matches("./").trim_start_matches('/').to_string();
    let selection = match Selection::new(&[globset::escape(&path)], &[], &[]) {
        Ok(s) => s,
        Err(e) => return usage(&e.to_string()),
    };
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => return usage(&format!("cannot make a temporary directory: {e}")),
    };
    let out = scratch.out();
    let pulled = fetch(&args.source.reference, &args.source.from, selection, &out).await;
    let pulled = match pulled {
        Ok(p) => p,
        Err(Fail::Usage(msg)) => return usage(&msg),
        Err(Fail::Pipeline(e)) => return failed(&e, Format::Text),
    };
    let found = pulled.report.files.iter().find(|f| f.path == path).map(|f| &f.entry);
    let code = match found {
        Some(Entry::File { .. }) => copy_out(&out.join(&path)),
        Some(Entry::Symlink { target }) => {
            eprintln!("error: {path} is a symbolic link to {target}; cat the target");
            ExitCode::from(3)
        }
        None => {
            eprintln!("error: {path}: no such file in {}", pulled.resolution.digest);
            ExitCode::from(3)
        }
    };
    drop(scratch);
    code
}

fn copy_out(file: &Path) -> ExitCode {
    let copied = std::fs::File::open(file).and_then(|mut f| {
        let mut stdout = std::io::stdout().lock();
        std::io::copy(&mut f, &mut stdout)?;
        std::io::Write::flush(&mut stdout)
    });
    match copied {
        Ok(()) => ExitCode::SUCCESS,
        // a closed pipe (`| head`) is the reader's choice, not a failure
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

pub(super) enum Fail {
    Usage(String),
    Pipeline(PipelineError),
}

/// The selected files of `reference`: from the layers' tables of contents
/// where every layer has one, else by pulling into a private directory.
pub(super) async fn list(reference: &str, from: &From, selection: Selection) -> Result<Listed, Fail> {
    let scratch = Scratch::new().map_err(|e| Fail::Usage(format!("cannot make a temporary directory: {e}")))?;
    let out = scratch.out();
    run(reference, from, selection, |client, pinned, platform, opts| async move {
        let origin = Arc::new(Mirror::new(client.clone(), &pinned.reference));
        let res = resolve::manifest(&client, &pinned, &platform).await?;
        if let Some(l) = fetch::list::from_tocs(origin, &res, &opts).await.map_err(PipelineError::from)? {
            let digest = res.digest.to_string();
            return Ok(Listed {
                files: l.files,
                layers: l.layers,
                registry_bytes: l.registry_bytes,
                from_toc: true,
                digest,
            });
        }
        // Some layer has no TOC to read: list what unpacking it gives.
        let pulled = pipeline::run(client, &pinned, &platform, &opts, &out).await?;
        let r = pulled.report;
        let digest = pulled.resolution.digest.to_string();
        Ok(Listed { files: r.files, layers: r.layers, registry_bytes: r.registry_bytes, from_toc: false, digest })
    })
    .await
}

/// The selected files of `reference`, pulled into `out`.
pub(super) async fn fetch(
    reference: &str,
    from: &From,
    selection: Selection,
    out: &Path,
) -> Result<pipeline::Pulled, Fail> {
    run(reference, from, selection, |client, pinned, platform, opts| async move {
        pipeline::run(client, &pinned, &platform, &opts, out).await
    })
    .await
}

/// Set up, resolve (one HEAD), verify when asked, then `then` with the
/// pinned digest, all within `--timeout`.
async fn run<T, F, Fut>(reference: &str, src: &From, selection: Selection, then: F) -> Result<T, Fail>
where
    F: FnOnce(Arc<crate::oci::RegistryClient>, resolve::Pinned, Platform, PullOptions) -> Fut,
    Fut: Future<Output = Result<T, PipelineError>>,
{
    let (reference, client) = setup(reference, &src.registry).map_err(Fail::Usage)?;
    let requirements = src.signature.requirement(&src.verify_keys).map_err(Fail::Usage)?;
    let platform = match src.platform.as_deref().map(Platform::parse).transpose() {
        Ok(p) => p.unwrap_or_else(Platform::current),
        Err(e) => return Err(Fail::Usage(e.to_string())),
    };
    let opts = PullOptions { selection, partial: !src.no_partial, ..PullOptions::default() };
    let client = Arc::new(client);
    let limit = src.registry.timeout;
    tokio::time::timeout(limit, async {
        let pinned = resolve::reference(&client, &reference).await?;
        pipeline::verify(&client, &pinned, &requirements).await?;
        then(client.clone(), pinned, platform, opts).await
    })
    .await
    .unwrap_or(Err(PipelineError::Timeout(limit)))
    .map_err(Fail::Pipeline)
}

/// A private directory under `$TMPDIR`, removed when dropped.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new() -> std::io::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = std::env::temp_dir().join(format!("ocisync-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Scratch(dir))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    /// Where a pull writes (created by it, with its staging beside it).
    pub(super) fn out(&self) -> PathBuf {
        self.0.join("out")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
