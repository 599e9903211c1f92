//! Manifests and indexes (OCI and Docker v2), and the choice of a platform
//! from an index. Pure: bytes in, decisions out.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub(crate) mod media {
    pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Every manifest kind we can read, for `Accept`.
    pub(crate) const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
}

pub(crate) const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// ORAS marks a layer it made from a directory with this annotation.
pub(crate) const ORAS_UNPACK_ANNOTATION: &str = "io.deis.oras.content.unpack";

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub(crate) fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE_ANNOTATION).map(String::as_str)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct Platform {
    pub(crate) os: String,
    pub(crate) architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`
    pub(crate) fn parse(s: &str) -> Result<Self, ManifestError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: parts.get(2).filter(|v| !v.is_empty()).map(|v| v.to_string()),
            }),
            _ => Err(ManifestError::BadPlatform(s.to_string())),
        }
    }

    /// The platform this binary runs on, in OCI's names.
    pub(crate) fn current() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { os: std::env::consts::OS.to_string(), architecture: architecture.to_string(), variant: None }
    }

    /// Does an index entry's platform satisfy this request? A requested
    /// variant must match; an unrequested one accepts arm64's implied `v8`
    /// and entries without a variant.
    fn accepts(&self, offered: &Platform) -> bool {
        let variant_ok = match (&self.variant, &offered.variant) {
            (Some(want), Some(got)) => want == got,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
            (None, None) => true,
            (None, Some(got)) => self.architecture == "arm64" && got == "v8",
        };
        self.os == offered.os && self.architecture == offered.architecture && variant_ok
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    #[serde(default)]
    pub(crate) media_type: Option<String>,
    #[serde(default)]
    pub(crate) artifact_type: Option<String>,
    pub(crate) config: Descriptor,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) subject: Option<Descriptor>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageIndex {
    #[serde(default)]
    pub(crate) media_type: Option<String>,
    #[serde(default)]
    pub(crate) manifests: Vec<Descriptor>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Manifest {
    Image(Box<ImageManifest>),
    Index(ImageIndex),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ManifestError {
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest is not valid JSON for {kind}: {message}")]
    Malformed { kind: &'static str, message: String },
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    BadPlatform(String),
    #[error("the index offers no manifest for {wanted}; it has: {offered}")]
    NoPlatform { wanted: Platform, offered: String },
    #[error("{kind} lists {count} entries, more than the {MAX_ENTRIES} ocisync reads")]
    TooManyEntries { kind: &'static str, count: usize },
}

/// Layers in a manifest, or manifests in an index, read at most: each is
/// a task and a request, and no artifact a person pushes has more.
pub(crate) const MAX_ENTRIES: usize = 10_000;

impl Manifest {
    /// Parse by the manifest's own `mediaType`, falling back to the
    /// `Content-Type` the registry sent (Docker manifests may omit neither,
    /// older OCI ones may omit the field).
    pub(crate) fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
            schema_version: Option<u32>,
        }
        let malformed = |kind, e: serde_json::Error| ManifestError::Malformed { kind, message: e.to_string() };
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| malformed("a manifest", e))?;
        let declared = probe.media_type.as_deref().or(content_type.map(|c| c.split(';').next().unwrap_or(c).trim()));
        let is_index = match declared {
            Some(media::OCI_INDEX | media::DOCKER_LIST) => true,
            Some(media::OCI_MANIFEST | media::DOCKER_MANIFEST) => false,
            // Content-Type may be generic (application/json); an OCI manifest
            // without mediaType is still recognisable by its shape.
            _ if probe.schema_version == Some(2) => probe.manifests.is_some(),
            other => {
                return Err(ManifestError::UnsupportedMediaType(other.unwrap_or("none").to_string()));
            }
        };
        let too_many = |kind, count| ManifestError::TooManyEntries { kind, count };
        if is_index {
            let index: ImageIndex = serde_json::from_slice(bytes).map_err(|e| malformed("an index", e))?;
            if index.manifests.len() > MAX_ENTRIES {
                return Err(too_many("the index", index.manifests.len()));
            }
            Ok(Manifest::Index(index))
        } else {
            let m: Box<ImageManifest> = serde_json::from_slice(bytes).map_err(|e| malformed("an image manifest", e))?;
            if m.layers.len() > MAX_ENTRIES {
                return Err(too_many("the manifest", m.layers.len()));
            }
            Ok(Manifest::Image(m))
        }
    }
}

impl ImageIndex {
    /// The entry for `wanted`; the first match wins, as in containerd.
    pub(crate) fn select(&self, wanted: &Platform) -> Result<&Descriptor, ManifestError> {
        self.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| wanted.accepts(p))).ok_or_else(|| {
            ManifestError::NoPlatform {
                wanted: wanted.clone(),
                offered: self
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(platform: &str) -> String {
        let p = Platform::parse(platform).unwrap();
        let variant = p.variant.map(|v| format!(r#","variant":"{v}""#)).unwrap_or_default();
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":1,"platform":{{"os":"{}","architecture":"{}"{variant}}}}}"#,
            media::OCI_MANIFEST,
            Digest::of(platform.as_bytes()),
            p.os,
            p.architecture
        )
    }

    #[test]
    fn parses_by_media_type_or_content_type() {
        let d = Digest::of(b"x");
        let img = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a","digest":"{d}","size":1}},"layers":[{{"mediaType":"b","digest":"{d}","size":2,"annotations":{{"{TITLE_ANNOTATION}":"f.txt"}}}}]}}"#
        );
        let Manifest::Image(m) = Manifest::parse(img.as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap() else {
            panic!("expected an image")
        };
        assert_eq!(m.layers[0].title(), Some("f.txt"));
        // no mediaType, generic content type: shape decides
        assert!(matches!(Manifest::parse(img.as_bytes(), Some("application/json")), Ok(Manifest::Image(_))));
        let idx = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, desc("linux/amd64"));
        assert!(matches!(Manifest::parse(idx.as_bytes(), None), Ok(Manifest::Index(_))));
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(matches!(
            Manifest::parse(v1, Some("application/vnd.docker.distribution.manifest.v1+prettyjws")),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(Manifest::parse(b"nope", None), Err(ManifestError::Malformed { .. })));
    }

    #[test]
    fn selects_platforms() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{},{}]}}"#,
            media::OCI_INDEX,
            desc("linux/arm/v7"),
            desc("linux/arm64/v8"),
            desc("linux/amd64")
        );
        let Manifest::Index(i) = Manifest::parse(idx.as_bytes(), None).unwrap() else { panic!() };
        let pick = |p: &str| i.select(&Platform::parse(p).unwrap()).map(|d| d.platform.clone().unwrap().to_string());
        assert_eq!(pick("linux/amd64").unwrap(), "linux/amd64");
        assert_eq!(pick("linux/arm64").unwrap(), "linux/arm64/v8", "arm64 implies v8");
        assert_eq!(pick("linux/arm/v7").unwrap(), "linux/arm/v7");
        let err = pick("linux/arm/v6").unwrap_err();
        assert!(err.to_string().contains("linux/arm/v7, linux/arm64/v8, linux/amd64"), "{err}");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/").is_err());
    }
}
