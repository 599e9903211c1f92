//! Docker credential helpers (`docker-credential-<name> get`), run the way
//! the docker CLI runs them: the server on stdin, `{"ServerURL","Username",
//! "Secret"}` on stdout, "credentials not found" meaning none. Bounded: the
//! helper gets `TIMEOUT` and `MAX_OUTPUT` bytes, and what it printed never
//! reaches an error message (it may hold the secret). A `<token>` user is
//! an identity token, exchanged by the client (`client::token`).

use std::ffi::OsStr;
use std::time::Duration;

use serde::Deserialize;

use super::auth::Credentials;
use super::exec::{self, ExecError, Run};

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const MAX_OUTPUT: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HelperError {
    #[error("credential helper docker-credential-{0} was not found on PATH")]
    Missing(String),
    #[error("credential helper docker-credential-{0} {1}")]
    Exec(String, ExecError),
    #[error("credential helper docker-credential-{0} failed ({1})")]
    Failed(String, String),
    #[error("credential helper docker-credential-{0} printed something that is not its JSON answer")]
    Garbage(String),
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// What a helper holds for a server: a password, or (user `<token>`) an
/// identity token to exchange at the registry's token server.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    None,
    Password(Credentials),
    IdentityToken(String),
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stored::None => f.write_str("None"),
            Stored::Password(c) => write!(f, "Password({c:?})"),
            Stored::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

impl Stored {
    pub(crate) fn into_credentials(self) -> Credentials {
        match self {
            Stored::None => Credentials::Anonymous,
            Stored::Password(c) => c,
            Stored::IdentityToken(t) => Credentials::IdentityToken(t),
        }
    }
}

/// `docker-credential-<name> get` for `server`.
pub(crate) fn get(name: &str, server: &str) -> Result<Stored, HelperError> {
    run(name, OsStr::new(&format!("docker-credential-{name}")), server, TIMEOUT)
}

/// `program get` (found on PATH unless a path), named `name` in errors.
fn run(name: &str, program: &OsStr, server: &str, timeout: Duration) -> Result<Stored, HelperError> {
    let args = ["get".to_string()];
    let call = Run { program, args: &args, env: &[], stdin: server.as_bytes(), timeout, max_output: MAX_OUTPUT };
    let (status, out) = exec::run(&call).map_err(|e| match e {
        ExecError::Missing => HelperError::Missing(name.into()),
        e => HelperError::Exec(name.into(), e),
    })?;
    if !status.success() {
        // The protocol's "no credentials for this server": anonymous, as docker.
        if out.len() < 256 && String::from_utf8_lossy(&out).contains("credentials not found") {
            return Ok(Stored::None);
        }
        return Err(HelperError::Failed(name.into(), exec::describe(status)));
    }
    if out.len() as u64 > MAX_OUTPUT {
        return Err(HelperError::Garbage(name.into()));
    }
    let answer: Answer = serde_json::from_slice(&out).map_err(|_| HelperError::Garbage(name.into()))?;
    Ok(match (answer.username.as_str(), answer.secret.is_empty()) {
        (_, true) => Stored::None,
        ("<token>", false) => Stored::IdentityToken(answer.secret),
        _ => Stored::Password(Credentials::Basic { username: answer.username, password: answer.secret }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A helper the test writes: a shell script speaking the protocol (the
    /// real `docker-credential-pass` is the integration test's).
    fn helper(script: &str, timeout: Duration) -> Result<Stored, HelperError> {
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
        let basic = |u: &str, p: &str| Stored::Password(Credentials::Basic { username: u.into(), password: p.into() });
        // it reads the server from stdin and answers for it
        let echo = r#"read s; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"hunter2"}' "$s" "$s""#;
        assert_eq!(helper(echo, ok).unwrap(), basic("u-r.io", "hunter2"));
        assert_eq!(helper("echo 'credentials not found in native keychain'; exit 1", ok).unwrap(), Stored::None);
        assert_eq!(helper(r#"echo '{"Username":"u","Secret":""}'"#, ok).unwrap(), Stored::None);
        let token = helper(r#"echo '{"Username":"<token>","Secret":"hunter2"}'"#, ok).unwrap();
        assert_eq!(token, Stored::IdentityToken("hunter2".into()));
        assert_eq!(format!("{token:?}"), "IdentityToken(***)");
        for (script, want) in [
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
        assert!(
            matches!(e, HelperError::Exec(_, ExecError::Timeout(_))) && t.elapsed() < Duration::from_secs(5),
            "{e}"
        );
        // a child left holding stdout cannot hold us past the deadline either
        let t = Instant::now();
        let e = helper("(sleep 30 &) ; echo '{}'", Duration::from_millis(300)).unwrap_err();
        assert!(
            matches!(e, HelperError::Exec(_, ExecError::Timeout(_))) && t.elapsed() < Duration::from_secs(5),
            "{e}"
        );
        let e = get("ocisync-test-no-such-helper", "r.io").unwrap_err();
        assert!(matches!(e, HelperError::Missing(_)), "{e}");
    }
}
