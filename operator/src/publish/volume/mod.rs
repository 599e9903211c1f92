//! Files in a directory that pods read, switched atomically. The layout is
//! the kubelet's for ConfigMap volumes, so tools that watch those (reloaders
//! watching `..data`) work unchanged:
//!
//! ```text
//! DIR/..data -> ..r0000000007-3f2a9c1e0b7d     one symlink, renamed over to switch
//! DIR/..r0000000007-3f2a9c1e0b7d/              a revision: the files, and ..ocisync.json
//! DIR/..r0000000006-91be02c4d8aa/              the previous one, kept for readers
//! DIR/app.yaml -> ..data/app.yaml              top-level entries, through ..data
//! ```
//!
//! A revision is written beside the others (`..tmp-*`), fsynced, renamed to
//! its name, then `..data` is switched with one rename: a reader that
//! resolves `..data` once sees the whole old tree or the whole new one. Old
//! revisions are kept (the newest `keep`) and deleted only `grace` after they
//! stopped being current, so a reader holding a path into one is not cut
//! off. Nothing here is async: callers run it on a blocking thread.

pub(crate) mod target;
#[cfg(test)]
mod tests;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub(crate) const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
/// In every revision: what it holds, for readers to poll.
pub(crate) const MARKER: &str = "..ocisync.json";
const TMP_PREFIX: &str = "..tmp-";
const REVISION_PREFIX: &str = "..r";

#[derive(Debug, thiserror::Error)]
pub(crate) enum VolumeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0:?} starts with \"..\", which the volume layout reserves")]
    Reserved(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { path: path.to_path_buf(), source }
}

/// What a revision holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Marker {
    pub(crate) digest: String,
    /// The digest and what was selected from it: the same digest with
    /// another selection is other content.
    pub(crate) content: String,
    pub(crate) revision: String,
    /// Seconds since the epoch.
    pub(crate) published_at: u64,
    /// What the operator's status shows for it, to show it again when the
    /// revision is switched back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) files: Option<crate::api::FilesSummary>,
}

/// How files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Modes {
    pub(crate) file: u32,
    pub(crate) dir: u32,
    pub(crate) owner: Option<(u32, u32)>,
}

impl Default for Modes {
    fn default() -> Self {
        Modes { file: 0o644, dir: 0o755, owner: None }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub(crate) dir: PathBuf,
    pub(crate) keep: usize,
    pub(crate) grace: Duration,
    pub(crate) modes: Modes,
}

/// A revision on disk.
#[derive(Debug, Clone)]
pub(crate) struct Revision {
    pub(crate) name: String,
    pub(crate) seq: u64,
    pub(crate) marker: Marker,
}

impl Volume {
    pub(crate) fn new(dir: PathBuf) -> Volume {
        Volume { dir, keep: 2, grace: Duration::from_secs(300), modes: Modes::default() }
    }

    /// After a crash at any point: drop half-written revisions and the
    /// temporary link, point `..data` at the newest complete revision if it
    /// points nowhere, and make the top-level links match it.
    pub(crate) fn recover(&self) -> Result<(), VolumeError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        for e in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            // `..tmp-*` is ours; `...tmp-*.ocisync-*` is the fetch's own
            // staging beside it.
            let incomplete = name.starts_with(TMP_PREFIX)
                || name.starts_with(&format!(".{TMP_PREFIX}"))
                || (name.starts_with(REVISION_PREFIX) && read_marker(&path).is_none());
            if incomplete {
                remove(&path)?;
            } else if name == DATA_TMP {
                fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        if self.current().is_none()
            && let Some(newest) = self.revisions()?.pop()
        {
            self.switch(&newest.name)?;
        }
        self.link_top_level()
    }

    /// What `..data` points at, if it is a complete revision.
    pub(crate) fn current(&self) -> Option<Revision> {
        let target = fs::read_link(self.dir.join(DATA)).ok()?;
        let name = target.to_str()?;
        revision(&self.dir, name)
    }

    /// Complete revisions, oldest first.
    pub(crate) fn revisions(&self) -> Result<Vec<Revision>, VolumeError> {
        let mut out: Vec<Revision> = fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| revision(&self.dir, e.file_name().to_str()?))
            .collect();
        out.sort_by_key(|r| r.seq);
        Ok(out)
    }

    /// The directory a new revision is staged in: fetch into it, then
    /// [`Volume::publish`] it. Same filesystem as the revisions, so the
    /// final rename is atomic.
    pub(crate) fn staging(&self) -> PathBuf {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        self.dir.join(format!("{TMP_PREFIX}{}-{nanos}", std::process::id()))
    }

    /// Turn a staged tree into the current revision: check its names, set
    /// modes, write the marker, fsync, rename, switch, link, prune. The
    /// staged tree is gone afterwards either way.
    pub(crate) fn publish(&self, staged: &Path, digest: &str, content: &str) -> Result<Revision, VolumeError> {
        self.publish_with(staged, digest, content, None)
    }

    pub(crate) fn publish_with(
        &self,
        staged: &Path,
        digest: &str,
        content: &str,
        files: Option<crate::api::FilesSummary>,
    ) -> Result<Revision, VolumeError> {
        let r = self.publish_staged(staged, digest, content, files);
        if r.is_err() {
            let _ = fs::remove_dir_all(staged);
        }
        r
    }

    fn publish_staged(
        &self,
        staged: &Path,
        digest: &str,
        content: &str,
        files: Option<crate::api::FilesSummary>,
    ) -> Result<Revision, VolumeError> {
        for e in fs::read_dir(staged).map_err(io(staged))? {
            let name = e.map_err(io(staged))?.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") {
                return Err(VolumeError::Reserved(name));
            }
        }
        let seq = self.revisions()?.last().map_or(1, |r| r.seq + 1);
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let name = format!("{REVISION_PREFIX}{seq:010}-{}", &hex[..hex.len().min(12)]);
        let published_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let marker =
            Marker { digest: digest.into(), content: content.into(), revision: name.clone(), published_at, files };
        finish_tree(staged, &self.modes)?;
        let marker_path = staged.join(MARKER);
        let mut f = fs::File::create(&marker_path).map_err(io(&marker_path))?;
        f.write_all(&serde_json::to_vec(&marker).unwrap_or_default()).map_err(io(&marker_path))?;
        f.sync_all().map_err(io(&marker_path))?;
        sync_dir(staged)?;
        let dest = self.dir.join(&name);
        fs::rename(staged, &dest).map_err(io(&dest))?;
        sync_dir(&self.dir)?;
        self.make_current(&name)?;
        Ok(Revision { name, seq, marker })
    }

    /// A kept revision that already holds `content`: switching back to it
    /// costs no download.
    pub(crate) fn holding(&self, content: &str) -> Result<Option<Revision>, VolumeError> {
        Ok(self.revisions()?.into_iter().rev().find(|r| r.marker.content == content))
    }

    /// Make the kept revision holding `content`, if any, current again.
    pub(crate) fn restore(&self, content: &str) -> Result<Option<Revision>, VolumeError> {
        let Some(r) = self.holding(content)? else { return Ok(None) };
        self.make_current(&r.name)?;
        Ok(Some(r))
    }

    /// Switch, then the links, then what may go.
    fn make_current(&self, name: &str) -> Result<(), VolumeError> {
        self.switch(name)?;
        self.link_top_level()?;
        self.prune(SystemTime::now()).map(drop)
    }

    /// Make `name` current: a new link renamed over `..data`.
    pub(crate) fn switch(&self, name: &str) -> Result<(), VolumeError> {
        let tmp = self.dir.join(DATA_TMP);
        let _ = fs::remove_file(&tmp);
        symlink(name, &tmp).map_err(io(&tmp))?;
        let data = self.dir.join(DATA);
        fs::rename(&tmp, &data).map_err(io(&data))?;
        sync_dir(&self.dir)
    }

    /// Top-level `name -> ..data/name` for each entry of the current
    /// revision; links of names it no longer has are removed. Nothing but
    /// our own links is ever removed at the top level.
    pub(crate) fn link_top_level(&self) -> Result<(), VolumeError> {
        let Some(current) = self.current() else { return Ok(()) };
        let rev = self.dir.join(&current.name);
        let mut wanted = std::collections::BTreeSet::new();
        for e in fs::read_dir(&rev).map_err(io(&rev))? {
            let name = e.map_err(io(&rev))?.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") {
                continue;
            }
            let link = self.dir.join(&name);
            let target = Path::new(DATA).join(&name);
            if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                let tmp = self.dir.join(format!("{TMP_PREFIX}link-{name}"));
                let _ = fs::remove_file(&tmp);
                symlink(&target, &tmp).map_err(io(&tmp))?;
                fs::rename(&tmp, &link).map_err(io(&link))?;
            }
            wanted.insert(name);
        }
        for e in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = fs::read_link(e.path()).is_ok_and(|t| t.starts_with(DATA));
            if ours && !name.starts_with("..") && !wanted.contains(&name) {
                fs::remove_file(e.path()).map_err(io(&e.path()))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Delete revisions beyond the newest `keep` whose successor has been
    /// current for `grace` already. Returns what was deleted.
    pub(crate) fn prune(&self, now: SystemTime) -> Result<Vec<String>, VolumeError> {
        let revisions = self.revisions()?;
        let current = self.current().map(|r| r.name);
        let now = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut deleted = Vec::new();
        let old = revisions.len().saturating_sub(self.keep.max(1));
        for (i, r) in revisions.iter().enumerate().take(old) {
            let retired_at = revisions.get(i + 1).map_or(now, |next| next.marker.published_at);
            if Some(&r.name) != current.as_ref() && now.saturating_sub(retired_at) >= self.grace.as_secs() {
                remove(&self.dir.join(&r.name))?;
                deleted.push(r.name.clone());
            }
        }
        Ok(deleted)
    }
}

fn revision(dir: &Path, name: &str) -> Option<Revision> {
    let seq = name.strip_prefix(REVISION_PREFIX)?.split('-').next()?.parse().ok()?;
    let marker = read_marker(&dir.join(name))?;
    Some(Revision { name: name.to_string(), seq, marker })
}

/// A revision's marker; `None` for an incomplete one. Read with a bound:
/// the directory may be shared with other writers.
fn read_marker(rev: &Path) -> Option<Marker> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    fs::File::open(rev.join(MARKER)).ok()?.take(64 << 10).read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// Modes, owner, and fsync of every file and directory of a staged tree.
/// Links are left as they are (their target was checked by the unpacker).
fn finish_tree(root: &Path, modes: &Modes) -> Result<(), VolumeError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let path = e.path();
            let t = e.file_type().map_err(io(&path))?;
            if t.is_symlink() {
                continue;
            }
            let mode = if t.is_dir() { modes.dir } else { modes.file };
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io(&path))?;
            if let Some((uid, gid)) = modes.owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io(&path))?;
            }
            if t.is_dir() {
                stack.push(path);
            } else {
                fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
            }
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(modes.dir)).map_err(io(&dir))?;
        if let Some((uid, gid)) = modes.owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io(&dir))?;
        }
        sync_dir(&dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), VolumeError> {
    fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

fn remove(path: &Path) -> Result<(), VolumeError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io(path)),
        Ok(_) => fs::remove_file(path).map_err(io(path)),
        Err(_) => Ok(()),
    }
}
