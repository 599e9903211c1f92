//! Unified diffs of two texts, as GNU `diff -u` writes them: Myers'
//! shortest edit script over lines, three lines of context, changes shown
//! as their deletions then their insertions, GNU's hunk numbering and its
//! "\ No newline at end of file". Bounded: larger inputs, or ones that
//! differ in too many lines, are named, not shown.

/// Bytes of either side past which no diff is shown.
pub(crate) const MAX_SHOWN: usize = 1 << 20;
/// Edit distance (lines) past which no diff is shown: the search costs
/// time and memory in proportion to it.
const MAX_EDITS: usize = 4096;
const CONTEXT: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Patch {
    Text(String),
    /// One side has a NUL byte in its first 8,000 (as GNU diff decides).
    Binary,
    /// Over `MAX_SHOWN`, or more than `MAX_EDITS` lines apart.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Delete,
    Insert,
}

struct Line<'a> {
    text: &'a [u8],
    newline: bool,
}

fn lines(b: &[u8]) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        match rest.iter().position(|&c| c == b'\n') {
            Some(i) => {
                out.push(Line { text: &rest[..i], newline: true });
                rest = &rest[i + 1..];
            }
            None => {
                out.push(Line { text: rest, newline: false });
                rest = &[];
            }
        }
    }
    out
}

fn same(a: &Line, b: &Line) -> bool {
    a.text == b.text && a.newline == b.newline
}

/// The unified diff of `a` and `b` under the labels `--- a_label`, `+++
/// b_label`; an empty text when they are equal.
pub(crate) fn patch(a_label: &str, b_label: &str, a: &[u8], b: &[u8]) -> Patch {
    if a.len() > MAX_SHOWN || b.len() > MAX_SHOWN {
        return Patch::TooLarge;
    }
    let binary = |x: &[u8]| x[..x.len().min(8000)].contains(&0);
    if binary(a) || binary(b) {
        return Patch::Binary;
    }
    let (la, lb) = (lines(a), lines(b));
    let Some(ops) = script(&la, &lb) else { return Patch::TooLarge };
    Patch::Text(render(a_label, b_label, &la, &lb, &ops))
}

/// Myers' greedy forward search, then the path traced back; `None` past
/// `MAX_EDITS`.
fn script(a: &[Line], b: &[Line]) -> Option<Vec<Op>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = ((n + m) as usize).min(MAX_EDITS) as isize;
    let offset = max + 1;
    let mut v = vec![0isize; (2 * max + 3) as usize];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = None;
    'search: for d in 0..=max {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let down = k == -d || (k != d && v[(offset + k - 1) as usize] < v[(offset + k + 1) as usize]);
            let mut x = if down { v[(offset + k + 1) as usize] } else { v[(offset + k - 1) as usize] + 1 };
            let mut y = x - k;
            while x < n && y < m && same(&a[x as usize], &b[y as usize]) {
                x += 1;
                y += 1;
            }
            v[(offset + k) as usize] = x;
            if x >= n && y >= m {
                found = Some(d);
                break 'search;
            }
            k += 2;
        }
    }
    let d_end = found?;
    // back from (n, m) through each d's saved frontier
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (1..=d_end).rev() {
        let v = &trace[d as usize];
        let k = x - y;
        let down = k == -d || (k != d && v[(offset + k - 1) as usize] < v[(offset + k + 1) as usize]);
        let prev_k = if down { k + 1 } else { k - 1 };
        let prev_x = v[(offset + prev_k) as usize];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            ops.push(Op::Keep);
            x -= 1;
            y -= 1;
        }
        ops.push(if down { Op::Insert } else { Op::Delete });
        x = prev_x;
        y = prev_y;
    }
    while x > 0 && y > 0 {
        ops.push(Op::Keep);
        x -= 1;
        y -= 1;
    }
    ops.reverse();
    Some(ops)
}

fn render(a_label: &str, b_label: &str, a: &[Line], b: &[Line], ops: &[Op]) -> String {
    // every op with its line numbers in a and b before it
    let mut at = Vec::with_capacity(ops.len());
    let (mut i, mut j) = (0usize, 0usize);
    for &op in ops {
        at.push((op, i, j));
        match op {
            Op::Keep => {
                i += 1;
                j += 1;
            }
            Op::Delete => i += 1,
            Op::Insert => j += 1,
        }
    }
    let changed: Vec<usize> = (0..at.len()).filter(|&p| at[p].0 != Op::Keep).collect();
    if changed.is_empty() {
        return String::new();
    }
    // hunks: runs of changes whose contexts touch
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &p in &changed {
        match hunks.last_mut() {
            Some((_, end)) if p - *end <= 2 * CONTEXT + 1 => *end = p,
            _ => hunks.push((p, p)),
        }
    }
    let mut out = format!("--- {a_label}\n+++ {b_label}\n");
    for (first, last) in hunks {
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT).min(at.len() - 1);
        let span = &at[start..=end];
        let a_count = span.iter().filter(|s| s.0 != Op::Insert).count();
        let b_count = span.iter().filter(|s| s.0 != Op::Delete).count();
        let (a_first, b_first) = (span[0].1 + 1, span[0].2 + 1);
        out.push_str(&format!("@@ -{} +{} @@\n", range(a_first, a_count), range(b_first, b_count)));
        // within a run of changes, the deletions first, then the insertions
        let mut p = 0;
        while p < span.len() {
            if span[p].0 == Op::Keep {
                line(&mut out, ' ', &a[span[p].1]);
                p += 1;
                continue;
            }
            let run_end = span[p..].iter().position(|s| s.0 == Op::Keep).map_or(span.len(), |q| p + q);
            for s in &span[p..run_end] {
                if s.0 == Op::Delete {
                    line(&mut out, '-', &a[s.1]);
                }
            }
            for s in &span[p..run_end] {
                if s.0 == Op::Insert {
                    line(&mut out, '+', &b[s.2]);
                }
            }
            p = run_end;
        }
    }
    out
}

/// GNU's numbering: `first` alone for one line, `first-1,0` for none.
fn range(first: usize, count: usize) -> String {
    match count {
        0 => format!("{},0", first - 1),
        1 => format!("{first}"),
        n => format!("{first},{n}"),
    }
}

fn line(out: &mut String, mark: char, l: &Line) {
    out.push(mark);
    out.push_str(&String::from_utf8_lossy(l.text));
    out.push('\n');
    if !l.newline {
        out.push_str("\\ No newline at end of file\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(a: &str, b: &str) -> String {
        match patch("a/f", "b/f", a.as_bytes(), b.as_bytes()) {
            Patch::Text(t) => t,
            other => panic!("{other:?}"),
        }
    }

    /// Each expected output is what GNU diffutils 3.8 `diff -u --label a/f
    /// --label b/f` printed for the same two inputs.
    #[test]
    fn as_gnu_diff_writes_it() {
        assert_eq!(text("a\nb\nc\n", "a\nb\nc\n"), "");
        assert_eq!(text("a\nb\nc\n", "a\nx\nc\n"), "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+x\n c\n");
        assert_eq!(text("", "a\n"), "--- a/f\n+++ b/f\n@@ -0,0 +1 @@\n+a\n");
        assert_eq!(text("a\n", ""), "--- a/f\n+++ b/f\n@@ -1 +0,0 @@\n-a\n");
        assert_eq!(
            text("a\nb", "a\nb\n"),
            "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
        );
        let numbers = |f: &dyn Fn(u32) -> String| (1..=20).map(|i| f(i) + "\n").collect::<String>();
        let long_a = numbers(&|i| i.to_string());
        let long_b = numbers(&|i| match i {
            3 => "three".into(),
            18 => "eighteen".into(),
            i => i.to_string(),
        });
        assert_eq!(
            text(&long_a, &long_b),
            "--- a/f\n+++ b/f\n@@ -1,6 +1,6 @@\n 1\n 2\n-3\n+three\n 4\n 5\n 6\n@@ -15,6 +15,6 @@\n 15\n 16\n 17\n-18\n+eighteen\n 19\n 20\n"
        );
        // two changes six lines apart share a hunk; seven apart do not
        let near = numbers(&|i| if i == 3 || i == 10 { "x".into() } else { i.to_string() });
        assert_eq!(text(&long_a, &near).matches("@@ -").count(), 1);
        let far = numbers(&|i| if i == 3 || i == 11 { "x".into() } else { i.to_string() });
        assert_eq!(text(&long_a, &far).matches("@@ -").count(), 2);
    }

    #[test]
    fn binary_and_large_inputs_are_named_not_shown() {
        assert_eq!(patch("a", "b", b"x\0y", b"x"), Patch::Binary);
        assert_eq!(patch("a", "b", &vec![b'a'; MAX_SHOWN + 1], b"x"), Patch::TooLarge);
        let a: String = (0..5000).map(|i| format!("{i}\n")).collect();
        let b: String = (0..5000).map(|i| format!("x{i}\n")).collect();
        assert_eq!(patch("a", "b", a.as_bytes(), b.as_bytes()), Patch::TooLarge);
    }
}
