//! Credentials: docker `config.json` / `kubernetes.io/dockerconfigjson`
//! payloads, and the registry's `WWW-Authenticate` challenges. Pure.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub(crate) enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in a docker config, or a
    /// helper's `<token>` user), exchanged at the registry's token realm.
    IdentityToken(String),
}

// Never print a password, not even in debug logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// Where the JSON broke, never what it said: the text is a Secret's.
    #[error("docker config is not valid JSON ({category} error at line {line}, column {column})")]
    Json { category: &'static str, line: usize, column: usize },
    #[error("docker config entry for {registry:?}: {reason}")]
    Entry { registry: String, reason: String },
}

/// A docker config: its `auths` keyed by normalised host, and the
/// credential helpers it names (`credHelpers` per host, `credsStore` for
/// the rest).
#[derive(Debug, Default, Clone)]
pub(crate) struct DockerConfig {
    auths: BTreeMap<String, Credentials>,
    helpers: BTreeMap<String, String>,
    store: Option<String>,
}

/// Where a registry's credentials come from, as the docker CLI decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// From the file itself (or none).
    Stored(Credentials),
    /// From `docker-credential-<name> get`, asked for `server`.
    Helper { name: String, server: String },
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct RawEntry {
    auth: Option<String>,
    identitytoken: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

const DOCKER_HUB_KEY: &str = "index.docker.io";

impl DockerConfig {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| ConfigError::Json {
            category: match e.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "type",
                serde_json::error::Category::Eof => "truncation",
            },
            line: e.line(),
            column: e.column(),
        })?;
        let mut auths = BTreeMap::new();
        for (key, entry) in raw.auths {
            let bad = |reason: &str| ConfigError::Entry { registry: key.clone(), reason: reason.to_string() };
            let creds = match (entry.auth.filter(|a| !a.is_empty()), entry.username, entry.password) {
                // `docker login` to a registry with OAuth writes the refresh
                // token beside a `<token>` auth; the token is what works.
                _ if entry.identitytoken.as_ref().is_some_and(|t| !t.is_empty()) => {
                    Credentials::IdentityToken(entry.identitytoken.unwrap_or_default())
                }
                (Some(auth), _, _) => {
                    let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad("`auth` is not base64"))?;
                    let text = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
                    let (u, p) = text.split_once(':').ok_or_else(|| bad("`auth` is not user:password"))?;
                    Credentials::Basic { username: u.to_string(), password: p.to_string() }
                }
                (None, Some(username), Some(password)) => Credentials::Basic { username, password },
                // an entry with neither is ignored as docker does
                _ => continue,
            };
            auths.insert(normalise_host(&key), creds);
        }
        let mut helpers = BTreeMap::new();
        for (key, name) in raw.cred_helpers {
            helpers.insert(normalise_host(&key), helper_name(&key, name)?);
        }
        let store = match raw.creds_store.filter(|s| !s.is_empty()) {
            Some(name) => Some(helper_name("credsStore", name)?),
            None => None,
        };
        Ok(DockerConfig { auths, helpers, store })
    }

    /// Where `registry`'s credentials come from: its `credHelpers` entry,
    /// else the `credsStore`, else `auths` (the docker CLI's order: with a
    /// store configured, the store answers even for hosts in `auths`).
    pub(crate) fn source_for(&self, registry: &str) -> Source {
        let host = normalise_host(registry);
        match self.helpers.get(&host).or(self.store.as_ref()) {
            // Docker Hub is stored under its v1 URL, as `docker login` writes it.
            Some(name) => Source::Helper {
                name: name.clone(),
                server: if host == DOCKER_HUB_KEY { "https://index.docker.io/v1/".into() } else { host },
            },
            None => Source::Stored(self.credentials_for(registry)),
        }
    }

    /// Credentials for a registry host, matched as docker matches: the key's
    /// scheme and path are dropped, and Docker Hub's aliases are one host.
    /// Only `auths`: this is what a Secret's config gives, whose helpers
    /// must never run (a tenant would name a program for us to execute).
    pub(crate) fn credentials_for(&self, registry: &str) -> Credentials {
        self.auths.get(&normalise_host(registry)).cloned().unwrap_or_default()
    }
}

/// A helper's name becomes part of a program name: letters, digits, `-`,
/// `_` and `.` only, so a config cannot point at a path.
fn helper_name(key: &str, name: String) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(name)
    } else {
        Err(ConfigError::Entry { registry: key.to_string(), reason: "not a credential helper name".into() })
    }
}

fn normalise_host(key: &str) -> String {
    let k = key.trim();
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        _ => host,
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

impl Challenge {
    pub(crate) fn parse(header: &str) -> Option<Self> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// `k="v", k2=v2` with quoted values that may hold commas.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            value = q[..end].to_string();
            rest = q.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.insert(key, value);
        rest = rest.trim_start().trim_start_matches(',');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic { username: u.into(), password: p.into() }
    }

    #[test]
    fn docker_config_errors_never_echo_the_secret() {
        for bad in [
            &br#"{"auths":{"r.io":{"auth":12345678}}}"#[..],
            br#"{"auths":{"r.io":{"username":"u","password":["hunter2"]}}}"#,
            br#"{"auths":{"r.io":{"auth":"dXNlcjpodW50ZXIy"}} trailing hunter2"#,
            b"hunter2",
        ] {
            let e = DockerConfig::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2") && !e.contains("12345678"), "{e}");
            assert!(e.contains("line 1"), "{e}");
        }
    }

    #[test]
    fn docker_config_forms_and_matching() {
        let cfg = DockerConfig::parse(
            br#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "http://127.0.0.1:5000":{"username":"u","password":"p:with:colons"},
                "ghcr.io":{"auth":"Z2g6dG9rZW4="},
                "helper.io":{"identitytoken":"x"}
            },"credHelpers":{"x.io":"ecr"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.credentials_for("docker.io"), basic("hub", "secret"));
        assert_eq!(cfg.credentials_for("registry-1.docker.io"), basic("hub", "secret"));
        assert_eq!(cfg.credentials_for("127.0.0.1:5000"), basic("u", "p:with:colons"));
        assert_eq!(cfg.credentials_for("127.0.0.1:5001"), Credentials::Anonymous, "port is part of the host");
        assert_eq!(cfg.credentials_for("GHCR.io"), basic("gh", "token"));
        assert_eq!(cfg.credentials_for("helper.io"), Credentials::IdentityToken("x".into()));
        assert_eq!(format!("{:?}", Credentials::IdentityToken("hunter2".into())), "IdentityToken(***)");
        assert_eq!(cfg.credentials_for("x.io"), Credentials::Anonymous, "a Secret's credHelpers never run");
        assert_eq!(format!("{:?}", basic("u", "hunter2")), "Basic(u, ***)");
    }

    #[test]
    fn credential_helpers_are_chosen_as_the_docker_cli_does() {
        let helper = |name: &str, server: &str| Source::Helper { name: name.into(), server: server.into() };
        let cfg = DockerConfig::parse(
            br#"{"auths":{"ghcr.io":{"auth":"Z2g6dG9rZW4="},"plain.io":{"auth":"Z2g6dG9rZW4="}},
                "credHelpers":{"123.dkr.ecr.eu-west-1.amazonaws.com":"ecr-login","https://ghcr.io":"gh"},
                "credsStore":"pass"}"#,
        )
        .unwrap();
        for (registry, want) in [
            ("123.dkr.ecr.eu-west-1.amazonaws.com", helper("ecr-login", "123.dkr.ecr.eu-west-1.amazonaws.com")),
            ("ghcr.io", helper("gh", "ghcr.io")),
            ("plain.io", helper("pass", "plain.io")),
            ("docker.io", helper("pass", "https://index.docker.io/v1/")),
        ] {
            assert_eq!(cfg.source_for(registry), want, "{registry}");
        }
        let no_store =
            DockerConfig::parse(br#"{"auths":{"ghcr.io":{"auth":"Z2g6dG9rZW4="}},"credsStore":""}"#).unwrap();
        assert_eq!(no_store.source_for("ghcr.io"), Source::Stored(basic("gh", "token")));
        assert_eq!(no_store.source_for("x.io"), Source::Stored(Credentials::Anonymous));
        for bad in
            [r#"{"credsStore":"../../bin/sh"}"#, r#"{"credHelpers":{"a.io":"/usr/bin/x"}}"#, r#"{"credsStore":".x"}"#]
        {
            let e = DockerConfig::parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("not a credential helper name"), "{bad}: {e}");
        }
    }

    #[test]
    fn docker_config_errors_name_the_entry() {
        let err = DockerConfig::parse(br#"{"auths":{"r.io":{"auth":"!!"}}}"#).unwrap_err();
        assert!(err.to_string().contains("r.io") && err.to_string().contains("base64"), "{err}");
        let err = DockerConfig::parse(br#"{"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}}"#).unwrap_err();
        assert!(err.to_string().contains("user:password"), "{err}");
        assert!(DockerConfig::parse(b"{").is_err());
    }

    #[test]
    fn challenges() {
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.io/token",service="reg.io",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.io/token".into(),
                service: Some("reg.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://t/x"),
            Some(Challenge::Bearer { realm: "http://t/x".into(), service: None, scope: None })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None, "a bearer challenge needs a realm");
        assert_eq!(Challenge::parse("Negotiate"), None);
    }
}
