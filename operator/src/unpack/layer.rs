//! What a layer is, from its descriptor alone, and which layers to fetch.
//! Pure: this decides what is downloaded before a byte is.

use crate::oci::manifest::{Descriptor, ORAS_UNPACK_ANNOTATION};

use super::UnpackError;
use super::path::sanitize;
use super::select::Selection;
use super::toc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayerKind {
    /// ORAS-style: the blob is one file, named by its title annotation.
    File { path: String },
    /// A tar archive whose entries are the files.
    Tar(Compression),
    /// A tar whose descriptor declares a table of contents (eStargz,
    /// zstd:chunked): the same files, and metadata entries that are not.
    Indexed(Compression, toc::Format),
}

/// One layer to fetch, in manifest order.
#[derive(Debug, Clone)]
pub(crate) struct LayerPlan {
    pub(crate) index: usize,
    pub(crate) descriptor: Descriptor,
    pub(crate) kind: LayerKind,
}

/// ORAS names a file by its title and marks the layers it tarred from a
/// directory for unpacking; a layer without a title (images, crane, hand-made
/// artifacts) is a tar by its media type.
pub(crate) fn classify(desc: &Descriptor) -> Result<LayerKind, UnpackError> {
    let unpack = desc.annotations.get(ORAS_UNPACK_ANNOTATION).is_some_and(|v| v == "true");
    if let (Some(title), false) = (desc.title(), unpack) {
        let path = sanitize(title.as_bytes())
            .map_err(|reason| UnpackError::UnsafePath { path: title.to_string(), reason: reason.to_string() })?
            .ok_or_else(|| UnpackError::UnsafePath { path: title.to_string(), reason: "names the root".into() })?;
        return Ok(LayerKind::File { path });
    }
    let c = tar_compression(&desc.media_type).ok_or_else(|| UnpackError::UnsupportedLayer {
        digest: desc.digest.to_string(),
        media_type: desc.media_type.clone(),
    })?;
    // A malformed TOC annotation still says what the layer is: its metadata
    // entries are hidden all the same; ranged reads refuse it.
    let declared = match toc::declared(&desc.annotations) {
        Ok(d) => d.format(),
        Err(_) if desc.annotations.contains_key(toc::ESTARGZ_TOC_DIGEST) => Some(toc::Format::Estargz),
        Err(_) => Some(toc::Format::ZstdChunked),
    };
    Ok(match (c, declared) {
        (Compression::Gzip | Compression::Zstd, Some(f)) => LayerKind::Indexed(c, f),
        _ => LayerKind::Tar(c),
    })
}

/// Tar flavours by media type: OCI's (`…layer.v1.tar[+gzip|+zstd]`), Docker's
/// (`…rootfs.diff.tar[.gzip]`, foreign layers), and any other type that ends
/// the same way (Helm charts, Flux artifacts).
fn tar_compression(media_type: &str) -> Option<Compression> {
    if media_type.contains("+encrypted") {
        return None;
    }
    let m = media_type.trim();
    if m.ends_with(".tar") || m.ends_with("/tar") {
        Some(Compression::None)
    } else if m.ends_with("tar+gzip") || m.ends_with("tar.gzip") {
        Some(Compression::Gzip)
    } else if m.ends_with("tar+zstd") {
        Some(Compression::Zstd)
    } else {
        None
    }
}

/// The layers worth downloading: those the media-type filter keeps, minus
/// single-file layers whose one path is not selected.
pub(crate) fn plan(layers: &[Descriptor], selection: &Selection) -> Result<Vec<LayerPlan>, UnpackError> {
    let mut out = Vec::new();
    for (index, d) in layers.iter().enumerate() {
        if !selection.wants_layer(&d.media_type) {
            continue;
        }
        let kind = classify(d)?;
        if let LayerKind::File { path } = &kind
            && !selection.wants_path(path)
        {
            continue;
        }
        out.push(LayerPlan { index, descriptor: d.clone(), kind });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;
    use crate::oci::manifest::TITLE_ANNOTATION;

    fn desc(media_type: &str, title: Option<&str>, unpack: bool) -> Descriptor {
        let mut annotations = std::collections::BTreeMap::new();
        if let Some(t) = title {
            annotations.insert(TITLE_ANNOTATION.to_string(), t.to_string());
        }
        if unpack {
            annotations.insert(ORAS_UNPACK_ANNOTATION.to_string(), "true".to_string());
        }
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::of(media_type.as_bytes()),
            size: 1,
            platform: None,
            artifact_type: None,
            annotations,
        }
    }

    #[test]
    fn dispatch_by_annotation_then_media_type() {
        use Compression as C;
        let k = |m, t, u| classify(&desc(m, t, u));
        assert_eq!(
            k("application/yaml", Some("a/b.yaml"), false).unwrap(),
            LayerKind::File { path: "a/b.yaml".into() }
        );
        assert_eq!(
            k("application/vnd.oci.image.layer.v1.tar+gzip", Some("pkg.tgz"), false).unwrap(),
            LayerKind::File { path: "pkg.tgz".into() },
            "a titled tarball without the unpack mark is a file, as oras pull treats it"
        );
        assert_eq!(
            k("application/vnd.oci.image.layer.v1.tar+gzip", Some("dir"), true).unwrap(),
            LayerKind::Tar(C::Gzip)
        );
        assert_eq!(k("application/vnd.oci.image.layer.v1.tar", None, false).unwrap(), LayerKind::Tar(C::None));
        assert_eq!(k("application/vnd.oci.image.layer.v1.tar+zstd", None, false).unwrap(), LayerKind::Tar(C::Zstd));
        assert_eq!(
            k("application/vnd.docker.image.rootfs.diff.tar.gzip", None, false).unwrap(),
            LayerKind::Tar(C::Gzip)
        );
        assert_eq!(
            k("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", None, false).unwrap(),
            LayerKind::Tar(C::Gzip)
        );
        assert_eq!(
            k("application/vnd.cncf.helm.chart.content.v1.tar+gzip", None, false).unwrap(),
            LayerKind::Tar(C::Gzip)
        );
        assert!(matches!(k("application/octet-stream", None, false), Err(UnpackError::UnsupportedLayer { .. })));
        assert!(matches!(
            k("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", None, false),
            Err(UnpackError::UnsupportedLayer { .. })
        ));
        assert!(matches!(k("text/plain", Some("../x"), false), Err(UnpackError::UnsafePath { .. })));
        assert!(matches!(k("text/plain", Some("/etc/x"), false), Err(UnpackError::UnsafePath { .. })));
    }

    #[test]
    fn plan_skips_unselected_single_files_and_filtered_media_types() {
        let layers = vec![
            desc("text/plain", Some("a.txt"), false),
            desc("text/plain", Some("b.md"), false),
            desc("application/vnd.oci.image.layer.v1.tar", None, false),
            desc("application/x-other", Some("c.txt"), false),
        ];
        let sel = Selection::new(&["*.txt"], &[], &[]).unwrap();
        let p = plan(&layers, &sel).unwrap();
        assert_eq!(p.iter().map(|l| l.index).collect::<Vec<_>>(), [0, 2, 3], "tars may hold selected files");
        let sel = Selection::new(&[], &[], &["text/plain"]).unwrap();
        assert_eq!(plan(&layers, &sel).unwrap().iter().map(|l| l.index).collect::<Vec<_>>(), [0, 1]);
        // an unsupported layer is an error only when it is wanted
        let odd = vec![desc("application/octet-stream", None, false)];
        assert!(plan(&odd, &Selection::all()).is_err());
        assert!(plan(&odd, &sel).unwrap().is_empty());
    }
}

#[cfg(test)]
mod indexed_tests {
    use super::*;
    use crate::oci::Digest;
    use crate::unpack::toc::{ESTARGZ_TOC_DIGEST, Format};

    fn with(media_type: &str, annotations: &[(&str, &str)]) -> Result<LayerKind, UnpackError> {
        classify(&Descriptor {
            media_type: media_type.into(),
            digest: Digest::of(b"l"),
            size: 1,
            platform: None,
            artifact_type: None,
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }

    #[test]
    fn a_declared_toc_makes_an_indexed_tar() {
        let d = format!("sha256:{}", "a".repeat(64));
        let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
        let zst = "application/vnd.oci.image.layer.v1.tar+zstd";
        let chunked = [
            ("io.containers.zstd-chunked.manifest-checksum", d.as_str()),
            ("io.containers.zstd-chunked.manifest-position", "10:20:30:1"),
        ];
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, LayerKind);
        let cases: Vec<Case> = vec![
            (gz, vec![(ESTARGZ_TOC_DIGEST, &d)], LayerKind::Indexed(Compression::Gzip, Format::Estargz)),
            (zst, chunked.to_vec(), LayerKind::Indexed(Compression::Zstd, Format::ZstdChunked)),
            // stargz-snapshotter's zstd:chunked names both
            (
                zst,
                [chunked.to_vec(), vec![(ESTARGZ_TOC_DIGEST, &d)]].concat(),
                LayerKind::Indexed(Compression::Zstd, Format::ZstdChunked),
            ),
            // malformed still says what the layer is
            (gz, vec![(ESTARGZ_TOC_DIGEST, "sha256:short")], LayerKind::Indexed(Compression::Gzip, Format::Estargz)),
            // an uncompressed tar has no TOC, whatever it claims
            (
                "application/vnd.oci.image.layer.v1.tar",
                vec![(ESTARGZ_TOC_DIGEST, &d)],
                LayerKind::Tar(Compression::None),
            ),
            (gz, vec![("io.containers.estargz.uncompressed-size", "10")], LayerKind::Tar(Compression::Gzip)),
        ];
        for (media_type, annotations, want) in cases {
            assert_eq!(with(media_type, &annotations).unwrap(), want, "{media_type} {annotations:?}");
        }
    }
}
