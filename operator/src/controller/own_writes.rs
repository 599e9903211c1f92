//! The status writes of this operator that the watch has not delivered yet.
//!
//! A reconcile that follows our own status write closely (the ConfigMap's
//! watch event triggers one at once) may still find the version before it
//! in the store, take the sync as not done, and do it all again: at 10,000
//! new Artifacts that was one in nine published twice. While the store
//! shows the version a write replaced, the status written stands in for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;

use crate::api::{Artifact, ArtifactStatus};

#[derive(Default)]
pub(crate) struct OwnWrites {
    /// By uid: the resourceVersion our write replaced, and what it wrote.
    pending: Mutex<HashMap<String, (Option<String>, ArtifactStatus)>>,
}

impl OwnWrites {
    pub(crate) fn wrote(&self, a: &Artifact, status: ArtifactStatus) {
        let before = a.metadata.resource_version.clone();
        self.lock().insert(a.uid().unwrap_or_default(), (before, status));
    }

    /// `a` as of our last write to it.
    pub(crate) fn catch_up(&self, a: Arc<Artifact>) -> Arc<Artifact> {
        let uid = a.uid().unwrap_or_default();
        let mut pending = self.lock();
        match pending.get(&uid) {
            Some((before, status)) if *before == a.metadata.resource_version => {
                let mut fresh = (*a).clone();
                fresh.status = Some(status.clone());
                Arc::new(fresh)
            }
            Some(_) => {
                pending.remove(&uid);
                a
            }
            None => a,
        }
    }

    /// The watch delivered a version of `a`: one with our write in it, or a
    /// newer one still. Either way the store needs no stand-in any more.
    pub(crate) fn delivered(&self, a: &Artifact) {
        let uid = a.uid().unwrap_or_default();
        let mut pending = self.lock();
        if pending.get(&uid).is_some_and(|(before, _)| *before != a.metadata.resource_version) {
            pending.remove(&uid);
        }
    }

    pub(crate) fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<String>, ArtifactStatus)>> {
        self.pending.lock().expect("own writes poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn artifact(rv: &str, digest: Option<&str>) -> Arc<Artifact> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact",
                "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": rv},
                "spec": {"url": "oci://r.io/app"},
                "status": {"lastSyncedDigest": digest},
            }))
            .unwrap(),
        )
    }

    fn synced(a: &Artifact) -> Option<String> {
        a.status.as_ref().and_then(|s| s.last_synced_digest.clone())
    }

    #[test]
    fn a_stale_store_is_read_as_of_our_write_until_the_watch_catches_up() {
        let w = OwnWrites::default();
        let old = artifact("10", None);
        w.wrote(&old, ArtifactStatus { last_synced_digest: Some("sha256:1".into()), ..Default::default() });
        // the store still has version 10: our write stands in
        assert_eq!(synced(&w.catch_up(old.clone())).as_deref(), Some("sha256:1"));
        assert_eq!(synced(&w.catch_up(old.clone())).as_deref(), Some("sha256:1"), "until delivered");
        // the watch delivers version 11 (ours): the store is right again
        let new = artifact("11", Some("sha256:1"));
        w.delivered(&new);
        assert!(w.lock().is_empty());
        assert_eq!(synced(&w.catch_up(old.clone())), None, "nothing stands in any more");
        // a newer version seen by a reconcile before the watch event also ends it
        w.wrote(&new, ArtifactStatus { last_synced_digest: Some("sha256:2".into()), ..Default::default() });
        let newer = artifact("13", Some("sha256:3"));
        assert_eq!(synced(&w.catch_up(newer)).as_deref(), Some("sha256:3"));
        assert!(w.lock().is_empty());
        // and a deleted Artifact leaves nothing behind
        w.wrote(&new, ArtifactStatus::default());
        w.forget("u");
        assert!(w.lock().is_empty());
    }
}
