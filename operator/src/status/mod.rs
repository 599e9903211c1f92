//! What the status says: one reason type for every way a reconcile can end,
//! shared by conditions, Events, metrics and the CLI's exit codes, and the
//! pure step from the last status and an outcome to the next one.

pub(crate) mod conditions;
mod next;

pub(crate) use next::{Served, next_status, transfer_status, verification_status};

use serde::Serialize;

use crate::controller::credentials::AccessError;
use crate::controller::plan::SpecError;
use crate::controller::trust::TrustError;
use crate::fetch::FetchError;
use crate::oci::RegistryError;
use crate::publish::PublishError;
use crate::resolve::ResolveError;
use crate::unpack::UnpackError;
use crate::verify::VerifyError;

/// Every condition reason ocisync writes. The names are an API: users
/// match on them in alerts and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub(crate) enum Reason {
    // success and bookkeeping
    Synced,
    Succeeded,
    RetryingAfterError,
    TagMoved,
    // the registry
    NotFound,
    Unauthorized,
    Unreachable,
    RegistryError,
    DigestMismatch,
    // the content
    LimitExceeded,
    UnsafeContent,
    Unsupported,
    // credentials and spec
    CredentialsUnavailable,
    InvalidCredentials,
    InvalidSpec,
    // signatures
    NoSignature,
    UntrustedSigner,
    SignatureMismatch,
    TransparencyLogMissing,
    TransparencyLogInvalid,
    PolicyViolation,
    InvalidVerificationKeys,
    InvalidTrustedRoot,
    UnsupportedLogEntry,
    // the target
    ContentTooLarge,
    KeyCollision,
    InvalidKey,
    ConfigMapNotOwned,
    VolumeNotOwned,
    // the operator itself
    Timeout,
    ApiError,
    /// The disk written to (the shared volume, the work dir) is full, or
    /// its quota reached: whoever sizes it must act, or space must free up.
    NoSpace,
    Internal,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Synced => "Synced",
            Reason::Succeeded => "Succeeded",
            Reason::RetryingAfterError => "RetryingAfterError",
            Reason::TagMoved => "TagMoved",
            Reason::NotFound => "NotFound",
            Reason::Unauthorized => "Unauthorized",
            Reason::Unreachable => "Unreachable",
            Reason::RegistryError => "RegistryError",
            Reason::DigestMismatch => "DigestMismatch",
            Reason::LimitExceeded => "LimitExceeded",
            Reason::UnsafeContent => "UnsafeContent",
            Reason::Unsupported => "Unsupported",
            Reason::CredentialsUnavailable => "CredentialsUnavailable",
            Reason::InvalidCredentials => "InvalidCredentials",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::NoSignature => "NoSignature",
            Reason::UntrustedSigner => "UntrustedSigner",
            Reason::SignatureMismatch => "SignatureMismatch",
            Reason::TransparencyLogMissing => "TransparencyLogMissing",
            Reason::TransparencyLogInvalid => "TransparencyLogInvalid",
            Reason::PolicyViolation => "PolicyViolation",
            Reason::InvalidVerificationKeys => "InvalidVerificationKeys",
            Reason::InvalidTrustedRoot => "InvalidTrustedRoot",
            Reason::UnsupportedLogEntry => "UnsupportedLogEntry",
            Reason::ContentTooLarge => "ContentTooLarge",
            Reason::KeyCollision => "KeyCollision",
            Reason::InvalidKey => "InvalidKey",
            Reason::ConfigMapNotOwned => "ConfigMapNotOwned",
            Reason::VolumeNotOwned => "VolumeNotOwned",
            Reason::Timeout => "Timeout",
            Reason::ApiError => "ApiError",
            Reason::NoSpace => "NoSpace",
            Reason::Internal => "Internal",
        }
    }

    /// Only a change by the user (the spec, a Secret, the artifact, a
    /// ConfigMap in the way) can help: retrying the same thing cannot.
    pub(crate) fn is_stalled(self) -> bool {
        matches!(
            self,
            Reason::LimitExceeded
                | Reason::UnsafeContent
                | Reason::Unsupported
                | Reason::InvalidCredentials
                | Reason::InvalidSpec
                | Reason::ContentTooLarge
                | Reason::KeyCollision
                | Reason::InvalidKey
                | Reason::ConfigMapNotOwned
                | Reason::VolumeNotOwned
                | Reason::UntrustedSigner
                | Reason::SignatureMismatch
                | Reason::TransparencyLogMissing
                | Reason::TransparencyLogInvalid
                | Reason::PolicyViolation
                | Reason::InvalidVerificationKeys
                | Reason::InvalidTrustedRoot
                | Reason::UnsupportedLogEntry
        )
    }

    /// A verdict on signatures: it can change without any input changing
    /// (someone signs the digest), so it is never remembered as final.
    pub(crate) fn is_verification(self) -> bool {
        matches!(
            self,
            Reason::NoSignature
                | Reason::UntrustedSigner
                | Reason::SignatureMismatch
                | Reason::TransparencyLogMissing
                | Reason::TransparencyLogInvalid
                | Reason::UnsupportedLogEntry
                | Reason::PolicyViolation
        )
    }

    /// The `reason` label of `ocisync_reconciles_total`: a closed set, so
    /// the metric's cardinality is bounded.
    pub(crate) fn metric_label(self) -> &'static str {
        self.as_str()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed read or write of our own disk: out of space (or quota) is the
/// disk's owner's to fix, anything else is ours.
pub(crate) fn io_reason(e: &std::io::Error) -> Reason {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => Reason::NoSpace,
        _ => Reason::Internal,
    }
}

impl From<&RegistryError> for Reason {
    fn from(e: &RegistryError) -> Self {
        use RegistryError as R;
        match e {
            R::NotFound { .. } => Reason::NotFound,
            R::Unauthorized { .. } | R::Denied { .. } => Reason::Unauthorized,
            R::Unreachable { .. } | R::Interrupted { .. } => Reason::Unreachable,
            R::DigestMismatch { .. } | R::SizeMismatch { .. } => Reason::DigestMismatch,
            R::TooLarge { .. } => Reason::LimitExceeded,
            R::Manifest(_) => Reason::Unsupported,
            R::Status { .. } | R::Protocol(_) => Reason::RegistryError,
            R::Config(_) => Reason::InvalidCredentials,
        }
    }
}

impl From<&UnpackError> for Reason {
    fn from(e: &UnpackError) -> Self {
        use UnpackError as U;
        match e {
            U::UnsafePath { .. } | U::LinkEscapes { .. } | U::UnsupportedEntry { .. } => Reason::UnsafeContent,
            U::LimitExceeded { .. } => Reason::LimitExceeded,
            U::Mismatch { .. } => Reason::DigestMismatch,
            U::UnsupportedLayer { .. } | U::Corrupt { .. } => Reason::Unsupported,
            U::Io { source, .. } => io_reason(source),
        }
    }
}

impl From<&ResolveError> for Reason {
    fn from(e: &ResolveError) -> Self {
        match e {
            ResolveError::Registry(e) => e.into(),
            ResolveError::NoMatchingTag { .. } => Reason::NotFound,
            ResolveError::NestedIndex(_) => Reason::Unsupported,
        }
    }
}

impl From<&FetchError> for Reason {
    fn from(e: &FetchError) -> Self {
        match e {
            FetchError::Registry(e) => e.into(),
            FetchError::Unpack(e) => e.into(),
            FetchError::Task(_) | FetchError::Cancelled => Reason::Internal,
        }
    }
}

impl From<&PublishError> for Reason {
    fn from(e: &PublishError) -> Self {
        match e {
            PublishError::TooLarge { .. } => Reason::ContentTooLarge,
            PublishError::KeyCollision { .. } => Reason::KeyCollision,
            PublishError::BadKey { .. } => Reason::InvalidKey,
            PublishError::NotOwned { .. } | PublishError::Conflict { .. } => Reason::ConfigMapNotOwned,
            PublishError::Api(_) => Reason::ApiError,
            PublishError::Io { source, .. } => io_reason(source),
            PublishError::Volume(e) => {
                use crate::publish::volume::{VolumeError, target::TargetError};
                match e {
                    TargetError::NoRoot | TargetError::Unsafe(_) => Reason::InvalidSpec,
                    TargetError::NotOwned(_) => Reason::VolumeNotOwned,
                    TargetError::Volume(VolumeError::Reserved(_)) => Reason::UnsafeContent,
                    TargetError::Volume(VolumeError::Io { source, .. }) => io_reason(source),
                }
            }
        }
    }
}

impl From<&AccessError> for Reason {
    fn from(e: &AccessError) -> Self {
        match e {
            AccessError::NotFound { .. } => Reason::CredentialsUnavailable,
            AccessError::BadSecret { .. } => Reason::InvalidCredentials,
            AccessError::Kube(_) => Reason::ApiError,
            // A plugin that fails may pass next time (a cloud hiccup, an
            // annotation added): retried with backoff, never stalled.
            AccessError::Provider(_) => Reason::CredentialsUnavailable,
        }
    }
}

impl From<&VerifyError> for Reason {
    fn from(e: &VerifyError) -> Self {
        match e {
            VerifyError::NoSignature { .. } => Reason::NoSignature,
            VerifyError::UntrustedSigner(_) => Reason::UntrustedSigner,
            VerifyError::SignatureMismatch(_) => Reason::SignatureMismatch,
            VerifyError::TransparencyLogMissing(_) => Reason::TransparencyLogMissing,
            VerifyError::TransparencyLogInvalid(_) => Reason::TransparencyLogInvalid,
            VerifyError::BadKeys(_) => Reason::InvalidVerificationKeys,
            VerifyError::BadTrustedRoot(_) => Reason::InvalidTrustedRoot,
            VerifyError::UnsupportedLogEntry(_) => Reason::UnsupportedLogEntry,
            VerifyError::Unsupported(_) => Reason::Unsupported,
            VerifyError::PolicyViolation { .. } => Reason::PolicyViolation,
        }
    }
}

impl From<&TrustError> for Reason {
    fn from(e: &TrustError) -> Self {
        match e {
            TrustError::Access(e) => e.into(),
            TrustError::Verify(e) => e.into(),
            TrustError::Spec(_) => Reason::InvalidSpec,
        }
    }
}

impl From<&SpecError> for Reason {
    fn from(_: &SpecError) -> Self {
        Reason::InvalidSpec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_reasons_are_the_ones_only_a_user_can_fix() {
        let cases = [
            (Reason::Unreachable, false),
            (Reason::NotFound, false),
            (Reason::Unauthorized, false),
            (Reason::CredentialsUnavailable, false),
            (Reason::Timeout, false),
            (Reason::ApiError, false),
            (Reason::DigestMismatch, false),
            (Reason::UnsafeContent, true),
            (Reason::LimitExceeded, true),
            (Reason::ContentTooLarge, true),
            (Reason::ConfigMapNotOwned, true),
            (Reason::InvalidSpec, true),
            (Reason::InvalidCredentials, true),
            // a signature may yet be pushed; a wrong one needs the user
            (Reason::NoSignature, false),
            (Reason::UntrustedSigner, true),
            (Reason::SignatureMismatch, true),
            (Reason::PolicyViolation, true),
        ];
        for (reason, stalled) in cases {
            assert_eq!(reason.is_stalled(), stalled, "{reason}");
        }
    }

    #[test]
    fn errors_map_to_reasons() {
        let e = RegistryError::NotFound { what: "x".into() };
        assert_eq!(Reason::from(&FetchError::Registry(e)), Reason::NotFound);
        let e = UnpackError::LinkEscapes { path: "a".into(), target: "/".into() };
        assert_eq!(Reason::from(&FetchError::Unpack(e)), Reason::UnsafeContent);
        let e = ResolveError::NoMatchingTag { repository: "r".into(), range: "^9".into() };
        assert_eq!(Reason::from(&e), Reason::NotFound);
        assert_eq!(Reason::from(&PublishError::TooLarge { bytes: 2 }), Reason::ContentTooLarge);
        assert_eq!(serde_json::to_value(Reason::KeyCollision).unwrap(), "KeyCollision");
    }

    #[test]
    fn a_full_disk_is_no_space_not_internal() {
        use crate::publish::volume::{VolumeError, target::TargetError};
        let full = || std::io::Error::from_raw_os_error(28); // ENOSPC
        let quota = || std::io::Error::from_raw_os_error(122); // EDQUOT
        let other = || std::io::Error::from_raw_os_error(5); // EIO
        let cases: [(Reason, Reason); 6] = [
            (Reason::from(&UnpackError::Io { path: "f".into(), source: full() }), Reason::NoSpace),
            (Reason::from(&UnpackError::Io { path: "f".into(), source: other() }), Reason::Internal),
            (Reason::from(&PublishError::Io { path: "f".into(), source: quota() }), Reason::NoSpace),
            (
                Reason::from(&PublishError::Volume(TargetError::Volume(VolumeError::Io {
                    path: "v".into(),
                    source: full(),
                }))),
                Reason::NoSpace,
            ),
            (Reason::from(&FetchError::Unpack(UnpackError::Io { path: "f".into(), source: full() })), Reason::NoSpace),
            (Reason::from(&PublishError::Io { path: "f".into(), source: other() }), Reason::Internal),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, want, "case {i}");
        }
        assert!(!Reason::NoSpace.is_stalled(), "space may free up (a revision past its grace): retried");
    }
}
