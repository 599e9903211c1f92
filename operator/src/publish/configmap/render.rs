//! Files → ConfigMap keys, `data` and `binaryData`. Pure: which key each
//! file gets, what a symlink becomes, and whether it all fits, decided from
//! the fetch report before a byte is read.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::super::PublishError;
use super::super::links::{self, Leads};
use crate::api::KeyStyle;
use crate::fetch::FileReport;
use crate::oci::Digest;
use crate::unpack::Entry;

/// The API server refuses a ConfigMap whose keys and values add up to more.
pub(crate) const MAX_CONFIGMAP_BYTES: u64 = 1024 * 1024;

/// `Path`: `/` becomes `__` (`conf.d/app.yaml` → `conf.d__app.yaml`).
/// `Basename`: the last path component.
pub(crate) fn key_for(path: &str, style: KeyStyle) -> Result<String, PublishError> {
    let key = match style {
        KeyStyle::Path => path.replace('/', "__"),
        KeyStyle::Basename => path.rsplit('/').next().unwrap_or(path).to_string(),
    };
    let bad = |reason| PublishError::BadKey { path: path.to_string(), reason };
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

/// One key of the ConfigMap: where its content is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) key: String,
    /// The path in the artifact the key stands for.
    pub(crate) path: String,
    /// The file whose content the key holds: `path` itself, or for a link
    /// the file it leads to.
    pub(crate) source: String,
    pub(crate) size: u64,
    pub(crate) sha256: Digest,
}

/// The keys for the fetched files. A ConfigMap has no links: a symlink to
/// a file holds a copy of that file's content under its own key; a symlink
/// to a directory, or to something not fetched, is left out (its files are
/// there under their own paths). Two paths that would share a key, a path
/// no key can hold, or more bytes than a ConfigMap holds are errors, found
/// here before anything is read.
pub(crate) fn plan(files: &[FileReport], style: KeyStyle) -> Result<Vec<Key>, PublishError> {
    let entries: BTreeMap<&str, &Entry> = files.iter().map(|f| (f.path.as_str(), &f.entry)).collect();
    let mut keys: Vec<Key> = Vec::new();
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut bytes = 0u64;
    for f in files {
        let (source, size, sha256) = match &f.entry {
            Entry::File { size, sha256, .. } => (f.path.clone(), *size, sha256.clone()),
            Entry::Symlink { .. } => match links::follow(&entries, &f.path) {
                Leads::File(target) => match entries.get(target.as_str()) {
                    Some(Entry::File { size, sha256, .. }) => (target, *size, sha256.clone()),
                    _ => continue,
                },
                Leads::Directory | Leads::Nowhere => continue,
            },
        };
        let key = key_for(&f.path, style)?;
        if let Some(first) = owners.insert(key.clone(), f.path.clone()) {
            return Err(PublishError::KeyCollision { key, first, second: f.path.clone() });
        }
        bytes = bytes.saturating_add(key.len() as u64).saturating_add(size);
        keys.push(Key { key, path: f.path.clone(), source, size, sha256 });
    }
    if bytes > MAX_CONFIGMAP_BYTES {
        return Err(PublishError::TooLarge { bytes });
    }
    Ok(keys)
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Rendered {
    pub(crate) data: BTreeMap<String, String>,
    pub(crate) binary_data: BTreeMap<String, ByteString>,
}

/// UTF-8 content goes to `data`, the rest to `binaryData`, as `kubectl
/// create configmap --from-file` does.
pub(crate) fn render(contents: impl IntoIterator<Item = (String, Vec<u8>)>) -> Rendered {
    let mut out = Rendered::default();
    for (key, content) in contents {
        match String::from_utf8(content) {
            Ok(text) => {
                out.data.insert(key, text);
            }
            Err(e) => {
                out.binary_data.insert(key, ByteString(e.into_bytes()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> FileReport {
        FileReport {
            path: path.into(),
            entry: Entry::File { size, sha256: Digest::of(path.as_bytes()), executable: false },
        }
    }

    fn link(path: &str, target: &str) -> FileReport {
        FileReport { path: path.into(), entry: Entry::Symlink { target: target.into() } }
    }

    fn keys(files: &[FileReport], style: KeyStyle) -> Result<Vec<(String, String)>, PublishError> {
        plan(files, style).map(|ks| ks.into_iter().map(|k| (k.key, k.source)).collect())
    }

    #[test]
    fn keys_by_style() {
        assert_eq!(key_for("conf.d/app.yaml", KeyStyle::Path).unwrap(), "conf.d__app.yaml");
        assert_eq!(key_for("conf.d/app.yaml", KeyStyle::Basename).unwrap(), "app.yaml");
        assert!(matches!(key_for("my file.txt", KeyStyle::Path), Err(PublishError::BadKey { .. })));
        assert!(matches!(key_for("ünï.txt", KeyStyle::Path), Err(PublishError::BadKey { .. })));
        assert!(matches!(key_for(&"a".repeat(254), KeyStyle::Path), Err(PublishError::BadKey { .. })));
    }

    #[test]
    fn collisions_are_errors_not_overwrites() {
        let err = keys(&[file("a/x.yaml", 1), file("b/x.yaml", 1)], KeyStyle::Basename).unwrap_err();
        assert!(
            matches!(err, PublishError::KeyCollision { ref key, ref first, ref second }
                if key == "x.yaml" && first == "a/x.yaml" && second == "b/x.yaml"),
            "{err}"
        );
        let err = keys(&[file("a/b", 1), file("a__b", 1)], KeyStyle::Path).unwrap_err();
        assert!(matches!(err, PublishError::KeyCollision { .. }));
        assert!(keys(&[file("a/x.yaml", 1), file("b/x.yaml", 1)], KeyStyle::Path).is_ok());
    }

    #[test]
    fn links_to_files_are_copies_and_links_to_directories_are_left_out() {
        let files = [
            file("conf/app.yaml", 3),
            link("app.yaml", "conf/app.yaml"),
            link("current", "conf"),
            link("dangling", "not-selected.txt"),
        ];
        let got = keys(&files, KeyStyle::Path).unwrap();
        assert_eq!(
            got,
            [("conf__app.yaml".into(), "conf/app.yaml".into()), ("app.yaml".into(), "conf/app.yaml".into())]
        );
    }

    #[test]
    fn size_is_decided_from_the_report() {
        let half = MAX_CONFIGMAP_BYTES / 2;
        assert!(plan(&[file("a", half - 10)], KeyStyle::Path).is_ok());
        let err = plan(&[file("a", half), file("b", half)], KeyStyle::Path).unwrap_err();
        assert!(matches!(err, PublishError::TooLarge { bytes } if bytes == 2 * half + 2), "{err}");
        // a link's copy counts too
        let err = plan(&[file("a", half), link("b", "a")], KeyStyle::Path).unwrap_err();
        assert!(matches!(err, PublishError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn text_and_binary() {
        let r = render([("a.txt".to_string(), b"hello".to_vec()), ("logo.png".into(), vec![0x89, b'P', 0xff])]);
        assert_eq!(r.data["a.txt"], "hello");
        assert_eq!(r.binary_data["logo.png"].0, [0x89, b'P', 0xff]);
    }
}
