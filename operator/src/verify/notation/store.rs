//! Trust stores: named sets of certificates by type, read from notation's
//! own configuration directory (`truststore/x509/<type>/<name>/*`) or
//! from a Secret in Flux's layout (`trustpolicy.json` and `*.crt` /
//! `*.pem`, every certificate serving every store the policy names).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;

use super::chain::Cert;
use super::policy::{Policy, StoreType};

/// A certificate file larger than this is not read.
pub(crate) const MAX_CERT_FILE: u64 = 1 << 20;
/// Certificates in all stores together at most.
const MAX_CERTS: usize = 256;

#[derive(Debug, Clone, Default)]
pub(crate) struct Stores {
    by_name: BTreeMap<(&'static str, String), Vec<Cert>>,
    /// Flux's layout: one set for every store.
    everywhere: Vec<Cert>,
}

impl Stores {
    pub(crate) fn certs(&self, t: StoreType, name: &str) -> &[Cert] {
        match self.by_name.get(&(t.as_str(), name.to_string())) {
            Some(c) => c,
            None => &self.everywhere,
        }
    }

    fn count(&self) -> usize {
        self.by_name.values().map(Vec::len).sum::<usize>() + self.everywhere.len()
    }
}

/// PEM (one or more certificates) or one DER certificate.
pub(crate) fn certificates(source: &str, bytes: &[u8]) -> Result<Vec<Cert>, String> {
    let text = std::str::from_utf8(bytes).ok().filter(|t| t.contains("-----BEGIN"));
    let ders: Vec<Vec<u8>> = match text {
        None => vec![bytes.to_vec()],
        Some(t) => {
            let mut out = Vec::new();
            let mut rest = t;
            while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
                let body = &rest[start + 27..];
                let end = body
                    .find("-----END CERTIFICATE-----")
                    .ok_or_else(|| format!("{source}: a PEM block that does not end"))?;
                let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
                out.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| format!("{source}: a PEM certificate that is not base64"))?,
                );
                rest = &body[end..];
            }
            if out.is_empty() {
                return Err(format!("{source}: no CERTIFICATE in it"));
            }
            out
        }
    };
    ders.iter().map(|d| Cert::parse(d).map_err(|e| format!("{source}: {e}"))).collect()
}

/// Notation's configuration directory: the policy (`trustpolicy.oci.json`
/// before `trustpolicy.json`, as notation 1.2+ reads them) and every store
/// it names.
pub(crate) fn from_dir(dir: &Path) -> Result<(Policy, Stores, String), String> {
    let (file, bytes) = ["trustpolicy.oci.json", "trustpolicy.json"]
        .iter()
        .find_map(|f| read_bounded(&dir.join(f)).ok().map(|b| (dir.join(f), b)))
        .ok_or_else(|| format!("{}: no trustpolicy.oci.json or trustpolicy.json", dir.display()))?;
    let policy = Policy::parse(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut stores = Stores::default();
    for s in &policy.statements {
        for (t, name) in &s.stores {
            let key = (t.as_str(), name.clone());
            if stores.by_name.contains_key(&key) {
                continue;
            }
            let d = dir.join("truststore/x509").join(t.as_str()).join(name);
            let mut certs = Vec::new();
            // A store the policy names but that does not exist is empty, as
            // in notation: the statements that need it then fail to verify.
            if let Ok(entries) = std::fs::read_dir(&d) {
                let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                paths.sort();
                for p in paths.into_iter().filter(|p| p.is_file()) {
                    let bytes = read_bounded(&p)?;
                    certs.extend(certificates(&p.display().to_string(), &bytes)?);
                }
            }
            stores.by_name.insert(key, certs);
            if stores.count() > MAX_CERTS {
                return Err(format!("{}: more than {MAX_CERTS} certificates in the trust stores", dir.display()));
            }
        }
    }
    Ok((policy, stores, file.display().to_string()))
}

fn read_bounded(p: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if meta.len() > MAX_CERT_FILE.max(super::policy::MAX_POLICY as u64) {
        return Err(format!("{}: larger than {MAX_CERT_FILE} bytes", p.display()));
    }
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Flux's Secret layout: `trustpolicy.json` and certificates in entries
/// ending `.crt` or `.pem`; other entries are left alone.
pub(crate) fn from_entries(source: &str, entries: &BTreeMap<String, Vec<u8>>) -> Result<(Policy, Stores), String> {
    let policy_bytes = entries
        .get("trustpolicy.json")
        .or_else(|| entries.get("trustpolicy.oci.json"))
        .ok_or_else(|| format!("{source} has no trustpolicy.json entry"))?;
    let policy = Policy::parse(policy_bytes).map_err(|e| format!("{source}/trustpolicy.json: {e}"))?;
    let mut stores = Stores::default();
    for (k, v) in entries {
        if k.ends_with(".crt") || k.ends_with(".pem") {
            stores.everywhere.extend(certificates(&format!("{source}/{k}"), v)?);
        }
        if stores.count() > MAX_CERTS {
            return Err(format!("{source}: more than {MAX_CERTS} certificates"));
        }
    }
    if stores.everywhere.is_empty() && policy.statements.iter().any(|s| !s.skips_all()) {
        return Err(format!("{source} has no certificates (entries ending .crt or .pem)"));
    }
    Ok((policy, stores))
}
