//! An Artifact's spec, checked and turned into what a reconcile needs. Pure:
//! a spec that cannot work is refused here, before any request is made.

use std::time::Duration;

use crate::api::ArtifactSpec;
pub(crate) use crate::api::duration::parse as parse_duration;
use crate::oci::{Digest, Platform, Reference};
use crate::publish::{Target, configmap, volume};
use crate::resolve::Version;
use crate::resolve::semver::Range;
use crate::unpack::limits::parse_size;
use crate::unpack::{Limits, Selection};

pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bounds on what a spec may ask for: a week between polls, an hour for one
/// sync (the operator's `--max-timeout` may cut that shorter).
const MAX_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Registry and repository, no tag or digest.
    pub(crate) repository: Reference,
    pub(crate) follow: Option<Version>,
    pub(crate) pin: Option<Digest>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) platform: Platform,
    pub(crate) insecure: bool,
    pub(crate) selection: Selection,
    /// The spec's limits, the selected files' bytes bounded by what the
    /// target can hold.
    pub(crate) limits: Limits,
    pub(crate) target: Target,
    /// `spec.mirrors`: where (and whether over plain HTTP) content by digest
    /// may come from first.
    pub(crate) mirrors: Vec<(Reference, bool)>,
    /// `spec.partial`; `None`: the operator's default.
    pub(crate) partial: Option<crate::api::Partial>,
}

/// More would only make a missing blob slower to find at the origin.
const MAX_MIRRORS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub(crate) struct SpecError {
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

fn bad(field: &'static str, message: impl ToString) -> SpecError {
    SpecError { field, message: message.to_string() }
}

impl Plan {
    pub(crate) fn new(name: &str, spec: &ArtifactSpec) -> Result<Plan, SpecError> {
        let repository = Reference::parse(&spec.url).map_err(|e| bad("url", e))?;
        if repository.tag.is_some() || repository.digest.is_some() {
            return Err(bad("url", "names the repository only; put a tag or digest in spec.ref"));
        }
        let r = spec.reference.clone().unwrap_or_default();
        if r.tag.is_some() && r.semver.is_some() {
            return Err(bad("ref", "give a tag or a semver range, not both"));
        }
        let pin = r.digest.as_deref().map(Digest::parse).transpose().map_err(|e| bad("ref.digest", e))?;
        let follow = match (r.tag, r.semver) {
            (Some(t), _) => {
                Reference::parse(&format!("{}:{t}", spec.url)).map_err(|e| bad("ref.tag", e))?;
                Some(Version::Tag(t))
            }
            (None, Some(s)) => {
                Some(Version::Semver { range: Range::parse(&s).map_err(|e| bad("ref.semver", e))?, text: s })
            }
            (None, None) if pin.is_none() => Some(Version::Tag("latest".into())),
            (None, None) => None,
        };
        let select = spec.select.clone().unwrap_or_default();
        let selection =
            Selection::new(&select.include, &select.exclude, &select.media_types).map_err(|e| bad("select", e))?;
        let defaults = Limits::default();
        let l = spec.limits.clone().unwrap_or_default();
        let size = |field, v: &Option<String>, d| v.as_deref().map_or(Ok(d), parse_size).map_err(|e| bad(field, e));
        let mut limits = Limits {
            max_layer_bytes: size("limits.maxLayerBytes", &l.max_layer_bytes, defaults.max_layer_bytes)?,
            max_total_bytes: size("limits.maxTotalBytes", &l.max_total_bytes, defaults.max_total_bytes)?,
            max_files: l.max_files.unwrap_or(defaults.max_files),
            max_selected_bytes: u64::MAX,
        };
        let target = match (&spec.target.config_map, &spec.target.volume) {
            (Some(_), Some(_)) => return Err(bad("target", "give configMap or volume, not both")),
            (_, Some(v)) => Target::Volume(volume_target(name, v, spec)?),
            (cm, None) => Target::ConfigMap(config_map_target(name, cm.clone().unwrap_or_default())?),
        };
        if spec.mirrors.len() > MAX_MIRRORS {
            return Err(bad("mirrors", format!("at most {MAX_MIRRORS}")));
        }
        let mut mirrors = Vec::new();
        for m in &spec.mirrors {
            let at = Reference::parse(&m.url).map_err(|e| bad("mirrors", e))?;
            if at.tag.is_some() || at.digest.is_some() {
                return Err(bad("mirrors", format!("{}: names the repository only", m.url)));
            }
            mirrors.push((at, m.insecure));
        }
        // What the target holds bounds the selected files; the download
        // and what it inflates to stay under the spec's limits.
        if let Some(c) = target.capacity() {
            limits.max_selected_bytes = c;
        }
        Ok(Plan {
            repository,
            follow,
            pin,
            interval: duration("interval", spec.interval.as_deref(), DEFAULT_INTERVAL, MAX_INTERVAL)?,
            timeout: duration("timeout", spec.timeout.as_deref(), DEFAULT_TIMEOUT, MAX_TIMEOUT)?,
            platform: match &spec.platform {
                Some(p) => Platform::parse(p).map_err(|e| bad("platform", e))?,
                None => Platform { os: "linux".into(), architecture: "amd64".into(), variant: None },
            },
            insecure: spec.insecure,
            selection,
            limits,
            target,
            mirrors,
            partial: spec.partial,
        })
    }
}

fn config_map_target(name: &str, cm: crate::api::ConfigMapTarget) -> Result<configmap::Spec, SpecError> {
    if let Some(n) = &cm.name {
        dns_subdomain(n).map_err(|m| bad("target.configMap.name", m))?;
    }
    for (k, v) in &cm.labels {
        label_key(k).map_err(|m| bad("target.configMap.labels", m))?;
        label_value(v).map_err(|m| bad("target.configMap.labels", format!("value of {k:?}: {m}")))?;
    }
    for k in cm.annotations.keys() {
        label_key(k).map_err(|m| bad("target.configMap.annotations", m))?;
    }
    let annotation_bytes: usize = cm.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if annotation_bytes > 64 * 1024 {
        return Err(bad("target.configMap.annotations", "more than 64 KiB in all"));
    }
    Ok(configmap::Spec {
        name: cm.name.unwrap_or_else(|| name.to_string()),
        artifact: name.to_string(),
        keys: cm.keys,
        labels: cm.labels,
        annotations: cm.annotations,
    })
}

fn volume_target(
    name: &str,
    v: &crate::api::VolumeTarget,
    spec: &ArtifactSpec,
) -> Result<volume::target::Spec, SpecError> {
    let path = v.path.clone().unwrap_or_else(|| name.to_string());
    volume::target::check_path(&path).map_err(|m| bad("target.volume.path", m))?;
    let file_mode = match v.file_mode.as_deref() {
        None => 0o644,
        Some(m) => match u32::from_str_radix(m, 8) {
            Ok(m) if m <= 0o777 => m,
            _ => return Err(bad("target.volume.fileMode", format!("{m:?} is not a mode like 0644"))),
        },
    };
    // The same digest selected otherwise, or for another platform, is
    // other content.
    let selection = serde_json::to_vec(&(&spec.select, &spec.platform)).unwrap_or_default();
    let selection = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&selection));
    Ok(volume::target::Spec { path, file_mode, selection: selection[..16].to_string() })
}

fn duration(field: &'static str, v: Option<&str>, default: Duration, max: Duration) -> Result<Duration, SpecError> {
    let Some(v) = v else { return Ok(default) };
    let d = parse_duration(v).ok_or_else(|| bad(field, format!("{v:?} is not a duration like 30s, 5m or 1h30m")))?;
    if d < Duration::from_secs(1) {
        return Err(bad(field, "must be at least 1s"));
    }
    if d > max {
        return Err(bad(field, format!("must be at most {}h", max.as_secs() / 3600)));
    }
    Ok(d)
}

/// A DNS-1123 subdomain, as the API server wants object names.
fn dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok { Ok(()) } else { Err(format!("{s:?} is not a valid name (lower-case letters, digits, `-` and `.`)")) }
}

/// `[prefix/]name`, as Kubernetes takes label and annotation keys.
fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        dns_subdomain(p).map_err(|_| format!("{k:?}: the prefix is not a DNS subdomain"))?;
    }
    label_value(name).map_err(|m| format!("{k:?}: {m}"))?;
    if name.is_empty() {
        return Err(format!("{k:?}: the name is empty"));
    }
    Ok(())
}

/// At most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn label_value(v: &str) -> Result<(), String> {
    let inner = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let b = v.as_bytes();
    let ok = v.len() <= 63
        && b.iter().all(|&c| inner(c))
        && b.first().is_none_or(|c| c.is_ascii_alphanumeric())
        && b.last().is_none_or(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("at most 63 letters, digits, `-`, `_` and `.`, starting and ending alphanumeric".into())
    }
}

/// The interval, stretched by up to 10 % so that Artifacts created together
/// do not poll together. `seed` spreads them (a hash of the object's uid).
pub(crate) fn jittered(interval: Duration, seed: u64) -> Duration {
    let tenth = u64::try_from(interval.as_millis() / 10).unwrap_or(u64::MAX);
    if tenth == 0 {
        return interval;
    }
    interval.saturating_add(Duration::from_millis(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) % tenth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::KeyStyle;
    use serde_json::json;

    fn plan(spec: serde_json::Value) -> Result<Plan, SpecError> {
        Plan::new("app", &serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn defaults() {
        let p = plan(json!({"url": "oci://r.io/team/app"})).unwrap();
        assert!(matches!(p.follow, Some(Version::Tag(ref t)) if t == "latest"));
        assert_eq!((p.interval, p.timeout), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT));
        assert_eq!(p.platform.to_string(), "linux/amd64");
        let Target::ConfigMap(cm) = &p.target else { panic!("{:?}", p.target) };
        assert_eq!((cm.name.as_str(), cm.keys), ("app", KeyStyle::Path));
    }

    #[test]
    fn a_volume_target_is_confined_and_unclamped() {
        let p = plan(json!({"url": "oci://r.io/app", "target": {"volume": {"path": "team/app", "fileMode": "0640"}}}));
        let p = p.unwrap();
        let Target::Volume(v) = &p.target else { panic!("{:?}", p.target) };
        assert_eq!((v.path.as_str(), v.file_mode), ("team/app", 0o640));
        assert_eq!(p.limits.max_selected_bytes, u64::MAX, "a volume holds more than a ConfigMap");
        let default = plan(json!({"url": "oci://r.io/app", "target": {"volume": {}}})).unwrap();
        let Target::Volume(d) = &default.target else { panic!() };
        assert_eq!(d.path, "app", "the Artifact's name");
        let other = plan(json!({"url": "oci://r.io/app", "select": {"include": ["*.yaml"]}, "target": {"volume": {}}}));
        let Target::Volume(o) = &other.unwrap().target else { panic!() };
        assert_ne!(o.content("sha256:a"), d.content("sha256:a"), "another selection is other content");
        let field = |spec| plan(spec).unwrap_err().field;
        assert_eq!(field(json!({"url": "oci://r.io/a", "target": {"volume": {"path": "../x"}}})), "target.volume.path");
        assert_eq!(field(json!({"url": "oci://r.io/a", "target": {"volume": {"path": "/etc"}}})), "target.volume.path");
        assert_eq!(
            field(json!({"url": "oci://r.io/a", "target": {"volume": {"fileMode": "4755"}}})),
            "target.volume.fileMode"
        );
        assert_eq!(field(json!({"url": "oci://r.io/a", "target": {"volume": {}, "configMap": {}}})), "target");
    }

    #[test]
    fn a_config_map_target_bounds_the_selected_files_not_the_layers() {
        let p = plan(json!({"url": "oci://r.io/app"})).unwrap();
        assert_eq!(p.limits.max_selected_bytes, configmap::MAX_CONFIGMAP_BYTES);
        assert_eq!(p.limits.max_total_bytes, Limits::default().max_total_bytes, "a large layer may hold them");
        let p = plan(json!({"url": "oci://r.io/app", "limits": {"maxTotalBytes": "64KiB"}})).unwrap();
        assert_eq!(p.limits.max_total_bytes, 64 * 1024, "the user's limit stands");
        let p = plan(json!({"url": "oci://r.io/app", "target": {"volume": {}}})).unwrap();
        assert_eq!(p.limits.max_selected_bytes, u64::MAX);
    }

    #[test]
    fn a_pin_alone_follows_nothing_and_with_a_tag_watches_it() {
        let d = format!("sha256:{}", "a".repeat(64));
        let p = plan(json!({"url": "oci://r.io/app", "ref": {"digest": d}})).unwrap();
        assert!(p.follow.is_none() && p.pin.is_some());
        let p = plan(json!({"url": "oci://r.io/app", "ref": {"digest": d, "tag": "v1"}})).unwrap();
        assert!(matches!(p.follow, Some(Version::Tag(_))) && p.pin.is_some());
    }

    #[test]
    fn bad_specs_name_the_field() {
        let field = |spec| plan(spec).unwrap_err().field;
        assert_eq!(field(json!({"url": "r.io/app:v1"})), "url");
        assert_eq!(field(json!({"url": "nohost"})), "url");
        assert_eq!(field(json!({"url": "oci://r.io/app", "ref": {"tag": "v1", "semver": "^1"}})), "ref");
        assert_eq!(field(json!({"url": "oci://r.io/app", "ref": {"digest": "sha256:12"}})), "ref.digest");
        assert_eq!(field(json!({"url": "oci://r.io/app", "ref": {"semver": "!!"}})), "ref.semver");
        assert_eq!(field(json!({"url": "oci://r.io/app", "ref": {"tag": "-x"}})), "ref.tag");
        assert_eq!(field(json!({"url": "oci://r.io/app", "interval": "5 minutes"})), "interval");
        assert_eq!(field(json!({"url": "oci://r.io/app", "interval": "10ms"})), "interval");
        assert_eq!(field(json!({"url": "oci://r.io/app", "select": {"include": ["a["]}})), "select");
        assert_eq!(
            field(json!({"url": "oci://r.io/app", "limits": {"maxTotalBytes": "lots"}})),
            "limits.maxTotalBytes"
        );
        assert_eq!(field(json!({"url": "oci://r.io/app", "platform": "linux"})), "platform");
        // absurd numbers are refused, never overflowed
        assert_eq!(field(json!({"url": "oci://r.io/app", "interval": "9999999999999999999h"})), "interval");
        assert_eq!(
            field(json!({"url": "oci://r.io/app", "interval": "5000000000000000h5000000000000000h"})),
            "interval"
        );
        assert_eq!(field(json!({"url": "oci://r.io/app", "interval": "200h"})), "interval");
        assert_eq!(field(json!({"url": "oci://r.io/app", "timeout": "2h"})), "timeout");
        let mirrors = |m: serde_json::Value| field(json!({"url": "oci://r.io/app", "mirrors": m}));
        assert_eq!(mirrors(json!([{"url": "oci://m.io/app:v1"}])), "mirrors");
        assert_eq!(mirrors(json!([{"url": "https://m.io/app"}])), "mirrors");
        assert_eq!(mirrors(json!([{"url": "oci://m.io/app@sha256:".to_string() + &"a".repeat(64)}])), "mirrors");
        assert_eq!(
            mirrors(json!((0..5).map(|i| json!({"url": format!("oci://m{i}.io/app")})).collect::<Vec<_>>())),
            "mirrors"
        );
        let ok = plan(json!({"url": "oci://r.io/app", "mirrors": [{"url": "oci://m.io/cache/app", "insecure": true}]}));
        let m = &ok.unwrap().mirrors;
        assert_eq!((m[0].0.registry.as_str(), m[0].0.repository.as_str(), m[0].1), ("m.io", "cache/app", true));
        // what the API server would refuse is refused here, as a spec error
        let target = |t: serde_json::Value| field(json!({"url": "oci://r.io/app", "target": {"configMap": t}}));
        assert_eq!(target(json!({"name": "Bad_Name"})), "target.configMap.name");
        assert_eq!(target(json!({"name": "a".repeat(254)})), "target.configMap.name");
        assert_eq!(target(json!({"labels": {"team": "a b"}})), "target.configMap.labels");
        assert_eq!(target(json!({"labels": {"-x": "a"}})), "target.configMap.labels");
        assert_eq!(target(json!({"labels": {"x": "a".repeat(64)}})), "target.configMap.labels");
        assert_eq!(target(json!({"annotations": {"UPPER/x": "v"}})), "target.configMap.annotations");
        assert!(plan(json!({"url": "oci://r.io/app", "target": {"configMap": {
            "name": "app.config-1", "labels": {"example.com/team": "a_b.c", "empty": ""}, "annotations": {"note": "any text"}
        }}})).is_ok());
    }

    #[test]
    fn durations_and_jitter() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5d"), None);
        let i = Duration::from_secs(300);
        let spread: std::collections::BTreeSet<_> = (0..50u64).map(|s| jittered(i, s)).collect();
        assert!(spread.iter().all(|d| *d >= i && *d < i + Duration::from_secs(30)));
        assert!(spread.len() > 40, "seeds spread the polls");
    }
}
