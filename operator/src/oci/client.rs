//! One registry, one credential: the HTTP side of the distribution API.
//!
//! Built on reqwest rather than oci-client because a sync engine needs what
//! oci-client does not expose: response headers (`Retry-After`), bounded
//! manifest reads, a blob body we stream ourselves, and credentials that
//! belong to the client instead of a per-registry store shared by all callers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::{Method, Response, StatusCode, header};
use serde::Deserialize;

use super::auth::{Challenge, Credentials};
use super::digest::Digest;
use super::error::RegistryError;
use super::manifest::{Descriptor, Manifest, media};
use super::retry::{Outcome, RetryPolicy, parse_retry_after};

/// Manifests larger than this are refused, as containerd does: a manifest is
/// read whole into memory, so a hostile registry must not choose its size.
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Tags read from one repository before giving up.
pub(crate) const MAX_TAGS: usize = 100_000;
/// Pages of a tag list followed before giving up: `MAX_TAGS` at 1,000 a page.
pub(crate) const MAX_TAG_PAGES: usize = 100;
/// A bearer token is reused for at most this long, whatever it claims.
const MAX_TOKEN_SECS: u64 = 86_400;
/// A `WWW-Authenticate` header longer than this is not parsed.
const MAX_CHALLENGE_BYTES: usize = 4096;

/// Told about every registry request: the seam through which a driver
/// counts requests without the client knowing about metrics.
pub(crate) trait Observe: Send + Sync {
    /// `status` is `None` when no response came.
    fn request(&self, method: &str, kind: RequestKind, status: Option<u16>);
    fn blob_bytes(&self, n: u64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RequestKind {
    Manifest,
    Blob,
    Tags,
    Referrers,
    Token,
}

#[derive(Clone)]
pub(crate) struct Observer(pub std::sync::Arc<dyn Observe>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct TransportOptions {
    /// Plain HTTP. Without it every request is HTTPS and redirects to
    /// `http://` are refused.
    pub(crate) insecure: bool,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM) for registries that require mTLS.
    pub(crate) identity_pem: Option<Vec<u8>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) observer: Option<Observer>,
    /// Every request through this proxy instead of the environment's.
    pub(crate) proxy: Option<ProxyConfig>,
}

/// An HTTP proxy and its own credentials (sent to the proxy only: on a
/// CONNECT for HTTPS registries, so the registry's never reach it in clear).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ProxyConfig {
    pub(crate) address: String,
    pub(crate) credentials: Option<(String, String)>,
}

impl ProxyConfig {
    pub(crate) fn to_reqwest(&self) -> Result<reqwest::Proxy, RegistryError> {
        let mut proxy = reqwest::Proxy::all(&self.address)
            .map_err(|_| RegistryError::Config(format!("proxy address {:?} is not a URL", self.address)))?;
        if let Some((user, password)) = &self.credentials {
            proxy = proxy.basic_auth(user, password);
        }
        Ok(proxy)
    }
}

// The proxy's password stays out of every log line.
impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({}, {})", self.address, if self.credentials.is_some() { "with credentials" } else { "open" })
    }
}

/// What a request carries besides its method and URL.
#[derive(Default)]
pub(super) struct Extra<'a> {
    pub(super) range: Option<&'a str>,
    /// A small body, with its content type (a manifest; blobs stream).
    pub(super) body: Option<(&'a str, Bytes)>,
    /// Ask for a token that may push.
    pub(super) push: bool,
    /// A 404 is an answer (a HEAD asking whether a blob is there).
    pub(super) accept_404: bool,
}

pub(crate) struct RegistryClient {
    pub(super) http: reqwest::Client,
    registry: String,
    pub(super) base: String,
    credentials: Credentials,
    pub(super) retry: RetryPolicy,
    auth: Mutex<AuthState>,
    observer: Option<Observer>,
    /// The configured proxy's host, to name it when a 401 may be its own.
    proxy_host: Option<String>,
    /// For CRLs: plain HTTP is their norm (they are signed), so another
    /// client, through the same proxy and CAs, made when first needed.
    crl: super::crl::CrlClient,
}

/// What one referrers page brought.
pub(crate) struct ReferrersPage {
    pub(crate) body: Bytes,
    pub(crate) next: Option<String>,
}

#[derive(Default)]
struct AuthState {
    basic: bool,
    tokens: HashMap<String, (String, Instant)>,
}

impl RegistryClient {
    pub(crate) fn new(
        registry: &str,
        credentials: Credentials,
        opts: &TransportOptions,
    ) -> Result<Self, RegistryError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("ocisync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout.unwrap_or(Duration::from_secs(10)))
            .read_timeout(opts.read_timeout.unwrap_or(Duration::from_secs(60)))
            .https_only(!opts.insecure);
        if let Some(pem) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RegistryError::Config(format!("CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(RegistryError::Config("CA file holds no PEM certificate".into()));
            }
            b = b.tls_certs_merge(certs);
        }
        if let Some(pem) = &opts.identity_pem {
            let id = reqwest::Identity::from_pem(pem)
                .map_err(|e| RegistryError::Config(format!("client certificate: {e}")))?;
            b = b.identity(id);
        }
        if let Some(p) = &opts.proxy {
            // Replaces the environment's proxies (reqwest reads HTTPS_PROXY,
            // HTTP_PROXY, ALL_PROXY and NO_PROXY otherwise).
            b = b.proxy(p.to_reqwest()?);
        }
        let crl = super::crl::CrlClient::new(opts)?;
        let http = b.build().map_err(|e| RegistryError::Config(format!("HTTP client: {e}")))?;
        let scheme = if opts.insecure { "http" } else { "https" };
        Ok(RegistryClient {
            http,
            registry: registry.to_string(),
            base: format!("{scheme}://{registry}"),
            credentials,
            retry: opts.retry.clone(),
            auth: Mutex::default(),
            observer: opts.observer.clone(),
            crl,
            // Host and port only: a user:password in the address stays out.
            proxy_host: opts.proxy.as_ref().map(|p| match reqwest::Url::parse(&p.address) {
                Ok(u) => {
                    format!("{}{}", u.host_str().unwrap_or("?"), u.port().map(|p| format!(":{p}")).unwrap_or_default())
                }
                Err(_) => "?".into(),
            }),
        })
    }

    /// A CRL by URL, bounded, cached until its nextUpdate.
    pub(crate) async fn crl(&self, url: &str) -> Result<Bytes, String> {
        self.crl.get(url).await
    }

    /// Count downloaded blob bytes (the caller streams the body).
    pub(crate) fn observe_blob_bytes(&self, n: u64) {
        if let Some(o) = &self.observer {
            o.0.blob_bytes(n);
        }
    }

    fn observe(&self, method: &Method, kind: RequestKind, status: Option<u16>) {
        if let Some(o) = &self.observer {
            o.0.request(method.as_str(), kind, status);
        }
    }

    /// The digest the registry names for a tag or digest, by one HEAD;
    /// `None` when it sent no `Docker-Content-Digest` (the caller then GETs).
    pub(crate) async fn head_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let what = || format!("manifest {repository}:{reference}");
        let head = self.send(Method::HEAD, RequestKind::Manifest, &url, repository, what).await?;
        header_digest(&head)
    }

    /// A manifest's bytes by tag or digest, bounded, unchecked: the caller
    /// knows what digest they must have.
    pub(crate) async fn manifest_bytes(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Bytes, Option<String>), RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        self.get_manifest(&url, repository, || format!("manifest {repository}:{reference}")).await
    }

    /// The manifest with this digest, checked against it.
    pub(crate) async fn manifest(&self, repository: &str, digest: &Digest) -> Result<(Manifest, Bytes), RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.base);
        let what = || format!("manifest {repository}@{digest}");
        let (body, content_type) = self.get_manifest(&url, repository, what).await?;
        let manifest = verify_manifest(digest, &body, content_type.as_deref())?;
        Ok((manifest, body))
    }

    /// A manifest's bytes, bounded, and the content type they came with.
    async fn get_manifest(
        &self,
        url: &str,
        repository: &str,
        what: impl Fn() -> String,
    ) -> Result<(Bytes, Option<String>), RegistryError> {
        let res = self.send(Method::GET, RequestKind::Manifest, url, repository, &what).await?;
        let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_limited(res, MAX_MANIFEST_BYTES, what).await?;
        Ok((body, content_type))
    }

    /// Every tag of a repository, following `Link` pagination; at most
    /// `MAX_TAGS`, so a registry cannot make the list unbounded.
    pub(crate) async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = format!("{}/v2/{repository}/tags/list?n=1000", self.base);
        let mut all = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let what = || format!("tags of {repository}");
            let res = self.send(Method::GET, RequestKind::Tags, &url, repository, what).await?;
            let link = res.headers().get(header::LINK).and_then(|v| v.to_str().ok()).and_then(next_link);
            let next = next_page(&self.base, link).map_err(|()| {
                RegistryError::Protocol(format!("the tag list of {repository} links to another host; not followed"))
            })?;
            let body = read_limited(res, MAX_MANIFEST_BYTES, what).await?;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::Protocol(format!("tag list of {repository}: {e}")))?;
            all.extend(page.tags.unwrap_or_default());
            if all.len() > MAX_TAGS {
                return Err(RegistryError::TooLarge { what: what(), limit: MAX_TAGS as u64 });
            }
            match next {
                Some(n) if n != url => url = n,
                _ => return Ok(all),
            }
        }
        Err(RegistryError::Protocol(format!("the tag list of {repository} goes on past {MAX_TAG_PAGES} pages")))
    }

    /// One page of the referrers API (`None` at `next`: the first page).
    /// `Ok(None)` when the registry has no referrers API: it answered 404,
    /// 400 or 406, or something that is not an image index.
    pub(crate) async fn referrers_page(
        &self,
        repository: &str,
        digest: &Digest,
        next: Option<&str>,
    ) -> Result<Option<ReferrersPage>, RegistryError> {
        let url = next.map_or_else(|| format!("{}/v2/{repository}/referrers/{digest}", self.base), str::to_string);
        let what = || format!("referrers of {repository}@{digest}");
        let res = match self.send(Method::GET, RequestKind::Referrers, &url, repository, what).await {
            Ok(res) => res,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(RegistryError::Status { status: 400 | 406, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !content_type.starts_with(media::OCI_INDEX) {
            return Ok(None);
        }
        let link = res.headers().get(header::LINK).and_then(|v| v.to_str().ok()).and_then(next_link);
        let next = next_page(&self.base, link).map_err(|()| {
            RegistryError::Protocol(format!(
                "the referrers of {repository}@{digest} link to another host; not followed"
            ))
        })?;
        let body = read_limited(res, MAX_MANIFEST_BYTES, what).await?;
        Ok(Some(ReferrersPage { body, next: next.filter(|n| *n != url) }))
    }

    /// A small blob read whole, checked against its descriptor: for
    /// signatures, never for layers (those stream).
    pub(crate) async fn small_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
        limit: usize,
    ) -> Result<Bytes, RegistryError> {
        let what = || format!("blob {repository}@{}", desc.digest);
        if desc.size > limit as u64 {
            return Err(RegistryError::TooLarge { what: what(), limit: limit as u64 });
        }
        let res = self.blob(repository, desc).await?;
        let body = read_limited(res, limit, what).await?;
        if body.len() as u64 != desc.size {
            return Err(RegistryError::SizeMismatch { what: what(), expected: desc.size, actual: body.len() as u64 });
        }
        let actual = Digest::of(&body);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch { what: what(), expected: desc.digest.clone(), actual });
        }
        Ok(body)
    }

    /// Starts a blob download; the caller streams and checks the body.
    pub(crate) async fn blob(&self, repository: &str, desc: &Descriptor) -> Result<Response, RegistryError> {
        let url = format!("{}/v2/{repository}/blobs/{}", self.base, desc.digest);
        self.send(Method::GET, RequestKind::Blob, &url, repository, || format!("blob {repository}@{}", desc.digest))
            .await
    }

    /// Starts a download of `span` of a blob: `Partial` when the registry
    /// (or the storage it redirects to, which gets the `Range` header too)
    /// answered with exactly that range, `Whole` when it ignored the header
    /// and sends the whole blob.
    pub(crate) async fn blob_range(
        &self,
        repository: &str,
        desc: &Descriptor,
        span: super::range::Span,
    ) -> Result<super::range::Ranged, RegistryError> {
        use super::range::Ranged;
        let url = format!("{}/v2/{repository}/blobs/{}", self.base, desc.digest);
        let what = || format!("blob {repository}@{} bytes {}-{}", desc.digest, span.start, span.end - 1);
        let header = span.header().ok_or_else(|| RegistryError::Protocol(format!("{}: an empty range", what())))?;
        let extra = Extra { range: Some(&header), ..Extra::default() };
        let res = self.send_with(Method::GET, RequestKind::Blob, &url, repository, extra, what).await?;
        if res.status() != StatusCode::PARTIAL_CONTENT {
            return Ok(Ranged::Whole(res));
        }
        let said = res.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
        match said.as_deref().map(|v| super::range::content_range(v, desc.size)) {
            Some(Ok(got)) if got == span => Ok(Ranged::Partial(res)),
            Some(Ok(got)) => Err(RegistryError::Protocol(format!(
                "{}: answered bytes {}-{}",
                what(),
                got.start,
                got.end.saturating_sub(1)
            ))),
            Some(Err(message)) => Err(RegistryError::Protocol(format!("{}: {message}", what()))),
            None => Err(RegistryError::Protocol(format!("{}: 206 without a Content-Range", what()))),
        }
    }

    async fn send(
        &self,
        method: Method,
        kind: RequestKind,
        url: &str,
        repository: &str,
        what: impl Fn() -> String,
    ) -> Result<Response, RegistryError> {
        self.send_with(method, kind, url, repository, Extra::default(), what).await
    }

    pub(super) async fn send_with(
        &self,
        method: Method,
        kind: RequestKind,
        url: &str,
        repository: &str,
        extra: Extra<'_>,
        what: impl Fn() -> String,
    ) -> Result<Response, RegistryError> {
        let range = extra.range;
        let scope = format!("repository:{repository}:{}", if extra.push { "pull,push" } else { "pull" });
        let mut challenged = false;
        let mut attempt = 1;
        loop {
            let mut req = self.http.request(method.clone(), url);
            if kind == RequestKind::Manifest {
                req = req.header(header::ACCEPT, media::ACCEPT);
            }
            if let Some(r) = range {
                req = req.header(header::RANGE, r);
            }
            if let Some((content_type, body)) = &extra.body {
                req = req.header(header::CONTENT_TYPE, *content_type).body(body.clone());
            }
            if let Some(auth) = self.authorization(&scope) {
                req = req.header(header::AUTHORIZATION, auth);
            }
            let sent = req.send().await;
            self.observe(&method, kind, sent.as_ref().ok().map(|r| r.status().as_u16()));
            let delay = match sent {
                Ok(res) if res.status().is_success() => return Ok(res),
                Ok(res) if extra.accept_404 && res.status() == StatusCode::NOT_FOUND => return Ok(res),
                Ok(res) if res.status() == StatusCode::UNAUTHORIZED && !challenged => {
                    challenged = true;
                    self.answer_challenge(&res, &scope).await?;
                    continue;
                }
                // A plain-HTTP request through a proxy that wants (other)
                // credentials; over HTTPS the CONNECT fails the same way.
                Ok(res) if res.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
                    return Err(RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                        detail: "the proxy refused the request: 407 Proxy Authentication Required (check the credentials given for the proxy)".into(),
                    });
                }
                Ok(res) => {
                    let status = res.status();
                    match status {
                        StatusCode::UNAUTHORIZED => {
                            let detail = self.describe_credentials();
                            return Err(RegistryError::Unauthorized { registry: self.registry.clone(), detail });
                        }
                        StatusCode::FORBIDDEN => {
                            return Err(RegistryError::Denied { registry: self.registry.clone(), what: what() });
                        }
                        StatusCode::NOT_FOUND => {
                            return Err(RegistryError::NotFound { what: what() });
                        }
                        _ => {}
                    }
                    let retry_after = res
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let body = error_body(res).await;
                    let status = status.as_u16();
                    self.retry
                        .delay(attempt, Outcome::Status(status), retry_after)
                        .ok_or_else(|| RegistryError::Status { status, what: what(), attempts: attempt, body })?
                }
                Err(e) => self
                    .retry
                    .delay(attempt, Outcome::Transport, None)
                    .ok_or_else(|| RegistryError::unreachable(&self.base, &e))?,
            };
            tracing::debug!(%url, attempt, delay_ms = delay.as_millis() as u64, "retrying registry request");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    pub(super) fn authorization(&self, scope: &str) -> Option<String> {
        let state = self.auth.lock().expect("auth state poisoned");
        if let Some((token, expires)) = state.tokens.get(scope)
            && Instant::now() < *expires
        {
            return Some(format!("Bearer {token}"));
        }
        match (&self.credentials, state.basic) {
            (Credentials::Basic { username, password }, true) => Some(basic_header(username, password)),
            _ => None,
        }
    }

    async fn answer_challenge(&self, res: &Response, scope: &str) -> Result<(), RegistryError> {
        let challenge = res
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter(|v| v.len() <= MAX_CHALLENGE_BYTES)
            .filter_map(|v| v.to_str().ok().and_then(Challenge::parse))
            .next();
        match challenge {
            Some(Challenge::Basic) if matches!(self.credentials, Credentials::Basic { .. }) => {
                self.auth.lock().expect("auth state poisoned").basic = true;
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, scope: asked }) => {
                let scope_q = asked.unwrap_or_else(|| scope.to_string());
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), &scope_q).await?;
                let expires = Instant::now().checked_add(ttl.saturating_sub(Duration::from_secs(10)));
                let expires = expires.unwrap_or_else(Instant::now);
                self.auth.lock().expect("auth state poisoned").tokens.insert(scope.to_string(), (token, expires));
                Ok(())
            }
            _ => Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                detail: self.describe_credentials(),
            }),
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), RegistryError> {
        #[derive(Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let res = match &self.credentials {
            // An identity token is an OAuth2 refresh token: exchanged with a
            // POST as the docker CLI does; a GET would not carry it.
            Credentials::IdentityToken(refresh) => {
                self.oauth_token(realm, service, scope, &[("grant_type", "refresh_token"), ("refresh_token", refresh)])
                    .await?
            }
            creds => {
                let mut query = vec![("scope", scope)];
                if let Some(s) = service {
                    query.push(("service", s));
                }
                let mut req = self.http.get(realm).query(&query);
                if let Credentials::Basic { username, password } = creds {
                    req = req.header(header::AUTHORIZATION, basic_header(username, password));
                }
                let res = req.send().await.map_err(|e| RegistryError::unreachable(realm, &e))?;
                if let Some(o) = &self.observer {
                    o.0.request("GET", RequestKind::Token, Some(res.status().as_u16()));
                }
                match (creds, res.status()) {
                    // A realm that only speaks OAuth2 (no GET): the password grant.
                    (
                        Credentials::Basic { username, password },
                        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED,
                    ) => {
                        let form = [("grant_type", "password"), ("username", username), ("password", password)];
                        self.oauth_token(realm, service, scope, &form).await?
                    }
                    _ => res,
                }
            }
        };
        if matches!(res.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
                detail: self.describe_credentials(),
            });
        }
        if !res.status().is_success() {
            let status = res.status().as_u16();
            return Err(RegistryError::Status {
                status,
                what: format!("token from {realm}"),
                attempts: 1,
                body: error_body(res).await,
            });
        }
        let body = read_limited(res, 1 << 20, || format!("token from {realm}")).await?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Protocol(format!("token response from {realm}: {e}")))?;
        let token = t.token.or(t.access_token).filter(|t| !t.is_empty());
        let token =
            token.ok_or_else(|| RegistryError::Protocol(format!("token response from {realm} has no token")))?;
        // The distribution token spec's default lifetime is 60 s; a lifetime
        // past a day is the registry's mistake, not a reason to trust a
        // token that long.
        Ok((token, Duration::from_secs(t.expires_in.unwrap_or(60).clamp(10, MAX_TOKEN_SECS))))
    }

    /// A POST to the token realm (the distribution spec's OAuth2 form).
    async fn oauth_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        grant: &[(&str, &str)],
    ) -> Result<Response, RegistryError> {
        let mut form: Vec<(&str, &str)> = grant.to_vec();
        form.extend([("scope", scope), ("client_id", "ocisync")]);
        if let Some(s) = service {
            form.push(("service", s));
        }
        let res = self.http.post(realm).form(&form).send().await.map_err(|e| RegistryError::unreachable(realm, &e))?;
        if let Some(o) = &self.observer {
            o.0.request("POST", RequestKind::Token, Some(res.status().as_u16()));
        }
        Ok(res)
    }

    fn describe_credentials(&self) -> String {
        let registry = match &self.credentials {
            Credentials::Anonymous => "no credentials were given",
            // The user name comes from a Secret: it stays out of messages.
            Credentials::Basic { .. } => "the credentials given were rejected",
            Credentials::IdentityToken(_) => "the identity token given was rejected",
        };
        match &self.proxy_host {
            // Some proxies (tinyproxy) answer wrong proxy credentials with a
            // 401 of their own rather than a 407: name both suspects.
            Some(host) => format!(
                "{registry}, or the proxy {host} refused its credentials (check the proxy Secret's username and password)"
            ),
            None => registry.into(),
        }
    }
}

fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")))
}

/// The URL of the next page: a path on this registry, or an absolute URL
/// on its own origin. Our credentials go with every request, so a page on
/// another host is an error, never followed.
fn next_page(base: &str, link: Option<String>) -> Result<Option<String>, ()> {
    match link {
        None => Ok(None),
        Some(path) if path.starts_with('/') && !path.starts_with("//") => Ok(Some(format!("{base}{path}"))),
        Some(abs) if abs.starts_with(&format!("{base}/")) => Ok(Some(abs)),
        Some(_) => Err(()),
    }
}

/// The target of `Link: <…>; rel="next"`.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find(|l| l.contains("rel=\"next\"")).and_then(|l| {
        let (start, end) = (l.find('<')?, l.find('>')?);
        Some(l[start + 1..end].to_string())
    })
}

fn header_digest(res: &Response) -> Result<Option<Digest>, RegistryError> {
    match res.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
        Some(v) => Digest::parse(v.trim())
            .map(Some)
            .map_err(|e| RegistryError::Protocol(format!("Docker-Content-Digest header: {e}"))),
        None => Ok(None),
    }
}

/// Checks bytes against the digest they were fetched by, then parses them.
pub(crate) fn verify_manifest(
    digest: &Digest,
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Manifest, RegistryError> {
    let actual = Digest::of(body);
    if &actual != digest {
        return Err(RegistryError::DigestMismatch { what: "manifest".into(), expected: digest.clone(), actual });
    }
    Ok(Manifest::parse(body, content_type)?)
}

async fn read_limited(res: Response, limit: usize, what: impl Fn() -> String) -> Result<Bytes, RegistryError> {
    if res.content_length().is_some_and(|l| l > limit as u64) {
        return Err(RegistryError::TooLarge { what: what(), limit: limit as u64 });
    }
    let mut buf = BytesMut::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Interrupted { what: what(), message: super::error::chain(&e) })?;
        if buf.len() + chunk.len() > limit {
            return Err(RegistryError::TooLarge { what: what(), limit: limit as u64 });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The first bit of an error body, for the message: registries explain
/// themselves there (`{"errors":[{"code":"TOOMANYREQUESTS",…}]}`).
async fn error_body(res: Response) -> String {
    let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let bytes = read_limited(res, 4096, String::new).await.unwrap_or_default();
    summarize_error_body(&bytes, content_type.as_deref())
}

/// What an error body may contribute to a message that ends up in status:
/// the distribution spec's error codes and messages, cut short and stripped
/// to printable ASCII. Anything else is described, never echoed: the body
/// comes from whatever host the reference names, and echoing it would let
/// a tenant read other hosts' pages through status.
fn summarize_error_body(bytes: &[u8], content_type: Option<&str>) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let clean = |s: &str, n: usize| -> String {
        s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { ' ' }).take(n).collect()
    };
    if let Ok(e) = serde_json::from_slice::<Errors>(bytes)
        && !e.errors.is_empty()
    {
        let parts: Vec<String> =
            e.errors.iter().take(3).map(|e| format!("{}: {}", clean(&e.code, 40), clean(&e.message, 120))).collect();
        return parts.join("; ");
    }
    let kind = content_type.map(|c| clean(c, 60)).unwrap_or_else(|| "untyped".into());
    format!("a {}-byte {kind} body", bytes.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_bodies_are_summarized_not_echoed() {
        let s = super::summarize_error_body;
        assert_eq!(
            s(br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down","detail":{"secret":"x"}}]}"#, None),
            "TOOMANYREQUESTS: slow down"
        );
        assert_eq!(
            s(b"<html>intranet page: root password is hunter2</html>", Some("text/html")),
            "a 52-byte text/html body"
        );
        let long = format!(r#"{{"errors":[{{"code":"X","message":"{}\u0007"}}]}}"#, "a".repeat(500));
        assert_eq!(s(long.as_bytes(), None).len(), "X: ".len() + 120);
        assert_eq!(s(b"", None), "a 0-byte untyped body");
    }

    #[test]
    fn next_pages_stay_on_the_registry() {
        let base = "https://r.io:5000";
        let next = |l: &str| super::next_page(base, Some(l.to_string()));
        assert_eq!(next("/v2/a/tags/list?last=b"), Ok(Some(format!("{base}/v2/a/tags/list?last=b"))));
        assert_eq!(
            next("https://r.io:5000/v2/a/tags/list?last=b").unwrap().as_deref(),
            Some("https://r.io:5000/v2/a/tags/list?last=b")
        );
        for elsewhere in [
            "https://evil.example/v2/a/tags/list",
            "//evil.example/v2/a",
            "https://r.io:5000.evil.example/v2/a",
            "https://r.io:50001/v2/a",
            "http://r.io:5000/v2/a",
            "v2/relative",
        ] {
            assert_eq!(next(elsewhere), Err(()), "{elsewhere}");
        }
        assert_eq!(super::next_page(base, None), Ok(None));
    }

    #[test]
    fn next_links() {
        assert_eq!(
            super::next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(super::next_link(r#"<https://x/y>; rel="prev""#), None);
    }
}
