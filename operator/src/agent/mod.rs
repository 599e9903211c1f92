//! `ocisync agent`: a sidecar (or, with `--one-time`, an init container)
//! that watches one Artifact and publishes the digest the operator synced
//! (and, where asked, verified) into a directory shared with the app, in
//! the volume layout (`publish::volume`). It fetches by that digest
//! itself, so what it writes is exactly what the operator checked, and it
//! needs only `get`/`list`/`watch` on that one Artifact (by name) and `get`
//! on its pull Secret.

mod wanted;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::api::{Artifact, VolumeTarget};
use crate::controller::plan::Plan;
use crate::fetch::PullOptions;
use crate::oci::auth::Source;
use crate::oci::helper;
use crate::oci::{Credentials, DockerConfig, RegistryClient, TransportOptions};
use crate::pipeline::{self, PipelineError, Placed};
use crate::publish::Target;
use crate::publish::volume::Volume;
use crate::resolve::Pinned;
use crate::shutdown::Shutdown;
pub(crate) use wanted::{Wanted, wanted};

/// What to do after a publish.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hooks {
    /// Run with `OCISYNC_DIGEST`, `OCISYNC_REVISION`, `OCISYNC_DIR` set.
    pub(crate) exec: Vec<String>,
    /// POST `{"digest", "revision", "dir"}` here.
    pub(crate) url: Option<String>,
}

pub(crate) struct Options {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) volume: Volume,
    pub(crate) one_time: bool,
    pub(crate) hooks: Hooks,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) timeout: Duration,
    /// Pull credentials when the Artifact names no Secret.
    pub(crate) docker_config: Option<DockerConfig>,
    /// Kubelet credential provider plugins, when neither gives any.
    pub(crate) providers: Option<std::sync::Arc<crate::oci::provider::Providers>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    #[error("Artifact {0} not found")]
    NotFound(String),
    #[error("watching the Artifact: {0}")]
    Watch(String),
    #[error("spec: {0}")]
    Spec(String),
    #[error("pull credentials: {0}")]
    Credentials(String),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("gave up after {0:?}: {1}")]
    Timeout(Duration, String),
}

/// Shared with the HTTP endpoints.
#[derive(Default)]
pub(crate) struct State {
    published: Mutex<Option<(String, String)>>,
    publishes: std::sync::atomic::AtomicU64,
    failures: std::sync::atomic::AtomicU64,
}

/// Until SIGTERM (or, `--one-time`, the first publish). A signal drops a
/// publish in flight: its staging is removed at the next start, and a
/// revision is switched in with one rename, so readers see no half of it.
pub(crate) async fn run(client: kube::Client, opts: Options, shutdown: Shutdown) -> Result<(), AgentError> {
    tokio::select! {
        r = watch(client, opts) => r,
        _ = shutdown.wait() => Ok(()),
    }
}

async fn watch(client: kube::Client, opts: Options) -> Result<(), AgentError> {
    let state = Arc::new(State::default());
    let v = opts.volume.clone();
    let current = tokio::task::spawn_blocking(move || v.recover().map(|_| v.current()))
        .await
        .map_err(|e| AgentError::Watch(e.to_string()))?
        .map_err(PipelineError::from)?;
    if let Some(r) = current {
        *state.published.lock().expect("poisoned") = Some((r.marker.digest.clone(), r.name.clone()));
    }
    if let Some(addr) = opts.listen {
        tokio::spawn(serve(addr, state.clone()));
    }
    let api: Api<Artifact> = Api::namespaced(client.clone(), &opts.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", opts.name));
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let what = format!("{}/{}", opts.namespace, opts.name);
    let mut waiting = String::from("no event yet");
    let deadline = tokio::time::Instant::now() + opts.timeout;
    loop {
        let next = if opts.one_time {
            match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(e) => e,
                Err(_) => return Err(AgentError::Timeout(opts.timeout, waiting)),
            }
        } else {
            events.next().await
        };
        let artifact = match next {
            Some(Ok(watcher::Event::Apply(a) | watcher::Event::InitApply(a))) => a,
            Some(Ok(watcher::Event::InitDone)) if opts.one_time && waiting == "no event yet" => {
                return Err(AgentError::NotFound(what));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) if opts.one_time => return Err(AgentError::Watch(e.to_string())),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "watching the Artifact");
                continue;
            }
            None => return Err(AgentError::Watch("the watch ended".into())),
        };
        let digest = match wanted(&artifact) {
            Wanted::Digest(d) => d,
            Wanted::Wait(why) => {
                tracing::info!(artifact = %what, %why, "waiting");
                waiting = why;
                continue;
            }
        };
        match publish(&client, &opts, &artifact, &digest, &state).await {
            Ok(()) if opts.one_time => return Ok(()),
            Ok(()) => {}
            Err(e) if opts.one_time => return Err(e),
            Err(e) => {
                state.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(artifact = %what, %digest, error = %e, "could not publish; next change or restart retries");
                waiting = e.to_string();
            }
        }
    }
}

async fn publish(
    client: &kube::Client,
    opts: &Options,
    artifact: &Artifact,
    digest: &str,
    state: &State,
) -> Result<(), AgentError> {
    // The spec as a volume target: its selection, platform and limits,
    // not clamped to what a ConfigMap holds.
    let mut spec = artifact.spec.clone();
    spec.target.config_map = None;
    spec.target.volume = Some(VolumeTarget::default());
    let plan = Plan::new(&opts.name, &spec).map_err(|e| AgentError::Spec(e.to_string()))?;
    let Target::Volume(target) = &plan.target else { return Err(AgentError::Spec("not a volume".into())) };
    let digest = crate::oci::Digest::parse(digest).map_err(|e| AgentError::Spec(e.to_string()))?;
    let content = target.content(&digest.to_string());
    let credentials = credentials(client, opts, artifact, &plan.repository).await?;
    let transport = TransportOptions { insecure: plan.insecure, ..TransportOptions::default() };
    let registry = RegistryClient::new(&plan.repository.registry, credentials, &transport)
        .map_err(|e| AgentError::Credentials(e.to_string()))?;
    let pinned = Pinned::known(plan.repository.with_digest(digest.clone()), digest.clone());
    // spec.mirrors, with the same credentials by host (the operator's
    // --mirror rules are the operator's; the agent has only the spec)
    let mut mirrors = Vec::with_capacity(plan.mirrors.len());
    for (at, insecure) in &plan.mirrors {
        let access = self::credentials(client, opts, artifact, at).await?;
        let mirror = crate::fetch::sources::Mirror::connect(at, access, *insecure)
            .map_err(|e| AgentError::Credentials(e.to_string()))?;
        mirrors.push(Arc::new(mirror));
    }
    // spec.partial, else auto: the agent has no operator flags
    let pull = PullOptions {
        selection: plan.selection.clone(),
        limits: plan.limits,
        mirrors,
        partial: plan.partial != Some(crate::api::Partial::Never),
        ..PullOptions::default()
    };
    let placed = tokio::time::timeout(
        opts.timeout,
        pipeline::into_volume(Arc::new(registry), &pinned, &plan.platform, &pull, &opts.volume, &content),
    )
    .await
    .map_err(|_| AgentError::Timeout(opts.timeout, format!("fetching {digest}")))??;
    let (revision, changed) = match &placed {
        Placed::Current(r) => (r, false),
        Placed::Restored(r) | Placed::Published(r, _) => (r, true),
    };
    *state.published.lock().expect("poisoned") = Some((digest.to_string(), revision.name.clone()));
    if changed {
        state.publishes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(%digest, revision = %revision.name, "published");
        hooks(&opts.hooks, &digest.to_string(), &revision.name, &opts.volume.dir).await;
    }
    Ok(())
}

/// The Artifact's `secretRef` (read in its namespace), else the agent's
/// own docker config, else its credential provider plugins, else anonymous.
async fn credentials(
    client: &kube::Client,
    opts: &Options,
    artifact: &Artifact,
    at: &crate::oci::Reference,
) -> Result<Credentials, AgentError> {
    let registry = at.registry.as_str();
    if let Some(r) = &artifact.spec.secret_ref {
        let api: Api<Secret> = Api::namespaced(client.clone(), &opts.namespace);
        let secret = api.get(&r.name).await.map_err(|e| AgentError::Credentials(format!("Secret {}: {e}", r.name)))?;
        let bytes = secret
            .data
            .and_then(|mut d| d.remove(".dockerconfigjson"))
            .ok_or_else(|| AgentError::Credentials(format!("Secret {} has no .dockerconfigjson", r.name)))?;
        let cfg = DockerConfig::parse(&bytes.0).map_err(|e| AgentError::Credentials(e.to_string()))?;
        return Ok(cfg.credentials_for(registry));
    }
    // `--docker-config` is the pod owner's own file, so its credential
    // helpers may run; a Secret's never do (above: `credentials_for`).
    let from_config = match opts.docker_config.as_ref().map(|c| c.source_for(registry)) {
        None => Credentials::Anonymous,
        Some(Source::Stored(c)) => c,
        Some(Source::Helper { name, server }) => {
            tokio::task::spawn_blocking(move || helper::get(&name, &server).map(helper::Stored::into_credentials))
                .await
                .map_err(|e| AgentError::Credentials(e.to_string()))?
                .map_err(|e| AgentError::Credentials(e.to_string()))?
        }
    };
    match (&opts.providers, from_config) {
        (Some(providers), Credentials::Anonymous) => {
            let image = format!("{}/{}", at.registry, at.repository);
            let account = match (&artifact.spec.service_account_name, providers.wants_account(&image)) {
                (Some(sa), true) => {
                    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> =
                        Api::namespaced(client.clone(), &opts.namespace);
                    let a =
                        api.get(sa).await.map_err(|e| AgentError::Credentials(format!("ServiceAccount {sa}: {e}")))?;
                    Some(crate::oci::provider::Account {
                        namespace: opts.namespace.clone(),
                        name: sa.clone(),
                        uid: a.metadata.uid.unwrap_or_default(),
                        annotations: a.metadata.annotations.unwrap_or_default(),
                    })
                }
                _ => None,
            };
            let tokens = crate::controller::credentials::TokenRequests(client.clone());
            providers
                .credentials(&image, account.as_ref(), &tokens)
                .await
                .map_err(|e| AgentError::Credentials(e.to_string()))
        }
        (_, c) => Ok(c),
    }
}

/// Hooks run after the switch; a failing hook is logged, never retried
/// (the files are in place either way).
async fn hooks(h: &Hooks, digest: &str, revision: &str, dir: &std::path::Path) {
    if let Some((program, args)) = h.exec.split_first() {
        let run = tokio::process::Command::new(program)
            .args(args)
            .env("OCISYNC_DIGEST", digest)
            .env("OCISYNC_REVISION", revision)
            .env("OCISYNC_DIR", dir)
            .kill_on_drop(true)
            .status();
        match tokio::time::timeout(Duration::from_secs(60), run).await {
            Ok(Ok(s)) if s.success() => {}
            Ok(Ok(s)) => tracing::warn!(status = %s, "the change hook failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the change hook did not start"),
            Err(_) => tracing::warn!("the change hook ran over 60 s and was killed"),
        }
    }
    if let Some(url) = &h.url {
        let body = serde_json::json!({"digest": digest, "revision": revision, "dir": dir});
        let sent = reqwest::Client::new()
            .post(url)
            .timeout(Duration::from_secs(10))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent.map(|r| r.status()) {
            Ok(s) if s.is_success() => {}
            Ok(s) => tracing::warn!(%url, status = %s, "the change URL refused"),
            Err(e) => tracing::warn!(%url, error = %e, "the change URL is unreachable"),
        }
    }
}

async fn serve(addr: SocketAddr, state: Arc<State>) {
    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let ready = {
        let s = state.clone();
        move || async move {
            match s.published.lock().expect("poisoned").clone() {
                Some((d, _)) => (StatusCode::OK, d),
                None => (StatusCode::SERVICE_UNAVAILABLE, "nothing published yet".to_string()),
            }
        }
    };
    let metrics = move || async move {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        out.push_str("# TYPE ocisync_agent_published gauge\n");
        if let Some((d, r)) = state.published.lock().expect("poisoned").clone() {
            out.push_str(&format!("ocisync_agent_published{{digest=\"{d}\",revision=\"{r}\"}} 1\n"));
        }
        out.push_str("# TYPE ocisync_agent_publishes counter\n");
        out.push_str(&format!("ocisync_agent_publishes_total {}\n", state.publishes.load(Relaxed)));
        out.push_str("# TYPE ocisync_agent_failures counter\n");
        out.push_str(&format!("ocisync_agent_failures_total {}\n# EOF\n", state.failures.load(Relaxed)));
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out)
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics));
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            let _ = axum::serve(l, app).await;
        }
        Err(e) => tracing::error!(%addr, error = %e, "cannot listen"),
    }
}
