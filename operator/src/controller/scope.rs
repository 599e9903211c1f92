//! Where the controller watches: the whole cluster, or only the namespaces
//! it was given (`--namespaces`), so that its RBAC can be Roles in those
//! namespaces and nothing cluster-wide but the policy kind and a `get` of
//! those namespaces.
//!
//! One reflector takes the events of several namespaced watches: each
//! watch's re-list is turned into plain applies, and at its end the
//! objects of that namespace that the re-list no longer named are deleted,
//! so a store fed by several watches stays exact.

use std::collections::HashSet;
use std::fmt::Debug;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

pub(crate) type Events<K> = Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>;

#[derive(Debug, Clone, Default)]
pub(crate) enum Scope {
    #[default]
    Cluster,
    Namespaces(Vec<String>),
}

impl Scope {
    /// Watch events of `K` in scope, for one reflector.
    pub(crate) fn watch<K>(&self, client: &kube::Client, config: watcher::Config, store: Store<K>) -> Events<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        match self {
            Scope::Cluster => Box::pin(watcher(Api::<K>::all(client.clone()), config).default_backoff()),
            Scope::Namespaces(names) => {
                let streams: Vec<_> = names
                    .iter()
                    .map(|ns| {
                        let events =
                            watcher(Api::<K>::namespaced(client.clone(), ns), config.clone()).default_backoff();
                        relisted(ns.clone(), store.clone(), events)
                    })
                    .collect();
                merged(names.len(), store, futures::stream::select_all(streams))
            }
        }
    }
}

/// An event of one namespace's watch, or the news that its listing ended.
enum Tagged<K> {
    Event(watcher::Event<K>),
    Listed(String),
}

type Item<K> = Result<watcher::Event<K>, watcher::Error>;
type TaggedStream<K> = Pin<Box<dyn Stream<Item = Result<Tagged<K>, watcher::Error>> + Send>>;

/// The namespaces' watches as one stream. The store is marked ready (what
/// the controller's applier waits for) once every namespace has been
/// listed, by replaying the store into the writer's buffer and ending the
/// listing: the swap puts the same content back.
fn merged<K>(
    namespaces: usize,
    store: Store<K>,
    tagged: impl Stream<Item = Result<Tagged<K>, watcher::Error>> + Send + 'static,
) -> Events<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    Box::pin(
        tagged
            .scan(HashSet::<String>::new(), move |listed, item| {
                let out: Vec<Item<K>> = match item {
                    Ok(Tagged::Event(e)) => vec![Ok(e)],
                    Err(e) => vec![Err(e)],
                    Ok(Tagged::Listed(ns)) => {
                        let before = listed.len();
                        listed.insert(ns);
                        if before < namespaces && listed.len() == namespaces {
                            let mut replay: Vec<Item<K>> =
                                store.state().iter().map(|o| Ok(watcher::Event::InitApply((**o).clone()))).collect();
                            replay.push(Ok(watcher::Event::InitDone));
                            replay
                        } else {
                            Vec::new()
                        }
                    }
                };
                futures::future::ready(Some(futures::stream::iter(out)))
            })
            .flatten(),
    )
}

/// One namespace's watch, its re-lists made safe to share a store with
/// other namespaces' watches.
fn relisted<K, S>(namespace: String, store: Store<K>, events: S) -> TaggedStream<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = Item<K>> + Send + 'static,
{
    Box::pin(
        events
            .scan(HashSet::<ObjectRef<K>>::new(), move |seen, event| {
                let out: Vec<Result<Tagged<K>, watcher::Error>> = match event {
                    Ok(watcher::Event::Init) => {
                        seen.clear();
                        Vec::new()
                    }
                    Ok(watcher::Event::InitApply(k)) => {
                        seen.insert(ObjectRef::from_obj(&k));
                        vec![Ok(Tagged::Event(watcher::Event::Apply(k)))]
                    }
                    Ok(watcher::Event::InitDone) => gone(&store, &namespace, seen)
                        .into_iter()
                        .map(|k| Ok(Tagged::Event(watcher::Event::Delete(k))))
                        .chain([Ok(Tagged::Listed(namespace.clone()))])
                        .collect(),
                    Ok(other) => vec![Ok(Tagged::Event(other))],
                    Err(e) => vec![Err(e)],
                };
                futures::future::ready(Some(futures::stream::iter(out)))
            })
            .flatten(),
    )
}

/// Objects of `namespace` in the store that a re-list did not name.
fn gone<K>(store: &Store<K>, namespace: &str, seen: &HashSet<ObjectRef<K>>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace) && !seen.contains(&ObjectRef::from_obj(&***o)))
        .map(|o| (**o).clone())
        .collect()
}

/// The namespaces' metadata, for policies' namespace selectors. In cluster
/// scope a metadata watch; in namespaced scope a `get` of each namespace
/// every `every` (a Role cannot grant a watch of Namespaces, and a
/// ClusterRole with `resourceNames` grants `get` of exactly those).
pub(crate) fn namespaces(
    scope: &Scope,
    client: &kube::Client,
    every: Duration,
) -> Events<PartialObjectMeta<Namespace>> {
    match scope {
        Scope::Cluster => Box::pin(
            watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), watcher::Config::default())
                .default_backoff(),
        ),
        Scope::Namespaces(names) => {
            let (api, names) = (Api::<Namespace>::all(client.clone()), names.clone());
            Box::pin(
                futures::stream::unfold((api, names, true), move |(api, names, first)| async move {
                    if !first {
                        tokio::time::sleep(every).await;
                    }
                    let mut found = Vec::new();
                    for n in &names {
                        match api.get_metadata_opt(n).await {
                            Ok(Some(m)) => found.push(Ok(watcher::Event::Apply(m))),
                            Ok(None) => {}
                            Err(e) => tracing::warn!(namespace = %n, error = %e, "cannot read the namespace's labels"),
                        }
                    }
                    Some((futures::stream::iter(found), (api, names, false)))
                })
                .flatten(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"namespace": ns, "name": name}})).unwrap()
    }

    /// Two namespaces' watches feed one store; a re-list of one removes
    /// what it no longer names there, and leaves the other namespace alone.
    #[tokio::test]
    async fn relists_of_one_namespace_keep_a_shared_store_exact() {
        use watcher::Event::*;
        let (store, mut writer) = reflector::store::<ConfigMap>();
        // one feed per namespace watch; as a merge of one of two, its "all listed" never comes
        let feed = |ns: &str, events: Vec<watcher::Event<ConfigMap>>| {
            let one = relisted(ns.to_string(), store.clone(), futures::stream::iter(events.into_iter().map(Ok)));
            merged(3, store.clone(), one)
        };
        let mut apply =
            async |s: Pin<Box<dyn Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Send>>| {
                let events: Vec<_> = s.collect().await;
                for e in events {
                    writer.apply_watcher_event(&e.unwrap());
                }
            };
        apply(feed("a", vec![Init, InitApply(cm("a", "1")), InitApply(cm("a", "2")), InitDone])).await;
        apply(feed("b", vec![Init, InitApply(cm("b", "1")), InitDone])).await;
        let names = |s: &Store<ConfigMap>| {
            let mut v: Vec<String> =
                s.state().iter().map(|c| format!("{}/{}", c.namespace().unwrap(), c.name_any())).collect();
            v.sort();
            v
        };
        assert_eq!(names(&store), ["a/1", "a/2", "b/1"]);
        // a's watch broke and re-listed: "a/2" went while it was away
        apply(feed("a", vec![Init, InitApply(cm("a", "1")), InitDone])).await;
        assert_eq!(names(&store), ["a/1", "b/1"]);
        apply(feed("b", vec![Delete(cm("b", "1"))])).await;
        assert_eq!(names(&store), ["a/1"]);
    }

    /// The applier waits for the store to be ready: it is, once every
    /// namespace was listed, with the content unchanged.
    #[tokio::test]
    async fn the_store_is_ready_once_every_namespace_was_listed() {
        use futures::FutureExt;
        use watcher::Event::*;
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let list = |ns: &str| {
            let events = [Init, InitApply(cm(ns, "1")), InitDone].map(Ok);
            relisted(ns.to_string(), store.clone(), futures::stream::iter(events))
        };
        let mut events = merged(2, store.clone(), list("a").chain(list("b")));
        let mut ready_at = None;
        let mut n = 0;
        while let Some(e) = events.next().await {
            writer.apply_watcher_event(&e.unwrap());
            n += 1;
            if ready_at.is_none() && store.wait_until_ready().now_or_never().is_some() {
                ready_at = Some(n);
            }
        }
        let mut names: Vec<String> =
            store.state().iter().map(|c| format!("{}/{}", c.namespace().unwrap(), c.name_any())).collect();
        names.sort();
        assert_eq!(names, ["a/1", "b/1"]);
        assert_eq!(ready_at, Some(n), "ready only at the end of the last listing");
    }
}
