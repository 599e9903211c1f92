//! `matchImages` globs as the kubelet reads them.

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

impl Pattern {
    pub(super) fn sort_key(&self) -> String {
        format!("{}:{}{}", self.parts.join("."), self.port.as_deref().unwrap_or(""), self.path)
    }
}
