//! A plugin's `CredentialProviderResponse`: checked, and its entries put
//! best first.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::config::Provider;
use super::pattern::Pattern;
use super::{MAX_CACHE_DURATION, MAX_OUTPUT, ProviderError};
use crate::oci::auth::Credentials;

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

/// An answer: where to cache it, how long, and its entries best first.
pub(super) type Parsed = (KeyType, Duration, Vec<(Pattern, Credentials)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyType {
    Image,
    Registry,
    Global,
}

pub(super) fn parse_response(p: &Provider, out: &[u8]) -> Result<Parsed, ProviderError> {
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
