//! Running a credential program (a docker credential helper, a kubelet
//! credential provider plugin) with bounds: a deadline, a cap on what it
//! prints, stderr dropped. What it printed is returned to the caller only;
//! errors here never hold it (it may be a secret).
//!
//! It runs in a process group of its own, and the whole group is killed at
//! the deadline and once it has answered: a program run through a wrapper
//! (a shell script, `env`, a language's shim) leaves nothing behind. And it
//! dies with us: `ocisync` starts it through itself ([`LAUNCH`]), asking
//! the kernel for a SIGKILL when the thread that waits for it ends, so a
//! kill of `ocisync` (`kill -9`, an OOM kill, Ctrl-C, which no longer
//! reaches a program in another process group) leaves no program behind.

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

/// The hidden first argument under which `ocisync` runs as the launcher
/// of a credential program: `ocisync LAUNCH PARENT-PID PROGRAM ARGS...`.
pub(crate) const LAUNCH: &str = "__launch-credential-program";
/// The launcher's exit status when the program is not there (as a shell's).
const NOT_FOUND: i32 = 127;
const CANNOT_RUN: i32 = 126;

/// The launcher: ask for SIGKILL when the parent (the thread waiting for
/// us) ends, make sure it has not ended already, then become the program.
/// The death signal survives the exec.
pub(crate) fn launch(args: &[std::ffi::OsString]) -> ! {
    use std::os::unix::process::CommandExt as _;
    let (Some(parent), Some(program)) = (args.first(), args.get(1)) else { std::process::exit(CANNOT_RUN) };
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let parent: Option<i32> = parent.to_str().and_then(|p| p.parse().ok());
    if rustix::process::getppid().map(rustix::process::Pid::as_raw_nonzero).map(|p| p.get()) != parent {
        std::process::exit(CANNOT_RUN);
    }
    let e = Command::new(program).args(&args[2..]).exec();
    std::process::exit(if e.kind() == std::io::ErrorKind::NotFound { NOT_FOUND } else { CANNOT_RUN })
}

/// The program, started through the launcher when this is `ocisync` (a
/// test binary is not, and runs it directly).
fn command(r: &Run<'_>) -> (Command, bool) {
    let exe = if cfg!(test) { None } else { std::env::current_exe().ok() };
    match exe {
        Some(exe) => {
            let mut c = Command::new(exe);
            c.arg(LAUNCH).arg(std::process::id().to_string()).arg(r.program).args(r.args);
            (c, true)
        }
        None => {
            let mut c = Command::new(r.program);
            c.args(r.args);
            (c, false)
        }
    }
}

/// Run to completion (or the deadline); its exit status and at most
/// `max_output + 1` bytes of its stdout.
pub(crate) fn run(r: &Run<'_>) -> Result<(ExitStatus, Vec<u8>), ExecError> {
    use std::os::unix::process::CommandExt as _;
    let (mut cmd, launched) = command(r);
    let mut child = cmd
        .process_group(0)
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
    let out = out?;
    if launched && out.is_empty() {
        match status.code() {
            Some(NOT_FOUND) => return Err(ExecError::Missing),
            Some(CANNOT_RUN) => return Err(ExecError::Spawn(std::io::Error::other("the launcher could not run it"))),
            _ => {}
        }
    }
    Ok((status, out))
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
