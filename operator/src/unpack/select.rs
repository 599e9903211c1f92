//! Which files and layers a user asked for. Pure.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Include/exclude globs over file paths, and an optional allow-list of layer
/// media types. `*` stays within one path component, `**` crosses them.
/// No include means everything; an exclude always wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selection {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    media_types: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid glob {pattern:?}: {message}")]
pub(crate) struct GlobError {
    pub(crate) pattern: String,
    pub(crate) message: String,
}

impl Selection {
    pub(crate) fn new<S: AsRef<str>>(include: &[S], exclude: &[S], media_types: &[S]) -> Result<Self, GlobError> {
        Ok(Selection {
            include: build(include)?,
            exclude: build(exclude)?,
            media_types: media_types.iter().map(|m| m.as_ref().to_string()).collect(),
        })
    }

    pub(crate) fn all() -> Self {
        Selection::default()
    }

    pub(crate) fn wants_path(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(path))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(path))
    }

    pub(crate) fn wants_layer(&self, media_type: &str) -> bool {
        self.media_types.is_empty() || self.media_types.iter().any(|m| m == media_type)
    }
}

fn build<S: AsRef<str>>(patterns: &[S]) -> Result<Option<GlobSet>, GlobError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let p = p.as_ref();
        // Paths are stored without a leading "./" or "/"; accept patterns
        // written either way.
        let pat = p.trim_start_matches("./").trim_start_matches('/');
        let glob: Glob = GlobBuilder::new(pat)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| GlobError { pattern: p.to_string(), message: e.kind().to_string() })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| GlobError {
        pattern: patterns.iter().map(|p| p.as_ref()).collect::<Vec<_>>().join(","),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_does_not_cross_slash_but_double_star_does() {
        let s = Selection::new(&["*.yaml", "conf/**"], &[], &[]).unwrap();
        assert!(s.wants_path("a.yaml"));
        assert!(!s.wants_path("dir/a.yaml"));
        assert!(s.wants_path("conf/x/y/z.txt"));
        assert!(!s.wants_path("other/z.txt"));
        let deep = Selection::new(&["**/*.yaml"], &[], &[]).unwrap();
        assert!(deep.wants_path("a.yaml") && deep.wants_path("x/y/a.yaml"));
    }

    #[test]
    fn exclude_wins_and_no_include_means_all() {
        let s = Selection::new(&[], &["**/*.md", "secret*"], &[]).unwrap();
        assert!(s.wants_path("app.yaml"));
        assert!(!s.wants_path("docs/README.md"));
        assert!(!s.wants_path("secret.txt"));
        assert!(s.wants_path("dir/secret.txt"), "* patterns anchor at the root");
        let both = Selection::new(&["./conf/*"], &["conf/*.bak"], &[]).unwrap();
        assert!(both.wants_path("conf/a") && !both.wants_path("conf/a.bak"));
    }

    #[test]
    fn media_types_and_errors() {
        let s = Selection::new::<&str>(&[], &[], &["application/x-a"]).unwrap();
        assert!(s.wants_layer("application/x-a") && !s.wants_layer("application/x-b"));
        assert!(Selection::all().wants_layer("anything"));
        let err = Selection::new(&["a[b"], &[], &[]).unwrap_err();
        assert!(err.to_string().contains("a[b"), "{err}");
    }
}
