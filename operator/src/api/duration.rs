//! Durations as Kubernetes objects and kubelet files write them.

use std::time::Duration;

/// Go's duration syntax, the one Kubernetes users write: `1h30m`, `90s`,
/// `500ms`.
pub(crate) fn parse(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u_end..];
        total = total.checked_add(Duration::try_from_secs_f64(n * unit).ok()?)?;
    }
    Some(total)
}
