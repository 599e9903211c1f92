//! Where content named by digest is fetched from: the mirrors in order,
//! then the origin. Tags are never resolved here (a mirror may lag, or lie,
//! about what a tag names); a mirror serves only what the origin's digest
//! already fixed, and every byte is checked against that digest as always.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::oci::client::TransportOptions;
use crate::oci::manifest::Descriptor;
use crate::oci::retry::RetryPolicy;
use crate::oci::{Reference, RegistryClient};

/// A registry that serves one repository's content by digest.
pub(crate) struct Mirror {
    pub(crate) client: Arc<RegistryClient>,
    pub(crate) repository: String,
    /// `oci://host/repository`, for status and errors.
    pub(crate) url: String,
    manifests: AtomicU64,
    layers: AtomicU64,
    bytes: AtomicU64,
}

impl Mirror {
    pub(crate) fn new(client: Arc<RegistryClient>, at: &Reference) -> Mirror {
        Mirror {
            client,
            repository: at.repository.clone(),
            url: format!("oci://{}/{}", at.registry, at.repository),
            manifests: AtomicU64::default(),
            layers: AtomicU64::default(),
            bytes: AtomicU64::default(),
        }
    }

    /// A client of its own for the mirror at `at`, as `mirror_transport`
    /// says (the operator's come from its shared cache instead).
    pub(crate) fn connect(
        at: &Reference,
        credentials: crate::oci::Credentials,
        insecure: bool,
    ) -> Result<Mirror, crate::oci::RegistryError> {
        let client = RegistryClient::new(&at.registry, credentials, &mirror_transport(insecure))?;
        Ok(Mirror::new(Arc::new(client), at))
    }

    pub(crate) fn served_manifest(&self) {
        self.manifests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn served_layer(&self, bytes: u64) {
        self.layers.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (manifests, layers, bytes) served so far.
    pub(crate) fn served(&self) -> (u64, u64, u64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (get(&self.manifests), get(&self.layers), get(&self.bytes))
    }
}

/// How a mirror is talked to: one attempt and a short connect timeout. A
/// mirror is there to be faster; when it is down or refuses, the origin is
/// the retry, not the mirror again with backoff.
pub(crate) fn mirror_transport(insecure: bool) -> TransportOptions {
    TransportOptions {
        insecure,
        retry: RetryPolicy { attempts: 1, ..RetryPolicy::default() },
        connect_timeout: Some(std::time::Duration::from_secs(3)),
        ..TransportOptions::default()
    }
}

/// The first mirror that answers for a blob with a success, in order; `None`
/// when none does (the origin's turn). Why each one failed is not an error
/// of the sync: the origin still may serve it.
pub(crate) async fn blob_from_mirrors(
    mirrors: &[Arc<Mirror>],
    desc: &Descriptor,
) -> Option<(Arc<Mirror>, reqwest::Response)> {
    for m in mirrors {
        match m.client.blob(&m.repository, desc).await {
            Ok(r) => return Some((m.clone(), r)),
            Err(e) => tracing::debug!(mirror = %m.url, digest = %desc.digest, error = %e, "mirror lacks a blob"),
        }
    }
    None
}

/// An operator-wide mirror (`--mirror ORIGIN=oci://HOST[/PREFIX]`): every
/// repository of registry ORIGIN is served by HOST under PREFIX, as
/// containerd and CRI-O map a registry to a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MirrorRule {
    origin: String,
    host: String,
    prefix: String,
    pub(crate) insecure: bool,
}

const MAX_RULES: usize = 64;

impl MirrorRule {
    pub(crate) fn parse(s: &str, insecure: bool) -> Result<MirrorRule, String> {
        let (origin, to) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected ORIGIN=oci://HOST[/PREFIX]"))?;
        let origin = origin.trim().to_ascii_lowercase();
        let to = to.trim().strip_prefix("oci://").ok_or_else(|| format!("{s:?}: the mirror is an oci:// URL"))?;
        let (host, prefix) = to.split_once('/').unwrap_or((to, ""));
        let prefix = prefix.trim_matches('/');
        let valid_host = |h: &str| {
            !h.is_empty()
                && h.len() <= 253
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        };
        if !valid_host(&origin) || !valid_host(host) {
            return Err(format!("{s:?}: not a registry host"));
        }
        // the prefix must make a valid repository name with any path after it
        if !prefix.is_empty() && Reference::parse(&format!("oci://{host}/{prefix}/x")).is_err() {
            return Err(format!("{s:?}: {prefix:?} is not a repository path"));
        }
        Ok(MirrorRule { origin, host: host.to_ascii_lowercase(), prefix: prefix.into(), insecure })
    }

    /// Where the mirror keeps `origin`'s repository, if this rule is for its
    /// registry.
    pub(crate) fn apply(&self, origin: &Reference) -> Option<Reference> {
        (origin.registry == self.origin).then(|| Reference {
            registry: self.host.clone(),
            repository: match self.prefix.as_str() {
                "" => origin.repository.clone(),
                p => format!("{p}/{}", origin.repository),
            },
            tag: None,
            digest: None,
        })
    }
}

/// The rules in force for a repository: every rule for its registry, in
/// the order given.
pub(crate) fn mirrors_for(rules: &[MirrorRule], origin: &Reference) -> Vec<(Reference, bool)> {
    rules.iter().filter_map(|r| r.apply(origin).map(|m| (m, r.insecure))).collect()
}

/// Refuse more rules than anyone needs; the list is walked per sync.
pub(crate) fn check_rules(rules: &[MirrorRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!("at most {MAX_RULES} --mirror rules"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn rules_map_a_registry_to_a_mirror_under_a_prefix() {
        let cases = [
            ("ghcr.io=oci://mirror.local:5000/ghcr", "oci://ghcr.io/team/app", Some("mirror.local:5000/ghcr/team/app")),
            ("ghcr.io=oci://mirror.local", "oci://ghcr.io/team/app", Some("mirror.local/team/app")),
            ("ghcr.io=oci://mirror.local/a/b/", "oci://ghcr.io/app", Some("mirror.local/a/b/app")),
            ("GHCR.io=oci://Mirror.Local/x", "oci://ghcr.io/app", Some("mirror.local/x/app")),
            ("ghcr.io=oci://mirror.local/ghcr", "oci://quay.io/team/app", None),
            ("ghcr.io=oci://mirror.local/ghcr", "oci://ghcr.io.evil/team/app", None),
        ];
        for (rule, origin, want) in cases {
            let r = MirrorRule::parse(rule, false).unwrap();
            let got = r.apply(&reference(origin)).map(|m| format!("{}/{}", m.registry, m.repository));
            assert_eq!(got.as_deref(), want, "{rule} for {origin}");
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for bad in [
            "ghcr.io",
            "ghcr.io=mirror.local",
            "ghcr.io=https://mirror.local",
            "=oci://mirror.local",
            "ghcr.io=oci://",
            "ghcr.io=oci://mirror.local/UPPER",
            "ghcr.io=oci://mirror.local/a//b",
            "gh cr.io=oci://mirror.local",
        ] {
            assert!(MirrorRule::parse(bad, false).is_err(), "{bad}");
        }
        let many: Vec<_> = (0..65).map(|i| MirrorRule::parse(&format!("r{i}.io=oci://m.io"), false).unwrap()).collect();
        assert!(check_rules(&many).is_err());
        assert!(check_rules(&many[..64]).is_ok());
    }

    #[test]
    fn every_rule_for_the_registry_in_order() {
        let rules = [
            MirrorRule::parse("ghcr.io=oci://one.local", false).unwrap(),
            MirrorRule::parse("quay.io=oci://other.local", false).unwrap(),
            MirrorRule::parse("ghcr.io=oci://two.local/p", true).unwrap(),
        ];
        let got: Vec<_> = mirrors_for(&rules, &reference("oci://ghcr.io/app"))
            .into_iter()
            .map(|(m, insecure)| (format!("{}/{}", m.registry, m.repository), insecure))
            .collect();
        assert_eq!(got, [("one.local/app".to_string(), false), ("two.local/p/app".to_string(), true)]);
    }
}
