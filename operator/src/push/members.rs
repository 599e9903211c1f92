//! The uncompressed layer cut into members (gzip members or zstd frames),
//! compressed on several cores and written in order. Each member is
//! compressed alone, so where a batch ends changes nothing in the bytes:
//! the same input gives the same layer however many cores there are.
//! Memory: one batch of members (about [`BATCH`] bytes), uncompressed and
//! compressed.

use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};

use crate::oci::Digest;

/// Members gathered before they are compressed together.
const BATCH: usize = 8 << 20;
/// Cores used at most.
const MAX_WORKERS: usize = 4;

/// Bytes out, counted and hashed: the blob's digest and each member's offset.
struct Counted<W> {
    inner: W,
    n: u64,
    hash: Sha256,
}

pub(super) struct Members<W: Write> {
    out: Counted<W>,
    zstd: bool,
    cur: Vec<u8>,
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    /// Where each member written starts in the blob.
    starts: Vec<u64>,
    /// Members cut so far: the index of the next one.
    count: usize,
    diff: Sha256,
    diff_len: u64,
    workers: usize,
}

impl<W: Write> Members<W> {
    pub(super) fn new(out: W, zstd: bool) -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_WORKERS);
        Members {
            out: Counted { inner: out, n: 0, hash: Sha256::new() },
            zstd,
            cur: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            starts: Vec::new(),
            count: 0,
            diff: Sha256::new(),
            diff_len: 0,
            workers,
        }
    }

    /// Bytes of the current member so far.
    pub(super) fn pending(&self) -> usize {
        self.cur.len()
    }

    /// The index of the member the next bytes start (after [`cut`]).
    pub(super) fn next_member(&self) -> usize {
        self.count
    }

    /// Where member `index` starts in the blob, once it is written.
    pub(super) fn start(&self, index: usize) -> Option<u64> {
        self.starts.get(index).copied()
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        self.diff.update(bytes);
        self.diff_len += bytes.len() as u64;
        self.cur.extend_from_slice(bytes);
    }

    /// End the current member (if it has bytes).
    pub(super) fn cut(&mut self) -> io::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        self.batch_bytes += self.cur.len();
        self.batch.push(std::mem::take(&mut self.cur));
        self.count += 1;
        if self.batch_bytes >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Compress and write every member cut so far; afterwards
    /// [`position`](Self::position) is where the next bytes go.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        for c in compress_all(&batch, self.zstd, self.workers)? {
            self.starts.push(self.out.n);
            self.put(&c)?;
        }
        Ok(())
    }

    pub(super) fn position(&self) -> u64 {
        self.out.n
    }

    /// Bytes written as they are, after every member (a footer, a skippable
    /// frame): not part of the uncompressed stream.
    pub(super) fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.cut()?;
        self.flush()?;
        self.put(bytes)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.inner.write_all(bytes)?;
        self.out.n += bytes.len() as u64;
        self.out.hash.update(bytes);
        Ok(())
    }

    /// The writer, the blob's digest and size, and the uncompressed
    /// stream's digest and size.
    pub(super) fn finish(mut self) -> io::Result<(W, Digest, u64, Digest, u64)> {
        self.cut()?;
        self.flush()?;
        self.out.inner.flush()?;
        let Counted { inner, n, hash } = self.out;
        Ok((inner, Digest::from_hasher(hash), n, Digest::from_hasher(self.diff), self.diff_len))
    }
}

/// Each member compressed alone, on up to `workers` threads, in order.
fn compress_all(batch: &[Vec<u8>], zstd: bool, workers: usize) -> io::Result<Vec<Vec<u8>>> {
    if batch.len() <= 1 || workers <= 1 {
        return batch.iter().map(|m| compress(m, zstd)).collect();
    }
    let next = AtomicUsize::new(0);
    let done: Vec<Mutex<Option<io::Result<Vec<u8>>>>> = batch.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.min(batch.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(m) = batch.get(i) else { break };
                    let c = compress(m, zstd);
                    if let Ok(mut slot) = done[i].lock() {
                        *slot = Some(c);
                    }
                }
            });
        }
    });
    done.into_iter()
        .map(|slot| {
            slot.into_inner().ok().flatten().unwrap_or_else(|| Err(io::Error::other("a compression thread failed")))
        })
        .collect()
}

/// One gzip member (no time, OS unknown) or one zstd frame.
fn compress(member: &[u8], zstd: bool) -> io::Result<Vec<u8>> {
    if zstd {
        return zstd::stream::encode_all(member, 3);
    }
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(member.len() / 2), Compression::default());
    gz.write_all(member)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_members_whatever_the_batch_and_the_cores() {
        let data: Vec<Vec<u8>> = (0..40u32).map(|i| (0..(i * 997)).map(|j| (j % 251) as u8).collect()).collect();
        let write = |workers: usize, cut_every: usize| {
            let mut m = Members::new(Vec::new(), false);
            m.workers = workers;
            for (i, d) in data.iter().enumerate() {
                m.write(d);
                if i % cut_every == 0 {
                    m.cut().unwrap();
                }
                if i % 7 == 0 {
                    m.flush().unwrap();
                }
            }
            m.finish().unwrap()
        };
        let one = write(1, 3);
        let four = write(4, 3);
        assert_eq!((one.1, one.2), (four.1.clone(), four.2), "cores change nothing");
        let mut all = Vec::new();
        flate2::read::MultiGzDecoder::new(&four.0[..]).read_to_end_into(&mut all);
        assert_eq!(all, data.concat(), "the members are the stream");
        assert_eq!(four.3, Digest::of(&data.concat()));
    }

    trait ReadAll {
        fn read_to_end_into(self, out: &mut Vec<u8>);
    }
    impl<R: io::Read> ReadAll for R {
        fn read_to_end_into(mut self, out: &mut Vec<u8>) {
            self.read_to_end(out).unwrap();
        }
    }
}
