//! The Artifact controller: watches Artifacts, the ConfigMaps they own, and
//! the Secrets and ServiceAccounts they name, and reconciles each Artifact
//! (see `reconcile`) into its ConfigMap.

pub mod conditions;
pub mod credentials;
pub mod http;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod registries;
pub mod resolutions;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::api::Artifact;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader lease; exiting so that a restart rejoins as a follower")]
    LostLeadership,
}

pub struct Context {
    pub client: kube::Client,
    pub registries: registries::Registries,
    pub recorder: Recorder,
    /// Metadata of the ConfigMaps ocisync manages, from a watch: checking
    /// that a target is current costs no request, and holds no content.
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// Where fetches are staged before publishing.
    pub work_dir: PathBuf,
    /// Consecutive failures per Artifact uid, for backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    pub metrics: Arc<metrics::Metrics>,
    /// Tag → digest and repository → tags, shared by Artifacts following the same ones.
    pub digests: resolutions::Shared<crate::oci::Digest>,
    pub tag_lists: resolutions::Shared<Arc<Vec<String>>>,
}

pub struct Options {
    pub work_dir: PathBuf,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// Hold this Lease (namespace, name) while reconciling; `None` runs
    /// without leader election (one replica only).
    pub lease: Option<(String, String)>,
    /// This replica's name in the Lease.
    pub identity: String,
    pub lease_duration: Duration,
    /// Serve /healthz, /readyz and /metrics here.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// 5 s, 10 s, 20 s … up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(5).saturating_mul(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(300))
}

fn error_policy(artifact: Arc<Artifact>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(artifact = %artifact.name_any(), %error, "reconcile failed");
    let n = {
        let mut failures = ctx.failures.lock().expect("failures poisoned");
        let n = failures.entry(artifact.uid().unwrap_or_default()).or_insert(0);
        *n += 1;
        *n
    };
    Action::requeue(backoff(n))
}

/// Run the controller until SIGTERM/SIGINT. With a lease, wait to become
/// the leader first, and stop (with an error) when the lease is lost: only
/// the leader ever writes.
pub async fn run(client: kube::Client, opts: Options) -> Result<(), Error> {
    let metrics = Arc::new(metrics::Metrics::default());
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(addr) = opts.metrics_addr {
        let probe = http::Probe { metrics: metrics.clone(), ready: ready.clone() };
        tokio::spawn(async move {
            if let Err(e) = http::serve(addr, probe).await {
                tracing::error!(%addr, error = %e, "the probe and metrics listener failed");
            }
        });
    }
    let Some((namespace, name)) = opts.lease.clone() else {
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        return run_controller(client, opts, metrics, shutdown_signal()).await;
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
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(lease = %format!("{namespace}/{name}"), identity = %opts.identity, "waiting to become the leader");
    tokio::select! {
        r = leader.wait_for(|held| *held) => { r.map_err(|_| Error::LostLeadership)?; }
        _ = shutdown_signal() => return Ok(()),
    }
    tracing::info!(identity = %opts.identity, "became the leader");
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = lost.clone();
    let stop = async move {
        tokio::select! {
            _ = leader.wait_for(|held| !*held) => flag.store(true, std::sync::atomic::Ordering::SeqCst),
            _ = shutdown_signal() => {}
        }
        // closing the channel ends the lease task, which releases the lease
        drop(leader);
    };
    run_controller(client, opts, metrics, stop).await?;
    if let Ok(Ok(manager)) = lease_task.await {
        let _ = manager.release().await;
    }
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::LostLeadership);
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn run_controller(
    client: kube::Client,
    opts: Options,
    metrics: Arc<metrics::Metrics>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    std::fs::create_dir_all(&opts.work_dir).ok();
    let managed = format!("{}={}", reconcile::MANAGED_BY.0, reconcile::MANAGED_BY.1);
    let (config_maps, writer) = reflector::store();
    let cm_meta =
        watcher(Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()), watcher::Config::default().labels(&managed));
    let cm_store = tokio::spawn(reflector::reflector(writer, cm_meta.default_backoff()).for_each(|_| async {}));
    let controller = Controller::new(Api::<Artifact>::all(client.clone()), watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(opts.concurrency));
    let artifacts = controller.store();
    let for_secret = artifacts.clone();
    // Metadata only: a change of a Secret must trigger a reconcile, but its
    // data has no business in the operator's memory.
    let secrets = Api::<PartialObjectMeta<Secret>>::all(client.clone());
    let accounts = Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone());
    let cms = Api::<ConfigMap>::all(client.clone());
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: "ocisync".into(), instance: std::env::var("POD_NAME").ok() },
    );
    let ctx = Arc::new(Context {
        client,
        registries: registries::Registries::observed(crate::oci::client::Observer(metrics.clone())),
        recorder,
        config_maps,
        work_dir: opts.work_dir,
        failures: Mutex::default(),
        metrics,
        digests: resolutions::Shared::default(),
        tag_lists: resolutions::Shared::default(),
    });
    controller
        .owns(cms, watcher::Config::default().labels(&managed))
        .watches(secrets, watcher::Config::default(), move |s| {
            referencing(&for_secret, &s.namespace().unwrap_or_default(), |a| {
                let name = s.name_any();
                a.spec.secret_ref.as_ref().is_some_and(|r| r.name == name)
                || a.spec.cert_secret_ref.as_ref().is_some_and(|r| r.name == name)
                // the Secret may be one of its ServiceAccount's pull secrets
                || a.spec.service_account_name.is_some()
            })
        })
        .watches(accounts, watcher::Config::default(), move |sa| {
            referencing(&artifacts, &sa.namespace().unwrap_or_default(), |a| {
                a.spec.service_account_name.as_deref() == Some(sa.name_any().as_str())
            })
        })
        .graceful_shutdown_on(stop)
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    cm_store.abort();
    Ok(())
}

/// The Artifacts in `namespace` for which `refers` holds.
fn referencing(
    store: &Store<Artifact>,
    namespace: &str,
    refers: impl Fn(&Artifact) -> bool,
) -> Vec<ObjectRef<Artifact>> {
    store
        .state()
        .into_iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace) && refers(a))
        .map(|a| ObjectRef::from_obj(&*a))
        .collect()
}
