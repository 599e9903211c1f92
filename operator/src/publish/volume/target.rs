//! The operator's volume target: an Artifact's files under
//! `<volume root>/<namespace>/<path>`, where the path (default: the
//! Artifact's name) is the spec's, confined to the namespace's directory:
//! no absolute path, no `..`, no component the layout reserves, and no
//! symbolic link anywhere on the way (each directory is created, never
//! followed). A directory is claimed by the first Artifact that writes it
//! (its name in `..ocisync-owner`: a re-created Artifact of the same name
//! takes its directory back), and no volume nests in another.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Modes, Volume, VolumeError};
use crate::api::{FileStatus, FilesSummary};
use crate::fetch::FileReport;
use crate::unpack::Entry;

const OWNER: &str = "..ocisync-owner";
const MAX_PATH: usize = 253;
const MAX_DEPTH: usize = 8;
const LISTED_FILES: usize = 50;

/// What the spec asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    /// Relative to the namespace's directory.
    pub(crate) path: String,
    pub(crate) file_mode: u32,
    /// The selection and platform: with the digest, what a revision holds.
    pub(crate) selection: String,
}

impl Spec {
    pub(crate) fn content(&self, digest: &str) -> String {
        format!("{digest} {}", self.selection)
    }
}

/// A sub-path a tenant may name: the reason it may not, otherwise.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > MAX_PATH {
        return Err(format!("must be 1 to {MAX_PATH} bytes"));
    }
    if path.starts_with('/') {
        return Err("must be relative to the namespace's directory".into());
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(format!("at most {MAX_DEPTH} components"));
    }
    for p in parts {
        let ok = !p.is_empty()
            && p != "."
            && !p.starts_with("..")
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(format!(
                "component {p:?}: letters, digits, '-', '_' and '.' only, not empty, not '.', not starting with \"..\""
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub(crate) struct Root {
    pub(crate) dir: PathBuf,
    pub(crate) keep: usize,
    pub(crate) grace: Duration,
    pub(crate) owner: Option<(u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("spec.target.volume: the operator runs without --volume-root, so it has no volume to write to")]
    NoRoot,
    #[error("{0} is claimed by another Artifact")]
    NotOwned(String),
    #[error("{0}")]
    Unsafe(String),
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

impl Root {
    /// `<root>/<namespace>/<path>`, relative to the root: what status shows.
    pub(crate) fn relative(namespace: &str, spec: &Spec) -> String {
        format!("{namespace}/{}", spec.path)
    }

    pub(crate) fn volume(&self, namespace: &str, spec: &Spec) -> Volume {
        Volume {
            dir: self.dir.join(namespace).join(&spec.path),
            keep: self.keep,
            grace: self.grace,
            modes: Modes { file: spec.file_mode, dir: 0o755, owner: self.owner },
        }
    }

    /// Is the volume there and this owner's? (A current revision written
    /// for another Artifact is not this one's to serve.)
    pub(crate) fn owned_by(&self, namespace: &str, spec: &Spec, artifact: &str) -> bool {
        let owner = self.dir.join(namespace).join(&spec.path).join(OWNER);
        fs::read_to_string(owner).is_ok_and(|o| o.trim() == artifact)
    }

    /// Create the directories down to the volume without following a link,
    /// refuse to nest in another volume, and claim it for `artifact`.
    pub(crate) fn claim(&self, namespace: &str, spec: &Spec, artifact: &str) -> Result<Volume, TargetError> {
        check_path(&spec.path).map_err(|m| TargetError::Unsafe(format!("spec.target.volume.path: {m}")))?;
        // The root is the operator's configuration (a mount): created if
        // need be, and the one path here that may be reached through links.
        fs::create_dir_all(&self.dir).map_err(|source| VolumeError::Io { path: self.dir.clone(), source })?;
        let mut dir = self.dir.clone();
        let parts: Vec<&str> = std::iter::once(namespace).chain(spec.path.split('/')).collect();
        for (i, part) in parts.iter().enumerate() {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                    return Err(TargetError::Unsafe(format!("{} is not a plain directory", dir.display())));
                }
                Ok(_) => {}
                Err(_) => mkdir(&dir)?,
            }
            let last = i + 1 == parts.len();
            if !last && (dir.join(super::DATA).exists() || dir.join(OWNER).exists()) {
                return Err(TargetError::Unsafe(format!("{} is inside another Artifact's volume", spec.path)));
            }
        }
        let owner = dir.join(OWNER);
        match fs::read_to_string(&owner) {
            Ok(o) if o.trim() != artifact => return Err(TargetError::NotOwned(Root::relative(namespace, spec))),
            Ok(_) => {}
            Err(_) => {
                fs::write(&owner, artifact).map_err(|source| VolumeError::Io { path: owner.clone(), source })?;
            }
        }
        Ok(self.volume(namespace, spec))
    }
}

fn mkdir(dir: &Path) -> Result<(), VolumeError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(VolumeError::Io { path: dir.to_path_buf(), source }),
    }
}

/// The files summary of a fetch, as status shows it.
pub(crate) fn summary(files: &[FileReport]) -> FilesSummary {
    let regular: Vec<(&str, u64, String)> = files
        .iter()
        .filter_map(|f| match &f.entry {
            Entry::File { size, sha256, .. } => Some((f.path.as_str(), *size, sha256.to_string())),
            Entry::Symlink { .. } => None,
        })
        .collect();
    let list: Vec<FileStatus> = regular
        .iter()
        .take(LISTED_FILES)
        .map(|(p, s, d)| FileStatus { path: p.to_string(), size: *s, sha256: d.clone() })
        .collect();
    FilesSummary {
        count: regular.len() as u64,
        bytes: regular.iter().map(|f| f.1).sum(),
        truncated: regular.len() > list.len(),
        list,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_in_the_namespace() {
        let ok = ["app", "team/app", "a.b/c_d-e", "x.y"];
        let bad = ["", "/etc", "../other-ns", "a/../../b", "a//b", "./a", "a/.", "..data", "a/..r1", "a b", "a\\b"];
        for p in ok {
            assert!(check_path(p).is_ok(), "{p}");
        }
        for p in bad {
            assert!(check_path(p).is_err(), "{p:?} must be refused");
        }
        assert!(check_path(&"a/".repeat(9)[..17]).is_err(), "depth");
        assert!(check_path(&"a".repeat(254)).is_err(), "length");
    }

    fn root() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let r = Root { dir: t.path().to_path_buf(), keep: 2, grace: Duration::ZERO, owner: None };
        (t, r)
    }

    fn spec(path: &str) -> Spec {
        Spec { path: path.into(), file_mode: 0o644, selection: String::new() }
    }

    #[test]
    fn a_directory_belongs_to_one_artifact_and_no_volume_nests() {
        let (_t, r) = root();
        let v = r.claim("ns", &spec("team/app"), "uid-1").unwrap();
        assert_eq!(v.dir, r.dir.join("ns/team/app"));
        assert!(r.claim("ns", &spec("team/app"), "uid-1").is_ok(), "its owner again");
        assert!(
            matches!(r.claim("ns", &spec("team/app"), "uid-2"), Err(TargetError::NotOwned(p)) if p == "ns/team/app")
        );
        assert!(matches!(r.claim("ns", &spec("team/app/sub"), "uid-3"), Err(TargetError::Unsafe(_))));
        assert!(r.claim("other", &spec("team/app"), "uid-2").is_ok(), "another namespace is another directory");
    }

    #[test]
    fn a_link_planted_on_the_way_is_not_followed() {
        let (t, r) = root();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("ns")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("ns/evil")).unwrap();
        assert!(matches!(r.claim("ns", &spec("evil/app"), "u"), Err(TargetError::Unsafe(_))));
        std::os::unix::fs::symlink(outside.path(), t.path().join("link-ns")).unwrap();
        assert!(matches!(r.claim("link-ns", &spec("app"), "u"), Err(TargetError::Unsafe(_))));
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through a link");
    }
}
