//! Which bytes of a layer a selection needs, by its table of contents, and
//! whether reading them by range beats reading the layer. Pure.

use crate::oci::range::{Span, coalesce};
use crate::unpack::Selection;
use crate::unpack::toc::{self, TocEntry, TocKind};

/// Wanted chunks closer than this are fetched in one request: a request
/// costs more than this many bytes nobody needs.
const GAP: u64 = 64 << 10;
/// Requests for one layer's chunks at most; more wanted ranges are merged.
pub(crate) const MAX_REQUESTS: usize = 256;
/// No merged request longer than this (one chunk may be).
const MAX_SPAN: u64 = 16 << 20;

#[derive(Debug, PartialEq)]
pub(crate) struct Plan {
    /// The TOC entries (by index) whose content is fetched.
    pub(crate) files: Vec<usize>,
    /// The requests, in blob order.
    pub(crate) spans: Vec<Span>,
}

impl Plan {
    pub(crate) fn bytes(&self) -> u64 {
        self.spans.iter().map(Span::len).sum()
    }
}

#[derive(Debug, PartialEq)]
pub(crate) enum Choice {
    Ranges(Plan),
    /// Why the whole layer is read instead.
    Whole(String),
}

/// The files the selection keeps (as the tar reader would: by path, never
/// the formats' metadata), their chunks as requests, and the verdict:
/// ranges when they and the TOC come to at most half the layer; past
/// that, the whole layer costs little more and has its own digest checked.
pub(crate) fn choose(entries: &[TocEntry], selection: &Selection, layer_size: u64, toc_bytes: u64) -> Choice {
    let mut files = Vec::new();
    let mut wanted = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let TocKind::File { digest, chunks, .. } = &e.kind else { continue };
        if !selection.wants_path(&e.path) || toc::METADATA_ENTRIES.contains(&e.path.as_str()) {
            continue;
        }
        // Without a file digest, nothing would vouch for what the chunks
        // inflate to.
        if e.size > 0 && digest.is_none() {
            return Choice::Whole(format!("{:?} has no digest in the table of contents", e.path));
        }
        files.push(i);
        wanted.extend(chunks.iter().map(|c| Span { start: c.offset, end: c.end }));
    }
    wanted.sort_by_key(|s| s.start);
    let plan = Plan { files, spans: coalesce(&wanted, GAP, MAX_REQUESTS, MAX_SPAN) };
    let needed = plan.bytes().saturating_add(toc_bytes);
    if needed.saturating_mul(2) > layer_size {
        return Choice::Whole(format!("the selection needs {needed} of the layer's {layer_size} bytes"));
    }
    Choice::Ranges(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;
    use crate::unpack::toc::Chunk;

    fn file(path: &str, chunks: &[(u64, u64)], digest: bool) -> TocEntry {
        let size = chunks.iter().map(|(a, b)| b - a).sum();
        let mut at = 0;
        let chunks = chunks
            .iter()
            .map(|&(offset, end)| {
                let c = Chunk { offset, end, file_offset: at, size: end - offset, digest: None, exact: true };
                at += end - offset;
                c
            })
            .collect();
        TocEntry {
            path: path.into(),
            size,
            kind: TocKind::File { digest: digest.then(|| Digest::of(b"x")), executable: false, chunks },
        }
    }

    fn sel(include: &[&str]) -> Selection {
        Selection::new(include, &[], &[]).unwrap()
    }

    #[test]
    fn choosing() {
        let toc = vec![
            file("stargz.index.json", &[], true),
            file("a.yaml", &[(0, 100)], true),
            file("big.bin", &[(100, 600_000), (600_000, 1_200_000)], true),
            TocEntry { path: "link".into(), size: 0, kind: TocKind::Symlink { target: "a.yaml".into() } },
            file("b.yaml", &[(1_200_000, 1_200_050)], true),
            file("nodigest.txt", &[(1_200_050, 1_200_060)], false),
        ];
        let s = |start, end| Span { start, end };
        // (include, layer size, toc bytes, choice)
        let cases: Vec<(&[&str], u64, u64, Choice)> = vec![
            // one small file: one request
            (&["a.yaml"], 4_000_000, 1000, Choice::Ranges(Plan { files: vec![1], spans: vec![s(0, 100)] })),
            // two small files far apart: two requests
            (
                &["*.yaml"],
                4_000_000,
                1000,
                Choice::Ranges(Plan { files: vec![1, 4], spans: vec![s(0, 100), s(1_200_000, 1_200_050)] }),
            ),
            // nothing selected: nothing to fetch
            (&["none"], 4_000_000, 1000, Choice::Ranges(Plan { files: vec![], spans: vec![] })),
            // most of the layer: the whole layer
            (
                &["big.bin"],
                2_000_000,
                1000,
                Choice::Whole("the selection needs 1200900 of the layer's 2000000 bytes".into()),
            ),
            // a file the TOC gives no digest for
            (
                &["nodigest.txt"],
                4_000_000,
                1000,
                Choice::Whole("\"nodigest.txt\" has no digest in the table of contents".into()),
            ),
            // the metadata entry is never selected
            (&["stargz.index.json"], 4_000_000, 1000, Choice::Ranges(Plan { files: vec![], spans: vec![] })),
            // the TOC itself counts
            (&["a.yaml"], 2_000, 1_000, Choice::Whole("the selection needs 1100 of the layer's 2000 bytes".into())),
        ];
        for (include, size, toc_bytes, want) in cases {
            assert_eq!(choose(&toc, &sel(include), size, toc_bytes), want, "{include:?}");
        }
    }
}
