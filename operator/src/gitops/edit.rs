//! Writing a digest into an Artifact document: the scalar replaced where
//! there is one, else a `digest:` entry added beside the tag or range it
//! pins, in the style around it (a line of its own at the same indentation
//! in a block mapping, `, digest: …` in a flow one). Nothing else moves.

use super::find::Found;

/// Bytes `start..end` of a file become `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) text: String,
}

/// The edit that pins `found` to `digest`; `None` when it already is.
pub(crate) fn pin_edit(text: &str, found: &Found, digest: &str) -> Result<Option<Edit>, String> {
    if let Some((s, e)) = found.digest {
        return Ok((text.get(s..e) != Some(digest)).then(|| Edit { start: s, end: e, text: digest.to_string() }));
    }
    let (s, e) = found.follow.ok_or_else(|| format!("line {}: no spec.ref.tag or semver to pin", found.line))?;
    let bytes = text.as_bytes();
    // past a closing quote
    let after =
        if s > 0 && matches!(bytes[s - 1], b'"' | b'\'') && bytes.get(e) == Some(&bytes[s - 1]) { e + 1 } else { e };
    let line_end = text[after..].find('\n').map_or(text.len(), |i| after + i);
    let next = text[after..line_end].trim_start().chars().next();
    if matches!(next, Some(',' | '}')) {
        return Ok(Some(Edit { start: after, end: after, text: format!(", digest: {digest}") }));
    }
    let line_start = text[..s].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..s];
    let indent: String = line.chars().take_while(|c| *c == ' ').collect();
    let key = line.trim_start();
    // a flow mapping written over several lines: no line of its own there
    let before = text[..line_start].trim_end();
    let in_flow = before.ends_with('{') || before.ends_with(',');
    if in_flow || !(key.starts_with("tag:") || key.starts_with("semver:")) {
        return Err(format!(
            "line {}: spec.ref is written in a way `pin` does not edit; add `digest:` to it by hand once",
            found.line
        ));
    }
    let crlf = line_end > 0 && bytes.get(line_end.wrapping_sub(1)) == Some(&b'\r');
    let eol = if crlf { "\r\n" } else { "\n" };
    Ok(Some(if line_end == text.len() {
        Edit { start: line_end, end: line_end, text: format!("{eol}{indent}digest: {digest}") }
    } else {
        Edit { start: line_end + 1, end: line_end + 1, text: format!("{indent}digest: {digest}{eol}") }
    }))
}

/// `text` with `edits` made (they must not overlap).
pub(crate) fn apply(text: &str, edits: &[Edit]) -> String {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(text.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut at = 0;
    for e in sorted {
        out.push_str(&text[at..e.start]);
        out.push_str(&e.text);
        at = e.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::super::find::find_in;
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn pinned(text: &str) -> String {
        let edits: Vec<Edit> = find_in(text).unwrap().iter().filter_map(|f| pin_edit(text, f, D).unwrap()).collect();
        apply(text, &edits)
    }

    fn head(spec: &str) -> String {
        format!("apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata: {{name: a}}\n{spec}")
    }

    #[test]
    fn only_the_digest_changes_in_every_style() {
        let cases = [
            // block, a comment beside the tag
            (
                "spec:\n  url: oci://r.io/a\n  ref:\n    tag: v1  # follow v1\n",
                "spec:\n  url: oci://r.io/a\n  ref:\n    tag: v1  # follow v1\n    digest: D\n",
            ),
            // quoted tag, digest already there (double- and single-quoted)
            (
                "spec:\n  url: oci://r.io/a\n  ref:\n    tag: \"v1\"\n    digest: \"sha256:00\"\n",
                "spec:\n  url: oci://r.io/a\n  ref:\n    tag: \"v1\"\n    digest: \"D\"\n",
            ),
            (
                "spec:\n  url: oci://r.io/a\n  ref: {tag: v1, digest: 'sha256:00'}\n",
                "spec:\n  url: oci://r.io/a\n  ref: {tag: v1, digest: 'D'}\n",
            ),
            // flow
            ("spec: {url: oci://r.io/a, ref: {tag: v1}}\n", "spec: {url: oci://r.io/a, ref: {tag: v1, digest: D}}\n"),
            (
                "spec:\n  ref: {semver: \">=1.0\" }\n  url: oci://r.io/a\n",
                "spec:\n  ref: {semver: \">=1.0\", digest: D }\n  url: oci://r.io/a\n",
            ),
            // the last line without a newline, and CRLF
            (
                "spec:\n  url: oci://r.io/a\n  ref:\n    semver: ^1",
                "spec:\n  url: oci://r.io/a\n  ref:\n    semver: ^1\n    digest: D",
            ),
            (
                "spec:\r\n  url: oci://r.io/a\r\n  ref:\r\n    tag: v1\r\n  interval: 1m\r\n",
                "spec:\r\n  url: oci://r.io/a\r\n  ref:\r\n    tag: v1\r\n    digest: D\r\n  interval: 1m\r\n",
            ),
        ];
        for (spec, want) in cases {
            let text = head(spec);
            assert_eq!(pinned(&text), head(&want.replace('D', D)), "{spec:?}");
            // a second run changes nothing
            assert_eq!(pinned(&pinned(&text)), pinned(&text), "{spec:?}");
        }
    }

    #[test]
    fn several_documents_and_other_kinds() {
        let text = format!(
            "# top\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{tag: x}}\n---\n{}\n---\n{}",
            head("spec:\n  url: oci://r.io/a\n  ref:\n    tag: v1\n"),
            head("spec:\n  url: oci://r.io/b\n  ref: {tag: v2}\n")
        );
        let out = pinned(&text);
        assert_eq!(out.matches(D).count(), 2);
        assert!(
            out.starts_with("# top\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {tag: x}\n---\n")
        );
        assert_eq!(out.replace(&format!("\n    digest: {D}"), "").replace(&format!(", digest: {D}"), ""), text);
    }

    #[test]
    fn a_ref_it_cannot_place_is_refused() {
        let text = head("spec:\n  url: oci://r.io/a\n  ref: {\n    tag: v1\n  }\n");
        let found = find_in(&text).unwrap();
        assert!(pin_edit(&text, &found[0], D).is_err());
    }
}

#[cfg(test)]
mod property {
    //! Random files of YAML documents around Artifact documents, written in
    //! random styles: after pinning, the file reads as the same YAML but for
    //! the digests, and every byte outside the digest edits is unchanged.

    use super::super::find::find_in;
    use super::*;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[(self.next() % xs.len() as u64) as usize]
        }
    }

    fn other_doc(r: &mut Rng) -> String {
        r.pick(&[
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  tag: v1\n  digest: 'sha256:00'\n",
            "# a comment only document\n",
            "resources:\n- a.yaml  # kustomize\n- b.yaml\n",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec: {replicas: 2, template: {spec: {containers: [{name: c, image: 'x:1'}]}}}\n",
            "list:\n  - |\n    ---\n    not a marker\n  - \"quoted: value\"\n",
        ])
        .to_string()
    }

    fn artifact(r: &mut Rng, i: usize) -> String {
        let q = |r: &mut Rng, v: &str| match r.next() % 3 {
            0 => v.to_string(),
            1 => format!("\"{v}\""),
            _ => format!("'{v}'"),
        };
        let plain = r.pick(&["v1", "1.2.3", "stable"]);
        let tag = q(r, plain);
        let digest = match r.next() % 3 {
            0 => None,
            _ => Some(q(r, "sha256:0000000000000000000000000000000000000000000000000000000000000000")),
        };
        let key = if r.next().is_multiple_of(2) { "tag" } else { "semver" };
        let comment = r.pick(&["", "  # pinned by a bot", " #c"]);
        let indent = r.pick(&["  ", "    "]);
        let in2 = format!("{indent}{indent}");
        let reference = match (r.next() % 2, &digest) {
            (0, Some(d)) => format!("{indent}ref: {{{key}: {tag}, digest: {d}}}{comment}\n"),
            (0, None) => format!("{indent}ref: {{{key}: {tag}}}{comment}\n"),
            (_, Some(d)) => format!("{indent}ref:\n{in2}{key}: {tag}{comment}\n{in2}digest: {d}\n"),
            (_, None) => format!("{indent}ref:\n{in2}# a comment above\n{in2}{key}: {tag}{comment}\n"),
        };
        let url = format!("{indent}url: oci://r.io/team/app{i}\n");
        let body = if r.next().is_multiple_of(2) { format!("{url}{reference}") } else { format!("{reference}{url}") };
        format!(
            "apiVersion: ocisync.dev/v1alpha1\nkind: Artifact\nmetadata:\n{indent}name: a{i}\nspec:\n{body}{indent}interval: 5m\n"
        )
    }

    fn values(text: &str) -> Vec<serde_json::Value> {
        super::super::find::documents(text)
            .into_iter()
            .map(|(_, d)| serde_saphyr::from_str::<serde_json::Value>(d).unwrap())
            .collect()
    }

    #[test]
    fn only_digests_change() {
        const D: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let mut r = Rng(0x5eed_1234_abcd_ef01);
        for round in 0..300 {
            let mut text = String::new();
            let docs = 1 + r.next() % 5;
            for i in 0..docs as usize {
                if i > 0 {
                    text.push_str(r.pick(&["---\n", "--- # next\n"]));
                }
                text.push_str(&if r.next().is_multiple_of(2) { artifact(&mut r, i) } else { other_doc(&mut r) });
            }
            let found = find_in(&text).unwrap_or_else(|e| panic!("round {round}: {e}\n{text}"));
            let edits: Vec<Edit> = found.iter().filter_map(|f| pin_edit(&text, f, D).unwrap()).collect();
            let out = apply(&text, &edits);
            // the same YAML, but for the digests
            let (before, after) = (values(&text), values(&out));
            assert_eq!(before.len(), after.len(), "round {round}");
            for (mut b, a) in before.into_iter().zip(after) {
                if b["kind"] == "Artifact" {
                    b["spec"]["ref"]["digest"] = serde_json::json!(D);
                }
                assert_eq!(b, a, "round {round}:\n{text}\n=>\n{out}");
            }
            // and the bytes outside the edits are the original's
            let mut at = 0;
            let mut rest = out.as_str();
            let mut sorted = edits.clone();
            sorted.sort_by_key(|e| e.start);
            for e in &sorted {
                let same = &text[at..e.start];
                assert!(rest.starts_with(same), "round {round}");
                rest = &rest[same.len()..];
                assert!(rest.starts_with(&e.text), "round {round}");
                rest = &rest[e.text.len()..];
                at = e.end;
            }
            assert_eq!(rest, &text[at..], "round {round}");
            // every replaced span held a digest
            assert!(sorted.iter().all(|e| e.start == e.end || text[e.start..e.end].starts_with("sha256:")));
        }
    }
}
