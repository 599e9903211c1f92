use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // reqwest and (later) kube must agree on one rustls provider; install it
    // before anything builds a TLS config.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = ocisync::cli::Cli::parse();
    let (default_level, json) = match &cli.command {
        ocisync::cli::Command::Operator(a) => ("info", a.log_json),
        _ => ("warn", false),
    };
    let filter = EnvFilter::try_from_env("OCISYNC_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(ocisync::cli::run(cli))
}
