//! Reconcile slots per registry host. A registry that answers slowly (or
//! drips a byte a minute) would otherwise hold every reconcile slot until
//! the Artifacts that use it time out, and stall every other Artifact.
//!
//! Each host has a few slots of its own. A host that has lately finished
//! a sync quickly may go past them, up to the operator's concurrency, so a
//! single healthy registry still gets every slot; a host with no quick
//! sync lately (a new one, or one that hangs) gets only its own. A sync
//! that finds no slot does not wait for one: it comes back shortly,
//! leaving its reconcile slot to others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Past this many hosts, idle entries are dropped.
const PRUNE_AT: usize = 1024;
/// A sync this quick shows a healthy host…
const QUICK: Duration = Duration::from_secs(2);
/// …for this long.
const TRUSTED_FOR: Duration = Duration::from_secs(10);

struct Host {
    slots: Arc<Semaphore>,
    quick_until: Option<Instant>,
}

pub(crate) struct Slots {
    per_host: usize,
    hosts: Mutex<HashMap<String, Host>>,
}

/// A slot; `None` inside when the host went past its own, being healthy.
pub(crate) struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Slots {
    pub(crate) fn new(per_host: usize) -> Self {
        Slots { per_host: per_host.max(1), hosts: Mutex::default() }
    }

    /// A slot for `host`, or `None` when its own are all in use and it has
    /// not shown itself quick lately.
    pub(crate) fn try_take(&self, host: &str) -> Option<Slot> {
        self.try_take_at(host, Instant::now())
    }

    fn try_take_at(&self, host: &str, now: Instant) -> Option<Slot> {
        let mut hosts = self.hosts.lock().expect("slots poisoned");
        if hosts.len() >= PRUNE_AT {
            let full = self.per_host;
            hosts.retain(|_, h| h.slots.available_permits() < full || h.quick_until.is_some_and(|t| t > now));
        }
        let h = hosts
            .entry(host.to_string())
            .or_insert_with(|| Host { slots: Arc::new(Semaphore::new(self.per_host)), quick_until: None });
        if let Ok(p) = h.slots.clone().try_acquire_owned() {
            return Some(Slot(Some(p)));
        }
        h.quick_until.is_some_and(|t| t > now).then_some(Slot(None))
    }

    /// A sync against `host` ended after `took`.
    pub(crate) fn finished(&self, host: &str, took: Duration) {
        self.finished_at(host, took, Instant::now());
    }

    fn finished_at(&self, host: &str, took: Duration, now: Instant) {
        if took > QUICK {
            return;
        }
        if let Some(h) = self.hosts.lock().expect("slots poisoned").get_mut(host) {
            h.quick_until = now.checked_add(TRUSTED_FOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hanging_host_keeps_to_its_own_slots_and_a_quick_one_may_go_past() {
        let s = Slots::new(2);
        let t0 = Instant::now();
        let a1 = s.try_take_at("slow.example", t0);
        let a2 = s.try_take_at("slow.example", t0);
        assert!(a1.is_some() && a2.is_some());
        assert!(s.try_take_at("slow.example", t0).is_none(), "no quick sync yet: its own slots only");
        assert!(s.try_take_at("fast.example", t0).is_some(), "another host is unaffected");
        drop(a1);
        assert!(s.try_take_at("slow.example", t0).is_some(), "a slot freed is a slot again");

        let _b: Vec<_> = (0..2).map(|_| s.try_take_at("busy.example", t0).unwrap()).collect();
        assert!(s.try_take_at("busy.example", t0).is_none());
        s.finished_at("busy.example", Duration::from_millis(150), t0);
        assert!(s.try_take_at("busy.example", t0).is_some(), "quick lately: past its own slots");
        let later = t0 + TRUSTED_FOR + Duration::from_secs(1);
        assert!(s.try_take_at("busy.example", later).is_none(), "no quick sync for a while: its own again");
        s.finished_at("busy.example", Duration::from_secs(30), later);
        assert!(s.try_take_at("busy.example", later).is_none(), "a slow sync shows nothing");
    }
}
