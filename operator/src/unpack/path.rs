//! Turning an archive's entry name into a path inside the output, or a
//! refusal. Pure and lexical: what the filesystem does with links is checked
//! separately (see `tree`).

/// Why an entry's path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("absolute path")]
    Absolute,
    #[error("`..` component")]
    ParentDir,
    #[error("empty path")]
    Empty,
    #[error("NUL or backslash in path")]
    BadChar,
    #[error("name is not UTF-8")]
    NotUtf8,
    #[error("longer than {MAX_PATH_BYTES} bytes, or a component longer than {MAX_NAME_BYTES}")]
    TooLong,
}

/// The longest path, and path component, accepted (Linux's PATH_MAX and
/// NAME_MAX): longer ones could never be written, so they are refused as
/// content, not failed on as I/O.
pub(crate) const MAX_PATH_BYTES: usize = 4096;
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// A normalised relative path: `/`-separated, no `.`, `..`, or empty
/// components. `None` for the archive root itself (`.` or `./`).
pub(crate) fn sanitize(raw: &[u8]) -> Result<Option<String>, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let s = std::str::from_utf8(raw).map_err(|_| PathError::NotUtf8)?;
    if s.is_empty() {
        return Err(PathError::Empty);
    }
    if s.starts_with('/') {
        return Err(PathError::Absolute);
    }
    // A backslash is a separator on Windows and an escape trick elsewhere.
    if s.contains('\0') || s.contains('\\') {
        return Err(PathError::BadChar);
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(PathError::ParentDir),
            c if c.len() > MAX_NAME_BYTES => return Err(PathError::TooLong),
            c => parts.push(c),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(parts.join("/")) })
}

/// Where a relative symlink target lands, as a path from the root, or
/// `None` when it climbs out. `link` is the sanitised path of the link.
pub(crate) fn resolve_link_target(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.is_empty() || target.contains('\0') {
        return None;
    }
    let mut stack: Vec<&str> = link.split('/').collect();
    stack.pop(); // the link's own name
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                stack.pop()?;
            }
            c => stack.push(c),
        }
    }
    Some(stack.join("/"))
}

/// Parent directories of a path, outermost first: `a/b/c` → `a`, `a/b`.
pub(crate) fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        let ok = |s: &str| sanitize(s.as_bytes()).unwrap();
        assert_eq!(ok("./a//b/./c"), Some("a/b/c".into()));
        assert_eq!(ok("dir/"), Some("dir".into()));
        assert_eq!(ok("./"), None);
        assert_eq!(ok("a..b/..c"), Some("a..b/..c".into()), "dots inside names are fine");
        assert_eq!(sanitize(b"/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(sanitize(b"../x"), Err(PathError::ParentDir));
        assert_eq!(sanitize(b"a/../../x"), Err(PathError::ParentDir));
        assert_eq!(sanitize(b"a/.."), Err(PathError::ParentDir), "even when it stays inside");
        assert_eq!(sanitize(b"a\\..\\x"), Err(PathError::BadChar));
        assert_eq!(sanitize(b""), Err(PathError::Empty));
        assert_eq!(sanitize(b"\xff"), Err(PathError::NotUtf8));
        let name = |n: usize| "n".repeat(n);
        assert!(sanitize(format!("a/{}", name(255)).as_bytes()).is_ok());
        assert_eq!(sanitize(format!("a/{}", name(256)).as_bytes()), Err(PathError::TooLong));
        let deep = vec![name(200); 21].join("/");
        assert_eq!(sanitize(deep.as_bytes()), Err(PathError::TooLong), "{} bytes", deep.len());
    }

    #[test]
    fn link_targets() {
        assert_eq!(resolve_link_target("a/b/link", "../c"), Some("a/c".into()));
        assert_eq!(resolve_link_target("link", "x/./y"), Some("x/y".into()));
        assert_eq!(resolve_link_target("link", "."), Some("".into()));
        assert_eq!(resolve_link_target("link", ".."), None);
        assert_eq!(resolve_link_target("a/link", "../../etc"), None);
        assert_eq!(resolve_link_target("link", "/"), None);
        assert_eq!(resolve_link_target("link", "/etc/passwd"), None);
    }

    #[test]
    fn parent_dirs() {
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(parents("a").count(), 0);
    }
}
