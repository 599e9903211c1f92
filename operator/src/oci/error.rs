use super::digest::Digest;
use super::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("registry {registry} refused authentication: {detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("registry {registry} denied access to {what}")]
    Denied { registry: String, what: String },
    #[error("cannot reach {url}: {message}{hint}")]
    Unreachable { url: String, message: String, hint: &'static str },
    #[error("{what}: the connection broke: {message}")]
    Interrupted { what: String, message: String },
    #[error("{what}: registry answered HTTP {status} after {attempts} attempt(s): {body}")]
    Status { status: u16, what: String, attempts: u32, body: String },
    #[error("{what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("{what} size mismatch: the manifest says {expected} bytes, the registry sent {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("registry protocol error: {0}")]
    Protocol(String),
    #[error("client configuration: {0}")]
    Config(String),
}

impl RegistryError {
    pub(crate) fn unreachable(url: &str, e: &reqwest::Error) -> Self {
        let message = chain(e);
        // rustls reports a plain-HTTP peer as a corrupt TLS record; say what
        // the user can do about it.
        let hint = if url.starts_with("https://")
            && (message.contains("corrupt message")
                || message.contains("InvalidContentType")
                || message.contains("wrong version number"))
        {
            " (the registry may serve plain HTTP: use --insecure, or spec.insecure, to allow it)"
        } else if message.contains("certificate") {
            " (to trust a private CA, pass --ca-file, or spec.certSecretRef)"
        } else {
            ""
        };
        RegistryError::Unreachable { url: url.to_string(), message, hint }
    }
}

/// An error and its sources on one line: reqwest's top-level message alone
/// ("error sending request") does not say what failed.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = s.source();
    }
    parts.join(": ")
}
