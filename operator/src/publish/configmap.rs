//! Files → ConfigMap `data` / `binaryData`. Pure: which key each file gets,
//! where it goes, and whether it fits.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use crate::api::KeyStyle;

/// The API server refuses a ConfigMap whose keys and values add up to more.
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{first:?} and {second:?} would both be key {key:?}; rename one, exclude one, or use another key style")]
    KeyCollision { key: String, first: String, second: String },
    #[error("{path:?} cannot be a ConfigMap key ({reason}); exclude it or rename it")]
    BadKey { path: String, reason: &'static str },
    #[error("the files need {bytes} bytes, over the ConfigMap limit of {MAX_CONFIGMAP_BYTES}; select fewer files")]
    TooLarge { bytes: usize },
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rendered {
    pub data: BTreeMap<String, String>,
    pub binary_data: BTreeMap<String, ByteString>,
    /// Keys plus values, as the API server counts them.
    pub bytes: usize,
}

/// `Path`: `/` becomes `__` (`conf.d/app.yaml` → `conf.d__app.yaml`).
/// `Basename`: the last path component.
pub fn key_for(path: &str, style: KeyStyle) -> Result<String, RenderError> {
    let key = match style {
        KeyStyle::Path => path.replace('/', "__"),
        KeyStyle::Basename => path.rsplit('/').next().unwrap_or(path).to_string(),
    };
    let bad = |reason| RenderError::BadKey { path: path.to_string(), reason };
    if key.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    if key == "." || key == ".." {
        return Err(bad("`.` and `..` are not keys"));
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(bad("keys hold only letters, digits, `-`, `_` and `.`"));
    }
    Ok(key)
}

/// UTF-8 files go to `data`, the rest to `binaryData`, as `kubectl create
/// configmap --from-file` does.
pub fn render(files: impl IntoIterator<Item = (String, Vec<u8>)>, style: KeyStyle) -> Result<Rendered, RenderError> {
    let mut out = Rendered::default();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (path, content) in files {
        let key = key_for(&path, style)?;
        if let Some(first) = owners.insert(key.clone(), path.clone()) {
            return Err(RenderError::KeyCollision { key, first, second: path });
        }
        out.bytes += key.len() + content.len();
        match String::from_utf8(content) {
            Ok(text) => {
                out.data.insert(key, text);
            }
            Err(e) => {
                out.binary_data.insert(key, ByteString(e.into_bytes()));
            }
        }
    }
    if out.bytes > MAX_CONFIGMAP_BYTES {
        return Err(RenderError::TooLarge { bytes: out.bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        list.iter().map(|(p, c)| (p.to_string(), c.to_vec())).collect()
    }

    #[test]
    fn keys_by_style() {
        assert_eq!(key_for("conf.d/app.yaml", KeyStyle::Path).unwrap(), "conf.d__app.yaml");
        assert_eq!(key_for("conf.d/app.yaml", KeyStyle::Basename).unwrap(), "app.yaml");
        assert!(matches!(key_for("my file.txt", KeyStyle::Path), Err(RenderError::BadKey { .. })));
        assert!(matches!(key_for("ünï.txt", KeyStyle::Path), Err(RenderError::BadKey { .. })));
        assert!(matches!(key_for(&"a".repeat(254), KeyStyle::Path), Err(RenderError::BadKey { .. })));
    }

    #[test]
    fn collisions_are_errors_not_overwrites() {
        let err = render(files(&[("a/x.yaml", b"1"), ("b/x.yaml", b"2")]), KeyStyle::Basename).unwrap_err();
        assert_eq!(
            err,
            RenderError::KeyCollision { key: "x.yaml".into(), first: "a/x.yaml".into(), second: "b/x.yaml".into() }
        );
        let err = render(files(&[("a/b", b"1"), ("a__b", b"2")]), KeyStyle::Path).unwrap_err();
        assert!(matches!(err, RenderError::KeyCollision { .. }));
        assert!(render(files(&[("a/x.yaml", b"1"), ("b/x.yaml", b"2")]), KeyStyle::Path).is_ok());
    }

    #[test]
    fn text_and_binary_and_size() {
        let r = render(files(&[("a.txt", b"hello"), ("logo.png", &[0x89, b'P', 0xff])]), KeyStyle::Path).unwrap();
        assert_eq!(r.data["a.txt"], "hello");
        assert_eq!(r.binary_data["logo.png"].0, [0x89, b'P', 0xff]);
        assert_eq!(r.bytes, "a.txt".len() + 5 + "logo.png".len() + 3);
        let big = vec![b'x'; MAX_CONFIGMAP_BYTES];
        assert!(matches!(render(vec![("big".into(), big)], KeyStyle::Path), Err(RenderError::TooLarge { .. })));
    }
}
