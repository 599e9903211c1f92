//! Public keys from a Secret's `*.pub` entries, as cosign writes them (PEM
//! SubjectPublicKeyInfo). A key that cannot be read is an error, not
//! skipped: a typo must not silently narrow who is trusted.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};
use sigstore_crypto::KeyAlgorithm;
use sigstore_types::DerPublicKey;

use super::VerifyError;

/// Keys in one Secret read at most.
pub(crate) const MAX_KEYS: usize = 64;
/// A PEM public key longer than this is not one (RSA-8192 is under 2 KiB).
const MAX_PEM_BYTES: usize = 16 << 10;

#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// Where it came from: `<namespace>/<secret>/<entry>` or a file name.
    pub(crate) name: String,
    pub(crate) der: DerPublicKey,
    pub(crate) algorithm: KeyAlgorithm,
    /// `sha256:<hex>` of the DER SPKI: what cosign's bundle hint encodes.
    pub(crate) fingerprint: String,
}

impl Key {
    pub(crate) fn parse(name: &str, pem: &[u8]) -> Result<Key, VerifyError> {
        let bad = |reason: &str| VerifyError::BadKeys(format!("{name}: {reason}"));
        if pem.len() > MAX_PEM_BYTES {
            return Err(bad("too large for a public key"));
        }
        let text = std::str::from_utf8(pem).map_err(|_| bad("not PEM text"))?;
        let der = DerPublicKey::from_pem(text)
            .map_err(|_| bad("not a PEM public key (want PUBLIC KEY, as cosign writes)"))?;
        let algorithm = KeyAlgorithm::from_spki(&der)
            .map_err(|_| bad("unsupported key type (want ECDSA P-256/P-384, Ed25519 or RSA)"))?;
        if !matches!(
            algorithm,
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::Ed25519 | KeyAlgorithm::Rsa
        ) {
            return Err(bad("unsupported key type (want ECDSA P-256/P-384, Ed25519 or RSA)"));
        }
        let fingerprint = spki_fingerprint(der.as_bytes());
        Ok(Key { name: name.to_string(), der, algorithm, fingerprint })
    }

    /// cosign's `publicKey.hint`: base64 of the same hash.
    pub(crate) fn hint(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(self.der.as_bytes()))
    }
}

/// `sha256:<hex>` of a DER SubjectPublicKeyInfo.
pub(crate) fn spki_fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Every `*.pub` entry of a Secret, named `<prefix>/<entry>`.
pub(crate) fn from_entries(prefix: &str, entries: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Key>, VerifyError> {
    let keys: Vec<_> = entries.iter().filter(|(k, _)| k.ends_with(".pub")).collect();
    if keys.is_empty() {
        return Err(VerifyError::BadKeys(format!("{prefix} has no *.pub entry")));
    }
    if keys.len() > MAX_KEYS {
        return Err(VerifyError::BadKeys(format!("{prefix} has more than {MAX_KEYS} keys")));
    }
    keys.into_iter().map(|(k, pem)| Key::parse(&format!("{prefix}/{k}"), pem)).collect()
}
