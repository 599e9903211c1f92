//! `ocisync` on a laptop or in a pipeline: the same resolve → fetch path the
//! controller runs, driven from flags.

mod agent;
mod check;
mod diff;
mod files;
mod output;
mod pin;
mod progress;
mod push;
mod verify;
mod volume;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::controller::plan::parse_duration;
use crate::fetch::{self, PullOptions};
use crate::oci::auth::Source;
use crate::oci::{Credentials, DockerConfig, Platform, Reference, RegistryClient, TransportOptions};
use crate::pipeline::{self, PipelineError};
use crate::resolve;
use crate::status::Reason;
use crate::unpack::limits::parse_size;
use crate::unpack::{Limits, Selection};

/// Set up the process (TLS provider, logs, runtime) and run the command.
pub(crate) fn main() -> ExitCode {
    // `ocisync` re-executed as the launcher of a credential program
    // (`oci::exec`): nothing else of the process is set up.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == crate::oci::exec::LAUNCH) {
        crate::oci::exec::launch(&args[1..]);
    }
    // reqwest and kube must agree on one rustls provider; install it before
    // anything builds a TLS config.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let (default_level, json) = match &cli.command {
        Command::Operator(a) => ("info", a.log_json),
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
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "ocisync", version, about = "Sync OCI artifacts: resolve, verify, fetch and publish")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fetch an artifact's files into a directory, replacing it atomically.
    Pull(PullArgs),
    /// List an artifact's files and sizes: from the layers' tables of
    /// contents where every layer has one (only they are read), else from
    /// the layers.
    Ls(files::LsArgs),
    /// Write one file of an artifact to stdout (only its chunks are read
    /// where its layer has a table of contents).
    Cat(files::CatArgs),
    /// The files added, removed and changed between two versions (from the
    /// tables of contents alone where every layer has one); `-p` adds
    /// unified diffs of the changed text files, reading only those.
    Diff(diff::DiffArgs),
    /// Write the digest each Artifact document's tag or semver range names
    /// now into its `spec.ref.digest`, verified as asked, changing no other
    /// byte of the files (GitOps repositories).
    Pin(pin::PinArgs),
    /// A merge gate for GitOps repositories, with no cluster: every Artifact
    /// document against the CRD's schema, its digest in the registry, its
    /// signatures under its spec.verify and the tree's cluster policies.
    Check(check::CheckArgs),
    /// Pack files and directories into one layer (eStargz: every file
    /// fetchable alone) and push it as an OCI 1.1 artifact; prints REF@digest.
    Push(push::PushArgs),
    /// Print the digest a reference resolves to (one HEAD request).
    Resolve(ResolveArgs),
    /// Check an artifact's cosign signatures with public keys.
    Verify(verify::VerifyArgs),
    /// Check a Sigstore bundle against a file or a digest, by a key or a
    /// keyless identity, offline (the Sigstore conformance suite's verify).
    VerifyBlob(verify::VerifyBlobArgs),
    /// Print the CRDs (one YAML stream), or write one file each into `--dir`.
    Crd {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Follow one Artifact and publish what the operator synced into a
    /// directory shared with an app (a sidecar, or with --one-time an init
    /// container).
    Agent(agent::AgentArgs),
    /// Run the Artifact controller (in cluster, or against $KUBECONFIG).
    Operator(OperatorArgs),
    /// Print a completion script for a shell: `source <(ocisync completion
    /// bash)`, `ocisync completion zsh > "${fpath[1]}/_ocisync"`,
    /// `ocisync completion fish > ~/.config/fish/completions/ocisync.fish`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the reference pages generated from the code (CLI, API, reasons,
    /// exit codes, metrics, chart values) into --dir, and man pages into
    /// --man (the book's reference; a test fails when they drift).
    #[command(hide = true)]
    Docs {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The chart's values.yaml, for its page.
        #[arg(long, value_name = "FILE", default_value = "charts/ocisync/values.yaml")]
        chart_values: PathBuf,
        #[arg(long, value_name = "DIR")]
        man: Option<PathBuf>,
    },
}

/// The command line's definition, for the generated reference.
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[derive(Args, Debug)]
struct OperatorArgs {
    /// Where fetches are staged before they are published.
    #[arg(long, default_value = "/tmp/ocisync")]
    work_dir: PathBuf,
    /// The most --work-dir may hold (an emptyDir's sizeLimit, past which
    /// the kubelet evicts the pod): the blob cache is made small enough
    /// that it and the ConfigMaps being staged stay under it.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    work_dir_size_limit: Option<u64>,
    /// Artifacts reconciled at once. Most of a reconcile is waiting on the
    /// API server: at 10,000 new Artifacts 8 left it idle between writes.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Reconcile slots each registry host has of its own: a registry that
    /// hangs holds no more. A host that finished a sync within 2 s in the
    /// last 10 s may use more, up to --concurrency. Default: half of
    /// --concurrency.
    #[arg(long)]
    max_per_registry: Option<u16>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Hold a Lease while reconciling, so that of several replicas only one
    /// writes. Off: run alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The Lease's namespace; default: $POD_NAMESPACE, else ocisync-system.
    #[arg(long)]
    lease_namespace: Option<String>,
    /// The Lease's name; operators that split the Artifacts between them
    /// (--watch-label-selector) each need their own.
    #[arg(long, default_value = "ocisync-leader")]
    lease_name: String,
    /// How long a lease lasts without renewal (a Go duration: 15s, 1m).
    #[arg(long, default_value = "15s", value_parser = lease_duration)]
    lease_duration: Duration,
    /// The most any one sync may take, whatever an Artifact's spec.timeout says.
    #[arg(long, default_value = "10m", value_parser = timeout)]
    max_timeout: Duration,
    /// For Artifacts without spec.partial: `auto` reads only the selected
    /// files' chunks where a layer's table of contents allows, `never`
    /// always downloads whole layers.
    #[arg(long, value_enum, default_value_t = PartialArg::Auto)]
    partial: PartialArg,
    /// Serve /healthz, /readyz and /metrics on this address; `0` turns them off.
    #[arg(long, default_value = "0.0.0.0:8080", value_parser = listen_addr)]
    metrics_addr: Listen,
    /// Reconcile only Artifacts with these labels (a label selector, as
    /// `kubectl -l` takes): several operators can split the Artifacts.
    #[arg(long, value_name = "SELECTOR")]
    watch_label_selector: Option<String>,
    /// Watch only these namespaces (comma-separated), with RBAC granted by
    /// Roles there; default: the whole cluster.
    #[arg(long, value_name = "NS,…", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// The shared volume (a ReadWriteMany claim's mount) that
    /// `spec.target.volume` publishes into, at `<namespace>/<path>`.
    #[arg(long, value_name = "DIR")]
    volume_root: Option<PathBuf>,
    /// Revisions each volume keeps.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=100))]
    volume_keep: u16,
    /// How long a replaced revision stays for readers (a Go duration).
    #[arg(long, default_value = "5m", value_parser = volume::grace)]
    volume_grace: Duration,
    /// Serve `POST /v1/notify` (registry push notifications) here; off
    /// unless given.
    #[arg(long, value_name = "ADDR", requires = "webhook_token_file")]
    webhook_addr: Option<SocketAddr>,
    /// The bearer token notifications must carry (the file's content,
    /// without surrounding whitespace).
    #[arg(long, value_name = "FILE")]
    webhook_token_file: Option<PathBuf>,
    /// Layers kept on disk (under --work-dir) for other syncs of the same
    /// digest, at most this many bytes; `0` turns the cache off.
    #[arg(long, value_parser = parse_size, default_value = "512MiB")]
    blob_cache_size: u64,
    /// Owner of the files written, `UID:GID` (needs the privilege to chown).
    #[arg(long, value_name = "UID:GID", value_parser = volume::owner)]
    volume_owner: Option<(u32, u32)>,
    /// A mirror for every repository of registry ORIGIN, for Artifacts
    /// without spec.mirrors: `ORIGIN=oci://HOST[/PREFIX]` (repeat for more,
    /// tried in order). Tags stay at the origin; content by digest comes from
    /// the mirror when it has it, checked against the origin's digest.
    #[arg(long, value_name = "ORIGIN=oci://HOST[/PREFIX]")]
    mirror: Vec<String>,
    /// The --mirror registries speak plain HTTP.
    #[arg(long)]
    mirror_insecure: bool,
    #[command(flatten)]
    providers: ProviderArgs,
}

/// The kubelet's flags for credential provider plugins, with its file format.
#[derive(Args, Debug)]
pub(crate) struct ProviderArgs {
    /// A `CredentialProviderConfig` (kubelet.config.k8s.io/v1, as the
    /// kubelet's flag of this name takes): plugins that give registry
    /// credentials to Artifacts that have none from a pull secret.
    #[arg(long, value_name = "FILE", requires = "image_credential_provider_bin_dir")]
    image_credential_provider_config: Option<PathBuf>,
    /// The directory holding the plugins the config names.
    #[arg(long, value_name = "DIR", requires = "image_credential_provider_config")]
    image_credential_provider_bin_dir: Option<PathBuf>,
}

impl ProviderArgs {
    pub(crate) fn load(&self) -> Result<Option<std::sync::Arc<crate::oci::provider::Providers>>, String> {
        match (&self.image_credential_provider_config, &self.image_credential_provider_bin_dir) {
            (Some(config), Some(dir)) => crate::oci::provider::Providers::load(config, dir)
                .map(|p| Some(std::sync::Arc::new(p)))
                .map_err(|e| e.to_string()),
            _ => Ok(None),
        }
    }
}

/// An optional listen address: `0` (or `off`) for none.
#[derive(Clone, Copy, Debug)]
struct Listen(Option<SocketAddr>);

fn listen_addr(s: &str) -> Result<Listen, String> {
    match s {
        "0" | "off" => Ok(Listen(None)),
        a => a.parse().map(|a| Listen(Some(a))).map_err(|e| format!("{e}: want host:port, or 0 for off")),
    }
}

fn timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(24 * 3600) => Ok(d),
        Some(_) => Err("must be between 1s and 24h".into()),
        None => Err(format!("{s:?} is not a duration like 30s, 10m or 1h")),
    }
}

fn lease_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Some(d) if d >= Duration::from_secs(3) && d <= Duration::from_secs(3600) => Ok(d),
        Some(_) => Err("must be between 3s and 1h".into()),
        None => Err(format!("{s:?} is not a duration like 15s or 1m")),
    }
}

#[derive(Args, Debug, Clone)]
struct RegistryArgs {
    /// Use plain HTTP instead of HTTPS.
    #[arg(long)]
    insecure: bool,
    /// Extra CA certificates (PEM) to trust for the registry.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Docker config with credentials (`auths`); default: $DOCKER_CONFIG/config.json or ~/.docker/config.json.
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Give up after this long (a Go duration: 30s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = timeout)]
    timeout: Duration,
}

#[derive(Args, Debug)]
struct ResolveArgs {
    /// oci://host[:port]/repo[:tag][@sha256:…]
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct PullArgs {
    /// oci://host[:port]/repo[:tag][@sha256:…]
    reference: String,
    /// Directory to write; replaced as a whole when the pull succeeds.
    #[arg(long, short)]
    out: PathBuf,
    /// Only files matching this glob (repeatable; `*` stays in one directory, `**` crosses).
    #[arg(long = "select", value_name = "GLOB")]
    select: Vec<String>,
    /// Leave out files matching this glob (repeatable; wins over --select).
    #[arg(long = "exclude", value_name = "GLOB")]
    exclude: Vec<String>,
    /// Only layers of this media type (repeatable).
    #[arg(long = "media-type", value_name = "TYPE")]
    media_types: Vec<String>,
    /// Platform to take from an image index, os/arch[/variant]; default: this machine's.
    #[arg(long)]
    platform: Option<String>,
    /// Largest layer to download (e.g. 512MiB).
    #[arg(long, value_parser = parse_size, default_value = "1GiB")]
    max_layer_bytes: u64,
    /// Most bytes to unpack over all layers, after decompression.
    #[arg(long, value_parser = parse_size, default_value = "4GiB")]
    max_total_bytes: u64,
    /// Most files to unpack over all layers.
    #[arg(long, default_value_t = Limits::default().max_files)]
    max_files: u64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Verify the signatures with this public key first (repeatable);
    /// nothing is downloaded unless one verifies.
    #[arg(long = "verify-key", value_name = "FILE")]
    verify_keys: Vec<PathBuf>,
    #[command(flatten)]
    signature: verify::SignatureArgs,
    /// Write --out as a volume: each version a revision under it, `..data`
    /// switched with one rename, top-level links through it (the kubelet's
    /// ConfigMap-volume layout). What a kept revision holds is not
    /// downloaded again.
    #[arg(long)]
    volume: bool,
    #[command(flatten)]
    revisions: volume::VolumeArgs,
    /// Fetch what is named by digest from this repository first
    /// (`oci://host[:port]/repository`; repeatable, tried in order): the tag
    /// resolves and signatures are found at REFERENCE's registry, and every
    /// byte a mirror serves is checked against that digest.
    #[arg(long, value_name = "oci://HOST/REPO")]
    mirror: Vec<String>,
    /// The --mirror registries speak plain HTTP.
    #[arg(long)]
    mirror_insecure: bool,
    /// Always download whole layers and check each one's digest, even where
    /// a table of contents would let only the selected files' chunks be read.
    #[arg(long)]
    no_partial: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PartialArg {
    Auto,
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// Every exit code and what it means (the reference's "Exit codes" page);
/// a test checks that `exit_code` gives no other.
pub(crate) const EXIT_CODES: &[(u8, &str)] = &[
    (0, "success"),
    (
        1,
        "internal error (I/O on the output, a failed task); `diff --exit-code`: the versions differ; `check`: an Artifact failed a check",
    ),
    (2, "usage: bad flags, bad reference, bad glob, unreadable docker config, CA file, key or trusted root"),
    (3, "not found: tag, manifest or blob; the file `cat` asked for; nothing to `push` (no file matched)"),
    (4, "authentication or authorisation refused"),
    (5, "integrity: digest or size mismatch"),
    (6, "a limit was exceeded"),
    (7, "unsafe content: paths, links or device files"),
    (8, "registry unreachable, or still failing after retries"),
    (
        9,
        "unsupported content: media type, platform not in the index, corrupt archive, an unknown log entry kind; a Notation signature that needs a verification plugin or the `notary.x509.signingAuthority` scheme",
    ),
    (10, "no signature of the digest (as `cosign verify`); with `--notation`, no Notary Project signature"),
    (
        11,
        "signed, but by no key or identity given, or by a certificate the trusted root does not vouch for; Notation: no trust policy statement for the repository, a chain not anchored in a `ca:` store, an identity the statement does not trust, an expired signature or certificate, a revoked certificate or one whose revocation status is unknown (`UntrustedSigner`)",
    ),
    (
        12,
        "a signature that does not match: tampered, or for another digest; Notation: an envelope that does not verify, breaks the certificate rules, or names another manifest (`SignatureMismatch`)",
    ),
    (13, "transparency log entry missing (with `--transparency-log Required`) or not verifying"),
    (14, "no space left on the disk written to (`NoSpace`); what was written for it is removed"),
];

#[cfg(test)]
pub(crate) fn exit_code_of(reason: Reason) -> u8 {
    exit_code(reason)
}

/// Exit codes a script can tell apart (`EXIT_CODES`).
fn exit_code(reason: Reason) -> u8 {
    match reason {
        Reason::NotFound => 3,
        Reason::Unauthorized => 4,
        Reason::DigestMismatch => 5,
        Reason::LimitExceeded => 6,
        Reason::UnsafeContent => 7,
        Reason::Unreachable | Reason::RegistryError | Reason::Timeout => 8,
        Reason::Unsupported | Reason::UnsupportedLogEntry => 9,
        // as `cosign verify` says "no signatures found"
        Reason::NoSignature => 10,
        Reason::UntrustedSigner => 11,
        Reason::SignatureMismatch => 12,
        Reason::TransparencyLogMissing | Reason::TransparencyLogInvalid => 13,
        Reason::InvalidVerificationKeys | Reason::InvalidTrustedRoot => USAGE,
        Reason::NoSpace => 14,
        _ => 1,
    }
}

const USAGE: u8 = 2;

async fn run(cli: Cli) -> ExitCode {
    // The long-running commands catch SIGTERM before doing anything else
    // (see `shutdown`); the others keep the default: a signal ends them.
    let shutdown =
        matches!(cli.command, Command::Operator(_) | Command::Agent(_)).then(crate::shutdown::Shutdown::listen);
    match cli.command {
        Command::Resolve(args) => resolve(args).await,
        Command::Pull(args) => pull(args).await,
        Command::Ls(args) => files::ls(args).await,
        Command::Diff(args) => diff::diff(args).await,
        Command::Pin(args) => pin::pin(args).await,
        Command::Check(args) => check::check(args).await,
        Command::Cat(args) => files::cat(args).await,
        Command::Push(args) => push::push(args).await,
        Command::Verify(args) => verify::verify(args).await,
        Command::VerifyBlob(args) => verify::verify_blob(args),
        Command::Crd { dir: None } => {
            print!("{}", crate::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd { dir: Some(dir) } => {
            for (file, yaml) in crate::api::crds() {
                if let Err(e) = std::fs::write(dir.join(file), yaml) {
                    eprintln!("error: {}: {e}", dir.join(file).display());
                    return ExitCode::from(1);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut command(), "ocisync", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Docs { dir, chart_values, man } => {
            match crate::docs::write(dir.as_deref(), &chart_values, man.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Operator(args) => operator(args, shutdown.unwrap_or_else(crate::shutdown::Shutdown::listen)).await,
        Command::Agent(args) => agent::run(args, shutdown.unwrap_or_else(crate::shutdown::Shutdown::listen)).await,
    }
}

async fn resolve(args: ResolveArgs) -> ExitCode {
    let (reference, client) = match setup(&args.reference, &args.registry) {
        Ok(x) => x,
        Err(msg) => return usage(&msg),
    };
    let limit = args.registry.timeout;
    let resolved = tokio::time::timeout(limit, resolve::digest(&client, &reference)).await;
    match resolved.map_err(|_| PipelineError::Timeout(limit)).and_then(|r| r.map_err(PipelineError::from)) {
        Ok(d) => {
            println!("{d}");
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e, Format::Text),
    }
}

async fn pull(args: PullArgs) -> ExitCode {
    let (reference, client) = match setup(&args.reference, &args.registry) {
        Ok(x) => x,
        Err(msg) => return usage(&msg),
    };
    let requirements = match args.signature.requirement(&args.verify_keys) {
        Ok(r) => r,
        Err(msg) => return usage(&msg),
    };
    let platform = match args.platform.as_deref().map(Platform::parse).transpose() {
        Ok(p) => p.unwrap_or_else(Platform::current),
        Err(e) => return usage(&e.to_string()),
    };
    let selection = match Selection::new(&args.select, &args.exclude, &args.media_types) {
        Ok(s) => s,
        Err(e) => return usage(&e.to_string()),
    };
    let limits = Limits {
        max_layer_bytes: args.max_layer_bytes,
        max_total_bytes: args.max_total_bytes,
        max_files: args.max_files,
        max_selected_bytes: u64::MAX,
    };
    let mirrors = match mirrors(&args.mirror, args.mirror_insecure, &args.registry) {
        Ok(m) => m,
        Err(msg) => return usage(&msg),
    };
    let bar = progress::Bar::for_terminal(args.no_progress);
    let opts = PullOptions {
        selection,
        limits,
        progress: bar.clone().map(|b| b as Arc<dyn fetch::Progress>),
        mirrors,
        partial: !args.no_partial,
        // Files --out already holds, byte for byte as a TOC says, are
        // copied from it rather than fetched (a volume: its current revision).
        previous: (!args.volume && args.out.is_dir()).then(|| {
            Arc::new(fetch::partial::reuse::Tree(args.out.clone())) as Arc<dyn fetch::partial::reuse::Previous>
        }),
        ..PullOptions::default()
    };
    let client = Arc::new(client);
    let limit = args.registry.timeout;
    if args.volume {
        let vol = args.revisions.volume(&args.out);
        let selection: [&[String]; 3] = [&args.select, &args.exclude, &args.media_types];
        let placed = tokio::time::timeout(limit, async {
            let pinned = resolve::reference(&client, &reference).await?;
            pipeline::verify(&client, &pinned, &requirements).await?;
            let content = volume::content_key(&pinned.digest.to_string(), &selection, &platform.to_string());
            pipeline::into_volume(client.clone(), &pinned, &platform, &opts, &vol, &content).await
        })
        .await
        .unwrap_or(Err(PipelineError::Timeout(limit)));
        if let Some(b) = bar {
            b.finish();
        }
        return match placed {
            Ok(p) => {
                volume::placed(args.output, &p, &args.out);
                ExitCode::SUCCESS
            }
            Err(e) => failed(&e, args.output),
        };
    }
    let result = tokio::time::timeout(limit, async {
        let pinned = resolve::reference(&client, &reference).await?;
        pipeline::verify(&client, &pinned, &requirements).await?;
        pipeline::run(client.clone(), &pinned, &platform, &opts, &args.out).await
    })
    .await
    .unwrap_or(Err(PipelineError::Timeout(limit)));
    if let Some(b) = bar {
        b.finish();
    }
    match result {
        Ok(pulled) => {
            output::pulled(args.output, &pulled, &args.out);
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e, args.output),
    }
}

async fn operator(args: OperatorArgs, shutdown: crate::shutdown::Shutdown) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: no Kubernetes client: {e}");
            return ExitCode::from(1);
        }
    };
    let namespace =
        args.lease_namespace.or_else(|| std::env::var("POD_NAMESPACE").ok()).unwrap_or_else(|| "ocisync-system".into());
    // The pod's name (from the downward API) names this replica in the
    // Lease and in the Events it reports.
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let webhook = match (args.webhook_addr, &args.webhook_token_file) {
        (Some(addr), Some(file)) => match std::fs::read_to_string(file) {
            Ok(t) if !t.trim().is_empty() => Some((addr, t.trim().as_bytes().to_vec())),
            Ok(_) => return usage(&format!("--webhook-token-file {}: empty", file.display())),
            Err(e) => return usage(&format!("--webhook-token-file {}: {e}", file.display())),
        },
        _ => None,
    };
    let mirrors = match args
        .mirror
        .iter()
        .map(|m| crate::fetch::sources::MirrorRule::parse(m, args.mirror_insecure))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|rules| crate::fetch::sources::check_rules(&rules).map(|()| rules))
    {
        Ok(r) => r,
        Err(e) => return usage(&format!("--mirror {e}")),
    };
    let providers = match args.providers.load() {
        Ok(p) => p,
        Err(e) => return usage(&e),
    };
    let opts = crate::controller::Options {
        webhook,
        mirrors,
        providers,
        work_dir: args.work_dir,
        volumes: args.volume_root.map(|dir| crate::publish::volume::target::Root {
            dir,
            keep: usize::from(args.volume_keep),
            grace: args.volume_grace,
            owner: args.volume_owner,
        }),
        blob_cache_bytes: {
            let n = crate::fetch::cache::bound(args.blob_cache_size, args.work_dir_size_limit, args.concurrency);
            if n < args.blob_cache_size {
                tracing::warn!(
                    requested = args.blob_cache_size,
                    kept = n,
                    "--blob-cache-size lowered to fit --work-dir-size-limit"
                );
            }
            n
        },
        max_timeout: args.max_timeout,
        partial: match args.partial {
            PartialArg::Auto => crate::api::Partial::Auto,
            PartialArg::Never => crate::api::Partial::Never,
        },
        concurrency: args.concurrency.max(1),
        per_registry: args.max_per_registry.unwrap_or(args.concurrency / 2).max(1),
        lease: args.leader_elect.then_some((namespace, args.lease_name)),
        identity,
        lease_duration: args.lease_duration,
        metrics_addr: args.metrics_addr.0,
        label_selector: args.watch_label_selector,
        scope: if args.namespaces.is_empty() {
            crate::controller::scope::Scope::Cluster
        } else {
            crate::controller::scope::Scope::Namespaces(args.namespaces)
        },
    };
    match crate::controller::run(client, opts, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Parse the reference and build the one client its credentials call for.
fn setup(reference: &str, args: &RegistryArgs) -> Result<(Reference, RegistryClient), String> {
    let reference = Reference::parse(reference).map_err(|e| e.to_string())?;
    let credentials = credentials(&reference.registry, args.docker_config.as_deref())?;
    let ca_pem = match &args.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("--ca-file {}: {e}", p.display()))?),
        None => None,
    };
    let opts = TransportOptions { insecure: args.insecure, ca_pem, ..TransportOptions::default() };
    let client = RegistryClient::new(&reference.registry, credentials, &opts).map_err(|e| e.to_string())?;
    Ok((reference, client))
}

/// `--mirror` repositories, each with the docker config's credentials for
/// its host.
fn mirrors(
    urls: &[String],
    insecure: bool,
    args: &RegistryArgs,
) -> Result<Vec<Arc<crate::fetch::sources::Mirror>>, String> {
    const MAX: usize = 8;
    if urls.len() > MAX {
        return Err(format!("at most {MAX} --mirror"));
    }
    urls.iter()
        .map(|u| {
            let at = Reference::parse(u).map_err(|e| format!("--mirror {u}: {e}"))?;
            if at.tag.is_some() || at.digest.is_some() {
                return Err(format!("--mirror {u}: names the repository only"));
            }
            let credentials = credentials(&at.registry, args.docker_config.as_deref())?;
            let mirror =
                crate::fetch::sources::Mirror::connect(&at, credentials, insecure).map_err(|e| e.to_string())?;
            Ok(Arc::new(mirror))
        })
        .collect()
}

fn credentials(registry: &str, explicit: Option<&Path>) -> Result<Credentials, String> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
            match dir.map(|d| d.join("config.json")) {
                Some(p) if p.exists() => p,
                _ => return Ok(Credentials::Anonymous),
            }
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("docker config {}: {e}", path.display()))?;
    let cfg = DockerConfig::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    match cfg.source_for(registry) {
        Source::Stored(c) => Ok(c),
        // `credHelpers` or `credsStore`, as `docker login` left them.
        Source::Helper { name, server } => crate::oci::helper::get(&name, &server)
            .map(crate::oci::helper::Stored::into_credentials)
            .map_err(|e| e.to_string()),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(USAGE)
}

fn failed(e: &PipelineError, format: Format) -> ExitCode {
    let reason = Reason::from(e);
    eprintln!("error: {e}");
    if format == Format::Json {
        output::error_json(reason, e);
    }
    ExitCode::from(exit_code(reason))
}
