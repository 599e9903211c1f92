//! SIGTERM and SIGINT for the long-running commands (`operator`, `agent`),
//! listened for once, before anything else starts, and kept.
//!
//! In a pod the process is PID 1 of its namespace, and the kernel drops a
//! signal sent to PID 1 that has no handler: a SIGTERM that comes before
//! the handler is installed is lost, not deferred, and the kubelet then
//! waits out the whole grace period. So the handler goes in first, before
//! the Kubernetes client is built or a port opened, and what it saw is a
//! watch value every waiter reads, not an event each must be listening
//! for at the moment it comes.

use std::time::Duration;

/// How long in-flight syncs may finish after SIGTERM before they are
/// dropped where they stand (staging is removed at the next start, and a
/// revision is switched in one rename, so nothing is torn): well inside
/// the kubelet's default grace period of 30 s.
pub(crate) const DRAIN: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub(crate) struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Install the handlers now. Must run inside the runtime.
    pub(crate) fn listen() -> Shutdown {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, rx) = tokio::sync::watch::channel(false);
        // registered here, synchronously, not when first awaited
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        tokio::spawn(async move {
            match (term, interrupt) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    /// Returns once a signal has come (at once if one already has).
    pub(crate) async fn wait(mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Returns [`DRAIN`] after a signal came: the moment in-flight work is
    /// given up.
    pub(crate) async fn drained(self) {
        self.wait().await;
        tokio::time::sleep(DRAIN).await;
    }
}
