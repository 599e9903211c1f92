//! Byte ranges of a blob: the spans a ranged read asks for (adjacent wants
//! merged, a bounded number of requests) and what a `206` says it sent.
//! Pure, so the planning is a table of cases.

/// `[start, end)` of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Span {
    pub(crate) fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// The `Range` header for it; `None` when empty.
    pub(crate) fn header(&self) -> Option<String> {
        (self.end > self.start).then(|| format!("bytes={}-{}", self.start, self.end - 1))
    }
}

/// How a ranged GET was answered.
pub(crate) enum Ranged {
    /// `206` with exactly the span asked for.
    Partial(reqwest::Response),
    /// `200`: the registry ignores `Range` and sends the whole blob.
    Whole(reqwest::Response),
}

/// The span a `Content-Range: bytes a-b/total` names, checked against the
/// blob's size (a `*` total is taken as that size).
pub(crate) fn content_range(v: &str, size: u64) -> Result<Span, String> {
    let bad = || format!("a Content-Range of {:?}", v.chars().take(80).collect::<String>());
    let rest = v.trim().strip_prefix("bytes ").ok_or_else(bad)?;
    let (range, total) = rest.split_once('/').ok_or_else(bad)?;
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let (a, b) = (a.parse::<u64>().map_err(|_| bad())?, b.parse::<u64>().map_err(|_| bad())?);
    if total != "*" && total.parse::<u64>().map_err(|_| bad())? != size {
        return Err(format!("{}: the blob is {size} bytes", bad()));
    }
    if a > b || b >= size {
        return Err(format!("{}: outside the blob of {size} bytes", bad()));
    }
    Ok(Span { start: a, end: b + 1 })
}

/// The requests that fetch `wanted` (sorted by start, not overlapping):
/// spans closer than `gap` are merged, since a request costs more than a
/// few KiB of bytes nobody needs; then, while there are more than
/// `max_requests`, the closest are merged. The gap rule never makes a span
/// longer than `max_span`; merging down to `max_requests` may (the caller
/// weighs the bytes of the result against the whole layer), and the result
/// is sorted.
pub(crate) fn coalesce(wanted: &[Span], gap: u64, max_requests: usize, max_span: u64) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for w in wanted.iter().filter(|w| w.len() > 0) {
        match out.last_mut() {
            Some(last)
                if w.start >= last.end && w.start - last.end <= gap && w.end.saturating_sub(last.start) <= max_span =>
            {
                last.end = w.end;
            }
            _ => out.push(*w),
        }
    }
    let max_requests = max_requests.max(1);
    if out.len() > max_requests {
        // keep the widest gaps as the boundaries between requests and merge
        // across the rest: the fewest unwanted bytes for that many requests,
        // in O(n log n) however many files the TOC names
        let mut gaps: Vec<(u64, usize)> =
            out.windows(2).enumerate().map(|(i, w)| (w[1].start.saturating_sub(w[0].end), i)).collect();
        gaps.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut cut = vec![false; out.len()];
        for &(_, i) in gaps.iter().take(max_requests - 1) {
            cut[i] = true;
        }
        let mut merged: Vec<Span> = Vec::with_capacity(max_requests);
        let mut open = out[0];
        for (i, next) in out.iter().enumerate().skip(1) {
            if cut[i - 1] {
                merged.push(open);
                open = *next;
            } else {
                open.end = next.end;
            }
        }
        merged.push(open);
        out = merged;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    #[test]
    fn content_ranges() {
        for (header, size, want) in [
            ("bytes 0-9/100", 100, Ok(s(0, 10))),
            ("bytes 90-99/100", 100, Ok(s(90, 100))),
            ("bytes 90-99/*", 100, Ok(s(90, 100))),
            ("bytes 90-100/100", 100, Err(())),
            ("bytes 9-0/100", 100, Err(())),
            ("bytes 0-9/101", 100, Err(())),
            ("bytes */100", 100, Err(())),
            ("items 0-9/100", 100, Err(())),
            ("bytes 0-9", 100, Err(())),
            ("bytes -1-9/100", 100, Err(())),
            ("bytes 0-18446744073709551616/100", 100, Err(())),
        ] {
            assert_eq!(content_range(header, size).map_err(|_| ()), want, "{header}");
        }
        assert_eq!(s(5, 5).header(), None);
        assert_eq!(s(5, 6).header().as_deref(), Some("bytes=5-5"));
    }

    /// (wanted, gap, max requests, max span, requests)
    type Case = (Vec<Span>, u64, usize, u64, Vec<Span>);

    #[test]
    fn coalescing() {
        let cases: Vec<Case> = vec![
            (vec![], 10, 4, 1000, vec![]),
            (vec![s(0, 10)], 10, 4, 1000, vec![s(0, 10)]),
            // adjacent and near ones merge, far ones do not
            (vec![s(0, 10), s(10, 20), s(25, 30), s(100, 110)], 10, 4, 1000, vec![s(0, 30), s(100, 110)]),
            // too many requests: the closest pairs merge first
            (vec![s(0, 1), s(50, 51), s(60, 61), s(200, 201)], 0, 2, 1000, vec![s(0, 61), s(200, 201)]),
            (vec![s(0, 1), s(50, 51), s(60, 61), s(200, 201)], 0, 1, 1000, vec![s(0, 201)]),
            // a span never grows past max_span by the gap rule
            (vec![s(0, 60), s(60, 120)], 10, 4, 100, vec![s(0, 60), s(60, 120)]),
            // one wanted span longer than max_span stays one request
            (vec![s(0, 500)], 10, 4, 100, vec![s(0, 500)]),
            (vec![s(0, 1), s(10, 11), s(20, 21), s(30, 31), s(100, 101)], 0, 2, 1000, vec![s(0, 31), s(100, 101)]),
            (
                vec![s(0, 1), s(10, 11), s(20, 21), s(30, 31), s(100, 101)],
                0,
                3,
                1000,
                vec![s(0, 1), s(10, 31), s(100, 101)],
            ),
            // empty spans are nothing to fetch
            (vec![s(5, 5), s(7, 9)], 0, 4, 100, vec![s(7, 9)]),
        ];
        for (wanted, gap, max, span, want) in cases {
            assert_eq!(coalesce(&wanted, gap, max, span), want, "{wanted:?}");
        }
    }
}
