//! Kubernetes Events about Artifacts (`events.k8s.io/v1`). The same
//! event again within a few minutes (a sync failing the same way on each
//! retry) becomes a count on the first one, as `kubectl describe` shows it,
//! rather than a new object per retry.
//!
//! Not kube-runtime's `Recorder`: it keeps every Event it sent, whole, for
//! six minutes and walks them all on each send, which at 10,000 Artifacts
//! synced at once was 20 MB and a quadratic loop; and its key leaves out the
//! note, so a second `Synced` within those minutes was sent as a repeat of
//! the first, still naming the first digest. Here an entry is a hash and a
//! name, the key includes the note, and the table has a ceiling.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

/// How long a sent Event can be counted again, as kube-runtime and
/// client-go do.
const TTL: Duration = Duration::from_secs(6 * 60);
/// Events remembered at most; past it a repeat is simply a new Event.
const CAPACITY: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Normal,
    Warning,
}

/// Normal Events (`Synced`) sent at most this many a second over all
/// Artifacts, after a burst of `NORMAL_BURST`. The API server is shared: at
/// 10,000 Artifacts created at once, one Normal Event each was a quarter of
/// the writes it took, for news the status carries anyway. Warnings are
/// never held back.
const NORMAL_PER_SECOND: f64 = 20.0;
const NORMAL_BURST: f64 = 200.0;

/// A token bucket.
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget { tokens: NORMAL_BURST, at: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * NORMAL_PER_SECOND;
        self.tokens = (self.tokens + refill).min(NORMAL_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What became of an Event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Published {
    Sent,
    /// A Normal Event over the budget: not sent.
    Dropped,
}

/// What to do with an Event, given the ones sent before.
#[derive(Debug, PartialEq, Eq)]
enum Send {
    Create,
    Count { name: String, count: i32 },
}

struct Sent {
    name: String,
    count: i32,
    last: Instant,
}

/// The Events sent lately, by a hash of everything that makes two the same.
#[derive(Default)]
struct Series {
    sent: HashMap<u64, Sent>,
}

impl Series {
    fn next(&mut self, key: u64, now: Instant) -> Send {
        match self.sent.get(&key) {
            Some(s) if now.duration_since(s.last) < TTL => Send::Count { name: s.name.clone(), count: s.count + 1 },
            _ => Send::Create,
        }
    }

    /// Record what was sent; an expired entry goes only when the table is
    /// full, so a send is not a walk over all of them.
    fn sent(&mut self, key: u64, name: String, count: i32, now: Instant) {
        if self.sent.len() >= CAPACITY && !self.sent.contains_key(&key) {
            self.sent.retain(|_, s| now.duration_since(s.last) < TTL);
            if self.sent.len() >= CAPACITY {
                return;
            }
        }
        self.sent.insert(key, Sent { name, count, last: now });
    }

    fn forget(&mut self, key: u64) {
        self.sent.remove(&key);
    }
}

pub(crate) struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
    normal: Mutex<Budget>,
}

impl Events {
    pub(crate) fn new(client: kube::Client, controller: &str, instance: &str) -> Events {
        Events {
            client,
            controller: controller.into(),
            instance: instance.into(),
            series: Mutex::default(),
            normal: Mutex::new(Budget::new(Instant::now())),
        }
    }

    /// Send an Event about `regarding`, or count it again if the same one
    /// went out within the last minutes; a Normal one over the budget is
    /// dropped.
    pub(crate) async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: Type,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<Published, kube::Error> {
        if type_ == Type::Normal && !self.normal.lock().expect("events poisoned").take(Instant::now()) {
            return Ok(Published::Dropped);
        }
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let key = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&regarding.uid, &regarding.name, type_ == Type::Warning, reason, action, note).hash(&mut h);
            h.finish()
        };
        let now = Instant::now();
        let wall = k8s_openapi::jiff::Timestamp::now();
        let next = self.series.lock().expect("events poisoned").next(key, now);
        if let Send::Count { name, count } = next {
            let series = EventSeries { count, last_observed_time: MicroTime(wall) };
            let patch = json!({ "series": series });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.series.lock().expect("events poisoned").sent(key, name, count, now);
                    return Ok(Published::Sent);
                }
                // gone (expired on the server, deleted): a new one
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    self.series.lock().expect("events poisoned").forget(key);
                }
                Err(e) => return Err(e),
            }
        }
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.controller), wall.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note.into()),
            event_time: Some(MicroTime(wall)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(format!("{type_:?}")),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        self.series.lock().expect("events poisoned").sent(key, name, 1, now);
        Ok(Published::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_event_again_is_counted_until_it_expires() {
        let t0 = Instant::now();
        let mut s = Series::default();
        assert_eq!(s.next(1, t0), Send::Create);
        s.sent(1, "a.1".into(), 1, t0);
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(s.next(1, t1), Send::Count { name: "a.1".into(), count: 2 });
        s.sent(1, "a.1".into(), 2, t1);
        // counted from the last time it was seen
        assert_eq!(s.next(1, t1 + TTL - Duration::from_secs(1)), Send::Count { name: "a.1".into(), count: 3 });
        assert_eq!(s.next(1, t1 + TTL), Send::Create);
        assert_eq!(s.next(2, t1), Send::Create, "another key is another event");
        s.forget(1);
        assert_eq!(s.next(1, t1), Send::Create);
    }

    #[test]
    fn normal_events_have_a_budget_that_refills() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        let sent = (0..1000).filter(|_| b.take(t0)).count();
        assert_eq!(sent, NORMAL_BURST as usize, "the burst, then nothing at the same instant");
        assert!(!b.take(t0 + Duration::from_millis(10)), "a fifth of a token is not a token");
        let later = t0 + Duration::from_secs(1);
        assert_eq!((0..1000).filter(|_| b.take(later)).count(), NORMAL_PER_SECOND as usize);
        // refilled to the burst at most, however long it was idle
        let much_later = later + Duration::from_secs(3600);
        assert_eq!((0..1000).filter(|_| b.take(much_later)).count(), NORMAL_BURST as usize);
    }

    #[test]
    fn the_table_has_a_ceiling_and_makes_room_from_expired_entries() {
        let t0 = Instant::now();
        let mut s = Series::default();
        for k in 0..CAPACITY as u64 {
            s.sent(k, format!("e.{k}"), 1, t0);
        }
        s.sent(u64::MAX, "late".into(), 1, t0);
        assert_eq!(s.sent.len(), CAPACITY);
        assert_eq!(s.next(u64::MAX, t0), Send::Create, "not remembered: full");
        // a known key is still counted when the table is full
        s.sent(7, "e.7".into(), 2, t0);
        assert_eq!(s.next(7, t0), Send::Count { name: "e.7".into(), count: 3 });
        // once the old ones expired, a new one makes room by dropping them
        let later = t0 + TTL;
        s.sent(u64::MAX, "late".into(), 1, later);
        assert_eq!(s.sent.len(), 1);
        assert_eq!(s.next(u64::MAX, later), Send::Count { name: "late".into(), count: 2 });
    }
}
