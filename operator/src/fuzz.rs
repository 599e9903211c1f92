//! Entry points for `cargo fuzz` (see `fuzz/` at the repository's root):
//! each takes arbitrary bytes and must neither panic nor hang, whatever
//! they are. Public only in fuzzing builds; in tests, the crashes the
//! fuzzers found (and a seed corpus) are replayed through them.

use std::time::{Duration, SystemTime};

use crate::oci::auth::Challenge;
use crate::oci::{DockerConfig, Manifest, Reference, retry};

pub fn reference(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(r) = Reference::parse(s)
    {
        let _ = (r.to_string(), r.manifest_ref());
    }
}

pub fn manifest(data: &[u8]) {
    for ct in [None, Some("application/vnd.oci.image.index.v1+json"), Some("application/json")] {
        if let Ok(Manifest::Index(i)) = Manifest::parse(data, ct) {
            let _ = i.select(&crate::oci::Platform::current());
        }
    }
}

pub fn docker_config(data: &[u8]) {
    if let Ok(c) = DockerConfig::parse(data) {
        let _ = c.credentials_for("registry.example.com:5000");
    }
}

pub fn auth_headers(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Challenge::parse(s);
        let _ = retry::parse_retry_after(s, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }
}

/// The first byte picks the compression; the rest is a layer, unpacked
/// under small limits into a fresh directory, merged and checked.
pub fn unpack(data: &[u8]) {
    use crate::unpack::layer::{Compression, LayerKind};
    use crate::unpack::{Budget, Limits, Selection, Staging, unpack_layer};
    let Some((&first, layer)) = data.split_first() else { return };
    let compression = match first % 3 {
        0 => Compression::None,
        1 => Compression::Gzip,
        _ => Compression::Zstd,
    };
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("ocisync-fuzz-{}-{n}", std::process::id()));
    let out = base.join("out");
    if let Ok(staging) = Staging::new(&out) {
        let budget = Budget::new(Limits { max_layer_bytes: 1 << 20, max_total_bytes: 1 << 20, max_files: 1000 });
        let digest = crate::oci::Digest::of(layer);
        let kind = LayerKind::Tar(compression);
        if let Ok(report) = unpack_layer(&kind, &digest, layer, &staging.layer_dir(0), &Selection::all(), &budget)
            && staging.merge(vec![(0, report)]).is_ok()
        {
            let _ = staging.commit();
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// An Artifact spec as a tenant may write it, through to the plan.
pub fn spec(data: &[u8]) {
    if let Ok(spec) = serde_json::from_slice::<crate::api::ArtifactSpec>(data)
        && let Ok(plan) = crate::controller::plan::Plan::new("fuzz", &spec)
    {
        let _ = crate::controller::plan::jittered(plan.interval, u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    /// Every file under `fuzz/regressions/<target>/` (crashes the fuzzers
    /// found, and seeds) goes through its target again.
    #[test]
    fn regressions_replay() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 6] = [
            ("reference", super::reference),
            ("manifest", super::manifest),
            ("docker_config", super::docker_config),
            ("auth_headers", super::auth_headers),
            ("unpack", super::unpack),
            ("spec", super::spec),
        ];
        let mut replayed = 0;
        for (name, target) in targets {
            let dir = root.join(name);
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed >= 6, "every target has at least one case");
    }
}
