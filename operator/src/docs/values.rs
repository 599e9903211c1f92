//! The chart's values, from `values.yaml` and its `# --` comments (the
//! convention helm-docs reads): every documented key with its default.

/// One documented value: its dotted path, default (as written) and
/// description.
#[derive(Debug, PartialEq)]
pub(crate) struct Value {
    pub(crate) path: String,
    pub(crate) default: String,
    pub(crate) description: String,
}

/// The documented values of a values.yaml, in file order. Bounded by the
/// file (it is ours), but careful anyway: a key's block is read at most 20
/// lines deep for its default.
pub(crate) fn parse(yaml: &str) -> Vec<Value> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(text) = trimmed.strip_prefix("# --") {
            pending = Some(text.trim().to_string());
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            if let Some(p) = &mut pending {
                p.push(' ');
                p.push_str(text.trim());
            }
            continue;
        }
        let Some((key, rest)) = key_line(trimmed) else { continue };
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        let path = stack.iter().map(|(_, k)| k.as_str()).chain([key]).collect::<Vec<_>>().join(".");
        if let Some(description) = pending.take() {
            let default = if rest.is_empty() { block(&lines[i + 1..], indent) } else { rest.to_string() };
            out.push(Value { path: path.clone(), default, description });
        }
        if rest.is_empty() {
            stack.push((indent, key.to_string()));
        }
    }
    out
}

/// `key: rest` (rest without a trailing comment), for a plain key.
fn key_line(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once(':')?;
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return None;
    }
    Some((key, rest.trim()))
}

/// A nested block's lines, as one flow-ish string.
fn block(lines: &[&str], indent: usize) -> String {
    let body: Vec<&str> = lines
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .take(20)
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    body.join(" ")
}

pub(crate) fn page(yaml: &str) -> String {
    let mut out = String::from(
        "# Chart values\n\n\
         The values of `charts/ocisync`, from its `values.yaml` (`helm show values`). Set them with \
         `--set key=value` or `-f my-values.yaml`.\n\n\
         | key | default | description |\n| --- | --- | --- |\n",
    );
    for v in parse(yaml) {
        let default = if v.default.is_empty() { String::new() } else { format!("`{}`", v.default.replace('|', "\\|")) };
        out.push_str(&format!("| `{}` | {default} | {} |\n", v.path, super::cell(&v.description)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_keys_with_their_paths_and_defaults() {
        let yaml = "# -- top\nname: \"\"\nimage:\n  # -- the repo\n  repository: ghcr.io/x\n  # -- the tag;\n  #   more words\n  tag: \"\"\nundocumented: 1\nvolume:\n  # -- a block\n  emptyDir:\n    sizeLimit: 256Mi\n  # -- after\n  keep: 2\n# -- back at the top\nlast: []\n";
        let got = parse(yaml);
        let rows: Vec<(&str, &str, &str)> =
            got.iter().map(|v| (v.path.as_str(), v.default.as_str(), v.description.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("name", "\"\"", "top"),
                ("image.repository", "ghcr.io/x", "the repo"),
                ("image.tag", "\"\"", "the tag; more words"),
                ("volume.emptyDir", "sizeLimit: 256Mi", "a block"),
                ("volume.keep", "2", "after"),
                ("last", "[]", "back at the top"),
            ]
        );
    }
}
