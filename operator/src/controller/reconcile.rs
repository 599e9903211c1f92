//! One reconcile of one Artifact: resolve → fetch → publish → status, each
//! step ending in a condition. When the digest, the spec and the ConfigMap
//! are unchanged, a reconcile is one HEAD request and no writes. On any
//! failure the last good ConfigMap stays exactly as it was.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::conditions::{self, Outcome, Step};
use super::plan::{Plan, Version, jittered};
use super::{Context, Error, credentials};
use crate::api::{Artifact, ArtifactStatus, Drift, FileStatus, FilesSummary, REQUESTED_AT_ANNOTATION};
use crate::fetch::{self, FetchError, PullOptions, Reason};
use crate::oci::{Digest, RegistryClient};
use crate::publish::configmap::{self, RenderError};
use crate::unpack::Entry;

pub const FIELD_MANAGER: &str = "ocisync";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ocisync");
pub const ARTIFACT_LABEL: &str = "ocisync.dev/artifact";
pub const DIGEST_ANNOTATION: &str = "ocisync.dev/digest";
const LISTED_FILES: usize = 50;

/// What a successful sync serves.
struct Served {
    tag: Option<String>,
    digest: Digest,
    drift: Option<Drift>,
    /// `None` when nothing had to be fetched or published.
    published: Option<FilesSummary>,
}

/// A failed step, with what the status should say.
struct Failure {
    step: Step,
    reason: String,
    message: String,
    stalled: bool,
}

impl Failure {
    fn new(step: Step, reason: impl Into<String>, message: impl ToString, stalled: bool) -> Self {
        Failure { step, reason: reason.into(), message: message.to_string(), stalled }
    }

    fn fetch(step: Step, e: &FetchError) -> Self {
        let reason = e.reason();
        // Retrying cannot make hostile or oversized content acceptable; a new
        // version of the artifact or a spec change will trigger a new try.
        let stalled = matches!(reason, Reason::UnsafeContent | Reason::LimitExceeded | Reason::Unsupported);
        Failure::new(step, format!("{reason:?}"), e, stalled)
    }
}

pub async fn reconcile(artifact: Arc<Artifact>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = artifact.name_any();
    tracing::debug!(artifact = %name, namespace = ?artifact.namespace(), "reconcile started");
    let started = std::time::Instant::now();
    if artifact.spec.suspend {
        return Ok(Action::await_change());
    }
    let plan = match Plan::new(&name, &artifact.spec) {
        Ok(p) => p,
        Err(e) => {
            finish(&artifact, &ctx, Outcome::InvalidSpec { message: e.to_string() }, None).await?;
            return Ok(Action::await_change());
        }
    };
    let seed = artifact.uid().map_or(0, |u| u.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)));
    let requested = artifact.annotations().get(REQUESTED_AT_ANNOTATION).cloned();
    let handled = artifact.status.as_ref().and_then(|s| s.last_handled_requested_at.clone());
    let forced = requested.is_some() && requested != handled;
    let result = match tokio::time::timeout(plan.timeout, sync(&artifact, &ctx, &plan, forced)).await {
        Ok(r) => r,
        Err(_) => {
            Err(Failure::new(Step::Fetch, "Timeout", format!("the sync took longer than {:?}", plan.timeout), false))
        }
    };
    let key = artifact.uid().unwrap_or_default();
    let reason = match &result {
        Ok(_) => "Synced".to_string(),
        Err(f) => f.reason.clone(),
    };
    ctx.metrics.reconciled(result.is_ok(), &reason, started.elapsed());
    match result {
        Ok(served) => {
            ctx.failures.lock().expect("failures poisoned").remove(&key);
            let message = describe(&served, artifact.status.as_ref());
            finish(&artifact, &ctx, Outcome::Synced { message }, Some(served)).await?;
            Ok(Action::requeue(jittered(plan.interval, seed)))
        }
        Err(f) => {
            let stalled = f.stalled;
            let outcome = Outcome::Failed { step: f.step, reason: f.reason, message: f.message, stalled };
            finish(&artifact, &ctx, outcome, None).await?;
            if stalled {
                return Ok(Action::requeue(plan.interval));
            }
            let n = {
                let mut failures = ctx.failures.lock().expect("failures poisoned");
                let n = failures.entry(key).or_insert(0);
                *n += 1;
                *n
            };
            // Not capped by the interval: with a short interval, failing
            // Artifacts would retry in a hot loop and starve the healthy ones.
            Ok(Action::requeue(super::backoff(n)))
        }
    }
}

/// `forced`: a sync was asked for; resolve afresh instead of sharing.
async fn sync(artifact: &Artifact, ctx: &Context, plan: &Plan, forced: bool) -> Result<Served, Failure> {
    let ns = artifact.namespace().unwrap_or_default();
    let registry = &plan.repository.registry;
    let access = credentials::load(&ctx.client, &ns, &artifact.spec, registry)
        .await
        .map_err(|e| Failure::new(Step::Resolve, "CredentialsUnavailable", e, false))?;
    let handle = ctx
        .registries
        .client(&ns, registry, &access, plan.insecure)
        .map_err(|e| Failure::new(Step::Resolve, "InvalidCredentials", e, true))?;
    let client = handle.client;

    // Resolve: what the tag or range names now, and what is to be served.
    // What one client (namespace, registry, credential) resolved is shared
    // with the Artifacts that use the same client.
    let scope = format!("{}/{}", handle.id, plan.repository.repository);
    let followed = match &plan.follow {
        None => None,
        Some(v) => Some(resolve_followed(ctx, &client, &scope, plan, v, forced).await),
    };
    let (tag, digest, drift) = match (&plan.pin, followed) {
        (Some(pin), Some(Ok((tag, latest)))) => {
            let drift = (latest != *pin).then(|| Drift {
                pinned: pin.to_string(),
                latest: latest.to_string(),
                tag: tag.clone(),
            });
            (tag, pin.clone(), drift)
        }
        // A pin is served even when the tag beside it cannot be resolved.
        (Some(pin), _) => (None, pin.clone(), None),
        (None, Some(Ok((tag, d)))) => (tag, d, None),
        (None, Some(Err(e))) => return Err(Failure::fetch(Step::Resolve, &e)),
        (None, None) => unreachable!("a plan without a pin follows a tag"),
    };

    let status = artifact.status.clone().unwrap_or_default();
    let unchanged = status.last_synced_digest.as_deref() == Some(&digest.to_string())
        && status.observed_generation == artifact.metadata.generation
        && conditions::is_ready(&status.conditions)
        && config_map_serves(ctx, artifact, &ns, &plan.config_map, &digest);
    if unchanged {
        return Ok(Served { tag, digest, drift, published: None });
    }

    // Fetch into a private directory, then publish from it.
    let reference = plan.repository.with_digest(digest.clone());
    let res = fetch::resolve(&client, &reference, &plan.platform).await.map_err(|e| Failure::fetch(Step::Fetch, &e))?;
    let dir = ctx.work_dir.join(artifact.uid().unwrap_or_else(|| format!("{ns}-{}", artifact.name_any())));
    let opts = PullOptions { selection: plan.selection.clone(), limits: plan.limits, ..PullOptions::default() };
    let out = dir.join("files");
    let report = fetch::pull(client.clone(), &res, &opts, &out).await.map_err(|e| Failure::fetch(Step::Fetch, &e))?;
    let published = publish(artifact, ctx, plan, &ns, &digest, &out, &report.files).await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let files = published?;
    tracing::info!(artifact = %artifact.name_any(), %ns, %digest, files = files.count, "published");
    Ok(Served { tag, digest, drift, published: Some(files) })
}

async fn resolve_followed(
    ctx: &Context,
    client: &RegistryClient,
    scope: &str,
    plan: &Plan,
    v: &Version,
    forced: bool,
) -> Result<(Option<String>, Digest), FetchError> {
    // Fresh for one interval: one HEAD per tag per interval for all followers.
    let max_age = if forced { Duration::ZERO } else { plan.interval };
    let tag = match v {
        Version::Tag(t) => t.clone(),
        Version::Semver { range, text } => {
            let tags = ctx
                .tag_lists
                .get(&format!("{scope}/tags"), max_age, || async {
                    client.tags(&plan.repository.repository).await.map(Arc::new)
                })
                .await?;
            match crate::resolve::semver::highest(tags.iter().map(String::as_str), range) {
                Some((t, _)) => t.to_string(),
                None => {
                    return Err(crate::oci::RegistryError::NotFound {
                        what: format!("a tag of {} in range {text:?}", plan.repository),
                    }
                    .into());
                }
            }
        }
    };
    let reference = crate::oci::Reference { tag: Some(tag.clone()), ..plan.repository.clone() };
    let digest =
        ctx.digests.get(&format!("{scope}:{tag}"), max_age, || fetch::resolve_digest(client, &reference)).await?;
    Ok((Some(tag), digest))
}

/// Does the ConfigMap we own already hold this digest? Answered from the
/// watch cache: no API request.
fn config_map_serves(ctx: &Context, artifact: &Artifact, ns: &str, name: &str, digest: &Digest) -> bool {
    let Some(cm) = ctx.config_maps.get(&ObjectRef::new(name).within(ns)) else { return false };
    owned_by(&*cm, artifact) && cm.annotations().get(DIGEST_ANNOTATION) == Some(&digest.to_string())
}

fn owned_by(cm: &impl Resource, artifact: &Artifact) -> bool {
    cm.owner_references().iter().any(|o| o.controller == Some(true) && Some(&o.uid) == artifact.metadata.uid.as_ref())
}

async fn publish(
    artifact: &Artifact,
    ctx: &Context,
    plan: &Plan,
    ns: &str,
    digest: &Digest,
    out: &std::path::Path,
    files: &[fetch::FileReport],
) -> Result<FilesSummary, Failure> {
    let mut contents = Vec::new();
    for f in files {
        let bytes =
            tokio::fs::read(out.join(&f.path)).await.map_err(|e| Failure::new(Step::Publish, "Internal", e, false))?;
        contents.push((f.path.clone(), bytes));
    }
    let rendered = configmap::render(contents, plan.keys).map_err(|e| {
        let reason = match e {
            RenderError::TooLarge { .. } => "ContentTooLarge",
            RenderError::KeyCollision { .. } => "KeyCollision",
            RenderError::BadKey { .. } => "InvalidKey",
        };
        Failure::new(Step::Publish, reason, e, true)
    })?;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    // Never take over a ConfigMap someone else made.
    if let Some(existing) =
        api.get_opt(&plan.config_map).await.map_err(|e| Failure::new(Step::Publish, "ApiError", e, false))?
        && !owned_by(&existing, artifact)
    {
        let message = format!("ConfigMap {ns}/{} exists and is not owned by this Artifact", plan.config_map);
        return Err(Failure::new(Step::Publish, "ConfigMapNotOwned", message, true));
    }
    let cm_spec = artifact.spec.target.config_map.clone().unwrap_or_default();
    let mut labels = cm_spec.labels.clone();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    labels.insert(ARTIFACT_LABEL.into(), artifact.name_any());
    let mut annotations = cm_spec.annotations.clone();
    annotations.insert(DIGEST_ANNOTATION.into(), digest.to_string());
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": plan.config_map,
            "namespace": ns,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [artifact.controller_owner_ref(&()).expect("an Artifact has a uid")],
        },
        "data": rendered.data,
        "binaryData": rendered.binary_data,
    });
    api.patch(&plan.config_map, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
        .await
        .map_err(|e| Failure::new(Step::Publish, "ApiError", e, false))?;
    let mut list: Vec<FileStatus> = Vec::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    for f in files {
        if let Entry::File { size, sha256, .. } = &f.entry {
            count += 1;
            bytes += size;
            if list.len() < LISTED_FILES {
                list.push(FileStatus { path: f.path.clone(), size: *size, sha256: sha256.to_string() });
            }
        }
    }
    Ok(FilesSummary { count, bytes, truncated: count as usize > list.len(), list })
}

fn describe(served: &Served, previous: Option<&ArtifactStatus>) -> String {
    let files = served.published.as_ref().or_else(|| previous.and_then(|s| s.files.as_ref()));
    let n = files.map_or(0, |f| f.count);
    let what = match &served.tag {
        Some(t) => format!("{t}@{}", served.digest),
        None => served.digest.to_string(),
    };
    let mut m = format!("{n} files from {what}");
    if let Some(d) = &served.drift {
        m += &format!("; pinned, while {} is now {}", d.tag.as_deref().unwrap_or("the range"), d.latest);
    }
    m
}

/// Write the status (only if it changed) and an Event for what happened.
async fn finish(artifact: &Artifact, ctx: &Context, outcome: Outcome, served: Option<Served>) -> Result<(), Error> {
    let old = artifact.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generation = artifact.metadata.generation;
    let mut new = ArtifactStatus {
        observed_generation: generation,
        last_handled_requested_at: artifact.annotations().get(REQUESTED_AT_ANNOTATION).cloned(),
        conditions: conditions::next(&old.conditions, &outcome, generation, &now),
        ..old.clone()
    };
    if let Some(s) = &served {
        new.tag = s.tag.clone();
        new.digest = Some(s.digest.to_string());
        new.revision = Some(match &s.tag {
            Some(t) => format!("{t}@{}", s.digest),
            None => s.digest.to_string(),
        });
        new.drift = s.drift.clone();
        let message = s.drift.as_ref().map(|d| {
            format!("pinned to {}, while {} names {}", d.pinned, d.tag.as_deref().unwrap_or("the range"), d.latest)
        });
        new.conditions = conditions::with_drift(new.conditions, message.as_deref(), generation, &now);
        if let Some(files) = &s.published {
            new.files = Some(files.clone());
            new.last_synced_digest = Some(s.digest.to_string());
            new.last_synced_at = Some(now.clone());
        }
    }
    if new == old {
        return Ok(());
    }
    let api: Api<Artifact> = Api::namespaced(ctx.client.clone(), &artifact.namespace().unwrap_or_default());
    let body = json!({ "apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "status": new });
    api.patch_status(&artifact.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    let event = match (&outcome, served.as_ref().and_then(|s| s.published.as_ref())) {
        (Outcome::Synced { message }, Some(_)) => Some((EventType::Normal, "Synced", message.clone())),
        (Outcome::Failed { reason, message, .. }, _) => Some((EventType::Warning, reason.as_str(), message.clone())),
        (Outcome::InvalidSpec { message }, _) => Some((EventType::Warning, "InvalidSpec", message.clone())),
        _ => None,
    };
    if let Some((type_, reason, note)) = event {
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Sync".into(), secondary: None };
        if let Err(e) = ctx.recorder.publish(&ev, &artifact.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish an event");
        }
    }
    Ok(())
}
