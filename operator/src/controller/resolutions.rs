//! Artifacts that follow the same tag share one resolution: within an
//! Artifact's interval, a tag resolved for one is reused by the others, so
//! the registry sees about one HEAD per tag per interval however many
//! Artifacts follow it. Single-flight: while one resolves, the others wait
//! for its answer instead of asking too.
//!
//! Keyed by the registry client (registry, credential by content,
//! transport) as well as repository and tag: what one credential may see is
//! never answered to another, while Artifacts in different namespaces with
//! the same credential (or none) share.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

/// Entries not used for this long are dropped.
const IDLE: Duration = Duration::from_secs(3600);

type Slot<T> = Arc<AsyncMutex<Option<(T, Instant)>>>;

pub(crate) struct Shared<T> {
    slots: Mutex<HashMap<String, (Slot<T>, Instant)>>,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared { slots: Mutex::default() }
    }
}

/// The keys of one client's resolutions of `repository`: a tag's digest,
/// and the tag list. One place, so that [`of_repository`] reads them back.
pub(crate) fn tag_key(client: u64, repository: &str, tag: &str) -> String {
    format!("{client}/{repository}:{tag}")
}

pub(crate) fn tags_key(client: u64, repository: &str) -> String {
    format!("{client}/{repository}/tags")
}

/// Is `key` one of `repository`'s, for any client?
pub(crate) fn of_repository(key: &str, repository: &str) -> bool {
    key.split_once('/').is_some_and(|(_, rest)| {
        rest.rsplit_once(':').is_some_and(|(r, _)| r == repository) || rest.strip_suffix("/tags") == Some(repository)
    })
}

impl<T> Shared<T> {
    /// Forget what is known under the keys `stale` picks: the next `get`
    /// of one fetches afresh (once, for all its callers).
    pub(crate) fn expire(&self, stale: impl Fn(&str) -> bool) {
        self.slots.lock().expect("resolution cache poisoned").retain(|k, _| !stale(k));
    }
}

impl<T: Clone> Shared<T> {
    /// The value for `key` if it was fetched less than `max_age` ago, else
    /// what `fetch` returns (errors are not remembered).
    pub(crate) async fn get<E, F: Future<Output = Result<T, E>>>(
        &self,
        key: &str,
        max_age: Duration,
        fetch: impl FnOnce() -> F,
    ) -> Result<T, E> {
        let slot = {
            let mut slots = self.slots.lock().expect("resolution cache poisoned");
            let now = Instant::now();
            if slots.len() > 1024 {
                slots.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
            }
            let entry = slots.entry(key.to_string()).or_insert_with(|| (Arc::default(), now));
            entry.1 = now;
            entry.0.clone()
        };
        let mut value = slot.lock().await;
        if let Some((v, at)) = value.as_ref()
            && at.elapsed() < max_age
        {
            return Ok(v.clone());
        }
        let fresh = fetch().await?;
        *value = Some((fresh.clone(), Instant::now()));
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_knows_its_keys_and_no_others() {
        for key in [tag_key(7, "team/app", "v1"), tags_key(7, "team/app"), tag_key(8, "team/app", "latest")] {
            assert!(of_repository(&key, "team/app"), "{key}");
        }
        for key in [tag_key(7, "team/app2", "v1"), tags_key(7, "team"), tag_key(7, "other/team/app", "v1")] {
            assert!(!of_repository(&key, "team/app"), "{key}");
        }
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_fetch_serves_concurrent_and_later_callers() {
        let cache = Arc::new(Shared::<u32>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("reg/app:v1", Duration::from_secs(60), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
        // another key, and an expired entry, fetch again
        let again = cache.get("reg/app:v2", Duration::from_secs(60), || async { Ok::<_, ()>(8) }).await;
        assert_eq!(again, Ok(8));
        let expired = cache.get("reg/app:v1", Duration::ZERO, || async { Ok::<_, ()>(9) }).await;
        assert_eq!(expired, Ok(9));
        // errors are not remembered
        let err = cache.get("reg/app:v3", Duration::from_secs(60), || async { Err::<u32, _>("down") }).await;
        assert_eq!(err, Err("down"));
        assert_eq!(cache.get("reg/app:v3", Duration::from_secs(60), || async { Ok::<_, &str>(1) }).await, Ok(1));
    }
}
