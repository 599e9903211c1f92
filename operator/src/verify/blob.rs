//! A Sigstore bundle against a file or a digest, by a key or a keyless
//! identity, through `sigstore-verify`: `ocisync verify-blob`, and the
//! entry point the Sigstore conformance suite drives.

use sigstore_types::{Artifact, Bundle, DerPublicKey, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy};

use super::{Trust, VerifyError};

pub(crate) enum Signer {
    Key(DerPublicKey),
    /// The certificate's SAN and its Fulcio OIDC-issuer extension, exactly.
    Identity {
        identity: String,
        issuer: String,
    },
}

pub(crate) enum Input<'a> {
    Bytes(&'a [u8]),
    Digest(Sha256Hash),
}

/// What a verified bundle says.
pub(crate) struct Verified {
    pub(crate) identity: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) integrated_time: Option<i64>,
}

pub(crate) fn verify(
    bundle_json: &str,
    input: Input<'_>,
    signer: &Signer,
    trust: &Trust,
) -> Result<Verified, VerifyError> {
    let bundle = Bundle::from_json(bundle_json)
        .map_err(|e| VerifyError::SignatureMismatch(format!("unreadable bundle: {e}")))?;
    let artifact: Artifact<'_> = match input {
        Input::Bytes(b) => b.into(),
        Input::Digest(d) => d.into(),
    };
    let result = match signer {
        Signer::Key(key) => trust.verifier.verify(artifact, &bundle, &PublicKeyVerificationPolicy::new(key.clone())),
        Signer::Identity { identity, issuer } => {
            trust.verifier.verify(artifact, &bundle, &VerificationPolicy::new(identity.as_str(), issuer.as_str()))
        }
    };
    match result {
        Ok(r) => Ok(Verified {
            identity: r.identity().map(|i| format!("{i:?}")),
            issuer: r.issuer().map(str::to_string),
            integrated_time: r.integrated_time().map(|t| t.as_second()),
        }),
        Err(e @ (sigstore_verify::Error::IdentityMismatch { .. } | sigstore_verify::Error::IssuerMismatch { .. })) => {
            Err(VerifyError::UntrustedSigner(e.to_string()))
        }
        Err(e) => Err(VerifyError::SignatureMismatch(e.to_string())),
    }
}
