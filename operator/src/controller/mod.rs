//! The Artifact controller: watches Artifacts, the ConfigMaps they own, and
//! the Secrets and ServiceAccounts they name, and reconciles each Artifact
//! (see `reconcile`) into its target.
//!
//! The triggers are built by hand around kube-runtime's `applier` so that
//! each watch says exactly which changes reconcile: a new generation or
//! `requested-at` of an Artifact (not our own status writes, which would
//! defeat backoff), any change of a ConfigMap it owns, and a change of a
//! Secret or ServiceAccount only for the Artifacts that read it.

pub(crate) mod credentials;
mod decide;
mod events;
mod http;
pub(crate) mod metrics;
mod notify;
mod own_writes;
pub(crate) mod plan;
pub(crate) mod policies;
mod reconcile;
mod registries;
mod resolutions;
mod roots;
pub(crate) mod scope;
mod slim;
mod slots;
mod triggers;
pub(crate) mod trust;
mod webhook;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, ReconcileRequest};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Api, ResourceExt};

use crate::api::{Artifact, ClusterArtifactPolicy, REQUESTED_AT_ANNOTATION};
use crate::publish::{Targets, configmap};
use crate::shutdown::Shutdown;
use credentials::CredentialSource;
use decide::{Failure, Inputs};

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader lease; exiting so that a restart rejoins as a follower")]
    LostLeadership,
    #[error("the blob cache: {0}")]
    BlobCache(std::io::Error),
}

/// What the controller remembers of one Artifact between reconciles.
#[derive(Default)]
struct Memory {
    /// Consecutive failures, for backoff.
    failures: u32,
    /// The inputs a sync stalled on, and how: not fetched again until one
    /// of them changes.
    stalled: Option<(Inputs, Failure)>,
}

pub(crate) struct Context {
    client: kube::Client,
    registries: registries::Registries,
    credentials: CredentialSource,
    /// Cluster policies and namespace labels: what signatures are required.
    trust: trust::TrustSource,
    targets: Targets,
    events: events::Events,
    /// Where fetches are staged before publishing, one directory per Artifact.
    work_dir: PathBuf,
    /// Layers shared by the syncs of this process.
    blob_cache: Option<Arc<crate::fetch::cache::BlobCache>>,
    /// No sync runs longer than this, whatever its spec says.
    max_timeout: Duration,
    /// `--partial`: for Artifacts without `spec.partial`.
    partial: crate::api::Partial,
    /// Syncs in flight per registry host.
    slots: slots::Slots,
    /// By Artifact uid; an entry goes when its Artifact is deleted.
    memory: Mutex<HashMap<String, Memory>>,
    metrics: Arc<metrics::Metrics>,
    /// Tag → digest and repository → tags, shared by Artifacts following the same ones.
    digests: resolutions::Shared<crate::oci::Digest>,
    tag_lists: resolutions::Shared<Arc<Vec<String>>>,
    /// Status writes the watch has not delivered yet.
    written: own_writes::OwnWrites,
    /// `--mirror`: the mirrors of Artifacts that name none.
    mirror_rules: Vec<crate::fetch::sources::MirrorRule>,
}

impl Context {
    fn stalled_on(&self, uid: &str) -> Option<(Inputs, Failure)> {
        self.memory.lock().expect("memory poisoned").get(uid).and_then(|m| m.stalled.clone())
    }

    /// Record how a sync ended; returns the consecutive failures so far.
    fn remember(&self, uid: &str, failure: Option<&Failure>, inputs: Option<Inputs>) -> u32 {
        self.update(uid, |m| match failure {
            None => None,
            Some(f) => {
                let mut m = m.unwrap_or_default();
                m.failures = m.failures.saturating_add(1);
                m.stalled = match inputs {
                    Some(i) if decide::remember(f) => Some((i, f.clone())),
                    _ => None,
                };
                Some(m)
            }
        })
    }

    /// A reconcile that failed to write its status; returns the failures so far.
    fn count_failure(&self, uid: &str) -> u32 {
        self.update(uid, |m| {
            let mut m = m.unwrap_or_default();
            m.failures = m.failures.saturating_add(1);
            Some(m)
        })
    }

    /// Replace what is remembered of `uid` (`None`: nothing) and keep the
    /// gauge of failing Artifacts in step; returns the failures so far.
    fn update(&self, uid: &str, f: impl FnOnce(Option<Memory>) -> Option<Memory>) -> u32 {
        let mut memory = self.memory.lock().expect("memory poisoned");
        let next = f(memory.remove(uid));
        let failures = next.as_ref().map_or(0, |m| m.failures);
        if let Some(m) = next {
            memory.insert(uid.to_string(), m);
        }
        self.metrics.set_failing(memory.len());
        failures
    }

    fn forget(&self, uid: &str) {
        self.update(uid, |_| None);
        self.written.forget(uid);
    }
}

pub(crate) struct Options {
    pub(crate) work_dir: PathBuf,
    /// The shared volume `spec.target.volume` writes into, if any.
    pub(crate) volumes: Option<crate::publish::volume::target::Root>,
    /// Bytes of layers kept for other syncs of the same digest; 0: none.
    pub(crate) blob_cache_bytes: u64,
    /// The ceiling on any Artifact's `spec.timeout`.
    pub(crate) max_timeout: Duration,
    /// Whether Artifacts without `spec.partial` may read layers by range.
    pub(crate) partial: crate::api::Partial,
    /// Reconciles running at once.
    pub(crate) concurrency: u16,
    /// Syncs in flight against one registry host at once.
    pub(crate) per_registry: u16,
    /// Hold this Lease (namespace, name) while reconciling; `None` runs
    /// without leader election (one replica only).
    pub(crate) lease: Option<(String, String)>,
    /// This replica's name: in the Lease, and as the Events' reporter.
    pub(crate) identity: String,
    pub(crate) lease_duration: Duration,
    /// Serve /healthz, /readyz and /metrics here.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// Only Artifacts with these labels (a label selector), so that several
    /// deployments can split the Artifacts between them.
    pub(crate) label_selector: Option<String>,
    /// The whole cluster, or only these namespaces.
    pub(crate) scope: scope::Scope,
    /// Mirrors for Artifacts without `spec.mirrors`, by origin registry.
    pub(crate) mirrors: Vec<crate::fetch::sources::MirrorRule>,
    /// Serve `POST /v1/notify` here, guarded by this bearer token.
    pub(crate) webhook: Option<(std::net::SocketAddr, Vec<u8>)>,
    /// Kubelet credential provider plugins, for Artifacts without a pull secret.
    pub(crate) providers: Option<Arc<crate::oci::provider::Providers>>,
}

fn error_policy(artifact: Arc<Artifact>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(artifact = %artifact.name_any(), %error, "reconcile failed");
    let n = ctx.count_failure(&artifact.uid().unwrap_or_default());
    Action::requeue(decide::backoff(n))
}

/// Run the controller until SIGTERM/SIGINT. With a lease, wait to become
/// the leader first, and stop (with an error) when the lease is lost: only
/// the leader ever writes.
pub(crate) async fn run(client: kube::Client, opts: Options, shutdown: Shutdown) -> Result<(), Error> {
    let metrics = Arc::new(metrics::Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = opts.metrics_addr {
        let probe = http::Probe { metrics: metrics.clone(), ready: ready.clone() };
        tokio::spawn(async move {
            if let Err(e) = http::serve(addr, probe).await {
                tracing::error!(%addr, error = %e, "the probe and metrics listener failed");
            }
        });
    }
    // Notifications are taken on every replica; only the leader acts on
    // them (a follower answers 503).
    let (notice_tx, notices) = tokio::sync::mpsc::channel(1024);
    let leading = match opts.webhook.clone() {
        Some((addr, token)) => {
            let hook = webhook::Webhook::new(token, notice_tx, metrics.clone());
            let leading = hook.leading.clone();
            tokio::spawn(async move {
                if let Err(e) = webhook::serve(addr, hook).await {
                    tracing::error!(%addr, error = %e, "the webhook listener failed");
                }
            });
            leading
        }
        None => Arc::default(),
    };
    let Some((namespace, name)) = opts.lease.clone() else {
        ready.store(true, Ordering::Relaxed);
        leading.store(true, Ordering::Relaxed);
        return run_controller(client, opts, metrics, notices, shutdown.clone().wait(), async {
            shutdown.drained().await;
            false
        })
        .await
        .map(|_| ());
    };
    let secs = opts.lease_duration.as_secs().max(3);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), name.as_str())
        .with_namespace(namespace.as_str())
        .with_identity(opts.identity.as_str())
        .with_duration(secs)
        .with_grace((secs / 3).max(1))
        .build()
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    // A follower is healthy and ready: it is there to take over.
    ready.store(true, Ordering::Relaxed);
    tracing::info!(lease = %format!("{namespace}/{name}"), identity = %opts.identity, "waiting to become the leader");
    tokio::select! {
        r = leader.wait_for(|held| *held) => { r.map_err(|_| Error::LostLeadership)?; }
        _ = shutdown.clone().wait() => return Ok(()),
    }
    tracing::info!(identity = %opts.identity, "became the leader");
    // A signal stops gracefully: in-flight syncs finish (for DRAIN at
    // most), then the Lease is released. A lost Lease stops at once:
    // another replica may already be writing, so in-flight syncs are
    // dropped where they stand.
    let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel::<()>();
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let drained = shutdown.clone().drained();
    tokio::spawn(async move {
        tokio::select! {
            _ = leader.wait_for(|held| !*held) => { let _ = lost_tx.send(()); }
            _ = shutdown.wait() => { let _ = graceful_tx.send(()); }
        }
        // closing the channel ends the lease task, which releases the lease
        drop(leader);
    });
    let on = |rx: tokio::sync::oneshot::Receiver<()>| async move {
        if rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    leading.store(true, Ordering::Relaxed);
    let abort = async {
        tokio::select! {
            _ = on(lost_rx) => true,
            _ = drained => false,
        }
    };
    if run_controller(client, opts, metrics, notices, on(graceful_rx), abort).await? {
        return Err(Error::LostLeadership);
    }
    if let Ok(Ok(manager)) = lease_task.await {
        let _ = manager.release().await;
    }
    Ok(())
}

/// Reconcile on a new generation or a new `requested-at`; a status write
/// (ours) changes neither.
fn artifact_changed(a: &Artifact) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (a.metadata.generation, a.annotations().get(REQUESTED_AT_ANNOTATION)).hash(&mut h);
    Some(h.finish())
}

type Requests = std::pin::Pin<Box<dyn Stream<Item = Result<ReconcileRequest<Artifact>, watcher::Error>> + Send>>;

/// `stop` ends the queue and lets in-flight reconciles finish; `abort`
/// drops them where they stand and its value is returned (`false` when
/// `stop` ended it).
async fn run_controller(
    client: kube::Client,
    opts: Options,
    metrics: Arc<metrics::Metrics>,
    notices: tokio::sync::mpsc::Receiver<notify::Notice>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    abort: impl std::future::Future<Output = bool>,
) -> Result<bool, Error> {
    sweep(&opts.work_dir).await;
    let managed = format!("{}={}", configmap::MANAGED_BY.0, configmap::MANAGED_BY.1);
    let (config_maps, cm_writer) = reflector::store::<PartialObjectMeta<ConfigMap>>();
    let (secrets, secret_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let (accounts, account_writer) = reflector::store::<ServiceAccount>();
    let (artifacts, artifact_writer) = reflector::store::<Artifact>();
    let (policies, policy_writer) = reflector::store::<ClusterArtifactPolicy>();
    let (namespaces, namespace_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let ctx = Arc::new(Context {
        client: client.clone(),
        registries: registries::Registries::observed(crate::oci::client::Observer(metrics.clone())),
        credentials: CredentialSource::new(client.clone(), secrets.clone(), accounts.clone(), opts.providers.clone()),
        trust: trust::TrustSource {
            policies: policies.clone(),
            namespaces: namespaces.clone(),
            roots: roots::Roots::new(client.clone()),
        },
        targets: Targets::new(client.clone(), config_maps.clone(), opts.volumes.clone()),
        events: events::Events::new(client.clone(), "ocisync", &opts.identity),
        blob_cache: match opts.blob_cache_bytes {
            0 => None,
            n => Some(Arc::new(
                crate::fetch::cache::BlobCache::new(opts.work_dir.join(".blob-cache"), n).map_err(Error::BlobCache)?,
            )),
        },
        work_dir: opts.work_dir,
        max_timeout: opts.max_timeout,
        partial: opts.partial,
        slots: slots::Slots::new(usize::from(opts.per_registry)),
        memory: Mutex::default(),
        metrics,
        digests: resolutions::Shared::default(),
        tag_lists: resolutions::Shared::default(),
        mirror_rules: opts.mirrors.clone(),
        written: own_writes::OwnWrites::default(),
    });

    let mut selected = watcher::Config::default();
    if let Some(s) = &opts.label_selector {
        selected = selected.labels(s);
    }
    let forget = ctx.clone();
    let own: Requests = Box::pin(controller::trigger_self(
        opts.scope
            .watch(&client, selected, artifacts.clone())
            .modify(slim::artifact)
            .reflect(artifact_writer)
            .inspect_ok(move |e| match e {
                watcher::Event::Delete(a) => forget.forget(&a.uid().unwrap_or_default()),
                watcher::Event::Apply(a) | watcher::Event::InitApply(a) => forget.written.delivered(a),
                _ => {}
            })
            .touched_objects()
            .predicate_filter(artifact_changed, PredicateConfig::default()),
        (),
    ));
    // Metadata only: ownership and the digest annotation are all a
    // reconcile needs to know, and ConfigMaps can be large.
    let owned: Requests = Box::pin(controller::trigger_owners::<Artifact, _>(
        opts.scope
            .watch::<PartialObjectMeta<ConfigMap>>(
                &client,
                watcher::Config::default().labels(&managed),
                config_maps.clone(),
            )
            .modify(slim::config_map)
            .reflect(cm_writer)
            .touched_objects(),
        (),
        (),
    ));
    let (store, creds) = (artifacts.clone(), ctx.clone());
    let account_store = accounts.clone();
    let policy_ctx = ctx.clone();
    // Metadata only: a Secret's data has no business in the operator's
    // memory until an Artifact needs it.
    let secret_events: Requests = Box::pin(controller::trigger_with(
        opts.scope
            .watch::<PartialObjectMeta<Secret>>(&client, watcher::Config::default(), secrets.clone())
            .modify(slim::secret)
            .reflect(secret_writer)
            .inspect_ok(move |e| {
                if let watcher::Event::Delete(s) = e {
                    creds.credentials.forget(&s.namespace().unwrap_or_default(), &s.name_any());
                }
            })
            .touched_objects(),
        move |s| {
            let namespace = s.namespace().unwrap_or_default();
            let state = store.state();
            let account = |n: &str| account_store.get(&ObjectRef::new(n).within(&namespace));
            let name = s.name_any();
            let mut users: Vec<_> = triggers::secret_users(state.iter().map(|a| &**a), account, &namespace, &name)
                .into_iter()
                .map(ObjectRef::from_obj)
                .collect();
            // and whatever a policy with keys in this Secret covers
            if policy_ctx.trust.policies.state().iter().any(|p| triggers::policy_reads(&p.spec, &namespace, &name)) {
                users.extend(
                    state
                        .iter()
                        .filter(|a| {
                            policy_ctx.trust.covering(a).iter().any(|(_, p)| {
                                p.as_ref().is_ok_and(|p| triggers::policy_reads(&p.spec, &namespace, &name))
                            })
                        })
                        .map(|a| ObjectRef::from_obj(&**a)),
                );
            }
            users
        },
    ));
    let store = artifacts.clone();
    let plugin_keys = opts.providers.as_ref().map(|p| p.annotation_keys()).unwrap_or_default();
    let account_events: Requests = Box::pin(controller::trigger_with(
        opts.scope
            .watch(&client, watcher::Config::default(), accounts.clone())
            .modify(move |sa| slim::account(sa, &plugin_keys))
            .reflect(account_writer)
            .touched_objects(),
        move |sa| {
            let state = store.state();
            triggers::account_users(state.iter().map(|a| &**a), &sa.namespace().unwrap_or_default(), &sa.name_any())
                .into_iter()
                .map(ObjectRef::from_obj)
                .collect::<Vec<_>>()
        },
    ));
    // A policy reconciles the Artifacts it covers (its old spec's, on delete).
    let (store, policy_ctx) = (artifacts.clone(), ctx.clone());
    let policy_events: Requests = Box::pin(controller::trigger_with(
        watcher(Api::<ClusterArtifactPolicy>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(slim::policy)
            .reflect(policy_writer)
            .touched_objects(),
        move |p| {
            store
                .state()
                .iter()
                .filter(|a| policy_ctx.trust.covers(&p.spec, a) != Ok(false))
                .map(|a| ObjectRef::from_obj(&**a))
                .collect::<Vec<_>>()
        },
    ));
    // Namespace labels decide which policies cover an Artifact: a change of
    // labels (not any other change, nor a re-read in namespaced scope)
    // reconciles the namespace's Artifacts, when there are policies at all.
    let (store, policy_store) = (artifacts.clone(), policies.clone());
    let namespace_events: Requests = Box::pin(controller::trigger_with(
        scope::namespaces(&opts.scope, &client, Duration::from_secs(30))
            .modify(slim::namespace)
            .reflect(namespace_writer)
            .touched_objects()
            .predicate_filter(predicates::labels, PredicateConfig::default()),
        move |ns| {
            if policy_store.is_empty() {
                return Vec::new();
            }
            let name = ns.name_any();
            store
                .state()
                .iter()
                .filter(|a| a.namespace().as_deref() == Some(name.as_str()))
                .map(|a| ObjectRef::from_obj(&**a))
                .collect::<Vec<_>>()
        },
    ));
    // A registry's push notification: the repository's tags are resolved
    // afresh (once per tag, shared), by every Artifact of that repository.
    let (store, hook_ctx) = (artifacts.clone(), ctx.clone());
    let pushed: Requests =
        Box::pin(futures::stream::unfold(notices, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) }).flat_map(
            move |notice| {
                let of_repository = |key: &str| resolutions::of_repository(key, &notice.repository);
                hook_ctx.digests.expire(of_repository);
                hook_ctx.tag_lists.expire(of_repository);
                let concerned: Vec<_> = store
                    .state()
                    .iter()
                    .filter(|a| notify::concerns(&notice, &a.spec.url))
                    .map(|a| Ok(ReconcileRequest::from(ObjectRef::from_obj(&**a))))
                    .collect();
                futures::stream::iter(concerned)
            },
        ));
    // When `stop` fires the queue ends; the applier finishes what is in
    // flight and returns.
    let queue = futures::stream::select_all([
        own,
        owned,
        secret_events,
        account_events,
        policy_events,
        namespace_events,
        pushed,
    ])
    .take_until(stop);
    let config = controller::Config::default().concurrency(opts.concurrency);
    let reconciler = |a, c| Box::pin(reconcile::reconcile(a, c));
    let mut applied = pin!(controller::applier(reconciler, error_policy, ctx, artifacts, queue, config));
    let drive = async {
        while let Some(r) = applied.next().await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        }
    };
    // The reconciles run inside the applier's stream: dropping it drops them.
    tokio::select! {
        biased;
        lost = abort => {
            if lost {
                tracing::warn!("lost the leader lease: in-flight syncs dropped");
            } else {
                tracing::warn!(drain = ?crate::shutdown::DRAIN, "in-flight syncs dropped: they outlasted the drain after SIGTERM");
            }
            Ok(lost)
        }
        _ = drive => Ok(false),
    }
}

/// Nothing in the work dir survives a restart: a crash or a kill may have
/// left staging trees of any size behind.
async fn sweep(dir: &std::path::Path) {
    let dir = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        std::fs::create_dir_all(&dir)
    })
    .await;
}
