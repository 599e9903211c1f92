//! One reconcile of one Artifact, as ordered steps that each own a
//! condition: resolve → (decide) → verify → check the target → fetch →
//! publish → status. When the digest, the spec and the target are unchanged, a
//! reconcile is at most one HEAD and no writes. On any failure the last
//! good content stays exactly as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::decide::{self, Decision, Failure, Inputs, Observed};
use super::events::Type;
use super::plan::Plan;
use super::registries::Handle;
use super::resolutions;
use super::{Context, Error};
use crate::api::{Artifact, REQUESTED_AT_ANNOTATION};
use crate::fetch::sources::{Mirror, mirrors_for};
use crate::fetch::{FetchError, PullOptions};
use crate::oci::{Digest, Reference};
use crate::pipeline::{self, PipelineError};
use crate::publish::{Owner, Published};
use crate::resolve::{self, Pinned, ResolveError, Version};
use crate::status::conditions::{self, Outcome, Step};
use crate::status::{Reason, Served, next_status, transfer_status, verification_status};
use crate::unpack::UnpackError;
use crate::unpack::limits::SELECTED_BYTES;
use crate::verify;

const FIELD_MANAGER: &str = "ocisync";
/// How soon a sync that found its registry's slots taken comes back:
/// soon (a busy but healthy registry frees a slot within a sync's time),
/// spread so that the waiting ones do not all come back at once.
fn busy_retry(uid: &str) -> Duration {
    let nanos = u64::from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos(),
    );
    Duration::from_millis(100 + (seed(uid) ^ nanos) % 400)
}

/// Where a reconcile is, so that a timeout can say which step it cut
/// short, and what it had decided on, so that a stall can be remembered.
#[derive(Default)]
struct Progress {
    step: AtomicU8,
    passed: AtomicU8,
    inputs: Mutex<Option<Inputs>>,
}

impl Progress {
    fn enter(&self, step: Step) {
        self.step.store(step as u8, Ordering::Relaxed);
    }

    fn pass(&self, step: Step) {
        self.passed.fetch_or(1 << step as u8, Ordering::Relaxed);
    }

    fn step(&self) -> Step {
        let n = self.step.load(Ordering::Relaxed);
        Step::ALL.into_iter().find(|s| *s as u8 == n).unwrap_or(Step::Resolve)
    }

    fn passed(&self) -> Vec<Step> {
        let bits = self.passed.load(Ordering::Relaxed);
        Step::ALL.into_iter().filter(|s| bits & (1 << *s as u8) != 0).collect()
    }
}

pub(super) async fn reconcile(artifact: Arc<Artifact>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let artifact = ctx.written.catch_up(artifact);
    if artifact.spec.suspend || ctx.trust.terminating(&artifact.namespace().unwrap_or_default()) {
        return Ok(Action::await_change());
    }
    let name = artifact.name_any();
    let uid = artifact.uid().unwrap_or_default();
    let plan = match Plan::new(&name, &artifact.spec) {
        Ok(p) => p,
        Err(e) => {
            ctx.metrics.reconciled(Reason::InvalidSpec, started.elapsed());
            report(&artifact, &ctx, Outcome::InvalidSpec { message: e.to_string() }, None).await?;
            return Ok(Action::await_change());
        }
    };
    // Every slot of this registry busy: come back soon without holding a
    // reconcile slot (nor writing anything: nothing was learnt).
    let host = plan.repository.registry.clone();
    let Some(slot) = ctx.slots.try_take(&host) else {
        return Ok(Action::requeue(busy_retry(&uid)));
    };
    let requested = artifact.annotations().get(REQUESTED_AT_ANNOTATION);
    let handled = artifact.status.as_ref().and_then(|s| s.last_handled_requested_at.as_ref());
    let forced = requested.is_some() && requested != handled;
    let progress = Progress::default();
    let work = ctx.work_dir.join(if uid.is_empty() { name.clone() } else { uid.clone() });
    let timeout = plan.timeout.min(ctx.max_timeout);
    let result = match tokio::time::timeout(timeout, sync(&artifact, &ctx, &plan, forced, &progress, &work)).await {
        Ok(r) => r,
        Err(_) => {
            let step = progress.step();
            let message = format!("{} did not finish within the timeout ({timeout:?})", step.doing());
            Err(Failure { step, reason: Reason::Timeout, message })
        }
    };
    if result.is_ok() {
        ctx.slots.finished(&host, started.elapsed());
    }
    drop(slot);
    // Whatever happened, nothing of this attempt stays on disk; a timeout
    // may have left a staging tree behind.
    remove_dir(work).await;

    let failures = ctx.remember(&uid, result.as_ref().err(), progress.inputs.lock().expect("poisoned").take());
    let reason = result.as_ref().map_or_else(|f| f.reason, |_| Reason::Synced);
    ctx.metrics.reconciled(reason, started.elapsed());
    let requeue =
        decide::requeue(result.as_ref().map(|_| ()).map_err(|f| f.reason), plan.interval, failures, seed(&uid));
    match result {
        Ok(served) => {
            let message = served.describe(&artifact.status.clone().unwrap_or_default());
            let verified = served.verification.is_some();
            report(&artifact, &ctx, Outcome::Synced { message, verified }, Some(&served)).await?;
        }
        Err(f) => {
            tracing::debug!(artifact = %name, step = ?f.step, reason = %f.reason, "sync failed");
            let outcome =
                Outcome::Failed { step: f.step, reason: f.reason, message: f.message, passed: progress.passed() };
            report(&artifact, &ctx, outcome, None).await?;
        }
    }
    Ok(Action::requeue(requeue))
}

/// Spreads Artifacts created together over the interval.
fn seed(uid: &str) -> u64 {
    uid.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
}

/// `forced`: a sync was asked for; resolve afresh instead of sharing.
async fn sync(
    artifact: &Artifact,
    ctx: &Context,
    plan: &Plan,
    forced: bool,
    progress: &Progress,
    work: &Path,
) -> Result<Served, Failure> {
    let namespace = artifact.namespace().unwrap_or_default();
    let uid = artifact.uid().unwrap_or_default();

    // Resolve: credentials, the client for them, then what to serve.
    progress.enter(Step::Resolve);
    let registry = &plan.repository.registry;
    let access = ctx
        .credentials
        .load(&namespace, &artifact.spec, &plan.repository)
        .await
        .map_err(|e| Failure::new(Step::Resolve, &e))?;
    let handle =
        ctx.registries.client(registry, &access, plan.insecure).map_err(|e| Failure::new(Step::Resolve, &e))?;
    let followed = match &plan.follow {
        None => None,
        Some(v) => Some(follow(ctx, &handle, plan, v, forced).await),
    };
    let chosen = resolve::choose(plan.pin.as_ref(), followed).map_err(|e| match e {
        Some(e) => Failure::new(Step::Resolve, &e),
        None => Failure { step: Step::Resolve, reason: Reason::InvalidSpec, message: "nothing to follow".into() },
    })?;
    progress.pass(Step::Resolve);

    // Decide: is there anything to do at all?
    let owner = Owner {
        namespace: namespace.clone(),
        uid: uid.clone(),
        reference: artifact.controller_owner_ref(&()).ok_or_else(|| Failure {
            step: Step::Publish,
            reason: Reason::Internal,
            message: "the Artifact has no uid yet".into(),
        })?,
    };
    // What signatures are required (the spec's and every covering
    // policy's), fingerprinted: a rotated key is a new input.
    progress.enter(Step::Verify);
    let requirements =
        ctx.trust.requirements(artifact, &ctx.credentials).await.map_err(|e| Failure::new(Step::Verify, &e))?;
    let trust = verify::fingerprint(&requirements);
    let inputs = Inputs { digest: chosen.digest.clone(), generation: artifact.metadata.generation, trust };
    *progress.inputs.lock().expect("poisoned") = Some(inputs.clone());
    let status = artifact.status.clone().unwrap_or_default();
    let stalled = ctx.stalled_on(&uid);
    let verified = status.verification.as_ref().filter(|v| v.digest == chosen.digest.to_string());
    let seen = Observed {
        last_synced_digest: status.last_synced_digest.as_deref(),
        observed_generation: status.observed_generation,
        ready: conditions::is_ready(&status.conditions),
        target_current: ctx.targets.is_current(&plan.target, &owner, &chosen.digest),
        trust: verified.map(|v| v.trust.as_str()),
        stalled: stalled.as_ref(),
    };
    let served = |published: Option<Published>, verification, sources, transfer| Served {
        tag: chosen.tag.clone(),
        digest: chosen.digest.clone(),
        drift: chosen.drift.clone(),
        volume: published.as_ref().and_then(|p| p.volume.clone()),
        published: published.map(|p| p.files),
        verification,
        sources,
        transfer,
    };
    match decide::decide(&inputs, &seen) {
        Decision::UpToDate => return Ok(served(None, verified.cloned(), Vec::new(), None)),
        Decision::StillStalled(f) => return Err(f),
        Decision::Sync => {}
    }

    // Verify: nothing is fetched or written for a digest that fails.
    let pinned = Pinned::known(plan.repository.with_digest(chosen.digest.clone()), chosen.digest.clone());
    let verification = match &inputs.trust {
        None => None,
        Some(trust) => {
            let evidence = pipeline::verify(&handle.client, &pinned, &requirements)
                .await
                .map_err(|e| Failure::new(Step::Verify, &e))?;
            progress.pass(Step::Verify);
            Some(verification_status(&chosen.digest, trust, &evidence))
        }
    };

    // A target that cannot be written is found before anything is fetched.
    progress.enter(Step::Publish);
    ctx.targets.check(&plan.target, &owner).await.map_err(|e| Failure::new(Step::Publish, &e))?;

    // A volume that kept a revision of this content switches back to it.
    if let Some(p) =
        ctx.targets.restore(&plan.target, &owner, &chosen.digest).await.map_err(|e| Failure::new(Step::Publish, &e))?
    {
        return Ok(served(Some(p), verification, Vec::new(), None));
    }

    // Fetch into this Artifact's own work dir (or beside the volume's
    // revisions), then publish from it.
    progress.enter(Step::Fetch);
    remove_dir(work.to_path_buf()).await;
    // What the target holds now: files the new version has unchanged are
    // taken from it instead of fetched (delta sync, ranged reads only).
    let previous = match plan.partial.unwrap_or(ctx.partial) {
        crate::api::Partial::Auto => {
            ctx.targets.previous(&plan.target, &owner).await.map_err(|e| Failure::new(Step::Fetch, &e))?
        }
        crate::api::Partial::Never => None,
    };
    let opts = PullOptions {
        previous,
        selection: plan.selection.clone(),
        limits: plan.limits,
        cache: ctx.blob_cache.clone(),
        mirrors: mirrors(ctx, plan, &artifact.spec, &namespace).await?,
        partial: plan.partial.unwrap_or(ctx.partial) == crate::api::Partial::Auto,
        ..PullOptions::default()
    };
    let out = ctx.targets.fetch_dir(&plan.target, &owner, work).map_err(|e| Failure::new(Step::Publish, &e))?;
    let pulled = pipeline::run(handle.client.clone(), &pinned, &plan.platform, &opts, &out)
        .await
        .map_err(|e| fetch_failure(plan, &e))?;
    progress.pass(Step::Fetch);

    progress.enter(Step::Publish);
    let published = ctx
        .targets
        .publish(&plan.target, &owner, &chosen.digest, &out, &pulled.report.files)
        .await
        .map_err(|e| Failure::new(Step::Publish, &e))?;
    let files = published.files.count;
    tracing::info!(artifact = %artifact.name_any(), %namespace, digest = %chosen.digest, files, "published");
    for s in &pulled.served {
        ctx.metrics.served(s.role == "mirror", s.bytes);
    }
    let transfer = transfer_status(&pulled.report);
    Ok(served(Some(published), verification, pulled.served, Some(transfer)))
}

/// The registries that may serve this sync's content by digest: the spec's
/// mirrors, else the operator's for the origin's registry. Each with the
/// Artifact's own credentials for its host.
async fn mirrors(
    ctx: &Context,
    plan: &Plan,
    spec: &crate::api::ArtifactSpec,
    namespace: &str,
) -> Result<Vec<Arc<Mirror>>, Failure> {
    let wanted = match plan.mirrors.is_empty() {
        false => plan.mirrors.clone(),
        true => mirrors_for(&ctx.mirror_rules, &plan.repository),
    };
    let mut out = Vec::with_capacity(wanted.len());
    for (at, insecure) in wanted {
        let access = ctx.credentials.load(namespace, spec, &at).await.map_err(|e| Failure::new(Step::Fetch, &e))?;
        let handle =
            ctx.registries.mirror(&at.registry, &access, insecure).map_err(|e| Failure::new(Step::Fetch, &e))?;
        out.push(Arc::new(Mirror::new(handle.client, &at)));
    }
    Ok(out)
}

/// Going over what the target holds is the content not fitting the
/// target, which is what the user needs to hear.
fn fetch_failure(plan: &Plan, e: &PipelineError) -> Failure {
    if let PipelineError::Fetch(FetchError::Unpack(UnpackError::LimitExceeded { limit: SELECTED_BYTES, .. })) = e {
        let message = format!(
            "the selected files hold more than {} bytes, the most a ConfigMap holds; select fewer files",
            plan.limits.max_selected_bytes
        );
        return Failure { step: Step::Publish, reason: Reason::ContentTooLarge, message };
    }
    Failure::new(Step::Fetch, e)
}

/// The tag a version names now and its digest, shared for one interval by
/// every Artifact that uses the same client.
async fn follow(
    ctx: &Context,
    handle: &Handle,
    plan: &Plan,
    version: &Version,
    forced: bool,
) -> Result<(String, Digest), ResolveError> {
    let max_age = if forced { Duration::ZERO } else { plan.interval };
    let client = &handle.client;
    let repository = &plan.repository.repository;
    let tags = match version {
        Version::Tag(_) => Arc::new(Vec::new()),
        Version::Semver { .. } => {
            ctx.tag_lists
                .get(&resolutions::tags_key(handle.id, repository), max_age, || async {
                    client.tags(repository).await.map(Arc::new).map_err(ResolveError::from)
                })
                .await?
        }
    };
    let tag = resolve::pick_tag(version, &plan.repository.to_string(), &tags)?;
    let reference = Reference { tag: Some(tag.clone()), ..plan.repository.clone() };
    let key = resolutions::tag_key(handle.id, repository, &tag);
    let digest = ctx.digests.get(&key, max_age, || resolve::digest(client, &reference)).await?;
    Ok((tag, digest))
}

async fn remove_dir(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

/// Write the status (only if it changed) and an Event for what happened.
async fn report(artifact: &Artifact, ctx: &Context, outcome: Outcome, served: Option<&Served>) -> Result<(), Error> {
    let old = artifact.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let requested = artifact.annotations().get(REQUESTED_AT_ANNOTATION).map(String::as_str);
    let new = next_status(&old, &outcome, served, artifact.metadata.generation, requested, &now);
    if new == old {
        return Ok(());
    }
    let api: Api<Artifact> = Api::namespaced(ctx.client.clone(), &artifact.namespace().unwrap_or_default());
    let body = json!({ "apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "status": new });
    api.patch_status(&artifact.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    ctx.written.wrote(artifact, new);
    let event = match (&outcome, served.and_then(|s| s.published.as_ref())) {
        (Outcome::Synced { message, .. }, Some(_)) => Some((Type::Normal, Reason::Synced, message)),
        (Outcome::Failed { reason, message, .. }, _) => Some((Type::Warning, *reason, message)),
        (Outcome::InvalidSpec { message }, _) => Some((Type::Warning, Reason::InvalidSpec, message)),
        _ => None,
    };
    if let Some((type_, reason, note)) = event {
        match ctx.events.publish(&artifact.object_ref(&()), type_, reason.as_str(), "Sync", note).await {
            Ok(super::events::Published::Sent) => {}
            Ok(super::events::Published::Dropped) => ctx.metrics.event_dropped(),
            Err(e) => tracing::warn!(error = %e, "could not publish an event"),
        }
    }
    Ok(())
}
