//! What changed between two versions of an artifact: the files added,
//! removed and changed (from two listings, as `ls` makes them), and, for
//! text files, their unified diffs. Pure functions over plain types; the
//! CLI (`ocisync diff`) lists and fetches.

mod unified;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fetch::FileReport;
use crate::unpack::Entry;
pub(crate) use unified::{MAX_SHOWN, Patch, patch};

/// One path whose entry differs; `None` where it does not exist.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Change {
    pub(crate) path: String,
    pub(crate) before: Option<Entry>,
    pub(crate) after: Option<Entry>,
}

impl Change {
    /// `A`dded, `D`eleted or `M`odified, as git's `--name-status` says.
    pub(crate) fn status(&self) -> char {
        match (&self.before, &self.after) {
            (None, _) => 'A',
            (_, None) => 'D',
            _ => 'M',
        }
    }

    /// Both sides regular files: a patch can be shown.
    pub(crate) fn both_files(&self) -> bool {
        matches!((&self.before, &self.after), (Some(Entry::File { .. }), Some(Entry::File { .. })))
    }
}

/// The paths whose entries differ (content, size, mode, kind, link target),
/// by path.
pub(crate) fn changes(before: &[FileReport], after: &[FileReport]) -> Vec<Change> {
    let a: BTreeMap<&str, &Entry> = before.iter().map(|f| (f.path.as_str(), &f.entry)).collect();
    let b: BTreeMap<&str, &Entry> = after.iter().map(|f| (f.path.as_str(), &f.entry)).collect();
    let mut paths: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
    paths.sort_unstable();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|p| {
            let (x, y) = (a.get(p).copied(), b.get(p).copied());
            (x != y).then(|| Change { path: p.to_string(), before: x.cloned(), after: y.cloned() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    fn file(path: &str, body: &[u8], executable: bool) -> FileReport {
        let entry = Entry::File { size: body.len() as u64, sha256: Digest::of(body), executable };
        FileReport { path: path.into(), entry }
    }

    fn link(path: &str, target: &str) -> FileReport {
        FileReport { path: path.into(), entry: Entry::Symlink { target: target.into() } }
    }

    #[test]
    fn changes_by_path() {
        let before = [
            file("a", b"1", false),
            file("b", b"2", false),
            file("c", b"3", false),
            link("d", "a"),
            file("e", b"5", false),
        ];
        let after = [
            file("a", b"1", false),
            file("b", b"22", false),
            link("c", "a"),
            link("d", "b"),
            file("e", b"5", true),
            file("f", b"6", false),
        ];
        let all = changes(&before, &after);
        let got: Vec<(char, &str)> = all.iter().map(|c| (c.status(), c.path.as_str())).collect();
        assert_eq!(got, [('M', "b"), ('M', "c"), ('M', "d"), ('M', "e"), ('A', "f")]);
        let gone = changes(&before, &[]);
        assert!(gone.iter().all(|c| c.status() == 'D') && gone.len() == 5);
        assert!(changes(&before, &before).is_empty());
        assert!(all[0].both_files());
        assert!(!all[1].both_files(), "a file that became a link");
    }
}
