//! Where a symlink in a fetched tree leads, worked out from the fetch
//! report alone. The tree was already checked to keep every link inside it;
//! this answers what a target with no links (a ConfigMap) should do.

use std::collections::BTreeMap;

use crate::unpack::Entry;

/// Links followed before giving up, as Linux's own limit.
const MAX_HOPS: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leads {
    /// A regular file, by its path in the tree.
    File(String),
    /// A directory (some entry lies below it).
    Directory,
    /// Nothing in the tree: not selected, or a loop.
    Nowhere,
}

/// Follow the link at `path` through `entries` (the report, by path).
pub(crate) fn follow(entries: &BTreeMap<&str, &Entry>, path: &str) -> Leads {
    let mut hops = 0;
    // components still to walk, and the resolved prefix
    let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
    let mut done: Vec<String> = Vec::new();
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                if done.pop().is_none() {
                    return Leads::Nowhere;
                }
                continue;
            }
            _ => {}
        }
        done.push(c);
        let here = done.join("/");
        if let Some(Entry::Symlink { target }) = entries.get(here.as_str()) {
            hops += 1;
            if hops > MAX_HOPS {
                return Leads::Nowhere;
            }
            done.pop();
            if target.starts_with('/') {
                return Leads::Nowhere;
            }
            todo.extend(target.split('/').rev().map(str::to_string));
        }
    }
    let full = done.join("/");
    match entries.get(full.as_str()) {
        Some(Entry::File { .. }) => Leads::File(full),
        _ if full.is_empty() => Leads::Directory,
        _ => {
            let below = format!("{full}/");
            if entries.keys().any(|k| k.starts_with(&below)) { Leads::Directory } else { Leads::Nowhere }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    fn file() -> Entry {
        Entry::File { size: 1, sha256: Digest::of(b"x"), executable: false }
    }

    fn link(t: &str) -> Entry {
        Entry::Symlink { target: t.into() }
    }

    #[test]
    fn links_lead_to_files_directories_or_nowhere() {
        let entries = [
            ("conf/app.yaml", file()),
            ("app.yaml", link("conf/app.yaml")),
            ("current", link("conf")),
            ("via-dir", link("current/app.yaml")),
            ("chain", link("app.yaml")),
            ("up", link("conf/../app.yaml")),
            ("conf/sibling", link("./app.yaml")),
            ("root", link(".")),
            ("gone", link("unselected.txt")),
            ("loop-a", link("loop-b")),
            ("loop-b", link("loop-a")),
        ];
        let map: BTreeMap<&str, &Entry> = entries.iter().map(|(p, e)| (*p, e)).collect();
        let cases = [
            ("app.yaml", Leads::File("conf/app.yaml".into())),
            ("current", Leads::Directory),
            ("via-dir", Leads::File("conf/app.yaml".into())),
            ("chain", Leads::File("conf/app.yaml".into())),
            ("up", Leads::File("conf/app.yaml".into())),
            ("conf/sibling", Leads::File("conf/app.yaml".into())),
            ("root", Leads::Directory),
            ("gone", Leads::Nowhere),
            ("loop-a", Leads::Nowhere),
        ];
        for (path, want) in cases {
            assert_eq!(follow(&map, path), want, "{path}");
        }
    }
}
