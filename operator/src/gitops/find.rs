//! Finding Artifact documents: YAML files under the given paths, split into
//! documents, each read twice: as an `Artifact` (what the cluster would
//! get) and for where its `spec.ref` scalars are in the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::api::Artifact;

/// Files looked at, at most, and how large one may be.
pub(crate) const MAX_FILES: usize = 10_000;
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;
/// Directory levels walked at most.
const MAX_DEPTH: usize = 32;

/// One Artifact document of a file.
#[derive(Debug)]
pub(crate) struct Found {
    /// 1-based, for messages.
    pub(crate) line: usize,
    pub(crate) artifact: Artifact,
    /// Byte ranges in the file of the `spec.ref` scalars there are.
    pub(crate) digest: Option<(usize, usize)>,
    pub(crate) follow: Option<(usize, usize)>,
}

/// The YAML files under `paths` (files as given; directories walked in
/// name order, hidden entries and symlinks skipped), bounded.
pub(crate) fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_dir() {
            walk(p, 0, &mut out)?;
        } else {
            out.push(p.clone());
        }
        if out.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} YAML files"));
        }
    }
    Ok(out)
}

/// Every YAML file under `paths` with its text, bounded in number and size,
/// and the Secrets, ConfigMaps, Namespaces and cluster policies among them.
pub(crate) fn read_tree(paths: &[PathBuf]) -> Result<(Vec<(PathBuf, String)>, super::Objects), String> {
    let mut texts = Vec::new();
    let mut objects = super::Objects::default();
    for f in yaml_files(paths)? {
        let len = std::fs::metadata(&f).map_err(|e| format!("{}: {e}", f.display()))?.len();
        if len > MAX_FILE_BYTES {
            return Err(format!("{}: larger than {MAX_FILE_BYTES} bytes", f.display()));
        }
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        objects.read(&text);
        texts.push((f, text));
    }
    Ok((texts, objects))
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{}: deeper than {MAX_DEPTH} levels", dir.display()));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_dir() {
            walk(&p, depth + 1, out)?;
        } else if t.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
            if out.len() > MAX_FILES {
                return Err(format!("more than {MAX_FILES} YAML files"));
            }
        }
    }
    Ok(())
}

/// A file's documents as (byte offset, text): split at `---` lines (and
/// ended by `...` lines), as YAML's document markers stand at column 0.
pub(crate) fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = |m: &str| bare == m || bare.starts_with(&format!("{m} ")) || bare.starts_with(&format!("{m}\t"));
        if marker("---") || marker("...") {
            out.push((start, &text[start..at]));
            start = at + line.len();
        }
        at += line.len();
    }
    out.push((start, &text[start..]));
    out.retain(|(_, d)| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    out
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Spans {
    spec: Option<SpanSpec>,
}

#[derive(Deserialize)]
struct SpanSpec {
    #[serde(rename = "ref")]
    reference: Option<SpanRef>,
}

#[derive(Deserialize)]
struct SpanRef {
    tag: Option<Spanned<String>>,
    semver: Option<Spanned<String>>,
    digest: Option<Spanned<String>>,
}

/// The documents of one file's text that say they are Artifacts, with
/// their first lines, whether or not they read as one.
pub(crate) fn artifact_documents(text: &str) -> Vec<(usize, &str)> {
    documents(text)
        .into_iter()
        .filter(|(_, doc)| is_artifact(doc))
        .map(|(offset, doc)| (text[..offset].matches('\n').count() + 1, doc))
        .collect()
}

/// Does the document say it is an ocisync Artifact (whatever else it says)?
fn is_artifact(doc: &str) -> bool {
    serde_saphyr::from_str::<Head>(doc).is_ok_and(|h| {
        h.kind.as_deref() == Some("Artifact") && h.api_version.as_deref().is_some_and(|v| v.starts_with("ocisync.dev/"))
    })
}

/// The Artifact documents of one file's text; other kinds are left alone.
/// A document that says it is an Artifact but does not read as one is an
/// error (the cluster would refuse it too).
pub(crate) fn find_in(text: &str) -> Result<Vec<Found>, String> {
    let mut out = Vec::new();
    for (offset, doc) in documents(text) {
        let line = text[..offset].matches('\n').count() + 1;
        if !is_artifact(doc) {
            continue;
        }
        let artifact: Artifact =
            serde_saphyr::from_str(doc).map_err(|e| format!("the Artifact at line {line}: {e}"))?;
        let spans: Spans = serde_saphyr::from_str(doc).map_err(|e| format!("the Artifact at line {line}: {e}"))?;
        let r = spans.spec.and_then(|s| s.reference);
        let locate = |s: &Option<Spanned<String>>| {
            s.as_ref().and_then(|s| scalar(doc, s)).map(|(a, b)| (a + offset, b + offset))
        };
        let (digest, follow) = match &r {
            Some(r) => (locate(&r.digest), locate(&r.tag).or_else(|| locate(&r.semver))),
            None => (None, None),
        };
        if r.as_ref().is_some_and(|r| r.digest.is_some()) && digest.is_none() {
            return Err(format!("the Artifact at line {line}: cannot find where its spec.ref.digest is written"));
        }
        out.push(Found { line, artifact, digest, follow });
    }
    Ok(out)
}

/// Where a scalar's value is written in `doc`: its text, found from the
/// node's start (past a quote), on the node's line. `None` when the source
/// does not hold the value verbatim (escapes, a folded scalar).
fn scalar(doc: &str, s: &Spanned<String>) -> Option<(usize, usize)> {
    let span = s.referenced.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let rest = doc.get(start..)?;
    let line_end = rest.find('\n').unwrap_or(rest.len());
    let at = rest[..line_end].find(s.value.as_str())?;
    (!s.value.is_empty()).then_some((start + at, start + at + s.value.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_their_markers() {
        let text = "# a comment\n---\na: 1\n--- # b\nb: 2\n...\n---\nc: |\n  ---\n  inside\n";
        let docs: Vec<&str> = documents(text).into_iter().map(|(_, d)| d).collect();
        assert_eq!(docs, ["a: 1\n", "b: 2\n", "c: |\n  ---\n  inside\n"]);
        assert_eq!(documents("x: 1").len(), 1);
    }

    #[test]
    fn artifacts_and_where_their_refs_are() {
        let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
data: {tag: v9}
---
# the app's config
apiVersion: ocisync.dev/v1alpha1
kind: Artifact
metadata:
  name: app
spec:
  url: oci://r.io/team/app
  ref:
    tag: \"v1\"   # follows v1
    digest: 'sha256:aaaa'
---
apiVersion: ocisync.dev/v1alpha1
kind: Artifact
metadata: {name: flow, namespace: ns}
spec: {url: oci://r.io/x, ref: {semver: '>=1.0'}}
";
        let found = find_in(text).unwrap();
        assert_eq!(found.len(), 2);
        let (a, b) = (&found[0], &found[1]);
        assert_eq!(a.line, 6);
        assert_eq!(a.artifact.spec.url, "oci://r.io/team/app");
        let (s, e) = a.digest.unwrap();
        assert_eq!(&text[s..e], "sha256:aaaa");
        let (s, e) = a.follow.unwrap();
        assert_eq!(&text[s..e], "v1");
        assert_eq!(b.digest, None);
        let (s, e) = b.follow.unwrap();
        assert_eq!(&text[s..e], ">=1.0");
        let bad = "apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {name: x}\nspec: [1]\n";
        assert!(find_in(bad).is_err(), "an Artifact that does not read as one");
    }
}
