//! Push notifications from registries: what repository a notification is
//! about, in each format registries send. Pure: the HTTP side is in
//! `webhook.rs`. Nothing in a notification is trusted as content: it only
//! makes the operator resolve the repository's tags sooner.

use serde_json::Value;

use crate::oci::Reference;

/// The most notices one body may carry (a distribution envelope batches).
const MAX_NOTICES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Notice {
    /// The registry host, when the format says it.
    pub(crate) registry: Option<String>,
    pub(crate) repository: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Distribution,
    Harbor,
    GitHub,
    DockerHub,
    Generic,
}

impl Format {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::Distribution => "distribution",
            Format::Harbor => "harbor",
            Format::GitHub => "github",
            Format::DockerHub => "dockerhub",
            Format::Generic => "generic",
        }
    }
}

/// The repositories a notification names (pushes of manifests only: blob
/// pushes and pulls, including the operator's own, are not news).
pub(crate) fn parse(body: &[u8]) -> Result<(Format, Vec<Notice>), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let s = |v: &Value| v.as_str().filter(|s| !s.is_empty() && s.len() <= 512).map(str::to_string);
    let (format, notices) = if let Some(events) = v.get("events").and_then(Value::as_array) {
        let notices = events
            .iter()
            .filter(|e| e["action"] == "push")
            .filter(|e| e["target"]["mediaType"].as_str().is_some_and(is_manifest) || e["target"]["tag"].is_string())
            .filter_map(|e| {
                let repository = s(&e["target"]["repository"])?;
                let registry = s(&e["request"]["host"]).or_else(|| s(&e["target"]["url"]).and_then(|u| host_of(&u)));
                Some(Notice { registry, repository })
            })
            .collect();
        (Format::Distribution, notices)
    } else if v["type"].as_str().is_some_and(|t| t.starts_with("PUSH")) || v.get("event_data").is_some() {
        let data = &v["event_data"];
        let repository = s(&data["repository"]["repo_full_name"]);
        let registry = data["resources"].as_array().and_then(|r| r.first()).and_then(|r| s(&r["resource_url"]));
        let notices = repository
            .map(|repository| Notice { registry: registry.and_then(|u| host_of(&u)), repository })
            .into_iter()
            .collect();
        (Format::Harbor, notices)
    } else if let Some(pkg) = v.get("package").filter(|p| p.is_object()) {
        // GitHub Packages: `ghcr.io/<owner>/<name>`.
        let owner = s(&pkg["owner"]["login"]).or_else(|| s(&pkg["namespace"]));
        let name = s(&pkg["name"]);
        let url = s(&pkg["package_version"]["package_url"]);
        let repository = url
            .as_deref()
            .and_then(|u| Reference::parse(u).ok())
            .map(|r| r.repository)
            .or_else(|| Some(format!("{}/{}", owner?, name?).to_lowercase()));
        let notices = repository.map(|repository| Notice { registry: Some("ghcr.io".into()), repository });
        (Format::GitHub, notices.into_iter().collect())
    } else if v.get("push_data").is_some() {
        let repository = s(&v["repository"]["repo_name"]);
        let notices = repository.map(|repository| Notice { registry: Some("docker.io".into()), repository });
        (Format::DockerHub, notices.into_iter().collect())
    } else if let Some(repository) = s(&v["repository"]) {
        (Format::Generic, vec![Notice { registry: s(&v["registry"]), repository }])
    } else {
        return Err("not a notification this operator reads (distribution, Harbor, GitHub, Docker Hub, or {registry, repository})".into());
    };
    let mut notices: Vec<Notice> = notices;
    notices.sort_by(|a, b| (&a.registry, &a.repository).cmp(&(&b.registry, &b.repository)));
    notices.dedup();
    notices.truncate(MAX_NOTICES);
    Ok((format, notices))
}

fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.contains("image.index")
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().filter(|h| !h.is_empty()).map(str::to_string)
}

/// Docker Hub answers to several names.
fn same_registry(a: &str, b: &str) -> bool {
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    a.eq_ignore_ascii_case(b) || (hub(a) && hub(b))
}

/// Does `notice` concern an Artifact whose `spec.url` is `url`?
pub(crate) fn concerns(notice: &Notice, url: &str) -> bool {
    let Ok(r) = Reference::parse(url) else { return false };
    let repository = |x: &str| x.strip_prefix("library/").unwrap_or(x).to_string();
    repository(&r.repository) == repository(&notice.repository)
        && notice.registry.as_deref().is_none_or(|h| same_registry(h, &r.registry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notices(v: Value) -> (Format, Vec<(Option<&'static str>, &'static str)>) {
        let (f, n) = parse(v.to_string().as_bytes()).unwrap();
        let leak = |s: String| &*Box::leak(s.into_boxed_str());
        (f, n.into_iter().map(|n| (n.registry.map(leak), leak(n.repository))).collect())
    }

    #[test]
    fn every_format_names_its_repository() {
        let manifest = "application/vnd.oci.image.manifest.v1+json";
        let distribution = json!({"events": [
            {"action": "push", "target": {"mediaType": manifest, "repository": "team/app", "tag": "v1", "digest": "sha256:a"}, "request": {"host": "reg.example:5000"}},
            {"action": "push", "target": {"mediaType": "application/octet-stream", "repository": "team/blob-only"}, "request": {"host": "reg.example:5000"}},
            {"action": "pull", "target": {"mediaType": manifest, "repository": "team/pulled"}, "request": {"host": "reg.example:5000"}},
            {"action": "push", "target": {"mediaType": manifest, "repository": "team/app", "digest": "sha256:b"}, "request": {"host": "reg.example:5000"}}
        ]});
        assert_eq!(notices(distribution), (Format::Distribution, vec![(Some("reg.example:5000"), "team/app")]));
        let harbor = json!({"type": "PUSH_ARTIFACT", "event_data": {
            "resources": [{"digest": "sha256:a", "tag": "v1", "resource_url": "harbor.example.com/library/app:v1"}],
            "repository": {"name": "app", "namespace": "library", "repo_full_name": "library/app"}}});
        assert_eq!(notices(harbor), (Format::Harbor, vec![(Some("harbor.example.com"), "library/app")]));
        let github = json!({"action": "published", "package": {"name": "app", "package_type": "CONTAINER",
            "owner": {"login": "Example-Org"},
            "package_version": {"package_url": "ghcr.io/example-org/app:v1", "container_metadata": {"tag": {"name": "v1"}}}}});
        assert_eq!(notices(github), (Format::GitHub, vec![(Some("ghcr.io"), "example-org/app")]));
        let hub =
            json!({"push_data": {"tag": "latest", "pusher": "someone"}, "repository": {"repo_name": "someone/app"}});
        assert_eq!(notices(hub), (Format::DockerHub, vec![(Some("docker.io"), "someone/app")]));
        let generic = json!({"registry": "r.io", "repository": "a/b", "tag": "v2", "digest": "sha256:c"});
        assert_eq!(notices(generic), (Format::Generic, vec![(Some("r.io"), "a/b")]));
        assert!(parse(b"{}").is_err() && parse(b"not json").is_err());
        let many: Vec<Value> = (0..1000)
            .map(|i| json!({"action": "push", "target": {"mediaType": manifest, "repository": format!("r{i}")}}))
            .collect();
        assert_eq!(parse(json!({"events": many}).to_string().as_bytes()).unwrap().1.len(), MAX_NOTICES);
    }

    #[test]
    fn a_notice_concerns_the_artifacts_of_its_repository_on_its_registry() {
        let n = |registry: Option<&str>, repository: &str| Notice {
            registry: registry.map(str::to_string),
            repository: repository.into(),
        };
        let cases = [
            (n(Some("reg.example:5000"), "team/app"), "oci://reg.example:5000/team/app", true),
            (n(Some("reg.example:5000"), "team/app"), "oci://reg.example:5000/team/other", false),
            (n(Some("reg.example:5000"), "team/app"), "oci://elsewhere.example/team/app", false),
            (n(None, "team/app"), "oci://anywhere.example/team/app", true),
            (n(Some("docker.io"), "library/nginx"), "oci://index.docker.io/nginx", true),
            (n(Some("REG.example:5000"), "team/app"), "oci://reg.example:5000/team/app", true),
            (n(Some("reg.example:5000"), "team/app"), "not a url", false),
        ];
        for (notice, url, want) in cases {
            assert_eq!(concerns(&notice, url), want, "{notice:?} / {url}");
        }
    }
}
