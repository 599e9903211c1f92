//! The `Artifact` custom resource (`ocisync.dev/v1alpha1`). The CRD in
//! `crds/` is generated from these types (`ocisync crd`); a test fails when
//! the two drift apart.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;

pub(crate) mod duration;
mod keyless;
mod policy;
pub use keyless::*;
pub use policy::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An OCI artifact to keep in sync with a ConfigMap.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ocisync.dev",
    version = "v1alpha1",
    kind = "Artifact",
    namespaced,
    status = "ArtifactStatus",
    shortname = "art",
    category = "ocisync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Tag","type":"string","jsonPath":".status.tag"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.digest"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactSpec {
    /// The repository: `oci://host[:port]/repository`. A tag or digest here
    /// is an error; use `ref`.
    pub url: String,
    /// Which version to follow. Default: the tag `latest`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<ArtifactRef>,
    /// How often to look for a new version, as a Go duration (`30s`, `5m`,
    /// `1h`). Jittered by up to 10 %. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The most one sync may take. Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Stop syncing; the last content stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// `os/arch[/variant]` to take from an image index. Default `linux/amd64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Plain HTTP instead of HTTPS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// A `kubernetes.io/dockerconfigjson` Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalRef>,
    /// A ServiceAccount in this namespace whose `imagePullSecrets` are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// A Secret in this namespace with `ca.crt`, and optionally `tls.crt` and
    /// `tls.key` for a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalRef>,
    /// A Secret in this namespace with the HTTP proxy to reach the registry
    /// through: `address` (`http://host:port`), and optionally `username`
    /// and `password` for it. It replaces the operator's `HTTPS_PROXY` /
    /// `HTTP_PROXY` / `NO_PROXY` for this Artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalRef>,
    /// Which files to take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Select>,
    /// Bounds on what one sync may download and unpack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// `Auto`: where a layer has a table of contents (eStargz, zstd:chunked)
    /// and the selection needs little of it, read only the selected files'
    /// chunks by range, each checked against the TOC the manifest names.
    /// `Never`: always download whole layers and check their digests.
    /// Default: the operator's `--partial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::partial_schema")]
    pub partial: Option<Partial>,
    /// Where the files go.
    #[serde(default)]
    pub target: Target,
    /// Registries that may serve this repository's manifests by digest and
    /// its blobs: `oci://host[:port]/repository`, tried in order before the
    /// origin (`url`), which is also where tags are resolved and signatures
    /// found. Whatever a mirror serves is checked against the digest the
    /// origin named, so a mirror is trusted for nothing but availability.
    /// Default: the operator's `--mirror` for `url`'s registry, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub mirrors: Vec<Mirror>,
    /// Sync only what the right signer signed. Without it (and without a
    /// ClusterArtifactPolicy that matches), nothing is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    /// `oci://host[:port]/repository`: the same content under this name.
    pub url: String,
    /// Plain HTTP instead of HTTPS. Credentials come from the Artifact's
    /// `secretRef` or ServiceAccount, by this host.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Which signatures count. Cosign's formats are found through the OCI 1.1
/// referrers API, its tag fallback (`sha256-<hex>`) and the legacy
/// `sha256-<hex>.sig` tag; one valid signature by any listed key passes.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verify {
    /// Public keys (PEM; ECDSA P-256/P-384, Ed25519, RSA), every `*.pub`
    /// entry of a Secret in the Artifact's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Keys>,
    /// Keyless signatures (a Fulcio certificate for a CI identity), checked
    /// against a trusted root. With `keys` too, either kind passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<ArtifactKeyless>,
    /// The in-toto predicate types that count as a signature. Default:
    /// only cosign's `https://sigstore.dev/cosign/sign/v1`, so an SBOM or
    /// provenance attestation by the same key is not a signature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub predicate_types: Vec<String>,
    /// `Required` (the default for keyless): a transparency log entry must
    /// be present and verify. `IfPresent` (the default for keys): one that
    /// is present must verify. `Ignore`: entries are not looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::transparency_log_schema")]
    pub transparency_log: Option<TransparencyLog>,
    /// Notary Project signatures (`notation sign`), checked as `notation
    /// verify` checks them, with a Secret in the Artifact's namespace in
    /// Flux's layout: `trustpolicy.json` and CA certificates in entries
    /// ending `.crt` or `.pem` (each serving every trust store the policy
    /// names). With keys or keyless too, both a cosign and a Notation
    /// signature must verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notation: Option<Keys>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Keys {
    pub secret_ref: LocalRef,
}

/// An optional enum as a structural schema: schemars would add `null` to
/// the enum, which the API server refuses.
pub(crate) fn transparency_log_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Required", "IfPresent", "Ignore"],
        "description": "Required (the default for keyless): a transparency log entry must be present and verify. IfPresent (the default for keys): one that is present must verify. Ignore: entries are not looked at."
    })
}

/// As `transparency_log_schema`.
pub(crate) fn partial_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Auto", "Never"],
        "description": "Auto: where a layer has a table of contents (eStargz, zstd:chunked) and the selection needs little of it, read only the selected files' chunks by range, each checked against the TOC the manifest names. Never: always download whole layers and check their digests. Default: the operator's --partial."
    })
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Partial {
    #[default]
    Auto,
    Never,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum TransparencyLog {
    Required,
    #[default]
    IfPresent,
    Ignore,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRef {
    /// A tag to follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A semver range (`>=1.2.0 <2`, `~1.4`, `^2`); the highest matching
    /// tag wins. Tags that are not versions are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A pinned digest (`sha256:…`). It always wins: a tag or range given
    /// with it is still resolved, and a difference is reported as drift,
    /// never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalRef {
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Select {
    /// Globs over file paths; none means all. `*` stays within a directory,
    /// `**` crosses directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs over file paths to leave out; they win over `include`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Only layers of these media types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media_types: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Largest layer as stored, e.g. `64MiB`. Default `1GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_layer_bytes: Option<String>,
    /// Most bytes unpacked over all layers. Default `4GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<String>,
    /// Most files over all layers. Default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Publish the files as one ConfigMap in this namespace (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapTarget>,
    /// Publish the files into the operator's shared volume (its
    /// `--volume-root`) at `<namespace>/<path>`, switched atomically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeTarget>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeTarget {
    /// Under the namespace's directory of the volume; default: the
    /// Artifact's name. Letters, digits, `-`, `_`, `.` and `/` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Mode of the files, octal. Default `0644`; directories are `0755`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<String>,
}

/// Where a volume target's files are.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// Relative to the volume root: mount the volume's claim with this
    /// `subPath` (the files are under `..data`, and linked at the top).
    pub path: String,
    /// The revision directory `..data` points at.
    pub revision: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapTarget {
    /// Default: the Artifact's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How a file's path becomes a key.
    #[serde(default)]
    pub keys: KeyStyle,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `Path`: the path with each `/` written as `__` (`conf.d/app.yaml` →
/// `conf.d__app.yaml`). `Basename`: the file name alone. Either way two files
/// that would share a key, or a name a key cannot hold, stop the sync.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KeyStyle {
    #[default]
    Path,
    Basename,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The tag that was resolved (for a semver range, the winning tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The digest being served: the pin, or what the tag resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `tag@sha256:…`, or the digest alone for a pin without a tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The digest whose files are in the target, and when they got there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSummary>,
    /// For a volume target: where the files are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeStatus>,
    /// Set when a digest is pinned and the tag or range now names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// The last `ocisync.dev/requested-at` annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// Where the last sync's manifest and layers came from: a mirror, the
    /// origin, or both when a mirror lacked something.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceStatus>,
    /// How the last sync's layers were read: whole, or only the selected
    /// files' chunks through their tables of contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<TransferStatus>,
    /// The evidence for the digest last verified: which signature, found
    /// where, by which key, for each requirement (the spec and every policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `oci://host/repository`.
    pub url: String,
    /// `origin` or `mirror`.
    pub role: String,
    /// Manifests (the image index and the manifest) it served.
    pub manifests: u32,
    /// Layers it served, and their bytes.
    pub layers: u32,
    pub bytes: u64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferStatus {
    /// Bytes that came from registries: whole layers and ranges (not the
    /// blob cache's).
    pub bytes_from_registry: u64,
    /// Layers downloaded whole, their digests checked.
    pub layers_whole: u32,
    /// Layers of which only the selected files' chunks were read, by
    /// range, each checked against the table of contents the manifest
    /// names (`spec.partial`).
    pub layers_ranged: u32,
    /// Range requests made.
    pub range_requests: u32,
    /// Files whose content came from registries.
    #[serde(default)]
    pub files_from_registry: u32,
    /// Files of a ranged read already published, byte for byte as the
    /// table of contents says, and copied from there instead (delta sync),
    /// and their bytes.
    #[serde(default)]
    pub files_reused: u32,
    #[serde(default)]
    pub bytes_reused: u64,
    /// Why a layer with a table of contents was read whole (the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_reason: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// The manifest digest the signatures were checked against.
    pub digest: String,
    /// A fingerprint of the keys and policies used: when it changes (a key
    /// rotated in its Secret, a policy edited) the digest is verified again.
    pub trust: String,
    pub verified_at: Time,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureEvidence>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureEvidence {
    /// `spec.verify`, or `ClusterArtifactPolicy/<name>`.
    pub required_by: String,
    /// `SigstoreBundle` (cosign v3, bundle v0.3), `SimpleSigning` (legacy)
    /// or `Notation` (Notary Project).
    pub format: String,
    /// `ReferrersAPI`, `ReferrersTag` (the `sha256-<hex>` fallback) or
    /// `SignatureTag` (the legacy `sha256-<hex>.sig`).
    pub found_by: String,
    /// The signature manifest's digest.
    pub signature_digest: String,
    /// `sha256:<hex>` of the signing key's DER SubjectPublicKeyInfo
    /// (cosign's hint; for keyless, the certificate's key).
    pub key_fingerprint: String,
    /// Which Secret entry holds the key: `<namespace>/<secret>/<key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Keyless: the certificate's subject (SAN URI or email). Notation:
    /// the signing certificate's subject DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_subject: Option<String>,
    /// Notation: `JWS` or `COSE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
    /// Notation: sha256 of each certificate of the chain, the signing one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_chain: Vec<String>,
    /// Notation: the signing time the signer claims (`io.cncf.notary.signingTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_time: Option<Time>,
    /// Notation: the trust policy statement that applied, and its level:
    /// `<statement> (<level>)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_policy: Option<String>,
    /// Notation: checks that failed but that the statement's level only
    /// logs (audit, permissive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logged_failures: Vec<String>,
    /// Keyless: the certificate's OIDC issuer (Fulcio extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_issuer: Option<String>,
    /// Keyless: the identity rule that matched, as `identities[i]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Keyless: the trusted root's certificate authority that issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// The trusted root used: `embedded public-good Sigstore root`, or the
    /// Secret or ConfigMap it came from, with its content's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_root: Option<String>,
    /// RFC 3161 timestamp authority whose signed time was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrated_time: Option<Time>,
}

/// Set this annotation to any new value (a timestamp, say) to sync now,
/// without waiting for the interval or a shared resolution.
pub const REQUESTED_AT_ANNOTATION: &str = "ocisync.dev/requested-at";

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesSummary {
    pub count: u64,
    pub bytes: u64,
    /// The first files by path, at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<FileStatus>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct FileStatus {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub pinned: String,
    /// What the tag (or range) resolves to now.
    pub latest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

const GENERATED: &str =
    "# Generated by `ocisync crd`; do not edit. A test fails when this drifts from the Rust types.\n";

/// The CRDs as YAML, as committed under `crds/`: (file name, content).
pub fn crds() -> Vec<(&'static str, String)> {
    use kube::CustomResourceExt;
    let yaml = |crd| format!("{GENERATED}{}", serde_saphyr::to_string(&crd).expect("the CRD serialises"));
    vec![
        ("artifacts.ocisync.dev.yaml", yaml(Artifact::crd())),
        ("clusterartifactpolicies.ocisync.dev.yaml", yaml(ClusterArtifactPolicy::crd())),
    ]
}

/// Every CRD, one YAML stream (what `ocisync crd` prints).
pub fn crd_yaml() -> String {
    crds().into_iter().map(|(_, y)| y).collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_types() {
        for dir in ["crds", "charts/ocisync/crds"] {
            for (file, yaml) in crds() {
                let path = format!("{}/../{dir}/{file}", env!("CARGO_MANIFEST_DIR"));
                let committed = std::fs::read_to_string(path).unwrap_or_default();
                assert!(committed == yaml, "{dir}/{file} is out of date: run `cargo run -q -- crd --dir {dir}`");
            }
        }
    }

    #[test]
    fn spec_round_trips_with_defaults() {
        let a: ArtifactSpec = serde_json::from_value(serde_json::json!({
            "url": "oci://r.io/app",
            "ref": {"semver": ">=1.0.0"},
            "target": {"configMap": {"keys": "Basename"}}
        }))
        .unwrap();
        assert_eq!(a.reference.as_ref().unwrap().semver.as_deref(), Some(">=1.0.0"));
        assert_eq!(a.target.config_map.as_ref().unwrap().keys, KeyStyle::Basename);
        assert!(!a.suspend && !a.insecure);
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back["ref"]["semver"], ">=1.0.0");
        assert!(back.get("suspend").is_none(), "defaults stay out of applied objects");
    }
}
