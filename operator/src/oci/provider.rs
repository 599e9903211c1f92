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

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::auth::Credentials;
use super::exec::{self, ExecError, Run};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const MAX_OUTPUT: u64 = 256 * 1024;
const MAX_CONFIG_BYTES: u64 = 1 << 20;
const MAX_PROVIDERS: usize = 64;
/// Answers cached; past this, expired ones go, then all.
const MAX_CACHED: usize = 4096;
/// However long an answer says it lasts.
const MAX_CACHE_DURATION: Duration = Duration::from_secs(24 * 3600);
/// What ocisync asks of a TokenRequest (the API server's minimum).
pub(crate) const TOKEN_SECONDS: i64 = 600;
const API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];

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

/// A glob from `matchImages` (or an answer's `auth` key), as the kubelet
/// reads it: host parts matched one by one (`*` within a part), the port
/// exactly, the path as a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    parts: Vec<String>,
    port: Option<String>,
    path: String,
}

impl Pattern {
    pub(crate) fn parse(s: &str) -> Result<Pattern, String> {
        let rest = s.split_once("://").map_or(s, |(_, r)| r);
        let (hostport, path) = rest.find('/').map_or((rest, ""), |i| (&rest[..i], &rest[i..]));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p.to_string())),
            Some(_) => return Err(format!("{s:?}: the port is not a number")),
            None => (hostport, None),
        };
        let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_*?".contains(&b);
        if host.is_empty() || !host.split('.').all(|p| !p.is_empty() && p.bytes().all(ok)) {
            return Err(format!("{s:?}: want HOST[:PORT][/PATH] with `*` or `?` in host parts"));
        }
        let parts = host.split('.').map(str::to_ascii_lowercase).collect();
        Ok(Pattern { parts, port, path: path.to_string() })
    }

    /// `image` is `host[:port]/path…` (no scheme), as the kubelet passes it.
    pub(crate) fn matches(&self, image: &str) -> bool {
        let (hostport, path) = image.find('/').map_or((image, ""), |i| (&image[..i], &image[i..]));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        let host = host.to_ascii_lowercase();
        let parts: Vec<&str> = host.split('.').collect();
        self.port.as_deref() == port
            && parts.len() == self.parts.len()
            && path.starts_with(&self.path)
            && self.parts.iter().zip(&parts).all(|(g, p)| glob(g.as_bytes(), p.as_bytes()))
    }
}

/// `*` (any run) and `?` (one byte) within one host part.
fn glob(g: &[u8], s: &[u8]) -> bool {
    match (g.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&g[1..], s) || (!s.is_empty() && glob(g, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&g[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&g[1..], &s[1..]),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenCache {
    /// Cached per service account (and its annotations).
    ServiceAccount,
    /// Cached per token: ocisync mints one per run, so at most its lifetime.
    Token,
}

#[derive(Debug, Clone)]
struct TokenAttributes {
    audience: String,
    require: bool,
    required_keys: Vec<String>,
    optional_keys: Vec<String>,
    cache: TokenCache,
}

#[derive(Debug, Clone)]
struct Provider {
    name: String,
    match_images: Vec<Pattern>,
    default_cache: Duration,
    api_version: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    token: Option<TokenAttributes>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<RawProvider>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProvider {
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<RawEnv>,
    token_attributes: Option<RawTokenAttributes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTokenAttributes {
    service_account_token_audience: String,
    require_service_account: Option<bool>,
    #[serde(default)]
    required_service_account_annotation_keys: Vec<String>,
    #[serde(default)]
    optional_service_account_annotation_keys: Vec<String>,
    cache_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    api_version: Option<String>,
    kind: Option<String>,
    cache_key_type: Option<String>,
    cache_duration: Option<String>,
    #[serde(default)]
    auth: BTreeMap<String, RawAuth>,
}

#[derive(Deserialize)]
struct RawAuth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
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
        // YAML, of which JSON is a part: the kubelet reads either.
        let raw: RawConfig =
            serde_saphyr::from_str(text).map_err(|e| format!("not a CredentialProviderConfig: {e}"))?;
        if raw.kind != "CredentialProviderConfig" || !raw.api_version.starts_with("kubelet.config.k8s.io/") {
            return Err(format!(
                "want kind CredentialProviderConfig, apiVersion kubelet.config.k8s.io/v1, not {} {}",
                raw.kind, raw.api_version
            ));
        }
        if raw.providers.is_empty() || raw.providers.len() > MAX_PROVIDERS {
            return Err(format!("want 1 to {MAX_PROVIDERS} providers"));
        }
        let mut providers: Vec<Provider> = Vec::new();
        for p in raw.providers {
            let at = |reason: String| format!("provider {:?}: {reason}", p.name);
            // A name becomes a path under the bin dir: one plain component.
            let plain = !p.name.is_empty()
                && p.name.len() <= 255
                && p.name != "."
                && p.name != ".."
                && !p.name.contains(['/', '\0']);
            if !plain {
                return Err(at("a name is one file name in the bin dir".into()));
            }
            if providers.iter().any(|q| q.name == p.name) {
                return Err(at("named twice".into()));
            }
            if p.match_images.is_empty() {
                return Err(at("matchImages is required".into()));
            }
            let match_images =
                p.match_images.iter().map(|m| Pattern::parse(m)).collect::<Result<Vec<_>, _>>().map_err(at)?;
            let default_cache = match p.default_cache_duration.as_deref() {
                Some(d) => crate::api::duration::parse(d)
                    .ok_or_else(|| at(format!("defaultCacheDuration {d:?} is not a duration")))?,
                None => return Err(at("defaultCacheDuration is required".into())),
            };
            if !API_VERSIONS.contains(&p.api_version.as_str()) {
                return Err(at(format!("apiVersion {:?}: want credentialprovider.kubelet.k8s.io/v1", p.api_version)));
            }
            let token = match p.token_attributes {
                None => None,
                Some(t) => Some(token_attributes(t, &p.api_version).map_err(at)?),
            };
            providers.push(Provider {
                name: p.name,
                match_images,
                default_cache: default_cache.min(MAX_CACHE_DURATION),
                api_version: p.api_version,
                args: p.args,
                env: p.env.into_iter().map(|e| (e.name, e.value)).collect(),
                token,
            });
        }
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

/// An answer: where to cache it, how long, and its entries best first.
type Parsed = (KeyType, Duration, Vec<(Pattern, Credentials)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Image,
    Registry,
    Global,
}

fn token_attributes(t: RawTokenAttributes, api_version: &str) -> Result<TokenAttributes, String> {
    if api_version != API_VERSIONS[0] {
        return Err("tokenAttributes needs apiVersion credentialprovider.kubelet.k8s.io/v1".into());
    }
    if t.service_account_token_audience.trim().is_empty() {
        return Err("tokenAttributes.serviceAccountTokenAudience is required".into());
    }
    let require = t.require_service_account.ok_or("tokenAttributes.requireServiceAccount is required")?;
    let cache = match t.cache_type.as_deref() {
        Some("ServiceAccount") => TokenCache::ServiceAccount,
        Some("Token") => TokenCache::Token,
        other => return Err(format!("tokenAttributes.cacheType {other:?}: want ServiceAccount or Token")),
    };
    let (req, opt) = (t.required_service_account_annotation_keys, t.optional_service_account_annotation_keys);
    if let Some(k) = req.iter().find(|k| opt.contains(k)) {
        return Err(format!("annotation key {k:?} is both required and optional"));
    }
    if !require && !req.is_empty() {
        return Err("requiredServiceAccountAnnotationKeys needs requireServiceAccount: true".into());
    }
    Ok(TokenAttributes {
        audience: t.service_account_token_audience,
        require,
        required_keys: req,
        optional_keys: opt,
        cache,
    })
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

fn parse_response(p: &Provider, out: &[u8]) -> Result<Parsed, ProviderError> {
    let garbage = |what| ProviderError::Garbage(p.name.clone(), what);
    if out.len() as u64 > MAX_OUTPUT {
        return Err(garbage("larger than 256 KiB"));
    }
    // Never echo a parse error: its text may quote the password.
    let raw: RawResponse = serde_json::from_slice(out).map_err(|_| garbage("not JSON of that shape"))?;
    if raw.kind.as_deref() != Some("CredentialProviderResponse") {
        return Err(garbage("kind is not CredentialProviderResponse"));
    }
    if raw.api_version.as_deref() != Some(p.api_version.as_str()) {
        return Err(garbage("apiVersion is not the one it was asked with"));
    }
    let kind = match raw.cache_key_type.as_deref() {
        Some("Image") => KeyType::Image,
        Some("Registry") => KeyType::Registry,
        Some("Global") => KeyType::Global,
        _ => return Err(garbage("cacheKeyType is not Image, Registry or Global")),
    };
    let ttl = match raw.cache_duration.as_deref() {
        None => p.default_cache,
        Some(d) => crate::api::duration::parse(d).ok_or_else(|| garbage("cacheDuration is not a duration"))?,
    };
    let mut auth = Vec::new();
    for (key, a) in raw.auth {
        // The kubelet skips a key it cannot parse; so do we.
        if let Ok(pattern) = Pattern::parse(&key)
            && !(a.username.is_empty() && a.password.is_empty())
        {
            auth.push((pattern, Credentials::Basic { username: a.username, password: a.password }));
        }
    }
    // The most specific key first: the kubelet's keyring order (reverse
    // lexical), which puts `a.b.io/x` before `a.b.io` and `*.b.io`.
    auth.sort_by_key(|e| std::cmp::Reverse(e.0.sort_key()));
    Ok((kind, ttl.min(MAX_CACHE_DURATION), auth))
}

impl Pattern {
    fn sort_key(&self) -> String {
        format!("{}:{}{}", self.parts.join("."), self.port.as_deref().unwrap_or(""), self.path)
    }
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
#[path = "provider_tests.rs"]
mod tests;
