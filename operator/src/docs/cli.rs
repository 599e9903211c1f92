//! The CLI reference, from the clap definitions: every command, its usage,
//! and every flag with its value, default and help.

use std::fmt::Write as _;

pub(crate) fn page(cmd: &clap::Command) -> String {
    let mut out = String::from(
        "# Command line\n\n\
         Every `ocisync` command and flag, as `ocisync COMMAND --help` prints them. Exit codes: see \
         [Exit codes](exit-codes.md). Shell completions: `ocisync completion bash|zsh|fish`.\n\n",
    );
    let mut cmd = cmd.clone();
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command(&mut out, sub);
    }
    out
}

fn command(out: &mut String, cmd: &clap::Command) {
    let name = cmd.get_name();
    let _ = writeln!(out, "## ocisync {name}\n");
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{}\n", super::cell(&about.to_string()));
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    let _ = writeln!(out, "```text\n{}\n```\n", usage.trim());
    let args: Vec<_> = cmd.get_arguments().filter(|a| !a.is_hide_set() && a.get_id() != "help").collect();
    if args.is_empty() {
        return;
    }
    out.push_str("| argument | value | default | description |\n| --- | --- | --- | --- |\n");
    for a in args {
        let flag = match (a.get_long(), a.get_short()) {
            (Some(l), Some(s)) => format!("`-{s}`, `--{l}`"),
            (Some(l), None) => format!("`--{l}`"),
            (None, Some(s)) => format!("`-{s}`"),
            (None, None) => format!(
                "`{}`",
                a.get_value_names()
                    .and_then(|v| v.first())
                    .map_or_else(|| a.get_id().to_string().to_uppercase(), ToString::to_string,)
            ),
        };
        let takes = a.get_num_args().is_some_and(|n| n.takes_values());
        let value = if a.is_positional() || !takes {
            String::new()
        } else {
            let possible: Vec<_> = a.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
            if possible.is_empty() || matches!(a.get_action(), clap::ArgAction::SetTrue) {
                a.get_value_names()
                    .map(|v| v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|| a.get_id().to_string().to_uppercase())
            } else {
                possible.join(" \\| ")
            }
        };
        let default: Vec<_> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let default = if default.is_empty() || matches!(a.get_action(), clap::ArgAction::SetTrue) {
            String::new()
        } else {
            format!("`{}`", default.join(","))
        };
        let mut help = a.get_long_help().or(a.get_help()).map(|h| h.to_string()).unwrap_or_default();
        if let Some(env) = a.get_env() {
            help.push_str(&format!(" (env `{}`)", env.to_string_lossy()));
        }
        if a.is_required_set() {
            help.insert_str(0, "Required. ");
        }
        let help = super::cell(&help);
        let value = if value.is_empty() { value } else { format!("`{value}`") };
        let _ = writeln!(out, "| {flag} | {value} | {default} | {} |", help.trim());
    }
    out.push('\n');
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command(out, sub);
    }
}
