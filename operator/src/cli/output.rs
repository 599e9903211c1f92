//! What `ocisync` prints: a short human summary, or one JSON document.

use std::path::Path;

use serde_json::json;

use super::Format;
use crate::fetch;
use crate::pipeline::Pulled;
use crate::resolve::Pinned;
use crate::status::Reason;
use crate::unpack::Entry;
use crate::verify::{Evidence, Requirement};

/// A terminal gets the first files; all of them are in `--output json`.
const LISTED: usize = 20;

pub(super) fn pulled(format: Format, pulled: &Pulled, out: &Path) {
    let (res, report) = (&pulled.resolution, &pulled.report);
    match format {
        Format::Json => {
            let doc = json!({
                "reference": res.reference.to_string(),
                "digest": res.digest,
                "manifestDigest": res.manifest_digest,
                "platform": res.platform.as_ref().map(|p| p.to_string()),
                "output": out,
                "files": report.files,
                "bytes": report.bytes,
                "layersFetched": report.layers_fetched,
                "layersSkipped": report.layers_skipped,
                "indexedLayers": report.indexed,
                "layers": report.layers,
                "registryBytes": report.registry_bytes,
                "filesFromRegistry": report.files_from_registry(),
                "filesReused": report.reused().0,
                "bytesReused": report.reused().1,
                "sources": pulled.served,
            });
            println!("{doc:#}");
        }
        Format::Text => {
            println!("pulled   {}", res.reference);
            println!("digest   {}", res.digest);
            if let Some(p) = &res.platform {
                println!("platform {p} (manifest {})", res.manifest_digest);
            }
            println!("wrote    {} files, {} to {}", report.files.len(), human_bytes(report.bytes), out.display());
            let ranged = report.layers.iter().filter(|l| l.read == fetch::Read::Ranges).count();
            if ranged > 0 {
                println!(
                    "read     {ranged} of {} layers by range, {} from the registry",
                    report.layers.len(),
                    human_bytes(report.registry_bytes)
                );
            }
            if let (files @ 1.., bytes) = report.reused() {
                println!(
                    "reused   {files} files, {} already there; {} files from the registry",
                    human_bytes(bytes),
                    report.files_from_registry()
                );
            }
            if pulled.served.iter().any(|s| s.role == "mirror") {
                for s in &pulled.served {
                    println!(
                        "from     {} ({}): {} manifests, {} layers, {}",
                        s.url,
                        s.role,
                        s.manifests,
                        s.layers,
                        human_bytes(s.bytes)
                    );
                }
            }
            let width = report.files.iter().take(LISTED).map(|f| f.path.len()).max().unwrap_or(0);
            for f in report.files.iter().take(LISTED) {
                match &f.entry {
                    Entry::File { size, .. } => {
                        println!("  {:width$}  {}", f.path, human_bytes(*size))
                    }
                    Entry::Symlink { target } => println!("  {:width$}  -> {target}", f.path),
                }
            }
            if report.files.len() > LISTED {
                println!("  … and {} more (--output json lists all)", report.files.len() - LISTED);
            }
            if report.files.is_empty() {
                eprintln!("warning: nothing matched the selection; the output directory is empty");
            }
        }
    }
}

/// The same evidence status shows, for `ocisync verify`.
pub(super) fn verified(format: Format, pinned: &Pinned, requirements: &[Requirement], evidence: &[Evidence]) {
    let trust = crate::verify::fingerprint(requirements).unwrap_or_default();
    let status = crate::status::verification_status(&pinned.digest, &trust, evidence);
    match format {
        Format::Json => println!("{:#}", json!({ "reference": pinned.reference.to_string(), "verification": status })),
        Format::Text => {
            println!("verified {}@{}", pinned.reference, pinned.digest);
            for s in &status.signatures {
                println!("  format     {} (found by {})", s.format, s.found_by);
                println!("  signature  {}", s.signature_digest);
                if let Some(policy) = &s.trust_policy {
                    if let Some(env) = &s.envelope {
                        println!("  envelope   {env}");
                        println!("  signer     {}", s.certificate_subject.as_deref().unwrap_or(""));
                        println!("  chain      {}", s.certificate_chain.join(" "));
                        if let Some(t) = &s.signing_time {
                            println!("  signed     {} (the signer's claim)", t.0);
                        }
                    }
                    println!("  policy     {policy}");
                    for f in &s.logged_failures {
                        println!("  logged     {f}");
                    }
                    if let (Some(tsa), Some(t)) = (&s.timestamp_authority, &s.signed_timestamp) {
                        println!("  timestamp  {} by {tsa}", t.0);
                    }
                    continue;
                }
                match (&s.key, &s.certificate_subject) {
                    (Some(k), _) => println!("  key        {k} ({})", s.key_fingerprint),
                    (None, Some(subject)) => {
                        println!("  identity   {subject}");
                        println!("  issuer     {}", s.certificate_issuer.as_deref().unwrap_or(""));
                        println!("  matched    {}", s.identity.as_deref().unwrap_or(""));
                        if let Some(ca) = &s.certificate_authority {
                            println!("  CA         {ca}");
                        }
                    }
                    (None, None) => {}
                }
                if let Some(root) = &s.trusted_root {
                    println!("  root       {root}");
                }
                if let (Some(tsa), Some(t)) = (&s.timestamp_authority, &s.signed_timestamp) {
                    println!("  timestamp  {} by {tsa}", t.0);
                }
                if let Some(p) = &s.predicate_type {
                    println!("  predicate  {p}");
                }
                match (s.tlog_index, &s.integrated_time) {
                    (Some(i), Some(t)) => println!("  tlog       entry {i}, integrated {}", t.0),
                    (Some(i), None) => println!("  tlog       entry {i}"),
                    _ => println!("  tlog       no entry"),
                }
            }
        }
    }
}

pub(super) fn error_json(reason: Reason, e: &dyn std::fmt::Display) {
    println!("{:#}", json!({ "error": { "reason": reason, "message": e.to_string() } }));
}

pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
