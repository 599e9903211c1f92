//! What `ocisync push` packs: the given files and directories walked in
//! name order (as `tar --sort=name`), each path held to the rules the
//! reader enforces, so that what ocisync pushes, ocisync and the other
//! readers read: names that are text and stay in the tree, symlinks that
//! resolve inside it, no devices, FIFOs or sockets, bounded counts.

use std::fs;
use std::path::{Path, PathBuf};

use crate::unpack::path::{resolve_link_target, sanitize};
use crate::unpack::select::Selection;

/// Entries packed at most (the reader's default file limit).
pub(crate) const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PackError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}; a reader would refuse it")]
    Refused { path: String, reason: String },
    #[error("more than {MAX_ENTRIES} files and directories")]
    TooMany,
    #[error("{path} and another input both become {name:?}")]
    Twice { path: PathBuf, name: String },
    #[error("{path} changed while it was packed ({reason})")]
    Changed { path: PathBuf, reason: String },
}

/// One thing to pack: its path in the artifact and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) name: String,
    pub(crate) kind: ItemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKind {
    Dir,
    File { source: PathBuf, size: u64, executable: bool },
    Symlink { target: String },
}

/// The items of `inputs`, in the order they are packed: each input a file
/// (packed under its name) or a directory (its contents packed under their
/// paths inside it, as `tar -C dir .` and `flux push artifact` do). Files the
/// selection leaves out are not packed; directories are, when something in
/// them is.
pub(crate) fn walk(inputs: &[PathBuf], selection: &Selection) -> Result<Vec<Item>, PackError> {
    let mut items: Vec<Item> = Vec::new();
    for input in inputs {
        let meta = fs::symlink_metadata(input).map_err(io(input))?;
        if meta.is_dir() {
            dir(input, "", selection, &mut items)?;
        } else {
            let name = input.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            one(input, &name, &meta, selection, &mut items)?;
        }
    }
    let mut names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(PackError::Twice { path: inputs[0].clone(), name: w[0].to_string() });
    }
    // Every link leads inside what is packed.
    for i in &items {
        if let ItemKind::Symlink { target } = &i.kind
            && resolve_link_target(&i.name, target).is_none()
        {
            return Err(refused(&i.name, format!("a symlink out of the tree ({target:?})")));
        }
    }
    Ok(items)
}

fn dir(at: &Path, prefix: &str, selection: &Selection, items: &mut Vec<Item>) -> Result<(), PackError> {
    let mut children: Vec<(String, PathBuf)> = Vec::new();
    for e in fs::read_dir(at).map_err(io(at))? {
        let e = e.map_err(io(at))?;
        let name =
            e.file_name().into_string().map_err(|n| refused(&format!("{prefix}{n:?}"), "a name that is not UTF-8"))?;
        children.push((name, e.path()));
    }
    // byte order, as `tar --sort=name` and Go's sort.Strings
    children.sort();
    for (name, path) in children {
        let full = format!("{prefix}{name}");
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            let before = items.len();
            items.push(Item { name: full.clone(), kind: ItemKind::Dir });
            dir(&path, &format!("{full}/"), selection, items)?;
            if items.len() == before + 1 && !selection.wants_path(&full) {
                items.pop();
            }
        } else {
            one(&path, &full, &meta, selection, items)?;
        }
        if items.len() > MAX_ENTRIES {
            return Err(PackError::TooMany);
        }
    }
    Ok(())
}

fn one(
    path: &Path,
    name: &str,
    meta: &fs::Metadata,
    selection: &Selection,
    items: &mut Vec<Item>,
) -> Result<(), PackError> {
    use std::os::unix::fs::PermissionsExt;
    match sanitize(name.as_bytes()) {
        Ok(Some(n)) if n == name => {}
        Ok(_) => return Err(refused(name, "not a plain relative path")),
        Err(e) => return Err(refused(name, e.to_string())),
    }
    if !selection.wants_path(name) {
        return Ok(());
    }
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        ItemKind::File {
            source: path.to_path_buf(),
            size: meta.len(),
            executable: meta.permissions().mode() & 0o111 != 0,
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(io(path))?;
        let target =
            target.into_os_string().into_string().map_err(|_| refused(name, "a link target that is not UTF-8"))?;
        ItemKind::Symlink { target }
    } else {
        return Err(refused(name, "not a file, directory or symlink (a device, FIFO or socket)"));
    };
    items.push(Item { name: name.to_string(), kind });
    Ok(())
}

fn refused(path: &str, reason: impl Into<String>) -> PackError {
    PackError::Refused { path: path.to_string(), reason: reason.into() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[Item]) -> Vec<String> {
        items.iter().map(|i| i.name.clone()).collect()
    }

    #[test]
    fn walks_in_name_order_and_refuses_what_readers_refuse() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::write(root.join("b/c/z.txt"), "z").unwrap();
        fs::write(root.join("b/a.txt"), "a").unwrap();
        fs::write(root.join("B.txt"), "B").unwrap();
        std::os::unix::fs::symlink("b/a.txt", root.join("link")).unwrap();
        let all = Selection::all();
        let items = walk(std::slice::from_ref(&root), &all).unwrap();
        assert_eq!(names(&items), ["B.txt", "b", "b/a.txt", "b/c", "b/c/z.txt", "empty", "link"]);
        let only: Selection = Selection::new(&["**/*.txt"], &[] as &[&str], &[]).unwrap();
        assert_eq!(
            names(&walk(std::slice::from_ref(&root), &only).unwrap()),
            ["B.txt", "b", "b/a.txt", "b/c", "b/c/z.txt"]
        );

        // a file given alone is packed under its name
        assert_eq!(names(&walk(&[root.join("b/a.txt")], &all).unwrap()), ["a.txt"]);
        // the same name twice
        assert!(matches!(walk(&[root.join("b/a.txt"), root.join("b/a.txt")], &all), Err(PackError::Twice { .. })));

        std::os::unix::fs::symlink("../../etc/passwd", root.join("b/out")).unwrap();
        let e = walk(std::slice::from_ref(&root), &all).unwrap_err().to_string();
        assert!(e.contains("b/out") && e.contains("out of the tree"), "{e}");
        fs::remove_file(root.join("b/out")).unwrap();

        let sock = root.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let e = walk(std::slice::from_ref(&root), &all).unwrap_err().to_string();
        assert!(e.contains("sock") && e.contains("socket"), "{e}");
    }
}
