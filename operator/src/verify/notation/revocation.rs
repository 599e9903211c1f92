//! Revocation by CRL, as notation checks it for a certificate chain: a
//! certificate that names neither a CRL nor an OCSP endpoint cannot be
//! revoked and passes; one that names a CRL is looked up in it (the CRL
//! signed by the certificate's issuer, current, and about that issuer);
//! listed means revoked. No CRL to be had (unreachable, stale, unreadable)
//! or only OCSP named means "unknown". The CRLs are fetched by the caller
//! (`crl_urls` says which), so this stays free of I/O.

use std::collections::BTreeMap;

use const_oid::db::rfc5280::{ID_AD_OCSP, ID_CE_CRL_DISTRIBUTION_POINTS, ID_PE_AUTHORITY_INFO_ACCESS};
use der::{Decode as _, Encode as _};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityInfoAccessSyntax, CrlDistributionPoints};

use super::chain::Cert;

/// CRL endpoints looked at for one certificate, at most.
const MAX_URLS_PER_CERT: usize = 4;

/// What fetching each URL gave: the CRL's bytes, or why there are none.
pub(crate) type Crls = BTreeMap<String, Result<Vec<u8>, String>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    Good,
    Revoked(String),
    Unknown(String),
}

/// The CRL URLs a certificate names (http and https only).
pub(crate) fn crl_urls(cert: &Cert) -> Vec<String> {
    let Ok(Some((_, dps))) = cert.extension::<CrlDistributionPoints>(ID_CE_CRL_DISTRIBUTION_POINTS) else {
        return Vec::new();
    };
    dps.0
        .iter()
        .filter_map(|dp| match &dp.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.as_str().to_string()),
            _ => None,
        })
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .take(MAX_URLS_PER_CERT)
        .collect()
}

fn has_ocsp(cert: &Cert) -> bool {
    matches!(
        cert.extension::<AuthorityInfoAccessSyntax>(ID_PE_AUTHORITY_INFO_ACCESS),
        Ok(Some((_, aia))) if aia.0.iter().any(|a| a.access_method == ID_AD_OCSP)
    )
}

/// The chain's status: revoked if any certificate is, else unknown if any
/// is, else good.
pub(crate) fn check(certs: &[Cert], crls: &Crls, now: i64) -> Status {
    let mut unknown = None;
    for (i, c) in certs.iter().enumerate() {
        let issuer = certs.get(i + 1).unwrap_or(c);
        match one(c, issuer, crls, now) {
            Status::Good => {}
            Status::Revoked(m) => return Status::Revoked(m),
            Status::Unknown(m) => {
                unknown.get_or_insert(m);
            }
        }
    }
    unknown.map(Status::Unknown).unwrap_or(Status::Good)
}

fn one(c: &Cert, issuer: &Cert, crls: &Crls, now: i64) -> Status {
    let urls = crl_urls(c);
    if urls.is_empty() {
        return match has_ocsp(c) {
            true => Status::Unknown(format!(
                "certificate {:?} names only an OCSP responder, which ocisync does not query",
                c.subject
            )),
            false => Status::Good,
        };
    }
    let mut why = Vec::new();
    for u in &urls {
        match crls.get(u) {
            None => why.push(format!("{u}: not fetched")),
            Some(Err(e)) => why.push(format!("{u}: {e}")),
            Some(Ok(bytes)) => match in_crl(c, issuer, bytes, now) {
                Ok(None) => return Status::Good,
                Ok(Some(when)) => {
                    return Status::Revoked(format!(
                        "certificate {:?} is revoked (since {}, by {u})",
                        c.subject,
                        super::time(when)
                    ));
                }
                Err(e) => why.push(format!("{u}: {e}")),
            },
        }
    }
    Status::Unknown(format!("the revocation status of certificate {:?} is unknown: {}", c.subject, why.join("; ")))
}

/// `Ok(Some(time))`: listed, revoked at `time`; `Ok(None)`: not listed.
fn in_crl(c: &Cert, issuer: &Cert, bytes: &[u8], now: i64) -> Result<Option<i64>, String> {
    let crl = CertificateList::from_der(bytes).map_err(|e| format!("not a DER CRL: {e}"))?;
    let tbs = &crl.tbs_cert_list;
    let issuer_name = tbs.issuer.to_der().map_err(|e| e.to_string())?;
    if issuer_name != c.issuer_der {
        return Err("a CRL of another issuer".into());
    }
    let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
    match issuer.signed(&tbs_der, &crl.signature_algorithm, &crl.signature, "the CRL") {
        Ok(true) => {}
        Ok(false) => return Err(format!("the CRL is not signed by {:?}", issuer.subject)),
        Err(e) => return Err(e.to_string()),
    }
    let secs = |t: &x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    if secs(&tbs.this_update) > now {
        return Err("the CRL is from the future (thisUpdate)".into());
    }
    match &tbs.next_update {
        Some(n) if secs(n) > now => {}
        Some(n) => return Err(format!("the CRL is stale: its nextUpdate was {}", super::time(secs(n)))),
        None => return Err("the CRL has no nextUpdate".into()),
    }
    // A critical extension this reader does not know (a delta CRL's, an
    // issuing distribution point's scope) could change what the list means.
    if let Some(e) = tbs.crl_extensions.iter().flatten().find(|e| e.critical) {
        return Err(format!("the CRL has critical extension {}, which ocisync does not read", e.extn_id));
    }
    let serial = &c.cert.tbs_certificate.serial_number;
    Ok(tbs.revoked_certificates.iter().flatten().find(|r| &r.serial_number == serial).map(|r| secs(&r.revocation_date)))
}
