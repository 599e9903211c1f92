//! Reconcile slots per registry host. A registry that answers slowly (or
//! drips a byte a minute) would otherwise hold every reconcile slot until
//! the Artifacts that use it time out, and stall every other Artifact. A
//! sync that finds its registry's slots taken does not wait for one: it
//! comes back shortly, leaving its reconcile slot to others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Past this many hosts, idle entries are dropped.
const PRUNE_AT: usize = 1024;

pub(crate) struct Slots {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Slots {
    pub(crate) fn new(per_host: usize) -> Self {
        Slots { per_host: per_host.max(1), hosts: Mutex::default() }
    }

    /// A slot for `host`, or `None` when all of them are in use.
    pub(crate) fn try_take(&self, host: &str) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut hosts = self.hosts.lock().expect("slots poisoned");
            if hosts.len() >= PRUNE_AT {
                let full = self.per_host;
                hosts.retain(|_, s| s.available_permits() < full);
            }
            hosts.entry(host.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.per_host))).clone()
        };
        sem.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_host_does_not_take_another_hosts_slots() {
        let s = Slots::new(2);
        let a1 = s.try_take("slow.example");
        let a2 = s.try_take("slow.example");
        assert!(a1.is_some() && a2.is_some());
        assert!(s.try_take("slow.example").is_none(), "the slow host's slots are all taken");
        assert!(s.try_take("fast.example").is_some(), "another host is unaffected");
        drop(a1);
        assert!(s.try_take("slow.example").is_some(), "a slot freed is a slot again");
    }
}
