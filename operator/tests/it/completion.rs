//! `ocisync completion SHELL`: the scripts complete what the CLI has, as
//! the shell itself runs them.

use std::process::Command;

use crate::support::*;

/// Bash sources the script and its completion function offers the
/// subcommands for `ocisync pu<TAB>` and the flags for `ocisync pull --pl<TAB>`.
#[tokio::test]
async fn bash_completes_commands_and_flags() {
    let o = ocisync(&["completion", "bash"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ocisync.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    let complete = |words: &str| {
        let n = words.split(' ').count() - 1;
        let run = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={n}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _ocisync ocisync \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").args(["-c", &run]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        got.sort();
        got
    };
    assert_eq!(complete("ocisync pu"), ["pull", "push"]);
    assert!(complete("ocisync ").contains(&"completion".to_string()));
    assert_eq!(complete("ocisync pull --pl"), ["--platform"]);
}

/// zsh and fish get scripts that name every visible subcommand.
#[tokio::test]
async fn zsh_and_fish_scripts_name_every_command() {
    for shell in ["zsh", "fish"] {
        let o = ocisync(&["completion", shell]).await;
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        for cmd in ["pull", "push", "verify", "pin", "check", "operator", "agent", "completion"] {
            assert!(text.contains(cmd), "{shell}: no {cmd}");
        }
    }
    let o = ocisync(&["completion", "tcsh"]).await;
    assert_eq!(o.status.code(), Some(2), "an unknown shell is a usage error");
}
