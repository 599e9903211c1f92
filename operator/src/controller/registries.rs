//! Registry clients, one per namespace, registry, credential and transport:
//! a client never serves two credentials or two namespaces, so one
//! namespace's pull secret cannot be used for another's Artifact.

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
    namespace: String,
    registry: String,
    access: Access,
    insecure: bool,
}

/// A cached client and its id: ids are never reused, so what is shared by
/// id (resolutions) is shared only by users of this very client.
#[derive(Clone)]
pub struct Handle {
    pub client: Arc<RegistryClient>,
    pub id: u64,
}

#[derive(Default)]
pub struct Registries {
    clients: Mutex<HashMap<Key, Handle>>,
    next_id: std::sync::atomic::AtomicU64,
    observer: Option<Observer>,
}

impl Registries {
    /// Clients that report their requests to `observer`.
    pub fn observed(observer: Observer) -> Self {
        Registries { observer: Some(observer), ..Registries::default() }
    }

    pub fn client(
        &self,
        namespace: &str,
        registry: &str,
        access: &Access,
        insecure: bool,
    ) -> Result<Handle, RegistryError> {
        let key = Key { namespace: namespace.into(), registry: registry.into(), access: access.clone(), insecure };
        let mut clients = self.clients.lock().expect("registry cache poisoned");
        if let Some(h) = clients.get(&key) {
            return Ok(h.clone());
        }
        let opts = TransportOptions {
            insecure,
            ca_pem: access.ca_pem.clone(),
            identity_pem: access.identity_pem.clone(),
            observer: self.observer.clone(),
            ..TransportOptions::default()
        };
        let client = Arc::new(RegistryClient::new(registry, access.credentials.clone(), &opts)?);
        let handle = Handle { client, id: self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) };
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, handle.clone());
        Ok(handle)
    }

    pub fn len(&self) -> usize {
        self.clients.lock().expect("registry cache poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Credentials;

    #[test]
    fn one_client_per_namespace_and_credential() {
        let r = Registries::default();
        let alice = Access {
            credentials: Credentials::Basic { username: "alice".into(), password: "a".into() },
            ..Access::default()
        };
        let bob = Access {
            credentials: Credentials::Basic { username: "bob".into(), password: "b".into() },
            ..Access::default()
        };
        let a1 = r.client("ns1", "r.io", &alice, false).unwrap();
        let a1_again = r.client("ns1", "r.io", &alice, false).unwrap();
        assert!(Arc::ptr_eq(&a1.client, &a1_again.client) && a1.id == a1_again.id, "reused for the same credential");
        let b1 = r.client("ns1", "r.io", &bob, false).unwrap();
        let a2 = r.client("ns2", "r.io", &alice, false).unwrap();
        assert!(
            !Arc::ptr_eq(&a1.client, &b1.client) && !Arc::ptr_eq(&a1.client, &a2.client),
            "never shared across credentials or namespaces"
        );
        assert!(a1.id != b1.id && a1.id != a2.id && b1.id != a2.id, "distinct ids");
        assert_eq!(r.len(), 3);
    }
}
