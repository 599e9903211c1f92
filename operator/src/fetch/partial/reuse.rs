//! Delta sync: a selected file whose TOC digest equals the bytes already
//! published at its path (a volume's current revision, the CLI's `--out`,
//! a ConfigMap's keys) is copied from there instead of fetched.
//!
//! Copied, not hard-linked: the previous content is a directory others can
//! reach (a shared volume that pods mount, a user's `--out`), so a link
//! would tie the new revision to an inode anyone with write access there can
//! change after the check, and the change would appear in every revision
//! sharing it. The copy is hashed as it is written to the same scratch file
//! a fetched file goes to, so what is published is exactly the bytes that
//! matched the TOC's digest; anything else there (a tampered file, another
//! file of the same size) is just not reused.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::decode::scratch_path;
use crate::unpack::UnpackError;
use crate::unpack::toc::{TocEntry, TocKind};

/// Where content already published can be read back by path.
pub(crate) trait Previous: Send + Sync {
    /// `path`'s bytes if it is a regular file of `size` bytes there.
    fn open(&self, path: &str, size: u64) -> Option<Box<dyn Read + Send + '_>>;
}

/// A tree of files by path: a volume's current revision, `--out`.
pub(crate) struct Tree(pub(crate) PathBuf);

impl Previous for Tree {
    fn open(&self, path: &str, size: u64) -> Option<Box<dyn Read + Send + '_>> {
        let full = self.0.join(path);
        // Not through a symlink at the end, and never a FIFO's open that
        // would wait for a writer: a regular file of the size, or nothing.
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        let f = OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(&full).ok()?;
        let meta = f.metadata().ok()?;
        (meta.is_file() && meta.len() == size).then(|| Box::new(f) as Box<dyn Read + Send>)
    }
}

/// What was taken from the previous content.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Reused {
    /// TOC entries, sorted.
    pub(crate) files: Vec<usize>,
    pub(crate) bytes: u64,
}

/// Copy each of `candidates` (selected TOC files, by index) whose previous
/// content is its TOC digest into its scratch file; the others are left to
/// fetch. Only an error writing the scratch is an error.
pub(crate) fn take(
    previous: &dyn Previous,
    entries: &[TocEntry],
    candidates: impl Iterator<Item = usize>,
    scratch: &Path,
) -> Result<Reused, UnpackError> {
    let mut out = Reused::default();
    let mut buf = vec![0u8; 64 << 10];
    for i in candidates {
        let e = &entries[i];
        let TocKind::File { digest: Some(digest), .. } = &e.kind else { continue };
        if e.size == 0 {
            continue;
        }
        let Some(from) = previous.open(&e.path, e.size) else { continue };
        let path = scratch_path(scratch, i);
        let mut to = File::create(&path).map_err(UnpackError::io(&path))?;
        match copy(from, &mut to, e.size, &mut buf) {
            Ok(Some(actual)) if &actual == digest => {
                out.files.push(i);
                out.bytes = out.bytes.saturating_add(e.size);
            }
            Ok(_) | Err(Copy::Read) => {
                drop(to);
                std::fs::remove_file(&path).map_err(UnpackError::io(&path))?;
            }
            Err(Copy::Write(e)) => return Err(UnpackError::io(&path)(e)),
        }
    }
    Ok(out)
}

enum Copy {
    Read,
    Write(io::Error),
}

/// Exactly `size` bytes from `from` into `to`, and their digest; `None` when
/// there were fewer or more.
fn copy(
    mut from: impl Read,
    to: &mut impl Write,
    size: u64,
    buf: &mut [u8],
) -> Result<Option<crate::oci::Digest>, Copy> {
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(Copy::Read),
        };
        done = done.saturating_add(n as u64);
        if done > size {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(Copy::Write)?;
    }
    Ok((done == size).then(|| crate::oci::Digest::from_hasher(hasher)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    fn file(path: &str, content: &[u8]) -> TocEntry {
        TocEntry {
            path: path.into(),
            size: content.len() as u64,
            kind: TocKind::File { digest: Some(Digest::of(content)), executable: false, chunks: Vec::new() },
        }
    }

    #[test]
    fn only_matching_regular_files_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (prev, scratch) = (dir.path().join("prev"), dir.path().join("scratch"));
        std::fs::create_dir_all(prev.join("sub")).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(prev.join("same.txt"), b"same").unwrap();
        std::fs::write(prev.join("sub/changed.txt"), b"old!").unwrap();
        std::fs::write(prev.join("longer.txt"), b"longer now").unwrap();
        std::fs::write(prev.join("target.txt"), b"link").unwrap();
        std::os::unix::fs::symlink("target.txt", prev.join("link.txt")).unwrap();
        std::fs::create_dir(prev.join("dir.txt")).unwrap();
        let entries = vec![
            file("same.txt", b"same"),
            file("sub/changed.txt", b"new!"),
            file("longer.txt", b"longer"),
            file("link.txt", b"link"),
            file("dir.txt", b"dir!"),
            file("absent.txt", b"none"),
            file("empty.txt", b""),
        ];
        let got = take(&Tree(prev), &entries, 0..entries.len(), &scratch).unwrap();
        assert_eq!(got, Reused { files: vec![0], bytes: 4 });
        assert_eq!(std::fs::read(scratch_path(&scratch, 0)).unwrap(), b"same");
        // nothing left behind for the files that will be fetched
        let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("0")]);
    }
}
