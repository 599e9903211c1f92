//! Kubelet credential provider plugins: the kubelet's own configuration
//! (`kubelet.config.k8s.io/v1` `CredentialProviderConfig`) and exec
//! protocol (`credentialprovider.kubelet.k8s.io/v1`), so the plugins every
//! managed cluster ships (`ecr-credential-provider`, `acr-credential-provider`,
//! GKE's `auth-provider-gcp`) give ocisync registry tokens without a cloud SDK.
//!
//! Matching, caching and choosing an answer's entry are plain functions;
//! running a plugin goes through `exec` with its bounds. A service-account
//! token (`tokenAttributes`, KEP-4412) comes from the caller's `Tokens`, and
//! then the cache key holds the service account: one tenant's credentials
//! never serve another's Artifact.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::auth::Credentials;
use super::exec::{self, ExecError, Run};

mod answer;
mod config;
mod pattern;

use answer::{KeyType, Parsed, parse_response};
use config::{Provider, TokenAttributes, TokenCache};
pub(crate) use pattern::Pattern;

pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const MAX_OUTPUT: u64 = 256 * 1024;
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Answers cached; past this, expired ones go, then all.
const MAX_CACHED: usize = 4096;
/// However long an answer says it lasts.
const MAX_CACHE_DURATION: Duration = Duration::from_secs(24 * 3600);
/// What ocisync asks of a TokenRequest (the API server's minimum).
pub(crate) const TOKEN_SECONDS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProviderError {
    #[error("credential provider config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("credential provider {0} was not found in --image-credential-provider-bin-dir")]
    Missing(String),
    #[error("credential provider {0} {1}")]
    Exec(String, ExecError),
    #[error("credential provider {0} failed ({1})")]
    Failed(String, String),
    #[error("credential provider {0} answered with something that is not a CredentialProviderResponse: {1}")]
    Garbage(String, &'static str),
    #[error("credential provider {0} gave no credentials for {1}")]
    Empty(String, String),
    #[error("credential provider {0} needs a service account: set spec.serviceAccountName")]
    NeedsServiceAccount(String),
    #[error("credential provider {provider} needs annotation {key} on ServiceAccount {account}")]
    MissingAnnotation { provider: String, account: String, key: String },
    #[error("credential provider {0}: no service-account token: {1}")]
    Token(String, String),
}

/// The service account an Artifact names, as a plugin is told of it.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// Mints a service-account token for an audience (a TokenRequest).
pub(crate) trait Tokens {
    fn token(&self, account: &Account, audience: &str) -> impl Future<Output = Result<String, String>> + Send;
}

#[derive(Clone)]
struct Answer {
    auth: Arc<Vec<(Pattern, Credentials)>>,
    until: Instant,
}

pub(crate) struct Providers {
    providers: Vec<Provider>,
    bin_dir: PathBuf,
    cache: Mutex<HashMap<String, Answer>>,
}

impl Providers {
    /// Read and check the config as the kubelet does at start; the plugins
    /// themselves are looked for when first run.
    pub(crate) fn load(config: &Path, bin_dir: &Path) -> Result<Providers, ProviderError> {
        use std::io::Read;
        let bad = |reason: String| ProviderError::Config { path: config.display().to_string(), reason };
        let mut bytes = Vec::new();
        std::fs::File::open(config)
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| bad(e.to_string()))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(bad(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8".into()))?;
        Providers::parse(text, bin_dir).map_err(bad)
    }

    pub(crate) fn parse(text: &str, bin_dir: &Path) -> Result<Providers, String> {
        let providers = config::parse(text)?;
        Ok(Providers { providers, bin_dir: bin_dir.to_path_buf(), cache: Mutex::default() })
    }

    /// Whether a provider for `image` wants the service account (so the
    /// caller looks it up only then).
    pub(crate) fn wants_account(&self, image: &str) -> bool {
        self.matching(image).any(|p| p.token.is_some())
    }

    /// Every service-account annotation key a plugin may be told of.
    pub(crate) fn annotation_keys(&self) -> Vec<String> {
        let keys = self.providers.iter().filter_map(|p| p.token.as_ref());
        keys.flat_map(|t| t.required_keys.iter().chain(&t.optional_keys).cloned()).collect()
    }

    fn matching(&self, image: &str) -> impl Iterator<Item = &Provider> {
        self.providers.iter().filter(move |p| p.match_images.iter().any(|m| m.matches(image)))
    }

    /// Credentials for `image` (`host[:port]/repository`): from the first
    /// matching provider that has some, as the kubelet prefers the earlier
    /// provider. `Anonymous` when none matches; the first error when every
    /// matching one failed.
    pub(crate) async fn credentials(
        &self,
        image: &str,
        account: Option<&Account>,
        tokens: &impl Tokens,
    ) -> Result<Credentials, ProviderError> {
        let mut first_error = None;
        for p in self.matching(image) {
            match self.one(p, image, account, tokens).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(Credentials::Anonymous), Err)
    }

    async fn one(
        &self,
        p: &Provider,
        image: &str,
        account: Option<&Account>,
        tokens: &impl Tokens,
    ) -> Result<Credentials, ProviderError> {
        let account = match (&p.token, account) {
            (None, _) => None,
            (Some(t), None) if t.require => return Err(ProviderError::NeedsServiceAccount(p.name.clone())),
            (Some(_), None) => None,
            (Some(t), Some(a)) => Some((t, a, annotations(p, t, a)?)),
        };
        let who = account.as_ref().map(|(_, a, notes)| account_key(a, notes)).unwrap_or_default();
        let keys = cache_keys(&p.name, image, &who);
        if let Some(answer) = self.cached(&keys) {
            return pick(&p.name, &answer, image);
        }
        let mut request = serde_json::json!({
            "apiVersion": p.api_version,
            "kind": "CredentialProviderRequest",
            "image": image,
        });
        let mut lifetime = MAX_CACHE_DURATION;
        if let Some((t, a, notes)) = &account {
            let token = tokens.token(a, &t.audience).await.map_err(|e| ProviderError::Token(p.name.clone(), e))?;
            request["serviceAccountToken"] = token.into();
            request["serviceAccountAnnotations"] = serde_json::to_value(notes).unwrap_or_default();
            if t.cache == TokenCache::Token {
                lifetime = Duration::from_secs(TOKEN_SECONDS.unsigned_abs());
            }
        }
        let (kind, ttl, auth) = self.run(p, request.to_string()).await?;
        let answer = Answer { auth: Arc::new(auth), until: Instant::now() + ttl.min(lifetime) };
        if !ttl.is_zero() {
            let key = match kind {
                KeyType::Image => &keys[0],
                KeyType::Registry => &keys[1],
                KeyType::Global => &keys[2],
            };
            self.remember(key.clone(), answer.clone());
        }
        pick(&p.name, &answer, image)
    }

    fn cached(&self, keys: &[String; 3]) -> Option<Answer> {
        let cache = self.cache.lock().expect("provider cache poisoned");
        let now = Instant::now();
        keys.iter().filter_map(|k| cache.get(k)).find(|a| a.until > now).cloned()
    }

    fn remember(&self, key: String, answer: Answer) {
        let mut cache = self.cache.lock().expect("provider cache poisoned");
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, a| a.until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, answer);
    }

    async fn run(&self, p: &Provider, request: String) -> Result<Parsed, ProviderError> {
        let program = self.bin_dir.join(&p.name);
        let (args, env) = (p.args.clone(), p.env.clone());
        let out = tokio::task::spawn_blocking(move || {
            let call = Run {
                program: program.as_os_str(),
                args: &args,
                env: &env,
                stdin: request.as_bytes(),
                timeout: TIMEOUT,
                max_output: MAX_OUTPUT,
            };
            exec::run(&call)
        })
        .await
        .map_err(|e| ProviderError::Exec(p.name.clone(), ExecError::Spawn(std::io::Error::other(e.to_string()))))?;
        let (status, out) = out.map_err(|e| match e {
            ExecError::Missing => ProviderError::Missing(p.name.clone()),
            e => ProviderError::Exec(p.name.clone(), e),
        })?;
        if !status.success() {
            return Err(ProviderError::Failed(p.name.clone(), exec::describe(status)));
        }
        parse_response(p, &out)
    }
}

/// The annotations a plugin is told of: the required ones (each must be
/// there) and the optional ones that are.
fn annotations(p: &Provider, t: &TokenAttributes, a: &Account) -> Result<BTreeMap<String, String>, ProviderError> {
    let mut out = BTreeMap::new();
    for k in &t.required_keys {
        let v = a.annotations.get(k).ok_or_else(|| ProviderError::MissingAnnotation {
            provider: p.name.clone(),
            account: format!("{}/{}", a.namespace, a.name),
            key: k.clone(),
        })?;
        out.insert(k.clone(), v.clone());
    }
    for k in &t.optional_keys {
        if let Some(v) = a.annotations.get(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// Who an answer was for: the account (by uid too, so a recreated account
/// of the same name is someone else) and the annotations the plugin saw.
fn account_key(a: &Account, notes: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in notes {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    format!("{}/{}/{}/{}", a.namespace, a.name, a.uid, hex::encode(h.finalize()))
}

/// The cache keys an answer for `image` may sit under, by `cacheKeyType`:
/// Image, Registry, Global (the kubelet looks them up in that order).
fn cache_keys(provider: &str, image: &str, who: &str) -> [String; 3] {
    let registry = image.split('/').next().unwrap_or(image);
    [
        format!("{provider}\0image\0{image}\0{who}"),
        format!("{provider}\0registry\0{registry}\0{who}"),
        format!("{provider}\0global\0\0{who}"),
    ]
}

fn pick(provider: &str, answer: &Answer, image: &str) -> Result<Credentials, ProviderError> {
    answer
        .auth
        .iter()
        .find(|(p, _)| p.matches(image))
        .map(|(_, c)| c.clone())
        .ok_or_else(|| ProviderError::Empty(provider.into(), image.into()))
}

#[cfg(test)]
mod tests;
