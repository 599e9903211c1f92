//! `ocisync push`: files and directories as an artifact whose every file
//! can be fetched alone, printed as `REF@digest`, ready for `cosign sign`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::{Format, RegistryArgs, exit_code, setup, usage};
use crate::push::layer::Format as LayerFormat;
use crate::push::{self, DEFAULT_ARTIFACT_TYPE, PushOptions};
use crate::status::Reason;
use crate::unpack::Selection;
use crate::unpack::limits::parse_size;

#[derive(Args, Debug)]
pub(super) struct PushArgs {
    /// oci://host[:port]/repo:tag
    reference: String,
    /// Files and directories to pack (a directory's contents go under their
    /// paths inside it, as `tar -C dir .` and `flux push artifact` lay them
    /// out; `oras push dir/` puts them under `dir/`).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Only files matching this glob (repeatable).
    #[arg(long = "select", value_name = "GLOB")]
    select: Vec<String>,
    /// Leave out files matching this glob (repeatable; wins over --select).
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// A manifest annotation (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    annotations: Vec<String>,
    /// The manifest's artifactType.
    #[arg(long, default_value = DEFAULT_ARTIFACT_TYPE)]
    artifact_type: String,
    /// The layer's format: eStargz (every file fetchable alone, read by any
    /// tar+gzip reader too), zstd:chunked (the same with zstd, read by any
    /// tar+zstd reader) or plain tar+gzip.
    #[arg(long, value_enum, default_value_t = FormatArg::Estargz)]
    format: FormatArg,
    /// Mount blobs from this repository of the same registry when it holds
    /// them, instead of uploading (repeatable; the first that has one).
    #[arg(long = "mount-from", value_name = "REPOSITORY")]
    mount_from: Vec<String>,
    /// Set `org.opencontainers.image.created` to this RFC 3339 time, or
    /// `now` (left out by default: the same files give the same digest).
    #[arg(long, value_name = "TIME")]
    created: Option<String>,
    /// eStargz and zstd:chunked: files larger than this are cut into chunks
    /// of this size, each fetchable alone.
    #[arg(long, value_parser = parse_size, default_value = "4MiB")]
    chunk_size: u64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    Estargz,
    ZstdChunked,
    #[value(name = "tar+gzip")]
    TarGzip,
}

pub(super) async fn push(args: PushArgs) -> ExitCode {
    let (reference, client) = match setup(&args.reference, &args.registry) {
        Ok(x) => x,
        Err(msg) => return usage(&msg),
    };
    if reference.digest.is_some() {
        return usage("push to a tag (REF:tag); the digest is what the push makes");
    }
    let selection = match Selection::new(&args.select, &args.exclude, &[]) {
        Ok(s) => s,
        Err(e) => return usage(&e.to_string()),
    };
    let mut annotations = BTreeMap::new();
    for a in &args.annotations {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => annotations.insert(k.to_string(), v.to_string()),
            _ => return usage(&format!("--annotation {a:?}: KEY=VALUE")),
        };
    }
    if let Some(c) = &args.created {
        let at = match c.as_str() {
            "now" => jiff::Timestamp::now(),
            t => match t.parse::<jiff::Timestamp>() {
                Ok(t) => t,
                Err(e) => return usage(&format!("--created {t:?}: {e}")),
            },
        };
        annotations.insert("org.opencontainers.image.created".into(), at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if args.chunk_size == 0 || args.chunk_size > 1 << 30 {
        return usage("--chunk-size: from 1 byte to 1GiB");
    }
    let opts = PushOptions {
        format: match args.format {
            FormatArg::Estargz => LayerFormat::Estargz,
            FormatArg::ZstdChunked => LayerFormat::ZstdChunked,
            FormatArg::TarGzip => LayerFormat::TarGzip,
        },
        chunk_size: args.chunk_size,
        selection,
        annotations,
        artifact_type: args.artifact_type.clone(),
        mount_from: args.mount_from.clone(),
    };
    let scratch = match super::files::Scratch::new() {
        Ok(s) => s,
        Err(e) => return usage(&format!("cannot make a temporary directory: {e}")),
    };
    let limit = args.registry.timeout;
    let pushed = tokio::time::timeout(limit, push::push(&client, &reference, args.paths.clone(), opts, scratch.path()))
        .await
        .map_err(|_| None)
        .and_then(|r| r.map_err(Some));
    drop(scratch);
    match pushed {
        Ok(p) => {
            let at = format!("{}/{}@{}", reference.registry, reference.repository, p.digest);
            match args.output {
                Format::Json => println!(
                    "{:#}",
                    json!({
                        "reference": args.reference,
                        "digest": p.digest,
                        "pinned": at,
                        "files": p.files,
                        "layer": {"digest": p.layer.digest, "size": p.layer.size, "uncompressedSize": p.layer.uncompressed, "diffId": p.layer.diff_id, "tocDigest": p.layer.toc},
                        "uploaded": p.uploaded,
                        "mounted": p.mounted,
                    })
                ),
                Format::Text => println!("{at}"),
            }
            ExitCode::SUCCESS
        }
        Err(None) => {
            eprintln!("error: gave up after {limit:?} (--timeout)");
            ExitCode::from(exit_code(Reason::Timeout))
        }
        Err(Some(e)) => {
            eprintln!("error: {e}");
            let reason = Reason::from(&e);
            if args.output == Format::Json {
                super::output::error_json(reason, &e);
            }
            ExitCode::from(exit_code(reason))
        }
    }
}
