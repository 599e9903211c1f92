//! Registry access for one Artifact: credentials from its `secretRef`, its
//! ServiceAccount's `imagePullSecrets`, else the kubelet credential provider
//! plugins the operator was given (`--image-credential-provider-config`),
//! in that order, the kubelet's (pull secrets before the node's providers);
//! CA and client certificate from `certSecretRef`. Secrets are read only in
//! the Artifact's own namespace, and a plugin's service-account token is
//! minted only for the Artifact's own `spec.serviceAccountName`.
//!
//! Every credential source is here; trust roots (`roots`) read their
//! Secrets through it, never the other way round.
//!
//! Unchanged reconciles read nothing from the API server: ServiceAccounts
//! come from a watch, and a Secret is read once and then served from a
//! cache for as long as the metadata watch shows the same resourceVersion.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::ArtifactSpec;
use crate::oci::client::ProxyConfig;
use crate::oci::provider::{Account, ProviderError, Providers, TOKEN_SECONDS, Tokens};
use crate::oci::{Credentials, DockerConfig, Reference};

/// Secrets whose content is cached; past this the cache starts over.
const MAX_CACHED: usize = 4096;
/// The key a trusted root is read from, as cosign and Flux name it.
pub(crate) const TRUSTED_ROOT_KEY: &str = "trusted_root.json";
/// The only fields ocisync reads from a Secret, besides public keys
/// (`*.pub`) and a Notation trust policy's certificates (`*.crt`, `*.pem`).
const FIELDS: [&str; 10] = [
    ".dockerconfigjson",
    "ca.crt",
    "tls.crt",
    "tls.key",
    TRUSTED_ROOT_KEY,
    "address",
    "username",
    "password",
    "trustpolicy.json",
    "trustpolicy.oci.json",
];

fn wanted(field: &str) -> bool {
    FIELDS.contains(&field) || [".pub", ".crt", ".pem"].iter().any(|s| field.ends_with(s))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Access {
    pub(crate) credentials: Credentials,
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) identity_pem: Option<Vec<u8>>,
    pub(crate) proxy: Option<ProxyConfig>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound { kind: &'static str, namespace: String, name: String },
    #[error("Secret {namespace}/{name}: {reason}")]
    BadSecret { namespace: String, name: String, reason: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

type Fields = Arc<BTreeMap<String, Vec<u8>>>;

pub(crate) struct CredentialSource {
    client: kube::Client,
    secrets: Store<PartialObjectMeta<Secret>>,
    accounts: Store<ServiceAccount>,
    /// (namespace, name) → (resourceVersion, the fields ocisync reads).
    cache: Mutex<HashMap<(String, String), (String, Fields)>>,
    providers: Option<Arc<Providers>>,
}

impl CredentialSource {
    pub(crate) fn new(
        client: kube::Client,
        secrets: Store<PartialObjectMeta<Secret>>,
        accounts: Store<ServiceAccount>,
        providers: Option<Arc<Providers>>,
    ) -> Self {
        CredentialSource { client, secrets, accounts, cache: Mutex::default(), providers }
    }

    pub(crate) async fn load(
        &self,
        namespace: &str,
        spec: &ArtifactSpec,
        at: &Reference,
    ) -> Result<Access, AccessError> {
        let registry = at.registry.as_str();
        let mut access = Access::default();
        let mut pull_secrets = Vec::new();
        if let Some(r) = &spec.secret_ref {
            pull_secrets.push(r.name.clone());
        }
        if let Some(sa) = &spec.service_account_name {
            let account = self.accounts.get(&ObjectRef::new(sa).within(namespace)).ok_or_else(|| {
                AccessError::NotFound { kind: "ServiceAccount", namespace: namespace.into(), name: sa.clone() }
            })?;
            pull_secrets.extend(account.image_pull_secrets.iter().flatten().map(|r| r.name.clone()));
        }
        // The first pull secret with an entry for this registry wins, as kubelet does.
        for name in pull_secrets {
            let fields = self.secret(namespace, &name).await?;
            let bad =
                |reason: String| AccessError::BadSecret { namespace: namespace.into(), name: name.clone(), reason };
            let bytes = fields
                .get(".dockerconfigjson")
                .ok_or_else(|| bad("has no .dockerconfigjson (want type kubernetes.io/dockerconfigjson)".into()))?;
            let cfg = DockerConfig::parse(bytes).map_err(|e| bad(e.to_string()))?;
            let creds = cfg.credentials_for(registry);
            if creds != Credentials::Anonymous {
                access.credentials = creds;
                break;
            }
        }
        if access.credentials == Credentials::Anonymous
            && let Some(providers) = &self.providers
        {
            let image = format!("{}/{}", at.registry, at.repository);
            let account = match (&spec.service_account_name, providers.wants_account(&image)) {
                (Some(sa), true) => self.accounts.get(&ObjectRef::new(sa).within(namespace)).map(|a| Account {
                    namespace: namespace.into(),
                    name: sa.clone(),
                    uid: a.metadata.uid.clone().unwrap_or_default(),
                    annotations: a.metadata.annotations.clone().unwrap_or_default(),
                }),
                _ => None,
            };
            let tokens = TokenRequests(self.client.clone());
            access.credentials = providers.credentials(&image, account.as_ref(), &tokens).await?;
        }
        if let Some(r) = &spec.proxy_secret_ref {
            let fields = self.secret(namespace, &r.name).await?;
            access.proxy = Some(proxy(&fields).map_err(|reason| AccessError::BadSecret {
                namespace: namespace.into(),
                name: r.name.clone(),
                reason,
            })?);
        }
        if let Some(r) = &spec.cert_secret_ref {
            let fields = self.secret(namespace, &r.name).await?;
            access.ca_pem = fields.get("ca.crt").cloned();
            if let (Some(crt), Some(key)) = (fields.get("tls.crt"), fields.get("tls.key")) {
                let mut pem = crt.clone();
                pem.push(b'\n');
                pem.extend(key);
                access.identity_pem = Some(pem);
            }
            if access.ca_pem.is_none() && access.identity_pem.is_none() {
                return Err(AccessError::BadSecret {
                    namespace: namespace.into(),
                    name: r.name.clone(),
                    reason: "has neither ca.crt nor tls.crt and tls.key".into(),
                });
            }
        }
        Ok(access)
    }

    /// A Secret's fields: from the cache while the watch shows the version
    /// that was read, else one GET.
    pub(crate) async fn secret(&self, namespace: &str, name: &str) -> Result<Fields, AccessError> {
        let key = (namespace.to_string(), name.to_string());
        let watched =
            self.secrets.get(&ObjectRef::new(name).within(namespace)).and_then(|m| m.metadata.resource_version.clone());
        if let Some(rv) = &watched
            && let Some((cached_rv, fields)) = self.cache.lock().expect("secret cache poisoned").get(&key)
            && cached_rv == rv
        {
            return Ok(fields.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await?.ok_or_else(|| AccessError::NotFound {
            kind: "Secret",
            namespace: namespace.into(),
            name: name.into(),
        })?;
        let data = secret.data.unwrap_or_default();
        let fields: Fields = Arc::new(data.into_iter().filter(|(k, _)| wanted(k)).map(|(k, v)| (k, v.0)).collect());
        if let Some(rv) = secret.metadata.resource_version {
            let mut cache = self.cache.lock().expect("secret cache poisoned");
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (rv, fields.clone()));
        }
        Ok(fields)
    }

    /// Forget a deleted Secret's content.
    pub(crate) fn forget(&self, namespace: &str, name: &str) {
        self.cache.lock().expect("secret cache poisoned").remove(&(namespace.to_string(), name.to_string()));
    }
}

/// A proxy Secret as Flux's `proxySecretRef` names its fields.
fn proxy(fields: &BTreeMap<String, Vec<u8>>) -> Result<ProxyConfig, String> {
    let text = |k: &str| {
        fields.get(k).map(|v| String::from_utf8(v.clone()).map_err(|_| format!("{k} is not UTF-8"))).transpose()
    };
    let address = text("address")?.ok_or("has no address (want http://host:port)")?;
    let address = address.trim().to_string();
    let ok = (address.starts_with("http://") || address.starts_with("https://"))
        && reqwest::Url::parse(&address).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
    if !ok {
        return Err("address is not an http:// or https:// URL with a host".into());
    }
    let credentials = match (text("username")?, text("password")?) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => return Err("has a username without a password, or the reverse".into()),
    };
    Ok(ProxyConfig { address, credentials })
}

/// Service-account tokens from the API server's TokenRequest: the
/// plugin's audience, the shortest lifetime the API server allows, bound
/// to nothing (there is no pod; the kubelet binds its tokens to one).
pub(crate) struct TokenRequests(pub(crate) kube::Client);

impl Tokens for TokenRequests {
    fn token(&self, account: &Account, audience: &str) -> impl Future<Output = Result<String, String>> + Send {
        let api: Api<ServiceAccount> = Api::namespaced(self.0.clone(), &account.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_string()],
                expiration_seconds: Some(TOKEN_SECONDS),
                bound_object_ref: None,
            },
            ..Default::default()
        };
        let name = account.name.clone();
        async move {
            let answer = api.create_token_request(&name, &PostParams::default(), &request).await;
            // The API error says what was refused (RBAC, a missing
            // account), never a token.
            let answer = answer.map_err(|e| e.to_string())?;
            answer
                .status
                .map(|s| s.token)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| "the TokenRequest gave no token".into())
        }
    }
}
