//! Registry clients, one per registry, credential and transport. A client
//! holds exactly one credential and never serves another: Artifacts share
//! a client only when their credentials are equal by content (or both
//! anonymous), whatever their namespaces. What one of them may pull, the
//! others may too, so sharing the client (its tokens, and the resolutions
//! keyed by its id) gives no namespace anything it could not read itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::credentials::Access;
use crate::oci::client::Observer;
use crate::oci::{RegistryClient, RegistryError, TransportOptions};

/// Past this many clients the cache starts over, bounding memory when
/// Artifacts and credentials come and go.
const MAX_CLIENTS: usize = 4096;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    registry: String,
    access: Access,
    insecure: bool,
    mirror: bool,
}

/// A cached client and its id: ids are never reused, so what is shared by
/// id (resolutions) is shared only by users of this very client.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) client: Arc<RegistryClient>,
    pub(crate) id: u64,
}

#[derive(Default)]
pub(crate) struct Registries {
    clients: Mutex<HashMap<Key, Handle>>,
    next_id: std::sync::atomic::AtomicU64,
    observer: Option<Observer>,
}

impl Registries {
    /// Clients that report their requests to `observer`.
    pub(crate) fn observed(observer: Observer) -> Self {
        Registries { observer: Some(observer), ..Registries::default() }
    }

    pub(crate) fn client(&self, registry: &str, access: &Access, insecure: bool) -> Result<Handle, RegistryError> {
        self.client_for(registry, access, insecure, false)
    }

    /// A client for a mirror: one attempt per request, a short connect
    /// timeout (`fetch::sources::mirror_transport`).
    pub(crate) fn mirror(&self, registry: &str, access: &Access, insecure: bool) -> Result<Handle, RegistryError> {
        self.client_for(registry, access, insecure, true)
    }

    fn client_for(
        &self,
        registry: &str,
        access: &Access,
        insecure: bool,
        mirror: bool,
    ) -> Result<Handle, RegistryError> {
        let key = Key { registry: registry.into(), access: access.clone(), insecure, mirror };
        let mut clients = self.clients.lock().expect("registry cache poisoned");
        if let Some(h) = clients.get(&key) {
            return Ok(h.clone());
        }
        let base = if mirror { crate::fetch::sources::mirror_transport(insecure) } else { TransportOptions::default() };
        let opts = TransportOptions {
            insecure,
            ca_pem: access.ca_pem.clone(),
            identity_pem: access.identity_pem.clone(),
            proxy: access.proxy.clone(),
            observer: self.observer.clone(),
            ..base
        };
        let client = Arc::new(RegistryClient::new(registry, access.credentials.clone(), &opts)?);
        let handle = Handle { client, id: self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) };
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, handle.clone());
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Credentials;

    #[test]
    fn one_client_per_credential_by_content() {
        let r = Registries::default();
        let alice = Access {
            credentials: Credentials::Basic { username: "alice".into(), password: "a".into() },
            ..Access::default()
        };
        let bob = Access {
            credentials: Credentials::Basic { username: "bob".into(), password: "b".into() },
            ..Access::default()
        };
        let a1 = r.client("r.io", &alice, false).unwrap();
        // the same credential read from another namespace's Secret
        let a1_again = r.client("r.io", &alice.clone(), false).unwrap();
        assert!(Arc::ptr_eq(&a1.client, &a1_again.client) && a1.id == a1_again.id, "reused for an equal credential");
        let b1 = r.client("r.io", &bob, false).unwrap();
        let plain = r.client("r.io", &alice, true).unwrap();
        let anon = r.client("r.io", &Access::default(), false).unwrap();
        let ids = [a1.id, b1.id, plain.id, anon.id];
        assert!(
            ids.iter().enumerate().all(|(i, x)| ids[i + 1..].iter().all(|y| x != y)),
            "never shared across credentials or transports: {ids:?}"
        );
    }
}
