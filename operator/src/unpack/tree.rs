//! The staging tree: layers unpack side by side, merge in manifest order
//! (later wins, whiteouts delete), are checked, and the result replaces the
//! destination in one rename. Until then the destination is not touched.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::path::parents;
use super::{Entry, LayerReport, UnpackError, Whiteout};

/// A staging directory beside the destination (same filesystem, so the final
/// rename is atomic). Removed on drop unless committed.
pub(crate) struct Staging {
    dir: PathBuf,
    dest: PathBuf,
}

impl Staging {
    pub(crate) fn new(dest: &Path) -> Result<Self, UnpackError> {
        let name = dest.file_name().ok_or_else(|| UnpackError::UnsafePath {
            path: dest.display().to_string(),
            reason: "output needs a directory name".into(),
        })?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(UnpackError::io(&parent))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = parent.join(format!(".{}.ocisync-{}-{nanos}", name.to_string_lossy(), std::process::id()));
        fs::create_dir(&dir).map_err(UnpackError::io(&dir))?;
        Ok(Staging { dir, dest: dest.to_path_buf() })
    }

    pub(crate) fn layer_dir(&self, index: usize) -> PathBuf {
        self.dir.join("layers").join(index.to_string())
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Merge the layers' trees (given in manifest order) into one and check
    /// it. Returns what the output holds.
    pub(crate) fn merge(&self, layers: Vec<(usize, LayerReport)>) -> Result<BTreeMap<String, Entry>, UnpackError> {
        let root = self.root();
        let mut merged = BTreeMap::new();
        let mut layers = layers.into_iter();
        // The first layer is the base: whiteouts in it delete nothing, so
        // its whole tree becomes the root in one rename.
        match layers.next() {
            Some((index, first)) => {
                let src = self.layer_dir(index);
                fs::rename(&src, &root).map_err(UnpackError::io(&src))?;
                merged = first.entries;
            }
            None => fs::create_dir(&root).map_err(UnpackError::io(&root))?,
        }
        for (index, layer) in layers {
            let src = self.layer_dir(index);
            for w in &layer.whiteouts {
                apply_whiteout(&root, &mut merged, w)?;
            }
            for (path, entry) in layer.entries {
                make_parents(&root, &path, &mut merged)?;
                let to = root.join(&path);
                if let Ok(m) = fs::symlink_metadata(&to) {
                    remove(&to, m.is_dir())?;
                    remove_below(&mut merged, &path);
                }
                let from = src.join(&path);
                fs::rename(&from, &to).map_err(UnpackError::io(&from))?;
                merged.insert(path, entry);
            }
        }
        check_links(&root, &merged)?;
        Ok(merged)
    }

    /// Put the merged tree at the destination: an atomic exchange when it
    /// exists, a rename when it does not. The old content goes with the
    /// staging directory.
    pub(crate) fn commit(self) -> Result<(), UnpackError> {
        let root = self.root();
        match fs::symlink_metadata(&self.dest) {
            Ok(m) if m.is_dir() => exchange(&root, &self.dest)?,
            Ok(_) => {
                return Err(UnpackError::UnsafePath {
                    path: self.dest.display().to_string(),
                    reason: "output exists and is not a directory".into(),
                });
            }
            Err(_) => fs::rename(&root, &self.dest).map_err(UnpackError::io(&self.dest))?,
        }
        Ok(()) // drop removes the staging dir, now holding the old content
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn apply_whiteout(root: &Path, merged: &mut BTreeMap<String, Entry>, w: &Whiteout) -> Result<(), UnpackError> {
    let (path, keep_dir) = match w {
        Whiteout::Path(p) => (p.as_str(), false),
        Whiteout::Opaque(p) => (p.as_str(), true),
    };
    // never follow a link while deleting
    if parents(path).any(|p| fs::symlink_metadata(root.join(p)).is_ok_and(|m| !m.is_dir())) {
        return Ok(());
    }
    let full = if path.is_empty() { root.to_path_buf() } else { root.join(path) };
    if let Ok(m) = fs::symlink_metadata(&full) {
        if keep_dir && m.is_dir() {
            for e in fs::read_dir(&full).map_err(UnpackError::io(&full))? {
                let e = e.map_err(UnpackError::io(&full))?;
                remove(&e.path(), e.file_type().is_ok_and(|t| t.is_dir()))?;
            }
        } else if !keep_dir {
            remove(&full, m.is_dir())?;
            merged.remove(path);
        }
    }
    remove_below(merged, path);
    Ok(())
}

/// A later layer's file may sit where an earlier layer had a file or link:
/// the later layer wins and the obstacle goes.
fn make_parents(root: &Path, path: &str, merged: &mut BTreeMap<String, Entry>) -> Result<(), UnpackError> {
    for p in parents(path) {
        let full = root.join(p);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                remove(&full, false)?;
                merged.remove(p);
            }
            Err(_) => {}
        }
        fs::create_dir(&full).map_err(UnpackError::io(&full))?;
    }
    Ok(())
}

fn remove(path: &Path, dir: bool) -> Result<(), UnpackError> {
    let r = if dir { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    r.map_err(UnpackError::io(path))
}

/// Drop every path below `dir` ("" is the root) from `merged`.
pub(crate) fn remove_below(merged: &mut BTreeMap<String, Entry>, dir: &str) {
    if dir.is_empty() {
        merged.clear();
        return;
    }
    let prefix = format!("{dir}/");
    let doomed: Vec<String> =
        merged.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
    for k in doomed {
        merged.remove(&k);
    }
}

/// Each link checked alone stays inside, but links can chain (`a -> .` then
/// `b -> a/../x`); so resolve every one through the real filesystem once the
/// tree is complete.
fn check_links(root: &Path, merged: &BTreeMap<String, Entry>) -> Result<(), UnpackError> {
    let real_root = fs::canonicalize(root).map_err(UnpackError::io(root))?;
    for (path, entry) in merged {
        let Entry::Symlink { target } = entry else {
            continue;
        };
        let escapes = |why: &str| UnpackError::LinkEscapes { path: path.clone(), target: format!("{target}{why}") };
        match fs::canonicalize(root.join(path)) {
            Ok(real) if real.starts_with(&real_root) => {}
            Ok(_) => return Err(escapes("")),
            Err(_) => return Err(escapes(": the target is not in the output; select it too")),
        }
    }
    Ok(())
}

/// renameat2(RENAME_EXCHANGE): readers see the old tree or the new one,
/// never a mix or nothing.
fn exchange(a: &Path, b: &Path) -> Result<(), UnpackError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_EXCHANGE: two renames, a brief gap.
        Err(rustix::io::Errno::INVAL) => {
            let aside = a.with_extension("old");
            fs::rename(b, &aside).map_err(UnpackError::io(b))?;
            fs::rename(a, b).map_err(UnpackError::io(b))?;
            fs::rename(&aside, a).map_err(UnpackError::io(a))
        }
        Err(e) => Err(UnpackError::Io { path: b.to_path_buf(), source: e.into() }),
    }
}
