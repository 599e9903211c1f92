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
    /// The TOC entries whose content is already here (delta sync).
    pub(crate) reused: Vec<usize>,
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

/// The TOC's files the selection keeps, by index: as the tar reader would
/// keep them, by path, never the formats' metadata.
pub(crate) fn selected<'a>(entries: &'a [TocEntry], selection: &'a Selection) -> impl Iterator<Item = usize> + 'a {
    entries.iter().enumerate().filter_map(|(i, e)| {
        let file = matches!(e.kind, TocKind::File { .. });
        (file && selection.wants_path(&e.path) && !toc::METADATA_ENTRIES.contains(&e.path.as_str())).then_some(i)
    })
}

/// The selected files' chunks as requests, but for those `reused` (found
/// here already, sorted), and the verdict: ranges when they and the TOC
/// come to at most half the layer; past that, the whole layer costs little
/// more and has its own digest checked.
pub(crate) fn choose(
    entries: &[TocEntry],
    selection: &Selection,
    reused: &[usize],
    layer_size: u64,
    toc_bytes: u64,
) -> Choice {
    let (mut files, mut kept) = (Vec::new(), Vec::new());
    let mut wanted = Vec::new();
    for i in selected(entries, selection) {
        let e = &entries[i];
        let TocKind::File { digest, chunks, .. } = &e.kind else { continue };
        // Without a file digest, nothing would vouch for what the chunks
        // inflate to.
        if e.size > 0 && digest.is_none() {
            return Choice::Whole(format!("{:?} has no digest in the table of contents", e.path));
        }
        if reused.binary_search(&i).is_ok() {
            kept.push(i);
            continue;
        }
        files.push(i);
        wanted.extend(chunks.iter().map(|c| Span { start: c.offset, end: c.end }));
    }
    wanted.sort_by_key(|s| s.start);
    let plan = Plan { files, reused: kept, spans: coalesce(&wanted, GAP, MAX_REQUESTS, MAX_SPAN) };
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
        let plan =
            |files: Vec<usize>, reused: Vec<usize>, spans: Vec<Span>| Choice::Ranges(Plan { files, reused, spans });
        // (include, reused, layer size, toc bytes, choice)
        type Case = (&'static [&'static str], &'static [usize], u64, u64, Choice);
        let cases: Vec<Case> = vec![
            // one small file: one request
            (&["a.yaml"], &[], 4_000_000, 1000, plan(vec![1], vec![], vec![s(0, 100)])),
            // two small files far apart: two requests
            (&["*.yaml"], &[], 4_000_000, 1000, plan(vec![1, 4], vec![], vec![s(0, 100), s(1_200_000, 1_200_050)])),
            // one of them already here: only the other is fetched
            (&["*.yaml"], &[1], 4_000_000, 1000, plan(vec![4], vec![1], vec![s(1_200_000, 1_200_050)])),
            // all of them here: only the TOC was read
            (&["*.yaml"], &[1, 4], 4_000_000, 1000, plan(vec![], vec![1, 4], vec![])),
            // a reused file the selection does not keep is not published
            (&["a.yaml"], &[4], 4_000_000, 1000, plan(vec![1], vec![], vec![s(0, 100)])),
            // nothing selected: nothing to fetch
            (&["none"], &[], 4_000_000, 1000, plan(vec![], vec![], vec![])),
            // most of the layer: the whole layer, unless most of it is here
            (
                &["*.yaml", "big.bin"],
                &[2],
                2_000_000,
                1000,
                plan(vec![1, 4], vec![2], vec![s(0, 100), s(1_200_000, 1_200_050)]),
            ),
            (
                &["big.bin"],
                &[],
                2_000_000,
                1000,
                Choice::Whole("the selection needs 1200900 of the layer's 2000000 bytes".into()),
            ),
            // a file the TOC gives no digest for
            (
                &["nodigest.txt"],
                &[],
                4_000_000,
                1000,
                Choice::Whole("\"nodigest.txt\" has no digest in the table of contents".into()),
            ),
            // the metadata entry is never selected
            (&["stargz.index.json"], &[], 4_000_000, 1000, plan(vec![], vec![], vec![])),
            // the TOC itself counts
            (
                &["a.yaml"],
                &[],
                2_000,
                1_000,
                Choice::Whole("the selection needs 1100 of the layer's 2000 bytes".into()),
            ),
        ];
        for (include, reused, size, toc_bytes, want) in cases {
            assert_eq!(choose(&toc, &sel(include), reused, size, toc_bytes), want, "{include:?} {reused:?}");
        }
    }
}
