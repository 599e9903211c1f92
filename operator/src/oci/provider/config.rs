//! The kubelet's `CredentialProviderConfig`, checked as the kubelet checks
//! it at start.

use std::time::Duration;

use serde::Deserialize;

use super::MAX_CACHE_DURATION;
use super::pattern::Pattern;

const MAX_PROVIDERS: usize = 64;
const API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenCache {
    /// Cached per service account (and its annotations).
    ServiceAccount,
    /// Cached per token: ocisync mints one per run, so at most its lifetime.
    Token,
}

#[derive(Debug, Clone)]
pub(super) struct TokenAttributes {
    pub(super) audience: String,
    pub(super) require: bool,
    pub(super) required_keys: Vec<String>,
    pub(super) optional_keys: Vec<String>,
    pub(super) cache: TokenCache,
}

#[derive(Debug, Clone)]
pub(super) struct Provider {
    pub(super) name: String,
    pub(super) match_images: Vec<Pattern>,
    pub(super) default_cache: Duration,
    pub(super) api_version: String,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) token: Option<TokenAttributes>,
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

/// The providers of a config (YAML, of which JSON is a part: the kubelet
/// reads either), in its order.
pub(super) fn parse(text: &str) -> Result<Vec<Provider>, String> {
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| format!("not a CredentialProviderConfig: {e}"))?;
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
    Ok(providers)
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
