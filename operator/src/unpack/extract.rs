//! The blocking half of a layer: a byte stream in, files in one layer's
//! staging directory out. Runs on a blocking thread fed by the download.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use super::archive::{Archive, Header, Kind, TarError};
use super::layer::{Compression, LayerKind};
use super::path::{MAX_PATH_BYTES, parents, resolve_link_target, sanitize};
use super::toc;
use super::window::{Frames, MAX_WINDOW_LOG};
use super::{Budget, Entry, LayerReport, Selection, UnpackError, Whiteout};
use crate::oci::Digest;

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE: &str = ".wh..wh..opq";

/// What the entry at `path` (sanitised) deletes, when its name is a
/// whiteout; an error for one that deletes no entry.
pub(crate) fn whiteout(path: &str) -> Option<Result<Whiteout, String>> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let hidden = name.strip_prefix(WHITEOUT_PREFIX)?;
    // `.wh.` alone would delete the directory it is in, `.wh..` the one
    // above: neither names an entry to delete.
    if name != OPAQUE && matches!(hidden, "" | "." | "..") {
        return Some(Err(format!("whiteout {name:?} deletes no entry")));
    }
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    Some(Ok(if name == OPAQUE {
        Whiteout::Opaque(parent.to_string())
    } else if parent.is_empty() {
        Whiteout::Path(hidden.to_string())
    } else {
        Whiteout::Path(format!("{parent}/{hidden}"))
    }))
}

/// Unpack one layer from `reader` (the raw blob bytes) into `dir`.
pub(crate) fn unpack_layer(
    kind: &LayerKind,
    digest: &Digest,
    reader: impl Read,
    dir: &Path,
    selection: &Selection,
    budget: &Budget,
) -> Result<LayerReport, UnpackError> {
    fs::create_dir_all(dir).map_err(UnpackError::io(dir))?;
    let format = match kind {
        LayerKind::File { .. } => "blob",
        LayerKind::Tar(_) | LayerKind::Indexed(..) => "tar archive",
    };
    let mut w = LayerWriter::new(dir, digest, format, budget);
    match kind {
        LayerKind::File { path } => {
            budget.charge_file()?;
            // The file is the blob: its digest is the layer's, which the
            // download checks before anything is committed. No second hash.
            let entry = w.write_file(path, &mut Counted { inner: reader, budget }, false, Some(digest))?;
            w.report.entries.insert(path.clone(), entry);
        }
        LayerKind::Tar(c) | LayerKind::Indexed(c, _) => {
            let declared = match kind {
                LayerKind::Indexed(_, f) => Some(*f),
                _ => None,
            };
            // The decoder reads the blob through `raw`, which keeps its last
            // bytes: a TOC footer says what the layer is when no annotation did.
            let raw = Rc::new(RefCell::new(Tail::new(reader)));
            // Counting sits after the decoder: the limit is on what a layer
            // expands to, which is what a bomb inflates.
            let shared = Shared(raw.clone());
            let decoded: Box<dyn Read> = match c {
                Compression::None => Box::new(Counted { inner: shared, budget }),
                Compression::Gzip => Box::new(Counted { inner: flate2::read::MultiGzDecoder::new(shared), budget }),
                Compression::Zstd => {
                    // A frame may ask for a window of up to 2 GiB: `Frames`
                    // refuses the ones past 128 MiB, and makes those over
                    // 8 MiB wait for one of a few places.
                    let mut d = zstd::stream::read::Decoder::new(Frames::new(shared))
                        .map_err(|e| stream_error(digest, format, e))?;
                    d.window_log_max(MAX_WINDOW_LOG).map_err(|e| stream_error(digest, format, e))?;
                    Box::new(Counted { inner: d, budget })
                }
            };
            w.unpack_tar(decoded, selection, declared.is_some())?;
            // What follows the tar (an eStargz footer, zstd:chunked's
            // skippable frames) is read raw, never inflated: it is no part
            // of the archive, and the download hashes it all the same.
            let tail = raw.borrow_mut().drain().map_err(|e| stream_error(digest, format, e))?;
            let indexed = declared.or_else(|| toc::footer(&tail).map(|f| f.format()));
            if let (Some(_), None) = (indexed, declared) {
                w.drop_metadata()?;
            }
            w.report.toc = indexed;
        }
    }
    Ok(w.report)
}

/// A layer read through its TOC: its entries in TOC order, each with its
/// content (files already fetched and checked against their TOC digests),
/// go through the same rules as a tar's (paths, links, whiteouts, devices,
/// selection, limits) into `dir`.
pub(crate) fn unpack_entries(
    format: toc::Format,
    digest: &Digest,
    entries: impl Iterator<Item = Result<(Header, Box<dyn Read>), UnpackError>>,
    dir: &Path,
    selection: &Selection,
    budget: &Budget,
) -> Result<LayerReport, UnpackError> {
    fs::create_dir_all(dir).map_err(UnpackError::io(dir))?;
    let mut w = LayerWriter::new(dir, digest, format.layer_name(), budget);
    for e in entries {
        let (header, mut content) = e?;
        w.entry(header, &mut content, selection, true)?;
    }
    w.report.toc = Some(format);
    Ok(w.report)
}

struct LayerWriter<'a> {
    dir: &'a Path,
    digest: &'a Digest,
    format: &'static str,
    budget: &'a Budget,
    /// Directories known to exist (and to be real directories), so that
    /// thousands of files in one folder cost one check, not thousands.
    dirs: HashSet<String>,
    report: LayerReport,
    /// One copy buffer for every file of the layer.
    buf: Box<[u8]>,
}

impl<'a> LayerWriter<'a> {
    fn new(dir: &'a Path, digest: &'a Digest, format: &'static str, budget: &'a Budget) -> Self {
        LayerWriter {
            dir,
            digest,
            format,
            budget,
            dirs: HashSet::new(),
            report: LayerReport::default(),
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
        }
    }

    /// `indexed`: the layer declared a TOC, so its metadata entries are
    /// skipped like unselected files.
    fn unpack_tar(&mut self, r: impl Read, selection: &Selection, indexed: bool) -> Result<(), UnpackError> {
        let mut archive = Archive::new(r);
        while let Some(header) = archive.next_entry().map_err(|e| self.tar_error(e))? {
            self.entry(header, &mut archive, selection, indexed)?;
        }
        Ok(())
    }

    /// One entry of a tar, or of a TOC read by ranges: the same rules.
    fn entry(
        &mut self,
        header: Header,
        content: &mut dyn Read,
        selection: &Selection,
        indexed: bool,
    ) -> Result<(), UnpackError> {
        let Header { kind, path: raw, link: raw_target, mode, .. } = header;
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_path = |reason: String| UnpackError::UnsafePath { path: shown.clone(), reason };
        let Some(path) = sanitize(&raw).map_err(|e| unsafe_path(e.to_string()))? else {
            return Ok(());
        };
        if let Some(w) = whiteout(&path) {
            let w = w.map_err(unsafe_path)?;
            // A whiteout is an entry like any other for the file count.
            self.budget.charge_file()?;
            self.report.whiteouts.push(w);
            return Ok(());
        }
        let device = match kind {
            Kind::Dir => return Ok(()),
            Kind::Char => Some("character device"),
            Kind::Block => Some("block device"),
            Kind::Fifo => Some("FIFO"),
            Kind::File | Kind::Symlink | Kind::HardLink => None,
        };
        if let Some(kind) = device {
            return Err(UnpackError::UnsupportedEntry { path, kind: kind.into() });
        }
        // Links are checked before selection: an archive that tries to
        // escape is refused whole, not just filtered.
        let link = match kind {
            Kind::Symlink | Kind::HardLink => {
                if raw_target.len() > MAX_PATH_BYTES {
                    return Err(unsafe_path(format!("link target longer than {MAX_PATH_BYTES} bytes")));
                }
                let target = String::from_utf8_lossy(&raw_target).into_owned();
                let escapes = || UnpackError::LinkEscapes { path: path.clone(), target: target.clone() };
                Some(if kind == Kind::Symlink {
                    resolve_link_target(&path, &target).ok_or_else(escapes)?;
                    (true, target)
                } else {
                    let t = sanitize(&raw_target).ok().flatten().ok_or_else(escapes)?;
                    if t == path {
                        return Err(UnpackError::LinkEscapes { path, target: format!("{t} (a hard link to itself)") });
                    }
                    (false, t)
                })
            }
            _ => None,
        };
        if !selection.wants_path(&path) || (indexed && toc::METADATA_ENTRIES.contains(&path.as_str())) {
            return Ok(());
        }
        self.budget.charge_file()?;
        self.budget.charge_metadata(path.len() + link.as_ref().map_or(0, |(_, t)| t.len()))?;
        let made = match link {
            Some((true, target)) => self.symlink(&path, &target)?,
            Some((false, target)) => self.hard_link(&path, &target)?,
            None => self.write_file(&path, content, mode & 0o111 != 0, None)?,
        };
        self.report.entries.insert(path, made);
        Ok(())
    }

    /// A footer showed the layer has a TOC after its metadata entries were
    /// written as files: they are taken out again.
    fn drop_metadata(&mut self) -> Result<(), UnpackError> {
        for name in toc::METADATA_ENTRIES {
            if self.report.entries.remove(name).is_some() {
                let full = self.dir.join(name);
                fs::remove_file(&full).map_err(UnpackError::io(&full))?;
            }
        }
        Ok(())
    }

    fn tar_error(&self, e: TarError) -> UnpackError {
        match e {
            TarError::Io(e) => stream_error(self.digest, self.format, e),
            TarError::TooLong { what, max } => {
                UnpackError::UnsafePath { path: format!("({what})"), reason: format!("longer than {max} bytes") }
            }
            TarError::Unsupported { path, kind } => {
                UnpackError::UnsupportedEntry { path: String::from_utf8_lossy(&path).into_owned(), kind }
            }
            e @ (TarError::Malformed(_) | TarError::Ambiguous(_)) => self.corrupt(e.to_string()),
        }
    }

    fn corrupt(&self, message: String) -> UnpackError {
        UnpackError::Corrupt { digest: self.digest.to_string(), format: self.format, message }
    }

    /// Write one file, hashing it unless its digest is `known`.
    fn write_file(
        &mut self,
        path: &str,
        r: &mut dyn Read,
        executable: bool,
        known: Option<&Digest>,
    ) -> Result<Entry, UnpackError> {
        let full = self.prepare(path)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(&full)
            .map_err(UnpackError::io(&full))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let buf = &mut self.buf[..];
        loop {
            let n = match r.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(stream_error(self.digest, self.format, e)),
            };
            if known.is_none() {
                hasher.update(&buf[..n]);
            }
            self.budget.charge_selected(n as u64)?;
            f.write_all(&buf[..n]).map_err(UnpackError::io(&full))?;
            size += n as u64;
        }
        let sha256 = known.cloned().unwrap_or_else(|| Digest::from_hasher(hasher));
        Ok(Entry::File { size, sha256, executable })
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<Entry, UnpackError> {
        let full = self.prepare(path)?;
        std::os::unix::fs::symlink(target, &full).map_err(UnpackError::io(&full))?;
        Ok(Entry::Symlink { target: target.to_string() })
    }

    /// A hard link may only name a file this layer already wrote: its bytes
    /// are then known, hashed and inside the output.
    fn hard_link(&mut self, path: &str, target: &str) -> Result<Entry, UnpackError> {
        let entry = match self.report.entries.get(target) {
            Some(e @ Entry::File { .. }) => e.clone(),
            _ => {
                return Err(UnpackError::LinkEscapes {
                    path: path.to_string(),
                    target: format!("{target} (hard link to a file not unpacked before it in this layer)"),
                });
            }
        };
        let full = self.prepare(path)?;
        fs::hard_link(self.dir.join(target), &full).map_err(UnpackError::io(&full))?;
        Ok(entry)
    }

    /// Make the parents of `path` real directories and clear the way for a
    /// new entry there (a later entry replaces an earlier one, as in tar).
    fn prepare(&mut self, path: &str) -> Result<std::path::PathBuf, UnpackError> {
        for parent in parents(path) {
            if self.dirs.contains(parent) {
                continue;
            }
            match self.report.entries.get(parent) {
                Some(Entry::Symlink { .. }) => {
                    return Err(UnpackError::UnsafePath {
                        path: path.to_string(),
                        reason: format!("goes through the link {parent:?}"),
                    });
                }
                Some(Entry::File { .. }) => {
                    return Err(UnpackError::UnsafePath {
                        path: path.to_string(),
                        reason: format!("{parent:?} is a file"),
                    });
                }
                None => {
                    let full = self.dir.join(parent);
                    fs::create_dir(&full).map_err(UnpackError::io(&full))?;
                }
            }
            self.dirs.insert(parent.to_string());
        }
        // Everything in this directory was made by this writer, so its maps
        // know what is there without asking the filesystem.
        let full = self.dir.join(path);
        if self.dirs.contains(path) {
            return Err(UnpackError::UnsafePath { path: path.to_string(), reason: "replaces a directory".into() });
        }
        if self.report.entries.remove(path).is_some() {
            fs::remove_file(&full).map_err(UnpackError::io(&full))?;
        }
        Ok(full)
    }
}

/// Charges every byte read to the budget; past the limit, reading fails
/// with the limit error inside an `io::Error`.
/// A reader that keeps the last `MAX_FOOTER` bytes it read.
struct Tail<R> {
    inner: R,
    last: Vec<u8>,
}

impl<R: Read> Tail<R> {
    fn new(inner: R) -> Self {
        Tail { inner, last: Vec::with_capacity(2 * toc::MAX_FOOTER) }
    }

    /// Read the rest of the stream; its last bytes.
    fn drain(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 16 * 1024];
        while self.read(&mut buf)? > 0 {}
        Ok(std::mem::take(&mut self.last))
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = &buf[..n];
        if read.len() >= toc::MAX_FOOTER {
            self.last.clear();
            self.last.extend_from_slice(&read[read.len() - toc::MAX_FOOTER..]);
        } else {
            self.last.extend_from_slice(read);
            let excess = self.last.len().saturating_sub(toc::MAX_FOOTER);
            self.last.drain(..excess);
        }
        Ok(n)
    }
}

/// The decoder's handle on the shared `Tail`.
struct Shared<R>(Rc<RefCell<Tail<R>>>);

impl<R: Read> Read for Shared<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

struct Counted<'a, R> {
    inner: R,
    budget: &'a Budget,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.budget.charge_bytes(n as u64).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// A read error came from the stream: a limit (carried inside the
/// `io::Error` by `Counted`), a corrupt archive, or a cut download.
fn stream_error(digest: &Digest, format: &'static str, e: io::Error) -> UnpackError {
    if e.get_ref().is_some_and(|inner| inner.is::<UnpackError>()) {
        return *e.into_inner().expect("checked").downcast::<UnpackError>().expect("checked");
    }
    UnpackError::Corrupt { digest: digest.to_string(), format, message: e.to_string() }
}

#[cfg(test)]
mod tests;
