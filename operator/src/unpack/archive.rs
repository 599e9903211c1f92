//! A tar reader that reads every archive the way Go's `archive/tar` (and so
//! containerd) reads it, and refuses the archives that readers disagree on.
//!
//! Why not the `tar` crate: it splits PAX headers on newlines instead of by
//! each record's length, reads a data section after header-only entries
//! (links, directories) whose size field is not zero, and takes a V7
//! directory (`\0` type, name ending in `/`) for a file. Each of those lets
//! one archive mean one set of files to ocisync and another to the rest of
//! the ecosystem. The rules, and where they come from, are in the README
//! ("What becomes a file").

use std::io::{self, Read};

/// A GNU long name or link, or a PAX header, longer than this is refused
/// without being held. (Go allows 1 MiB; past PATH_MAX a name is refused
/// anyway, so this only bounds what is read before saying so.)
pub(crate) const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

const BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TarError {
    /// Not a tar archive as any reader reads it.
    #[error("{0}")]
    Malformed(String),
    /// Readers disagree on what this means: refused rather than read one way.
    #[error("{0}, which tar readers do not agree on")]
    Ambiguous(String),
    #[error("{what} longer than {max} bytes")]
    TooLong { what: &'static str, max: u64 },
    /// Bytes the stream never carried (sparse holes), or a type no
    /// container runtime unpacks.
    #[error("{kind}")]
    Unsupported { path: Vec<u8>, kind: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn malformed(m: impl Into<String>) -> TarError {
    TarError::Malformed(m.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

/// One entry, with every extension header before it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: Kind,
    pub(crate) path: Vec<u8>,
    pub(crate) link: Vec<u8>,
    /// The bytes of data that follow (0 for header-only kinds).
    pub(crate) size: u64,
    pub(crate) mode: u32,
}

/// Entries in order; `Read` reads the current entry's data.
pub(crate) struct Archive<R> {
    r: R,
    remaining: u64,
    pad: u64,
    done: bool,
}

/// What extension entries said about the entry after them.
#[derive(Default)]
struct Pending {
    pax: Option<Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }
}

impl<R: Read> Archive<R> {
    pub(crate) fn new(r: R) -> Self {
        Archive { r, remaining: 0, pad: 0, done: false }
    }

    /// The next entry, or `None` at the end-of-archive marker (or at the end
    /// of the stream on a block boundary, as Go reads it). Bytes after the
    /// marker are not read.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut pending = Pending::default();
        loop {
            let Some(block) = self.read_block()? else {
                return self.end(&pending);
            };
            if block.iter().all(|&b| b == 0) {
                // Two zero blocks end the archive; one, then the end of the
                // stream, too. One, then a header, is no archive.
                if let Some(next) = self.read_block()?
                    && next.iter().any(|&b| b != 0)
                {
                    return Err(malformed("a zero block followed by a header"));
                }
                return self.end(&pending);
            }
            let raw = RawHeader::parse(&block)?;
            match raw.typeflag {
                b'x' | b'g' => {
                    let data = self.read_extension(raw.size, "a PAX header")?;
                    let pax = Pax::parse(&data)?;
                    // A global header names no entry: Go hands it over as
                    // one, containerd ignores it, and so does ocisync. Its
                    // records are still checked like any other. Go drops
                    // extensions pending before one; others keep them.
                    if raw.typeflag == b'g' && !pending.is_empty() {
                        return Err(TarError::Ambiguous("an extension header before a PAX global header".into()));
                    }
                    if raw.typeflag == b'x' {
                        if pending.pax.is_some() {
                            return Err(TarError::Ambiguous("two PAX headers for one entry".into()));
                        }
                        pending.pax = Some(pax);
                    }
                    continue;
                }
                b'L' | b'K' => {
                    let mut data = self.read_extension(raw.size, "a GNU long name")?;
                    // Go, Python, GNU tar and libarchive all end it at the first NUL.
                    if let Some(nul) = data.iter().position(|&b| b == 0) {
                        data.truncate(nul);
                    }
                    let slot = if raw.typeflag == b'L' { &mut pending.long_name } else { &mut pending.long_link };
                    if slot.is_some() {
                        return Err(TarError::Ambiguous("two GNU long names for one entry".into()));
                    }
                    *slot = Some(data);
                    continue;
                }
                _ => {}
            }
            let header = apply(raw, std::mem::take(&mut pending))?;
            self.remaining = header.size;
            self.pad = padding(header.size);
            return Ok(Some(header));
        }
    }

    fn end(&mut self, pending: &Pending) -> Result<Option<Header>, TarError> {
        if !pending.is_empty() {
            return Err(malformed("an extension header with no entry after it"));
        }
        self.done = true;
        Ok(None)
    }

    /// One whole block, `None` at a clean end of the stream.
    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarError> {
        let mut block = [0u8; BLOCK];
        let n = read_full(&mut self.r, &mut block)?;
        match n {
            0 => Ok(None),
            BLOCK => Ok(Some(block)),
            _ => Err(malformed("the archive ends inside a header")),
        }
    }

    fn read_extension(&mut self, size: u64, what: &'static str) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXTENSION_BYTES {
            return Err(TarError::TooLong { what, max: MAX_EXTENSION_BYTES });
        }
        let mut data = vec![0u8; size as usize];
        if read_full(&mut self.r, &mut data)? != data.len() {
            return Err(malformed(format!("the archive ends inside {what}")));
        }
        self.discard(padding(size), true)?;
        Ok(data)
    }

    /// Past what is left of the current entry's data and its padding.
    fn skip_rest(&mut self) -> Result<(), TarError> {
        let (data, pad) = (self.remaining, self.pad);
        self.remaining = 0;
        self.pad = 0;
        self.discard(data, false)?;
        self.discard(pad, true)
    }

    /// A stream that stops right where padding should start ends the
    /// archive there, as in Go; one that stops inside data is cut short.
    fn discard(&mut self, n: u64, padding: bool) -> Result<(), TarError> {
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink())?;
        if copied < n && !(padding && copied == 0) {
            return Err(malformed("the archive ends inside an entry"));
        }
        Ok(())
    }
}

impl<R: Read> Read for Archive<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.r.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside an entry"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// A header block's fields, before extensions apply.
#[derive(Debug)]
struct RawHeader {
    typeflag: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    size: u64,
    mode: u32,
}

#[derive(PartialEq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

impl RawHeader {
    fn parse(b: &[u8; BLOCK]) -> Result<RawHeader, TarError> {
        let sum = octal(&b[148..156]).ok_or_else(|| malformed("a header checksum that is not a number"))?;
        // Old writers summed signed bytes: both sums are accepted, as everywhere.
        let (mut unsigned, mut signed) = (0i64, 0i64);
        for (i, &c) in b.iter().enumerate() {
            let c = if (148..156).contains(&i) { b' ' } else { c };
            unsigned += i64::from(c);
            signed += i64::from(c as i8);
        }
        if sum != unsigned && sum != signed {
            return Err(malformed("a header whose checksum does not match (not a tar archive)"));
        }
        let format = match (&b[257..263], &b[263..265]) {
            (b"ustar\0", _) if &b[508..512] == b"tar\0" => Format::Star,
            (b"ustar\0", _) => Format::Ustar,
            (b"ustar ", b" \0") => Format::Gnu,
            _ => Format::V7,
        };
        let number = |field: &[u8], what: &str| {
            numeric(field).ok_or_else(|| malformed(format!("a {what} that is not a number")))
        };
        let size = number(&b[124..136], "size")?;
        let mode = number(&b[100..108], "mode")?;
        for (range, what) in [(108..116, "uid"), (116..124, "gid"), (136..148, "modification time")] {
            number(&b[range], what)?;
        }
        let mut name = cstr(&b[0..100]).to_vec();
        if format != Format::V7 {
            number(&b[329..337], "device major")?;
            number(&b[337..345], "device minor")?;
        }
        let prefix = match format {
            Format::Ustar => cstr(&b[345..500]),
            Format::Star => cstr(&b[345..476]),
            Format::Gnu => {
                // Go reads these as times, and when they are not numbers,
                // as a USTAR prefix that old Go versions wrote there; GNU
                // tar never does. Refused, rather than named two ways.
                for field in [&b[345..357], &b[357..369]] {
                    if field[0] != 0 && numeric(field).is_none() {
                        return Err(TarError::Ambiguous("a GNU header with a USTAR prefix where its times go".into()));
                    }
                }
                b""
            }
            Format::V7 => b"",
        };
        if !prefix.is_empty() {
            name = [prefix, b"/", &name].concat();
        }
        Ok(RawHeader {
            typeflag: b[156],
            name,
            link: cstr(&b[157..257]).to_vec(),
            size: u64::try_from(size).map_err(|_| malformed("a negative size"))?,
            // permission and type bits only: the high bits of a base-256 mode mean nothing
            mode: (mode & 0o7777) as u32,
        })
    }
}

/// The extension headers applied to the entry after them, in Go's order:
/// PAX records over the header's fields, then GNU long names over both.
fn apply(raw: RawHeader, pending: Pending) -> Result<Header, TarError> {
    let Pending { pax, long_name, long_link } = pending;
    let pax = pax.unwrap_or_default();
    // libarchive prefers the PAX name, Go the GNU one.
    let ambiguous = |what: &str| TarError::Ambiguous(format!("a PAX {what} and a GNU long {what} for one entry"));
    let long_name = long_name.filter(|n| !n.is_empty());
    let long_link = long_link.filter(|l| !l.is_empty());
    if long_name.is_some() && pax.path.is_some() {
        return Err(ambiguous("name"));
    }
    if long_link.is_some() && pax.linkpath.is_some() {
        return Err(ambiguous("link"));
    }
    let path = long_name.or(pax.path).unwrap_or(raw.name);
    let link = long_link.or(pax.linkpath).unwrap_or(raw.link);
    let mut size = pax.size.unwrap_or(raw.size);
    if raw.typeflag == b'S' || pax.sparse {
        return Err(TarError::Unsupported { path, kind: "sparse file (OCI layers should hold none)".into() });
    }
    let dir_name = path.last() == Some(&b'/');
    let kind = match raw.typeflag {
        // V7 directories: a plain-file type and a name ending in '/'. Go
        // and Python read no data after one with the NUL type.
        b'\0' if dir_name => Kind::Dir,
        // With type '0' Go and Python read its size in data, GNU tar and
        // libarchive do not: only a zero size means the same to all.
        b'0' | b'7' if dir_name => {
            if size != 0 {
                return Err(TarError::Ambiguous(format!(
                    "{:?}: a file entry named like a directory with {size} bytes of data",
                    String::from_utf8_lossy(&path)
                )));
            }
            Kind::Dir
        }
        b'\0' | b'0' | b'7' => Kind::File,
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        t => {
            // containerd refuses every other type; so does ocisync.
            let kind = format!("tar entry of type {:?}, which no container runtime unpacks", char::from(t));
            return Err(TarError::Unsupported { path, kind });
        }
    };
    // Links, directories, devices and FIFOs carry no data, whatever their
    // size field says (Go, Python, GNU tar).
    if kind != Kind::File {
        size = 0;
    }
    Ok(Header { kind, path, link, size, mode: raw.mode })
}

/// A NUL-terminated field.
fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// A numeric field, base-256 or octal, as Go parses it.
fn numeric(b: &[u8]) -> Option<i64> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        let negative = b[0] & 0x40 != 0;
        let inv = if negative { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return None;
            }
            x = x << 8 | u64::from(c);
        }
        if x >> 63 != 0 {
            return None;
        }
        let x = x as i64;
        return Some(if negative { !x } else { x });
    }
    octal(b)
}

fn octal(b: &[u8]) -> Option<i64> {
    let start = b.iter().position(|&c| c != b' ' && c != 0).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ' && c != 0).map_or(start, |e| e + 1);
    let digits = cstr(&b[start..end.max(start)]);
    if digits.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(s, 8).ok().and_then(|v| i64::try_from(v).ok())
}

/// The PAX records ocisync acts on. Empty values keep the header's field,
/// as in Go.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Pax {
    pub(crate) path: Option<Vec<u8>>,
    pub(crate) linkpath: Option<Vec<u8>>,
    pub(crate) size: Option<u64>,
    /// GNU's PAX-encoded sparse files (`GNU.sparse.*`).
    pub(crate) sparse: bool,
}

impl Pax {
    /// Records by their length prefix (`"%d %s=%s\n"`, the length counting
    /// itself), never by newlines: a value may hold any byte, a newline or
    /// something that looks like another record included.
    pub(crate) fn parse(mut data: &[u8]) -> Result<Pax, TarError> {
        let bad = |m: &str| malformed(format!("a malformed PAX header: {m}"));
        let mut pax = Pax::default();
        while !data.is_empty() {
            let space = data.iter().position(|&b| b == b' ').ok_or_else(|| bad("a record with no length"))?;
            let len: usize = std::str::from_utf8(&data[..space])
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("a record length that is not a number"))?;
            if len < 5 || len > data.len() || len <= space + 1 {
                return Err(bad("a record length past the header"));
            }
            let (record, rest) = data.split_at(len);
            data = rest;
            let Some((&b'\n', body)) = record[space + 1..].split_last() else {
                return Err(bad("a record that does not end in a newline"));
            };
            let eq = body.iter().position(|&b| b == b'=').ok_or_else(|| bad("a record with no '='"))?;
            let (key, value) = (&body[..eq], &body[eq + 1..]);
            if key.is_empty() || key.contains(&0) {
                return Err(bad("an empty key or one with a NUL"));
            }
            match key {
                b"path" | b"linkpath" | b"uname" | b"gname" if value.contains(&0) => {
                    return Err(bad("a name with a NUL in it"));
                }
                b"path" => pax.path = Some(value.to_vec()).filter(|v| !v.is_empty()),
                b"linkpath" => pax.linkpath = Some(value.to_vec()).filter(|v| !v.is_empty()),
                b"size" if !value.is_empty() => {
                    let v = std::str::from_utf8(value).ok().and_then(|v| v.strip_prefix('+').unwrap_or(v).parse().ok());
                    pax.size = Some(v.ok_or_else(|| bad("a size that is not a number"))?);
                }
                k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
                _ => {}
            }
        }
        Ok(pax)
    }
}

#[cfg(test)]
#[path = "archive/tests.rs"]
mod tests;
