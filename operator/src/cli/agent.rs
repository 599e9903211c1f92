//! `ocisync agent`: the sidecar / init container (see `crate::agent`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{exit_code, timeout, usage, volume};
use crate::agent::{self, AgentError, Hooks};
use crate::oci::DockerConfig;
use crate::status::Reason;

#[derive(Args, Debug)]
pub(super) struct AgentArgs {
    /// The Artifact to follow, NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    artifact: String,
    /// The directory shared with the app (an emptyDir): revisions, `..data`
    /// and top-level links, as in a ConfigMap volume.
    #[arg(long)]
    dir: PathBuf,
    /// Publish once and exit: 0 when the files are in place, non-zero with
    /// the reason when they cannot be (an init container).
    #[arg(long)]
    one_time: bool,
    /// POST `{"digest","revision","dir"}` here after each change.
    #[arg(long, value_name = "URL")]
    on_change_url: Option<String>,
    /// Serve /healthz, /readyz (ready once a revision is in place) and
    /// /metrics here; `0` turns them off.
    #[arg(long, default_value = "0.0.0.0:8081")]
    listen: String,
    /// How long `--one-time` waits, and the most one fetch may take.
    #[arg(long, default_value = "10m", value_parser = timeout)]
    timeout: Duration,
    /// Pull credentials when the Artifact has no `secretRef`.
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    #[command(flatten)]
    volume: volume::VolumeArgs,
    #[command(flatten)]
    providers: super::ProviderArgs,
    /// After each change, run this program (after `--`), with
    /// OCISYNC_DIGEST, OCISYNC_REVISION and OCISYNC_DIR set.
    #[arg(last = true, value_name = "COMMAND")]
    on_change_exec: Vec<String>,
}

pub(super) async fn run(args: AgentArgs, shutdown: crate::shutdown::Shutdown) -> ExitCode {
    let Some((namespace, name)) = args.artifact.split_once('/').filter(|(n, a)| !n.is_empty() && !a.is_empty()) else {
        return usage(&format!("--artifact {:?}: want NAMESPACE/NAME", args.artifact));
    };
    let listen = match args.listen.as_str() {
        "0" | "off" => None,
        a => match a.parse() {
            Ok(a) => Some(a),
            Err(_) => return usage(&format!("--listen {a:?}: want host:port or 0")),
        },
    };
    let docker_config = match &args.docker_config {
        None => None,
        Some(p) => match std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|b| DockerConfig::parse(&b).map_err(|e| e.to_string()))
        {
            Ok(c) => Some(c),
            Err(e) => return usage(&format!("--docker-config {}: {e}", p.display())),
        },
    };
    let providers = match args.providers.load() {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => return usage(&format!("no Kubernetes client: {e}")),
    };
    let opts = agent::Options {
        namespace: namespace.to_string(),
        name: name.to_string(),
        volume: args.volume.volume(&args.dir),
        one_time: args.one_time,
        hooks: Hooks { exec: args.on_change_exec, url: args.on_change_url },
        listen,
        timeout: args.timeout,
        providers,
        docker_config,
    };
    match agent::run(client, opts, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match &e {
                AgentError::NotFound(_) => 3,
                AgentError::Pipeline(p) => exit_code(Reason::from(p)),
                AgentError::Timeout(..) => 8,
                AgentError::Spec(_) | AgentError::Credentials(_) => 2,
                AgentError::Watch(_) => 1,
            })
        }
    }
}
