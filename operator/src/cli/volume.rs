//! `ocisync pull --volume`: the output directory as a volume, in the
//! layout the operator's volume target and the agent write (see
//! `publish::volume`).

use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{Format, output, parse_duration};
use crate::pipeline::Placed;
use crate::publish::volume::{Modes, Volume};

#[derive(Args, Debug)]
pub(super) struct VolumeArgs {
    /// Revisions to keep.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=100))]
    keep: u16,
    /// How long a replaced revision stays for readers.
    #[arg(long, default_value = "5m", value_parser = grace)]
    grace: Duration,
    /// Mode of the files written, octal; directories 0755.
    #[arg(long, default_value = "0644", value_parser = mode)]
    file_mode: u32,
}

pub(super) fn owner(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').ok_or_else(|| format!("{s:?} is not UID:GID"))?;
    match (u.parse(), g.parse()) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(format!("{s:?} is not UID:GID")),
    }
}

pub(super) fn grace(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Some(d) if d <= Duration::from_secs(7 * 24 * 3600) => Ok(d),
        Some(_) => Err("at most 168h".into()),
        None => Err(format!("{s:?} is not a duration like 30s or 5m")),
    }
}

fn mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not a file mode like 0644")),
    }
}

impl VolumeArgs {
    pub(super) fn volume(&self, out: &Path) -> Volume {
        Volume {
            keep: usize::from(self.keep),
            grace: self.grace,
            modes: Modes { file: self.file_mode, ..Modes::default() },
            ..Volume::new(out.to_path_buf())
        }
    }
}

/// What is in a revision: the digest and everything that selects from it.
pub(super) fn content_key(digest: &str, selection: &[&[String]], platform: &str) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&(digest, selection, platform)).unwrap_or_default());
    format!("{digest} {}", &hex::encode(h.finalize())[..16])
}

pub(super) fn placed(format: Format, placed: &Placed, out: &Path) {
    let (how, revision) = match placed {
        Placed::Current(r) => ("current", r),
        Placed::Restored(r) => ("restored", r),
        Placed::Published(r, _) => ("published", r),
    };
    match format {
        Format::Json => {
            let mut doc = json!({"volume": out.display().to_string(), "revision": revision.name, "digest": revision.marker.digest, "placed": how});
            // what a publish cost, in the words of `pull --output json`
            if let Placed::Published(_, pulled) = placed {
                let r = &pulled.report;
                doc["layers"] = json!(r.layers);
                doc["registryBytes"] = json!(r.registry_bytes);
                doc["filesFromRegistry"] = json!(r.files_from_registry());
                doc["filesReused"] = json!(r.reused().0);
                doc["bytesReused"] = json!(r.reused().1);
            }
            println!("{doc:#}");
        }
        Format::Text => {
            if let Placed::Published(_, pulled) = placed {
                output::pulled(format, pulled, &out.join("..data"));
            }
            let what = match how {
                "current" => "already current, nothing downloaded",
                "restored" => "a kept revision held it, nothing downloaded",
                _ => "published",
            };
            println!("{} {} ({what})", out.join("..data").display(), revision.name);
        }
    }
}
