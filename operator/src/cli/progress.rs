//! A progress bar for pulls big enough to wait for, on a terminal only.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fetch::Progress;

/// Below this a pull is over before a bar would be read.
const MIN_BYTES: u64 = 8 << 20;

pub(super) struct Bar(ProgressBar);

impl Bar {
    pub(super) fn for_terminal(disabled: bool) -> Option<Arc<Bar>> {
        if disabled || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid template"),
        );
        Some(Arc::new(Bar(bar)))
    }

    pub(super) fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
        if total_bytes >= MIN_BYTES {
            self.0.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}
