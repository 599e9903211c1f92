//! Keyless material for requirements: trusted roots read from a Secret or
//! a ConfigMap (never fetched from the internet), and identity rules
//! compiled once and shared by every Artifact that lists the same ones.
//!
//! A Secret's content is cached while the Secret watch shows the same
//! resourceVersion (and a change reconciles its users). ConfigMaps are not
//! watched (the operator watches only the ones it owns), so a ConfigMap's
//! root is read at most once per `CONFIG_MAP_TTL` for all its users.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use sha2::{Digest as _, Sha256};

use super::credentials::{AccessError, CredentialSource, TRUSTED_ROOT_KEY};
use crate::api::Identity;
use crate::verify::keyless::Rules;
use crate::verify::{Trust, VerifyError};

const CONFIG_MAP_TTL: Duration = Duration::from_secs(300);
/// Parsed roots and compiled rule sets kept; past this a cache starts over.
const MAX_ROOTS: usize = 64;
const MAX_RULES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Holder {
    Secret,
    ConfigMap,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RootError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

type ConfigMapBytes = (Instant, Option<Arc<Vec<u8>>>);
/// (source, sha256 of its content).
type RootKey = (String, [u8; 32]);

pub(crate) struct Roots {
    client: kube::Client,
    parsed: Mutex<HashMap<RootKey, Arc<Trust>>>,
    config_maps: Mutex<HashMap<(String, String), ConfigMapBytes>>,
    rules: Mutex<HashMap<String, Rules>>,
}

impl Roots {
    pub(crate) fn new(client: kube::Client) -> Self {
        Roots { client, parsed: Mutex::default(), config_maps: Mutex::default(), rules: Mutex::default() }
    }

    pub(crate) async fn load(
        &self,
        secrets: &CredentialSource,
        holder: Holder,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Trust>, RootError> {
        let (source, bytes) = match holder {
            Holder::Secret => {
                let fields = secrets.secret(namespace, name).await?;
                let source = format!("Secret {namespace}/{name}");
                let bytes = fields.get(TRUSTED_ROOT_KEY).cloned();
                (source, bytes.map(Arc::new))
            }
            Holder::ConfigMap => (format!("ConfigMap {namespace}/{name}"), self.config_map(namespace, name).await?),
        };
        let bytes = bytes.ok_or_else(|| VerifyError::BadTrustedRoot(format!("{source} has no {TRUSTED_ROOT_KEY}")))?;
        let key = (source, <[u8; 32]>::from(Sha256::digest(bytes.as_slice())));
        if let Some(t) = self.parsed.lock().expect("roots poisoned").get(&key) {
            return Ok(t.clone());
        }
        let trust = Arc::new(Trust::load(&key.0, &bytes)?);
        let mut parsed = self.parsed.lock().expect("roots poisoned");
        if parsed.len() >= MAX_ROOTS {
            parsed.clear();
        }
        parsed.insert(key, trust.clone());
        Ok(trust)
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Arc<Vec<u8>>>, AccessError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some((at, bytes)) = self.config_maps.lock().expect("roots poisoned").get(&key)
            && at.elapsed() < CONFIG_MAP_TTL
        {
            return Ok(bytes.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let cm = api.get_opt(name).await?.ok_or_else(|| AccessError::NotFound {
            kind: "ConfigMap",
            namespace: namespace.into(),
            name: name.into(),
        })?;
        let bytes = cm
            .data
            .and_then(|mut d| d.remove(TRUSTED_ROOT_KEY).map(String::into_bytes))
            .or_else(|| cm.binary_data.and_then(|mut d| d.remove(TRUSTED_ROOT_KEY).map(|b| b.0)))
            .map(Arc::new);
        let mut cache = self.config_maps.lock().expect("roots poisoned");
        if cache.len() >= MAX_ROOTS * 16 {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), bytes.clone()));
        Ok(bytes)
    }

    /// Identity rules, compiled once per distinct list.
    pub(crate) fn rules(&self, identities: &[Identity], ignore_sct: bool) -> Result<Rules, String> {
        let key = Rules::canonical(identities, ignore_sct);
        if let Some(r) = self.rules.lock().expect("rules poisoned").get(&key) {
            return Ok(r.clone());
        }
        let rules = Rules::compile(identities, ignore_sct)?;
        let mut cache = self.rules.lock().expect("rules poisoned");
        if cache.len() >= MAX_RULES {
            cache.clear();
        }
        cache.insert(key, rules.clone());
        Ok(rules)
    }
}
