//! Docker credential helpers (`docker-credential-<name> get`), run the way
//! the docker CLI runs them: the server on stdin, `{"ServerURL","Username",
//! "Secret"}` on stdout, "credentials not found" meaning none. Bounded: the
//! helper gets `TIMEOUT` and `MAX_OUTPUT` bytes, and what it printed never
//! reaches an error message (it may hold the secret).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::auth::Credentials;

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const MAX_OUTPUT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HelperError {
    #[error("credential helper docker-credential-{0} was not found on PATH")]
    Missing(String),
    #[error("credential helper docker-credential-{0} could not run: {1}")]
    Spawn(String, std::io::Error),
    #[error("credential helper docker-credential-{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("credential helper docker-credential-{0} failed (exit status {1})")]
    Failed(String, String),
    #[error("credential helper docker-credential-{0} printed something that is not its JSON answer")]
    Garbage(String),
    #[error(
        "credential helper docker-credential-{0} holds an identity token for this registry, which ocisync cannot exchange yet"
    )]
    IdentityToken(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// `docker-credential-<name> get` for `server`.
pub(crate) fn get(name: &str, server: &str) -> Result<Credentials, HelperError> {
    run(name, std::ffi::OsStr::new(&format!("docker-credential-{name}")), server, TIMEOUT)
}

/// `program get` (found on PATH unless a path), named `name` in errors.
fn run(name: &str, program: &std::ffi::OsStr, server: &str, timeout: Duration) -> Result<Credentials, HelperError> {
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HelperError::Missing(name.into()),
            _ => HelperError::Spawn(name.into(), e),
        })?;
    // A helper that exits without reading its stdin makes this write fail;
    // its exit status says more than the broken pipe.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let stdout = child.stdout.take();
    // The read runs beside the wait so that a helper printing without end
    // or never exiting is cut off at the limit and the deadline.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(MAX_OUTPUT + 1).read_to_end(&mut out);
        }
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HelperError::Timeout(name.into(), timeout));
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        // The protocol's "no credentials for this server": anonymous, as docker.
        if out.len() < 256 && String::from_utf8_lossy(&out).contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        let code = status.code().map_or_else(|| "killed by a signal".into(), |c| c.to_string());
        return Err(HelperError::Failed(name.into(), code));
    }
    if out.len() as u64 > MAX_OUTPUT {
        return Err(HelperError::Garbage(name.into()));
    }
    let answer: Answer = serde_json::from_slice(&out).map_err(|_| HelperError::Garbage(name.into()))?;
    match (answer.username.as_str(), answer.secret.is_empty()) {
        (_, true) => Ok(Credentials::Anonymous),
        ("<token>", false) => Err(HelperError::IdentityToken(name.into())),
        _ => Ok(Credentials::Basic { username: answer.username, password: answer.secret }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A helper the test writes: a shell script speaking the protocol (the
    /// real `docker-credential-pass` is the integration test's).
    fn helper(script: &str, timeout: Duration) -> Result<Credentials, HelperError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker-credential-t");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        run("t", path.as_os_str(), "r.io", timeout)
    }

    #[test]
    fn what_a_helper_answers() {
        let ok = Duration::from_secs(10);
        let basic = |u: &str, p: &str| Credentials::Basic { username: u.into(), password: p.into() };
        // it reads the server from stdin and answers for it
        let echo = r#"read s; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"hunter2"}' "$s" "$s""#;
        assert_eq!(helper(echo, ok).unwrap(), basic("u-r.io", "hunter2"));
        assert_eq!(
            helper("echo 'credentials not found in native keychain'; exit 1", ok).unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(helper(r#"echo '{"Username":"u","Secret":""}'"#, ok).unwrap(), Credentials::Anonymous);
        for (script, want) in [
            (r#"echo '{"Username":"<token>","Secret":"hunter2"}'"#, "identity token"),
            ("echo hunter2 is not json", "not its JSON answer"),
            ("echo hunter2 >&2; exit 3", "exit status 3"),
            // past the output bound: cut off (the pipe closes under it) or refused
            ("yes hunter2", "exit status 141"),
            ("head -c 70000 /dev/zero; exit 0", "not its JSON answer"),
            ("kill -9 $$", "killed by a signal"),
        ] {
            let e = helper(script, ok).unwrap_err().to_string();
            assert!(e.contains(want) && !e.contains("hunter2"), "{script}: {e}");
        }
        let t = Instant::now();
        let e = helper("sleep 30", Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, HelperError::Timeout(..)) && t.elapsed() < Duration::from_secs(5), "{e}");
        let e = get("ocisync-test-no-such-helper", "r.io").unwrap_err();
        assert!(matches!(e, HelperError::Missing(_)), "{e}");
    }
}
