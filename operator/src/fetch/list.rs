//! `ocisync ls` from tables of contents: each selected layer's TOC read by
//! range (one or two requests) and checked against the manifest's digest,
//! the layers merged as the unpacker merges them (later layers win,
//! whiteouts delete), with no file content fetched. When a layer has no TOC
//! that can be read this way, the caller lists by pulling instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::job::LayerJob;
use super::partial::{self, Ranges, Toc};
use super::sources::Mirror;
use super::{FetchError, FileReport, LayerRead, PullOptions, Read};
use crate::oci::Digest;
use crate::resolve::Resolution;
use crate::unpack::layer::LayerKind;
use crate::unpack::toc::{METADATA_ENTRIES, TocEntry, TocKind};
use crate::unpack::{self, Budget, Entry, Selection, Whiteout, remove_below, whiteout};

pub(crate) struct Listing {
    pub(crate) files: Vec<FileReport>,
    pub(crate) layers: Vec<LayerRead>,
    pub(crate) registry_bytes: u64,
}

/// The selected files of `res`, from the layers' TOCs; `None` when some
/// selected layer has none to read by range (or `opts` turned ranges off).
pub(crate) async fn from_tocs(
    origin: Arc<Mirror>,
    res: &Resolution,
    opts: &PullOptions,
) -> Result<Option<Listing>, FetchError> {
    let plans = unpack::layer::plan(&res.manifest.layers, &opts.selection)?;
    if !opts.partial || !opts.mirrors.is_empty() {
        return Ok(None);
    }
    let (selection, budget) = (Arc::new(opts.selection.clone()), Arc::new(Budget::new(opts.limits)));
    let mut tocs = Vec::with_capacity(plans.len());
    let mut layers = Vec::with_capacity(plans.len());
    for plan in plans {
        let LayerKind::Indexed(_, format) = plan.kind else { return Ok(None) };
        let digest = plan.descriptor.digest.clone();
        let job = LayerJob {
            origin: origin.clone(),
            mirrors: Vec::new(),
            dir: std::env::temp_dir(),
            plan,
            selection: selection.clone(),
            budget: budget.clone(),
            progress: None,
            cancel: Arc::new(AtomicBool::new(false)),
            cache: None,
            partial: true,
            previous: None,
        };
        let mut cost = Ranges::default();
        let Toc::Entries { entries, via, .. } = partial::toc(&job, format, &mut cost).await? else { return Ok(None) };
        via.served_layer(cost.bytes);
        layers.push(LayerRead {
            digest,
            read: Read::Ranges,
            reason: None,
            requests: cost.requests,
            bytes: cost.bytes,
            from_cache: false,
            files_fetched: 0,
            files_reused: 0,
            bytes_reused: 0,
        });
        tocs.push(entries);
    }
    let Some(merged) = merge(&tocs, &selection) else { return Ok(None) };
    let files = merged.into_iter().map(|(path, entry)| FileReport { path, entry }).collect();
    let registry_bytes = layers.iter().fold(0u64, |n, l| n.saturating_add(l.bytes));
    Ok(Some(Listing { files, layers, registry_bytes }))
}

/// The tree the layers' entries make, in manifest order, as the unpacker
/// makes it: a later layer's path replaces an earlier one (and what was
/// below it), `.wh.NAME` deletes NAME, `.wh..wh..opq` empties its
/// directory of earlier layers' files; hard links list as their target;
/// devices, which the unpacker refuses, are left out. `None` when a file
/// with content has no digest to list, or a whiteout deletes no entry.
pub(crate) fn merge(layers: &[Vec<TocEntry>], selection: &Selection) -> Option<BTreeMap<String, Entry>> {
    let mut merged: BTreeMap<String, Entry> = BTreeMap::new();
    for entries in layers {
        let (whiteouts, files): (Vec<&TocEntry>, Vec<&TocEntry>) = entries
            .iter()
            .filter(|e| !METADATA_ENTRIES.contains(&e.path.as_str()))
            .partition(|e| whiteout(&e.path).is_some());
        for w in whiteouts {
            // one the unpacker refuses: the pull that lists instead says why
            match whiteout(&w.path)?.ok()? {
                Whiteout::Opaque(dir) => remove_below(&mut merged, &dir),
                Whiteout::Path(hidden) => {
                    merged.remove(&hidden);
                    remove_below(&mut merged, &hidden);
                }
            }
        }
        let mut this: BTreeMap<&str, Entry> = BTreeMap::new();
        for e in files {
            let entry = match &e.kind {
                TocKind::File { digest, executable, .. } => {
                    let sha256 = match digest {
                        Some(d) => d.clone(),
                        None if e.size == 0 => Digest::of(b""),
                        None => return None,
                    };
                    Entry::File { size: e.size, sha256, executable: *executable }
                }
                TocKind::Symlink { target } => Entry::Symlink { target: target.clone() },
                TocKind::HardLink { target } => match this.get(target.as_str()).or_else(|| merged.get(target)) {
                    Some(f @ Entry::File { .. }) => f.clone(),
                    _ => continue,
                },
                TocKind::Device(_) => continue,
            };
            this.insert(&e.path, entry);
        }
        for (path, entry) in this {
            if !selection.wants_path(path) {
                continue;
            }
            remove_below(&mut merged, path);
            merged.insert(path.to_string(), entry);
        }
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> TocEntry {
        let digest = Some(Digest::of(content.as_bytes()));
        TocEntry {
            path: path.into(),
            size: content.len() as u64,
            kind: TocKind::File { digest, executable: false, chunks: Vec::new() },
        }
    }

    fn other(path: &str, kind: TocKind) -> TocEntry {
        TocEntry { path: path.into(), size: 0, kind }
    }

    fn listed(m: &BTreeMap<String, Entry>) -> Vec<(String, String)> {
        m.iter()
            .map(|(p, e)| {
                let what = match e {
                    Entry::File { size, .. } => format!("{size}"),
                    Entry::Symlink { target } => format!("-> {target}"),
                };
                (p.clone(), what)
            })
            .collect()
    }

    #[test]
    fn layers_merge_as_the_unpacker_merges_them() {
        let all = Selection::all();
        let base = vec![
            file("stargz.index.json", "{}"),
            file("etc/app.yaml", "a"),
            file("etc/conf.d/x.conf", "xx"),
            file("lib/one", "111"),
            other("lib/same", TocKind::HardLink { target: "lib/one".into() }),
            other("link", TocKind::Symlink { target: "etc/app.yaml".into() }),
            other("dev/null", TocKind::Device("character device")),
        ];
        let s = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        type Case = (&'static str, Vec<Vec<TocEntry>>, Selection, Vec<(String, String)>);
        let cases: Vec<Case> = vec![
            (
                "one layer: metadata and devices left out, a hard link as its target",
                vec![base.clone()],
                all.clone(),
                s(&[
                    ("etc/app.yaml", "1"),
                    ("etc/conf.d/x.conf", "2"),
                    ("lib/one", "3"),
                    ("lib/same", "3"),
                    ("link", "-> etc/app.yaml"),
                ]),
            ),
            (
                "a later layer replaces, deletes, and empties a directory",
                vec![
                    base.clone(),
                    vec![
                        file("etc/app.yaml", "bbbb"),
                        file("etc/.wh.conf.d", ""),
                        file("lib/.wh..wh..opq", ""),
                        file("lib/two", "22"),
                        file(".wh.link", ""),
                    ],
                ],
                all.clone(),
                s(&[("etc/app.yaml", "4"), ("lib/two", "2")]),
            ),
            (
                "a file where a directory was",
                vec![base.clone(), vec![file("etc", "now a file")]],
                all.clone(),
                s(&[("etc", "10"), ("lib/one", "3"), ("lib/same", "3"), ("link", "-> etc/app.yaml")]),
            ),
            (
                "the selection keeps what it names",
                vec![base.clone()],
                Selection::new(&["etc/**"], &["**/*.conf"], &[] as &[&str]).unwrap(),
                s(&[("etc/app.yaml", "1")]),
            ),
        ];
        for (what, layers, selection, want) in cases {
            assert_eq!(listed(&merge(&layers, &selection).unwrap()), want, "{what}");
        }
        let no_digest = other("big", TocKind::File { digest: None, executable: false, chunks: Vec::new() });
        let no_digest = TocEntry { size: 5, ..no_digest };
        assert!(merge(&[vec![no_digest]], &all).is_none(), "a file with no digest cannot be listed from the TOC");
        let bad = vec![base.clone(), vec![file("etc/.wh.", "")]];
        assert!(merge(&bad, &all).is_none(), "a whiteout the unpacker refuses is left to the pull to explain");
    }
}
