//! A content-addressed blob cache shared by the syncs of one process, so
//! that N Artifacts (or N revisions) of one digest download its layers
//! once. Bounded in bytes, evicted least recently used, and verified by
//! digest on every read: a cached file that no longer hashes to its name
//! is dropped and the blob fetched again. One download per digest at a
//! time: the others wait for it and then read the cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::oci::Digest;

/// Per-digest locks kept before idle ones are dropped.
const MAX_INFLIGHT: usize = 1024;
/// Layers whose TOC's place is remembered; past this the map starts over.
const MAX_TOCS: usize = 4096;

/// What a sync may stage in the work dir beside the cache: a ConfigMap's
/// files (1 MiB at most) per reconcile running at once, plus slack for
/// TOCs and the filesystem's own blocks.
const STAGING_PER_SYNC: u64 = 1 << 20;
const SLACK: u64 = 16 << 20;

/// The cache's size: `requested`, made smaller when the work dir has a
/// `limit` that it and `concurrency` syncs' staging would pass (0, off,
/// when nothing is left for it).
pub(crate) fn bound(requested: u64, limit: Option<u64>, concurrency: u16) -> u64 {
    let Some(limit) = limit else { return requested };
    let staging = u64::from(concurrency.max(1)) * STAGING_PER_SYNC + SLACK;
    requested.min(limit.saturating_sub(staging))
}

#[derive(Debug)]
pub(crate) struct BlobCache {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// One lock per digest being fetched.
    inflight: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Layer digest → where its TOC is kept, for ranged reads.
    tocs: Mutex<HashMap<Digest, TocPlace>>,
}

/// A layer's checked TOC: the bytes its digest covers (eStargz's JSON,
/// zstd:chunked's compressed frame) are a cache entry under that digest,
/// verified on every read like a blob.
#[derive(Debug, Clone)]
pub(crate) struct TocPlace {
    pub(crate) digest: Digest,
    /// Where the layer's file data ends (the TOC begins).
    pub(crate) data_end: u64,
    /// The TOC's bytes in the layer.
    pub(crate) toc_bytes: u64,
}

#[derive(Debug, Default)]
struct State {
    /// digest → (size, last use)
    entries: HashMap<Digest, (u64, u64)>,
    total: u64,
    /// Bytes of downloads being written to the cache: they are on disk
    /// too, so they count against the bound before they are entries.
    reserved: u64,
    clock: u64,
}

/// Room held for one download being written to the cache; given back when
/// dropped (the download kept or not).
#[derive(Debug)]
pub(crate) struct Reservation {
    cache: Arc<BlobCache>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut s = self.cache.state.lock().expect("cache poisoned");
        s.reserved = s.reserved.saturating_sub(self.size);
    }
}

impl BlobCache {
    /// A cache in `dir`, emptied: entries from an earlier process are not
    /// trusted to be whole (they would be re-verified anyway, but their
    /// sizes would not be counted).
    pub(crate) fn new(dir: PathBuf, max_bytes: u64) -> std::io::Result<BlobCache> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(BlobCache { dir, max_bytes, state: Mutex::default(), inflight: Mutex::default(), tocs: Mutex::default() })
    }

    /// Is a blob of this size worth keeping? (One that would evict more
    /// than half the cache is not.)
    pub(crate) fn fits(&self, size: u64) -> bool {
        size <= self.max_bytes / 2
    }

    /// Room for a download of `size` bytes, evicting the least recently
    /// used entries for it; `None` when downloads already being written
    /// hold too much of it (this one then goes on without the cache). So
    /// the cache's directory, temporaries included, never holds more than
    /// its bound: the work dir under it is an emptyDir with a `sizeLimit`,
    /// past which the kubelet evicts the pod.
    pub(crate) fn reserve(self: &Arc<Self>, size: u64) -> Option<Reservation> {
        if !self.fits(size) {
            return None;
        }
        let mut s = self.state.lock().expect("cache poisoned");
        while s.total + s.reserved + size > self.max_bytes {
            // nothing left to evict: the rest is held by downloads
            let oldest = s.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(d, _)| d.clone())?;
            if let Some((n, _)) = s.entries.remove(&oldest) {
                s.total -= n;
                let _ = std::fs::remove_file(self.path(&oldest));
            }
        }
        s.reserved += size;
        Some(Reservation { cache: self.clone(), size })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Wait until no other sync fetches `digest`; hold the guard while
    /// fetching it.
    pub(crate) async fn lock(&self, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut inflight = self.inflight.lock().expect("cache poisoned");
            // An entry only the map holds has no holder and no waiter.
            if inflight.len() > MAX_INFLIGHT {
                inflight.retain(|_, m| Arc::strong_count(m) > 1);
            }
            inflight.entry(digest.clone()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// The cached file of `digest`, marked as just used.
    pub(crate) fn get(&self, digest: &Digest) -> Option<PathBuf> {
        let mut s = self.state.lock().expect("cache poisoned");
        s.clock += 1;
        let now = s.clock;
        let e = s.entries.get_mut(digest)?;
        e.1 = now;
        Some(self.path(digest))
    }

    /// A fresh temporary file name in the cache's directory.
    pub(crate) fn temp(&self) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        self.dir.join(format!(".tmp-{}-{nanos}", std::process::id()))
    }

    /// Keep a verified download (`temp`, `size` bytes) under its digest,
    /// evicting the least recently used entries to stay within bounds.
    pub(crate) fn insert(&self, digest: &Digest, temp: &Path, size: u64) {
        if std::fs::rename(temp, self.path(digest)).is_err() {
            let _ = std::fs::remove_file(temp);
            return;
        }
        let mut s = self.state.lock().expect("cache poisoned");
        s.clock += 1;
        let now = s.clock;
        if let Some((old, _)) = s.entries.insert(digest.clone(), (size, now)) {
            s.total -= old;
        }
        s.total += size;
        while s.total > self.max_bytes {
            let Some(oldest) = s.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(d, _)| d.clone()) else {
                break;
            };
            if let Some((size, _)) = s.entries.remove(&oldest) {
                s.total -= size;
                let _ = std::fs::remove_file(self.path(&oldest));
            }
        }
    }

    /// Keep `layer`'s TOC, `bytes` being what `place.digest` names (already
    /// checked against it).
    pub(crate) fn put_toc(&self, layer: &Digest, place: TocPlace, bytes: &[u8]) {
        let temp = self.temp();
        if std::fs::write(&temp, bytes).is_err() {
            let _ = std::fs::remove_file(&temp);
            return;
        }
        self.insert(&place.digest, &temp, bytes.len() as u64);
        let mut tocs = self.tocs.lock().expect("cache poisoned");
        if tocs.len() >= MAX_TOCS {
            tocs.clear();
        }
        tocs.insert(layer.clone(), place);
    }

    /// `layer`'s kept TOC, if it is still here and still hashes to its
    /// digest (at most `max` bytes); a bad one is dropped.
    pub(crate) fn get_toc(&self, layer: &Digest, max: u64) -> Option<(TocPlace, Vec<u8>)> {
        let place = self.tocs.lock().expect("cache poisoned").get(layer).cloned()?;
        let path = self.get(&place.digest)?;
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, max.saturating_add(1)), &mut bytes));
        if read.is_err() || bytes.len() as u64 > max || Digest::of(&bytes) != place.digest {
            self.evict(&place.digest);
            self.tocs.lock().expect("cache poisoned").remove(layer);
            return None;
        }
        Some((place, bytes))
    }

    /// Forget an entry that did not verify.
    pub(crate) fn evict(&self, digest: &Digest) {
        let mut s = self.state.lock().expect("cache poisoned");
        if let Some((size, _)) = s.entries.remove(digest) {
            s.total -= size;
        }
        let _ = std::fs::remove_file(self.path(digest));
    }

    #[cfg(test)]
    fn total(&self) -> u64 {
        self.state.lock().unwrap().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &BlobCache, body: &[u8]) -> Digest {
        let d = Digest::of(body);
        let t = c.temp();
        std::fs::write(&t, body).unwrap();
        c.insert(&d, &t, body.len() as u64);
        d
    }

    #[test]
    fn least_recently_used_goes_first_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::new(dir.path().join("blobs"), 30).unwrap();
        let a = put(&c, &[b'a'; 10]);
        let b = put(&c, &[b'b'; 10]);
        let _ = c.get(&a); // a is now newer than b
        let x = put(&c, &[b'x'; 15]);
        assert!(c.get(&b).is_none(), "b was the least recently used");
        assert!(c.get(&a).is_some() && c.get(&x).is_some());
        assert!(c.total() <= 30);
        assert!(!c.dir.join(b.hex()).exists(), "its file is gone too");
        c.evict(&a);
        assert!(c.get(&a).is_none() && c.total() == 15);
        assert!(!c.fits(16) && c.fits(15));
    }

    #[test]
    fn tocs_are_kept_by_layer_and_checked_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlobCache::new(dir.path().join("blobs"), 1000).unwrap();
        let (layer, toc) = (Digest::of(b"layer"), b"{\"version\":1}".to_vec());
        let place = TocPlace { digest: Digest::of(&toc), data_end: 7, toc_bytes: 9 };
        c.put_toc(&layer, place, &toc);
        let (got, bytes) = c.get_toc(&layer, 100).unwrap();
        assert_eq!((got.data_end, got.toc_bytes, bytes), (7, 9, toc.clone()));
        assert!(c.get_toc(&layer, 3).is_none(), "over the bound: dropped");
        c.put_toc(&layer, TocPlace { digest: Digest::of(&toc), data_end: 7, toc_bytes: 9 }, &toc);
        std::fs::write(c.dir.join(Digest::of(&toc).hex()), b"{\"version\":2}").unwrap();
        assert!(c.get_toc(&layer, 100).is_none(), "no longer its digest: dropped");
        assert!(c.get(&Digest::of(&toc)).is_none() && c.total() == 0);
        assert!(c.get_toc(&Digest::of(b"other"), 100).is_none());
    }

    #[test]
    fn the_cache_fits_under_the_work_dirs_limit() {
        const MI: u64 = 1 << 20;
        let cases = [
            // requested, limit, concurrency, kept
            (512 * MI, None, 16, 512 * MI),
            (512 * MI, Some(1024 * MI), 16, 512 * MI),
            (512 * MI, Some(64 * MI), 16, 32 * MI),
            (512 * MI, Some(20 * MI), 16, 0),
            (8 * MI, Some(64 * MI), 16, 8 * MI),
            (512 * MI, Some(64 * MI), 0, 47 * MI),
        ];
        for (requested, limit, concurrency, kept) in cases {
            assert_eq!(bound(requested, limit, concurrency), kept, "{requested} {limit:?} {concurrency}");
        }
    }

    #[test]
    fn downloads_being_written_count_against_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(BlobCache::new(dir.path().join("blobs"), 100).unwrap());
        let a = put(&c, &[b'a'; 30]);
        let first = c.reserve(40).expect("room: 30 + 40");
        let second = c.reserve(40).expect("room once a is evicted");
        assert!(c.get(&a).is_none(), "a made room");
        assert!(c.reserve(40).is_none(), "80 held by downloads: a third would pass 100");
        assert!(c.reserve(51).is_none(), "over half the cache: never kept");
        drop(first);
        let third = c.reserve(40).expect("the first gave its room back");
        drop((second, third));
        assert_eq!(c.state.lock().unwrap().reserved, 0);
    }

    #[tokio::test]
    async fn one_fetch_per_digest_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(BlobCache::new(dir.path().join("blobs"), 100).unwrap());
        let d = Digest::of(b"x");
        let first = c.lock(&d).await;
        let c2 = c.clone();
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { c2.lock(&d2).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second waits for the first");
        drop(first);
        let _second = waiter.await.unwrap();
    }
}
