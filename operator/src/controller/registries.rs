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

#[derive(Default)]
pub struct Registries {
    clients: Mutex<HashMap<Key, Arc<RegistryClient>>>,
    observer: Option<Observer>,
}

impl Registries {
    /// Clients that report their requests to `observer`.
    pub fn observed(observer: Observer) -> Self {
        Registries { clients: Mutex::default(), observer: Some(observer) }
    }

    pub fn client(
        &self,
        namespace: &str,
        registry: &str,
        access: &Access,
        insecure: bool,
    ) -> Result<Arc<RegistryClient>, RegistryError> {
        let key = Key { namespace: namespace.into(), registry: registry.into(), access: access.clone(), insecure };
        let mut clients = self.clients.lock().expect("registry cache poisoned");
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let opts = TransportOptions {
            insecure,
            ca_pem: access.ca_pem.clone(),
            identity_pem: access.identity_pem.clone(),
            observer: self.observer.clone(),
            ..TransportOptions::default()
        };
        let client = Arc::new(RegistryClient::new(registry, access.credentials.clone(), &opts)?);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
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
        assert!(Arc::ptr_eq(&a1, &a1_again), "reused for the same credential");
        let b1 = r.client("ns1", "r.io", &bob, false).unwrap();
        let a2 = r.client("ns2", "r.io", &alice, false).unwrap();
        assert!(!Arc::ptr_eq(&a1, &b1) && !Arc::ptr_eq(&a1, &a2), "never shared across credentials or namespaces");
        assert_eq!(r.len(), 3);
    }
}
