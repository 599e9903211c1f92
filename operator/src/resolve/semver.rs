//! Which tag a semver range picks. Pure.
//!
//! Ranges are written as Flux and Helm write them (Masterminds syntax):
//! comparators separated by spaces or commas, alternatives by `||`, hyphen
//! ranges (`1.2 - 1.4`), `~`, `^`, wildcards. Tags may carry a leading `v`.
//! Pre-releases match only a range that names a pre-release of the same
//! version, as in Cargo and Masterminds.

use semver::{Version, VersionReq};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid semver range {range:?}: {message}")]
pub(crate) struct RangeError {
    pub(crate) range: String,
    pub(crate) message: String,
}

/// A parsed range: any one of the alternatives matches.
#[derive(Debug, Clone)]
pub(crate) struct Range(Vec<VersionReq>);

impl Range {
    pub(crate) fn parse(range: &str) -> Result<Self, RangeError> {
        let err = |message: String| RangeError { range: range.to_string(), message };
        let mut alternatives = Vec::new();
        for alt in range.split("||") {
            let req = to_cargo_syntax(alt.trim()).map_err(err)?;
            alternatives.push(VersionReq::parse(&req).map_err(|e| err(e.to_string()))?);
        }
        Ok(Range(alternatives))
    }

    pub(crate) fn matches(&self, v: &Version) -> bool {
        self.0.iter().any(|r| r.matches(v))
    }
}

/// A tag as a version: `1.2.3`, `v1.2.3`, `1.2.3-rc.1`. Tags with fewer
/// parts (`1.2`) or anything else (`latest`, `sha256-….sig`) are not versions.
pub(crate) fn tag_version(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The tag with the highest version in the range. When two tags are the
/// same version (`1.0.0` and `v1.0.0`), the one without `v` wins, so the
/// choice does not depend on listing order.
pub(crate) fn highest<'a>(tags: impl IntoIterator<Item = &'a str>, range: &Range) -> Option<(&'a str, Version)> {
    tags.into_iter()
        .filter_map(|t| tag_version(t).map(|v| (t, v)))
        .filter(|(_, v)| range.matches(v))
        .max_by(|(ta, va), (tb, vb)| va.cmp(vb).then_with(|| tb.len().cmp(&ta.len())).then_with(|| tb.cmp(ta)))
}

/// Masterminds → Cargo: commas between comparators, hyphen ranges spelled
/// out, `v` prefixes dropped, `x` wildcards as `*`.
fn to_cargo_syntax(alt: &str) -> Result<String, String> {
    if alt.is_empty() || alt == "*" {
        return Ok("*".into());
    }
    let words: Vec<&str> = alt.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    if let [lo, "-", hi] = words.as_slice() {
        return Ok(format!(">={}, <={}", clean(lo), clean(hi)));
    }
    let mut out: Vec<String> = Vec::new();
    let mut pending_op: Option<&str> = None;
    for w in words {
        // `>= 1.2` is written with a space in some ranges
        if matches!(w, ">" | ">=" | "<" | "<=" | "=" | "~" | "^" | "!=") {
            pending_op = Some(w);
            continue;
        }
        let w = match pending_op.take() {
            Some(op) => format!("{op}{w}"),
            None => w.to_string(),
        };
        if w.starts_with("!=") {
            return Err("`!=` is not supported; exclude with a narrower range".into());
        }
        out.push(clean(&w));
    }
    if pending_op.is_some() {
        return Err("an operator without a version".into());
    }
    Ok(out.join(", "))
}

fn clean(comparator: &str) -> String {
    let split = comparator.find(|c: char| c.is_ascii_alphanumeric() || c == '*').unwrap_or(comparator.len());
    let (op, version) = comparator.split_at(split);
    let version = version.strip_prefix('v').unwrap_or(version);
    // only whole components are wildcards: `1.x`, not the x in `1.0.0-xyz`
    let (core, pre) = version.split_once('-').map_or((version, None), |(c, p)| (c, Some(p)));
    let core: Vec<&str> = core.split('.').map(|c| if c == "x" || c == "X" { "*" } else { c }).collect();
    match pre {
        Some(p) => format!("{op}{}-{p}", core.join(".")),
        None => format!("{op}{}", core.join(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAGS: &[&str] =
        &["latest", "1.0.0", "v1.1.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "2.0.0", "v2.1.0-beta", "sha256-abc.sig", "1.9"];

    fn pick(range: &str) -> Option<&'static str> {
        highest(TAGS.iter().copied(), &Range::parse(range).unwrap()).map(|(t, _)| t)
    }

    #[test]
    fn highest_matching_tag_wins() {
        assert_eq!(pick(">=1.0.0 <2.0.0"), Some("1.2.5"));
        assert_eq!(pick(">=1.0.0, <2"), Some("1.2.5"));
        assert_eq!(pick("~1.1"), Some("v1.1.0"));
        assert_eq!(pick("^1"), Some("1.2.5"));
        assert_eq!(pick("1.x"), Some("1.2.5"));
        assert_eq!(pick("*"), Some("2.0.0"), "pre-releases and non-versions are ignored");
        assert_eq!(pick("1.0 - 1.2.0"), Some("1.2.0"));
        assert_eq!(pick(">= 2.0.0"), Some("2.0.0"));
        assert_eq!(pick("<1 || >=2"), Some("2.0.0"));
        assert_eq!(pick(">=3"), None);
    }

    #[test]
    fn prereleases_only_when_asked() {
        assert_eq!(pick(">=1.3.0-rc.0 <1.4"), Some("1.3.0-rc.1"));
        assert_eq!(pick(">=2.1.0-alpha"), Some("v2.1.0-beta"));
        assert_eq!(pick(">=2.1.0-xa"), None, "an x inside a pre-release is not a wildcard");
    }

    #[test]
    fn ties_do_not_depend_on_order() {
        let r = Range::parse("*").unwrap();
        assert_eq!(highest(["v1.0.0", "1.0.0"], &r).unwrap().0, "1.0.0");
        assert_eq!(highest(["1.0.0", "v1.0.0"], &r).unwrap().0, "1.0.0");
    }

    #[test]
    fn bad_ranges_say_why() {
        assert!(Range::parse(">=").unwrap_err().message.contains("operator"));
        assert!(Range::parse("!=1.0.0").is_err());
        assert!(Range::parse("banana").is_err());
        assert_eq!(tag_version("sha256-0123.sig"), None);
        assert_eq!(tag_version("v1.2.3").unwrap(), Version::new(1, 2, 3));
    }
}
