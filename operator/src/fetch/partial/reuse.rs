//! Delta sync: a selected file whose TOC digest equals the bytes already
//! published at its path (a volume's current revision, the CLI's `--out`,
//! a ConfigMap's keys) is taken from there instead of fetched.
//!
//! Copied, not hard-linked: the previous content is a directory others can
//! reach (a shared volume that pods mount, a user's `--out`), so a link
//! would tie the new revision to an inode anyone with write access there can
//! change after the check, and the change would appear in every revision
//! sharing it. The file is hashed once to plan the read, then copied into
//! the new tree through [`Verified`], which hashes it again as it goes: what
//! is published is exactly bytes that match the TOC's digest, or the pull
//! fails (someone changed the file in between) and the next one fetches it.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::oci::Digest;
use crate::unpack::toc::{TocEntry, TocKind};

/// Where content already published can be read back by path.
pub(crate) trait Previous: Send + Sync {
    /// `path`'s bytes if it is a regular file of `size` bytes there.
    fn open(&self, path: &str, size: u64) -> Option<Box<dyn Read + Send>>;
}

/// A tree of files by path: a volume's current revision, `--out`.
pub(crate) struct Tree(pub(crate) PathBuf);

impl Previous for Tree {
    fn open(&self, path: &str, size: u64) -> Option<Box<dyn Read + Send>> {
        let full = self.0.join(path);
        // Not through a symlink at the end, and never a FIFO's open that
        // would wait for a writer: a regular file of the size, or nothing.
        // (A directory above it may be a link; whatever it leads to is used
        // only if it hashes to the TOC's digest.)
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        let f = OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(&full).ok()?;
        let meta = f.metadata().ok()?;
        (meta.is_file() && meta.len() == size).then(|| Box::new(f) as Box<dyn Read + Send>)
    }
}

/// What can be taken from the previous content.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Reused {
    /// TOC entries, sorted.
    pub(crate) files: Vec<usize>,
    pub(crate) bytes: u64,
}

/// The `candidates` (selected TOC files, by index) whose previous content
/// is, now, what their TOC digest says; the others are left to fetch.
pub(crate) fn find(previous: &dyn Previous, entries: &[TocEntry], candidates: impl Iterator<Item = usize>) -> Reused {
    let mut out = Reused::default();
    let mut buf = vec![0u8; 64 << 10];
    for i in candidates {
        let e = &entries[i];
        let TocKind::File { digest: Some(digest), .. } = &e.kind else { continue };
        if e.size == 0 {
            continue;
        }
        let Some(from) = previous.open(&e.path, e.size) else { continue };
        if digest_of(from, e.size, &mut buf).as_ref() == Some(digest) {
            out.files.push(i);
            out.bytes = out.bytes.saturating_add(e.size);
        }
    }
    out
}

/// The digest of exactly `size` bytes from `from`; `None` when it holds
/// fewer or more, or cannot be read.
fn digest_of(mut from: impl Read, size: u64, buf: &mut [u8]) -> Option<Digest> {
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        done = done.saturating_add(n as u64);
        if done > size {
            return None;
        }
        hasher.update(&buf[..n]);
    }
    (done == size).then(|| Digest::from_hasher(hasher))
}

/// `size` bytes of `inner`, failing unless they hash to `digest`: the check
/// made again as the bytes are copied into the new tree.
pub(crate) struct Verified<R> {
    inner: R,
    path: String,
    hasher: Sha256,
    read: u64,
    size: u64,
    digest: Digest,
}

impl<R: Read> Verified<R> {
    pub(crate) fn new(inner: R, path: &str, size: u64, digest: Digest) -> Self {
        Verified { inner, path: path.to_string(), hasher: Sha256::new(), read: 0, size, digest }
    }

    fn changed(&self) -> io::Error {
        io::Error::other(format!(
            "the published copy of {:?} changed while it was reused; the next sync fetches it",
            self.path
        ))
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size - self.read;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(self.changed());
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read == self.size && Digest::from_hasher(std::mem::take(&mut self.hasher)) != self.digest {
            return Err(self.changed());
        }
        Ok(n)
    }
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
        let prev = dir.path().join("prev");
        std::fs::create_dir_all(prev.join("sub")).unwrap();
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
        let tree = Tree(prev.clone());
        assert_eq!(find(&tree, &entries, 0..entries.len()), Reused { files: vec![0], bytes: 4 });

        // The copy checks again: changed in between, it fails.
        let read = |content: &[u8]| {
            std::fs::write(prev.join("same.txt"), content).unwrap();
            let mut out = Vec::new();
            let from = tree.open("same.txt", content.len() as u64).unwrap();
            Verified::new(from, "same.txt", 4, Digest::of(b"same")).read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read(b"same").unwrap(), b"same");
        assert!(read(b"SAME").unwrap_err().to_string().contains("changed while it was reused"));
        let from = Box::new(&b"sam"[..]);
        assert!(Verified::new(from, "same.txt", 4, Digest::of(b"same")).read_to_end(&mut Vec::new()).is_err());
        // a longer file gives its first `size` bytes, checked
        let mut out = Vec::new();
        Verified::new(&b"same and more"[..], "same.txt", 4, Digest::of(b"same")).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"same");
    }
}
