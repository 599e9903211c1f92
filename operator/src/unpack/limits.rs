//! Bounds on what a pull may cost, enforced while streaming.

use std::sync::atomic::{AtomicU64, Ordering};

use super::UnpackError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Bytes of one layer as stored in the registry (compressed).
    pub(crate) max_layer_bytes: u64,
    /// Bytes after decompression, over all layers: the bound on a bomb.
    pub(crate) max_total_bytes: u64,
    /// Files, links included, over all layers.
    pub(crate) max_files: u64,
    /// Bytes of the selected files, over all layers: what the target can
    /// hold (a ConfigMap's 1 MiB), not what is downloaded or inflated to
    /// find them.
    pub(crate) max_selected_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_layer_bytes: 1 << 30, max_total_bytes: 4 << 30, max_files: 100_000, max_selected_bytes: u64::MAX }
    }
}

/// The name of the limit on bytes unpacked over all layers, as errors carry it.
pub(crate) const TOTAL_BYTES: &str = "total unpacked bytes";
/// The name of the limit on the selected files' bytes: a target's capacity.
pub(crate) const SELECTED_BYTES: &str = "selected file bytes";
/// The name of the limit on bytes downloaded over all layers.
pub(crate) const DOWNLOAD_BYTES: &str = "downloaded bytes";
/// Paths and link targets held for the report, over all layers: a fixed
/// bound, so that many long names cannot exhaust memory before the file
/// count does.
pub(crate) const MAX_METADATA_BYTES: u64 = 64 << 20;

/// What has been spent so far; shared by layers unpacked in parallel.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) limits: Limits,
    bytes: AtomicU64,
    selected: AtomicU64,
    files: AtomicU64,
    metadata: AtomicU64,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Self {
        Budget {
            limits,
            bytes: AtomicU64::new(0),
            selected: AtomicU64::new(0),
            files: AtomicU64::new(0),
            metadata: AtomicU64::new(0),
        }
    }

    pub(crate) fn charge_bytes(&self, n: u64) -> Result<(), UnpackError> {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if total > self.limits.max_total_bytes {
            return Err(UnpackError::LimitExceeded { limit: TOTAL_BYTES, max: self.limits.max_total_bytes });
        }
        Ok(())
    }

    /// Bytes written for a selected file (after `charge_bytes` counted them
    /// as inflated).
    pub(crate) fn charge_selected(&self, n: u64) -> Result<(), UnpackError> {
        let total = self.selected.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if total > self.limits.max_selected_bytes {
            return Err(UnpackError::LimitExceeded { limit: SELECTED_BYTES, max: self.limits.max_selected_bytes });
        }
        Ok(())
    }

    pub(crate) fn charge_file(&self) -> Result<(), UnpackError> {
        if self.files.fetch_add(1, Ordering::Relaxed) + 1 > self.limits.max_files {
            return Err(UnpackError::LimitExceeded { limit: "file count", max: self.limits.max_files });
        }
        Ok(())
    }

    pub(crate) fn charge_metadata(&self, n: usize) -> Result<(), UnpackError> {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        if self.metadata.fetch_add(n, Ordering::Relaxed).saturating_add(n) > MAX_METADATA_BYTES {
            return Err(UnpackError::LimitExceeded { limit: "path bytes", max: MAX_METADATA_BYTES });
        }
        Ok(())
    }

    /// The bytes a pull downloads, over all layers: at most the unpacked
    /// limit and a sixteenth (compression can add a little to data that
    /// does not compress).
    pub(crate) fn check_download(&self, bytes: u64) -> Result<(), UnpackError> {
        let max = self.limits.max_total_bytes.saturating_add(self.limits.max_total_bytes / 16);
        if bytes > max {
            return Err(UnpackError::LimitExceeded { limit: DOWNLOAD_BYTES, max });
        }
        Ok(())
    }

    pub(crate) fn check_layer_size(&self, size: u64) -> Result<(), UnpackError> {
        if size > self.limits.max_layer_bytes {
            return Err(UnpackError::LimitExceeded { limit: "layer bytes", max: self.limits.max_layer_bytes });
        }
        Ok(())
    }
}

/// `1048576`, `512KiB`, `64MiB`, `2GiB`, `1G` (units are powers of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512MiB)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "Ki" | "KiB" | "k" => 10,
        "M" | "Mi" | "MiB" => 20,
        "G" | "Gi" | "GiB" => 30,
        "T" | "Ti" | "TiB" => 40,
        u => {
            return Err(format!("unknown size unit {u:?} in {s:?} (use KiB, MiB, GiB)"));
        }
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_trips_past_the_limit_not_at_it() {
        let b = Budget::new(Limits { max_layer_bytes: 10, max_total_bytes: 100, max_files: 2, max_selected_bytes: 5 });
        b.charge_selected(5).unwrap();
        assert!(matches!(
            b.charge_selected(1),
            Err(UnpackError::LimitExceeded { limit: "selected file bytes", max: 5 })
        ));
        b.charge_bytes(60).unwrap();
        b.charge_bytes(40).unwrap();
        assert!(matches!(
            b.charge_bytes(1),
            Err(UnpackError::LimitExceeded { limit: "total unpacked bytes", max: 100 })
        ));
        b.charge_file().unwrap();
        b.charge_file().unwrap();
        assert!(b.charge_file().is_err());
        assert!(b.check_layer_size(10).is_ok() && b.check_layer_size(11).is_err());
        assert!(b.check_download(106).is_ok() && b.check_download(107).is_err(), "100 + 100/16");
        assert!(b.check_download(u64::MAX).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
