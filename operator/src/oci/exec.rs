//! Running a credential program (a docker credential helper, a kubelet
//! credential provider plugin) with bounds: a deadline, a cap on what it
//! prints, stderr dropped. What it printed is returned to the caller only;
//! errors here never hold it (it may be a secret).
//!
//! It runs in a process group of its own, and the whole group is killed at
//! the deadline and once it has answered: a program run through a wrapper
//! (a shell script, `env`, a language's shim) leaves nothing behind.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExecError {
    #[error("was not found")]
    Missing,
    #[error("could not run: {0}")]
    Spawn(std::io::Error),
    #[error("did not answer within {0:?}")]
    Timeout(Duration),
}

pub(crate) struct Run<'a> {
    pub(crate) program: &'a OsStr,
    pub(crate) args: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) stdin: &'a [u8],
    pub(crate) timeout: Duration,
    /// Bytes kept of stdout; one more is read so that the caller can tell
    /// an answer past the cap from one at it.
    pub(crate) max_output: u64,
}

/// Run to completion (or the deadline); its exit status and at most
/// `max_output + 1` bytes of its stdout.
pub(crate) fn run(r: &Run<'_>) -> Result<(ExitStatus, Vec<u8>), ExecError> {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new(r.program)
        .process_group(0)
        .args(r.args)
        .envs(r.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ExecError::Missing,
            _ => ExecError::Spawn(e),
        })?;
    // The write runs on its own thread: a program that never reads a large
    // stdin must not block us past the deadline. One that exits without
    // reading makes the write fail; its exit status says more.
    let input = r.stdin.to_vec();
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let stdout = child.stdout.take();
    // The read runs beside the wait so that a program printing without end
    // or never exiting is cut off at the limit and the deadline.
    let cap = r.max_output + 1;
    let (sent, output) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(cap).read_to_end(&mut out);
        }
        let _ = sent.send(out);
    });
    let deadline = Instant::now() + r.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::Timeout(r.timeout));
            }
        }
    };
    drop(writer);
    // A child it left behind may hold stdout open: the deadline still holds.
    let left = deadline.saturating_duration_since(Instant::now());
    let out = output.recv_timeout(left).map_err(|_| ExecError::Timeout(r.timeout));
    // It has answered (or run out of time): what it started goes with it.
    kill_group(child.id());
    Ok((status, out?))
}

/// SIGKILL to the process group the program leads (its id is the group's);
/// a group already gone is no error.
fn kill_group(id: u32) {
    if let Some(pid) = i32::try_from(id).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// An exit status as people read it.
pub(crate) fn describe(status: ExitStatus) -> String {
    status.code().map_or_else(|| "killed by a signal".into(), |c| format!("exit status {c}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processes whose command line holds `marker`.
    fn alive(marker: &str) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|c| String::from_utf8_lossy(c).contains(marker))
            .count()
    }

    fn sh(script: &str, timeout: Duration) -> Result<(ExitStatus, Vec<u8>), ExecError> {
        let args = ["-c".to_string(), script.to_string()];
        run(&Run { program: OsStr::new("/bin/sh"), args: &args, env: &[], stdin: b"", timeout, max_output: 1024 })
    }

    #[test]
    fn a_program_behind_a_wrapper_leaves_nothing_at_the_deadline() {
        // the shell stays as the parent of a sleep that would outlive it
        let marker = "1000.4242";
        let r = sh(&format!("sleep {marker}; true"), Duration::from_millis(300));
        assert!(matches!(r, Err(ExecError::Timeout(_))), "{r:?}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(alive(marker), 0, "the wrapped sleep is gone too");
    }

    #[test]
    fn what_an_answered_program_started_goes_with_it() {
        // answers at once, leaving a child in the background holding nothing
        let marker = "1000.4343";
        let (status, out) = sh(&format!("sleep {marker} >/dev/null 2>&1 & echo ok"), Duration::from_secs(5)).unwrap();
        assert!(status.success());
        assert_eq!(out, b"ok\n");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(alive(marker), 0, "its background child is gone");
    }
}
