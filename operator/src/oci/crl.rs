//! Certificate revocation lists for Notation's revocation check: fetched
//! over HTTP or HTTPS (CRLs are signed, and their URLs are usually plain
//! HTTP), through the registry client's proxy and CAs, bounded in size and
//! time, and kept in a process-wide cache until their own nextUpdate.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use der::Decode as _;
use futures::StreamExt as _;

use super::client::TransportOptions;
use super::error::RegistryError;

/// A CRL larger than this is not read (a large CA's is a few MiB).
pub(crate) const MAX_CRL_BYTES: usize = 8 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);
/// CRLs cached at most; the oldest entry goes first.
const MAX_CACHED: usize = 64;

pub(crate) struct CrlClient {
    builder: Mutex<Option<reqwest::ClientBuilder>>,
    http: OnceLock<Result<reqwest::Client, String>>,
}

impl CrlClient {
    pub(crate) fn new(opts: &TransportOptions) -> Result<Self, RegistryError> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("ocisync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(TIMEOUT)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(pem) = &opts.ca_pem
            && let Ok(certs) = reqwest::Certificate::from_pem_bundle(pem)
        {
            b = b.tls_certs_merge(certs);
        }
        if let Some(p) = &opts.proxy {
            b = b.proxy(p.to_reqwest()?);
        }
        Ok(CrlClient { builder: Mutex::new(Some(b)), http: OnceLock::new() })
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                let b = self.builder.lock().map_err(|_| "CRL client poisoned".to_string())?.take();
                b.ok_or_else(|| "CRL client already built".to_string())?
                    .build()
                    .map_err(|e| format!("HTTP client: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    pub(crate) async fn get(&self, url: &str) -> Result<Bytes, String> {
        let now = jiff::Timestamp::now().as_second();
        if let Some(b) = cached(url, now) {
            return Ok(b);
        }
        let res =
            self.client()?.get(url).send().await.map_err(|e| format!("unreachable: {}", super::error::chain(&e)))?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status().as_u16()));
        }
        if res.content_length().is_some_and(|l| l > MAX_CRL_BYTES as u64) {
            return Err(format!("larger than {MAX_CRL_BYTES} bytes"));
        }
        let mut buf = BytesMut::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("interrupted: {}", super::error::chain(&e)))?;
            if buf.len() + chunk.len() > MAX_CRL_BYTES {
                return Err(format!("larger than {MAX_CRL_BYTES} bytes"));
            }
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        if let Some(until) = next_update(&bytes) {
            keep(url, &bytes, until, now);
        }
        Ok(bytes)
    }
}

type Cache = HashMap<String, (Bytes, i64, i64)>;

fn cache() -> &'static Mutex<Cache> {
    static C: OnceLock<Mutex<Cache>> = OnceLock::new();
    C.get_or_init(Mutex::default)
}

fn cached(url: &str, now: i64) -> Option<Bytes> {
    let c = cache().lock().ok()?;
    c.get(url).filter(|(_, until, _)| *until > now).map(|(b, _, _)| b.clone())
}

fn keep(url: &str, bytes: &Bytes, until: i64, now: i64) {
    let Ok(mut c) = cache().lock() else { return };
    c.retain(|_, (_, u, _)| *u > now);
    if c.len() >= MAX_CACHED
        && let Some(oldest) = c.iter().min_by_key(|(_, (_, _, at))| *at).map(|(k, _)| k.clone())
    {
        c.remove(&oldest);
    }
    c.insert(url.to_string(), (bytes.clone(), until, now));
}

/// When a CRL says the next one is due; `None` for what is not a CRL (it
/// is not cached: the verifier says what is wrong with it each time).
fn next_update(bytes: &[u8]) -> Option<i64> {
    let crl = x509_cert::crl::CertificateList::from_der(bytes).ok()?;
    crl.tbs_cert_list.next_update.map(|t| t.to_unix_duration().as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRL: &[u8] = include_bytes!("../../testdata/notation/root.crl");

    #[test]
    fn a_crl_is_kept_until_its_next_update_and_the_cache_is_bounded() {
        let until = next_update(CRL).expect("the fixture CRL has a nextUpdate");
        assert_eq!(next_update(b"not a CRL"), None);
        let url = "http://crl.test/a.crl";
        keep(url, &Bytes::from_static(CRL), until, until - 100);
        assert_eq!(cached(url, until - 1).as_deref(), Some(CRL));
        assert_eq!(cached(url, until), None, "stale at its nextUpdate");
        for i in 0..(MAX_CACHED + 10) {
            keep(&format!("http://crl.test/{i}"), &Bytes::from_static(b"x"), until, until - 100 + i as i64 % 50);
        }
        assert!(cache().lock().unwrap().len() <= MAX_CACHED);
    }
}
