//! Every condition reason: the step that sets it, what happened, what to
//! do. The match is exhaustive, so a new reason does not compile until it
//! is documented here; `ALL` is the order of the reference page.

use crate::status::Reason;

pub(crate) const ALL: [Reason; 33] = [
    Reason::Synced,
    Reason::Succeeded,
    Reason::RetryingAfterError,
    Reason::TagMoved,
    Reason::NotFound,
    Reason::Unauthorized,
    Reason::Unreachable,
    Reason::RegistryError,
    Reason::DigestMismatch,
    Reason::LimitExceeded,
    Reason::UnsafeContent,
    Reason::Unsupported,
    Reason::CredentialsUnavailable,
    Reason::InvalidCredentials,
    Reason::InvalidSpec,
    Reason::NoSignature,
    Reason::UntrustedSigner,
    Reason::SignatureMismatch,
    Reason::TransparencyLogMissing,
    Reason::TransparencyLogInvalid,
    Reason::PolicyViolation,
    Reason::InvalidVerificationKeys,
    Reason::InvalidTrustedRoot,
    Reason::UnsupportedLogEntry,
    Reason::ContentTooLarge,
    Reason::KeyCollision,
    Reason::InvalidKey,
    Reason::ConfigMapNotOwned,
    Reason::VolumeNotOwned,
    Reason::Timeout,
    Reason::ApiError,
    Reason::NoSpace,
    Reason::Internal,
];

/// (the step or condition, what happened, what to do).
pub(crate) fn doc(r: Reason) -> (&'static str, &'static str, &'static str) {
    match r {
        Reason::Synced => ("Ready", "the target holds the digest the spec asks for, verified as asked", "nothing"),
        Reason::Succeeded => ("each step", "the step passed", "nothing"),
        Reason::RetryingAfterError => (
            "Reconciling",
            "the last sync failed for a reason that may pass by itself; it is retried with backoff (5 s doubling to 5 min)",
            "read the failed step's condition for the reason",
        ),
        Reason::TagMoved => (
            "Drifted",
            "the followed tag points at another digest than the one synced (seen within two intervals)",
            "nothing: the next sync takes it; pin `ref.digest` to stop following",
        ),
        Reason::NotFound => (
            "Resolved, Fetched",
            "no such tag, manifest or blob; no tag in the semver range",
            "check `url` and `ref`; push the tag; `ocisync resolve` shows what the registry answers",
        ),
        Reason::Unauthorized => (
            "any",
            "the registry refused the credentials, or their absence",
            "check `secretRef`, the ServiceAccount's pull secrets or the credential provider; `ocisync resolve --docker-config` with the same file",
        ),
        Reason::Unreachable => (
            "any",
            "no connection, TLS failure, or the connection broke",
            "check the registry's address, the proxy (`proxySecretRef`, the environment's) and `certSecretRef`; it is retried with backoff",
        ),
        Reason::RegistryError => (
            "any",
            "HTTP errors after retries, or a protocol violation",
            "the message has the status and what was asked; usually the registry's to fix; retried with backoff",
        ),
        Reason::DigestMismatch => (
            "Fetched",
            "content that does not match its digest or size (from the registry or a mirror)",
            "a registry or mirror serving wrong bytes: retried with backoff, the origin's answer decides",
        ),
        Reason::LimitExceeded => (
            "Fetched",
            "a limit of `spec.limits` (layer bytes, total bytes, files) was passed",
            "raise the limit in `spec.limits` or select fewer files",
        ),
        Reason::UnsafeContent => (
            "Fetched",
            "absolute paths, `..`, links out of the artifact, devices; a volume entry starting with `..`",
            "fix the artifact: ocisync never writes such entries",
        ),
        Reason::Unsupported => (
            "Fetched",
            "a media type, archive or platform ocisync cannot read; a corrupt archive",
            "push a format ocisync reads (see \"What becomes a file\") or set `platform`",
        ),
        Reason::CredentialsUnavailable => (
            "Resolved",
            "a named Secret or ServiceAccount does not exist (yet); a credential provider plugin failed, hung or gave nothing",
            "create the Secret or ServiceAccount (the Artifact is reconciled at once when it appears); check the plugin",
        ),
        Reason::InvalidCredentials => (
            "Resolved",
            "a Secret that cannot be used: no `.dockerconfigjson`, bad PEM, a proxy Secret without `address`",
            "fix the Secret; the message names the key",
        ),
        Reason::InvalidSpec => (
            "—",
            "the spec cannot work; the message names the field",
            "fix that field (`ocisync check` finds these before they are applied)",
        ),
        Reason::NoSignature => (
            "Verified",
            "no signature of this digest, yet",
            "sign it (`cosign sign`, `notation sign`); retried with backoff, since CI often signs just after pushing",
        ),
        Reason::UntrustedSigner => (
            "Verified",
            "signed, but by none of the keys or identities; a certificate from an untrusted CA, expired when signed, revoked or without a valid SCT",
            "sign with a trusted key or identity, or trust the signer in `spec.verify` or the policy",
        ),
        Reason::SignatureMismatch => (
            "Verified",
            "a signature that does not verify, or is about another digest",
            "re-sign the digest; a tampered signature is refused",
        ),
        Reason::TransparencyLogMissing | Reason::TransparencyLogInvalid => (
            "Verified",
            "`transparencyLog: Required` and no log entry; an entry that does not verify",
            "sign with a log entry, or relax `transparencyLog` where that is acceptable",
        ),
        Reason::PolicyViolation => (
            "Verified",
            "a `ClusterArtifactPolicy` is not satisfied; the message names it and why",
            "meet the policy (sign as it asks) or ask its owner",
        ),
        Reason::InvalidVerificationKeys => (
            "Verified",
            "a `*.pub` entry that is not a supported public key, or none",
            "put PEM public keys (ECDSA P-256/384, Ed25519, RSA) in the Secret",
        ),
        Reason::InvalidTrustedRoot => (
            "Verified",
            "a `trusted_root.json` that does not parse, or has no CA (keyless) or no log (`Required`)",
            "fix the trusted root",
        ),
        Reason::UnsupportedLogEntry => (
            "Verified",
            "a log entry of a kind `sigstore-verify` cannot check",
            "sign with cosign 2.4 or later (a `hashedrekord` or `dsse` entry)",
        ),
        Reason::ContentTooLarge | Reason::KeyCollision | Reason::InvalidKey => (
            "Published",
            "the files do not fit a ConfigMap: over 1 MiB, two files with one key, a name that is not a valid key",
            "select fewer files, choose `keys: Path`, or use a volume target",
        ),
        Reason::ConfigMapNotOwned => (
            "Published",
            "the ConfigMap belongs to someone else",
            "delete it, or name another one in `target.configMap.name`",
        ),
        Reason::VolumeNotOwned => {
            ("Published", "another Artifact writes that volume directory", "choose another `target.volume.path`")
        }
        Reason::Timeout => (
            "the step named in the message",
            "the sync took longer than `spec.timeout` (cut to the operator's `--max-timeout`)",
            "raise `spec.timeout`; check the registry's speed (retried with backoff)",
        ),
        Reason::ApiError => (
            "any",
            "the Kubernetes API failed",
            "retried with backoff; check the API server and the operator's permissions",
        ),
        Reason::NoSpace => (
            "Fetched, Published",
            "the shared volume or the work dir is full, or at its quota; the message names the path",
            "free space there or give it more; what the failed sync wrote is removed, and it is retried with backoff",
        ),
        Reason::Internal => (
            "any",
            "the operator itself failed (a disk error other than space, a task that panicked)",
            "retried with backoff; report it with the operator's log",
        ),
    }
}

/// The reference page.
pub(crate) fn page() -> String {
    let mut out = String::from(
        "# Condition reasons\n\n\
         Every `reason` an Artifact's conditions, Events and `ocisync_reconciles_total{reason}` carry. \
         *Stalled* reasons need a change by you: the same inputs are not tried again until the spec, a Secret \
         or the artifact changes (a signature verdict is looked at again each interval). The others are \
         retried with backoff, 5 s doubling to 5 min.\n\n\
         | reason | condition or step | what happened | retried | what to do |\n| --- | --- | --- | --- | --- |\n",
    );
    for r in ALL {
        let (step, what, todo) = doc(r);
        let retried = if r.is_stalled() {
            "stalled"
        } else if matches!(r, Reason::Synced | Reason::Succeeded | Reason::TagMoved) {
            "—"
        } else {
            "with backoff"
        };
        let (what, todo) = (super::cell(what), super::cell(todo));
        out.push_str(&format!("| `{}` | {step} | {what} | {retried} | {todo} |\n", r.as_str()));
    }
    out
}
