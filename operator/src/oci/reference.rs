//! OCI references: `oci://host[:port]/repo[:tag][@sha256:…]` or the same
//! without the scheme. Unlike docker's parser there is no implicit
//! `docker.io`: an artifact source names its registry, so a missing host is
//! an error rather than a silent guess.

use std::fmt;

use super::digest::{Digest, DigestError};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Reference {
    /// `host` or `host:port`, as written (lower-cased).
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("reference is empty")]
    Empty,
    #[error("reference {0:?} has no registry host: write it as host[:port]/repository[:tag]")]
    NoHost(String),
    #[error("reference {0:?} has no repository after the host")]
    NoRepository(String),
    #[error("invalid registry host {0:?}")]
    BadHost(String),
    #[error(
        "invalid repository {0:?}: path components are lower-case letters, digits and single separators (. _ __ -), joined by /"
    )]
    BadRepository(String),
    #[error("invalid tag {0:?}: up to 128 of [A-Za-z0-9_.-], not starting with . or -")]
    BadTag(String),
    #[error("invalid digest in reference: {0}")]
    BadDigest(#[from] DigestError),
    #[error("unsupported scheme in {0:?}: only oci:// is understood")]
    BadScheme(String),
}

impl Reference {
    pub(crate) fn parse(input: &str) -> Result<Self, ParseError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        let s = match s.split_once("://") {
            Some(("oci", rest)) => rest,
            Some(_) => return Err(ParseError::BadScheme(input.to_string())),
            None => s,
        };
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        let (host, path) = name_tag.split_once('/').ok_or_else(|| ParseError::NoHost(input.to_string()))?;
        // docker's rule: the first component is a host only if it looks like one.
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(ParseError::NoHost(input.to_string()));
        }
        validate_host(host)?;
        // A tag is the text after the last ':' that follows the last '/'.
        let (repository, tag) = match path.rfind(':') {
            Some(i) if !path[i..].contains('/') => (&path[..i], Some(&path[i + 1..])),
            _ => (path, None),
        };
        if repository.is_empty() {
            return Err(ParseError::NoRepository(input.to_string()));
        }
        validate_repository(repository)?;
        if let Some(t) = tag {
            validate_tag(t)?;
        }
        Ok(Reference {
            registry: host.to_ascii_lowercase(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The manifest reference to ask the registry for: a digest pins, else the
    /// tag, else `latest`.
    pub(crate) fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    pub(crate) fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn validate_host(host: &str) -> Result<(), ParseError> {
    let bad = || ParseError::BadHost(host.to_string());
    let (name, port) = match host.rsplit_once(':') {
        // IPv6 literals are bracketed; a ':' inside brackets is not a port.
        Some((n, p)) if !p.contains(']') => (n, Some(p)),
        _ => (host, None),
    };
    if let Some(p) = port {
        p.parse::<u16>().map_err(|_| bad())?;
    }
    let ok = !name.is_empty()
        && if name.starts_with('[') {
            name.ends_with(']') && name[1..name.len() - 1].parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
        };
    if ok { Ok(()) } else { Err(bad()) }
}

fn validate_repository(repo: &str) -> Result<(), ParseError> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
            return false;
        }
        // separators: '.', '_', '__', or one or more '-', each between alphanumerics
        let mut i = 0;
        while i < b.len() {
            if is_alnum_lower(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !is_alnum_lower(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            let dashes = sep.bytes().all(|x| x == b'-');
            if !(sep == "." || sep == "_" || sep == "__" || dashes) {
                return false;
            }
        }
        true
    };
    if repo.len() <= 255 && repo.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(ParseError::BadRepository(repo.to_string()))
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn validate_tag(tag: &str) -> Result<(), ParseError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(ParseError::BadTag(tag.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn parses_scheme_port_tag_digest() {
        let r = Reference::parse(&format!("oci://127.0.0.1:5000/team/app:v1.2@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.manifest_ref(), D, "a digest wins over the tag");
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/team/app:v1.2@{D}"));
    }

    #[test]
    fn plain_form_and_default_tag() {
        let r = Reference::parse("ghcr.io/org/cfg").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("ghcr.io", "org/cfg"));
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), "latest");
        assert_eq!(Reference::parse("localhost/x:1").unwrap().registry, "localhost");
        assert_eq!(Reference::parse("[::1]:5000/x").unwrap().registry, "[::1]:5000");
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        use ParseError::*;
        let err = |s: &str| Reference::parse(s).unwrap_err();
        assert_eq!(err(""), Empty);
        assert!(matches!(err("library/nginx:1"), NoHost(_)), "no implicit docker.io");
        assert!(matches!(err("nginx"), NoHost(_)));
        assert!(matches!(err("oci://reg.io/"), NoRepository(_)));
        assert!(matches!(err("reg.io/Team/App"), BadRepository(_)), "upper case");
        assert!(matches!(err("reg.io/a//b"), BadRepository(_)));
        assert!(matches!(err("reg.io/a-/b"), BadRepository(_)));
        assert!(matches!(err("reg.io/a...b"), BadRepository(_)));
        assert!(matches!(err("reg.io/a:-x"), BadTag(_)));
        assert!(matches!(err("reg.io/a:"), BadTag(_)));
        assert!(matches!(err("reg.io:99999/a"), BadHost(_)));
        assert!(matches!(err("re_g.io/a"), BadHost(_)));
        assert!(matches!(err("reg.io/a@sha256:abc"), BadDigest(_)));
        assert!(matches!(err("reg.io/a@md5:abc"), BadDigest(_)));
        assert!(matches!(err("https://reg.io/a"), BadScheme(_)));
    }

    #[test]
    fn accepts_valid_separators() {
        for ok in ["reg.io/a_b", "reg.io/a__b", "reg.io/a---b", "reg.io/a.b/c-d/e_f:1.0_rc-1"] {
            Reference::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }
}
