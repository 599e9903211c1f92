//! Writing to a registry, for `ocisync push`: whether a blob is there, a
//! blob uploaded from a file (one POST, then one streamed PUT: the
//! monolithic upload every registry takes), and a manifest put under a tag.
//! Credentials ask for `pull,push`; the upload's `Location` must stay on the
//! registry's host, so credentials never go elsewhere.

use std::path::Path;

use bytes::Bytes;
use reqwest::{Method, StatusCode, header};

use super::client::{Extra, RegistryClient, RequestKind};
use super::digest::Digest;
use super::error::RegistryError;
use super::retry::Outcome;

impl RegistryClient {
    /// Does `repository` hold the blob already? (A HEAD; 404 is "no".)
    pub(crate) async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let extra = Extra { push: true, accept_404: true, ..Extra::default() };
        let what = || format!("blob {repository}@{digest}");
        let res = self.send_with(Method::HEAD, RequestKind::Blob, &url, repository, extra, what).await?;
        Ok(res.status().is_success())
    }

    /// Upload the `size` bytes at `path`, which are `digest`, to `repository`
    /// (`Ok(false)`), or mount it from the first of `mount_from` (other
    /// repositories of this registry) that holds it (`Ok(true)`): the
    /// registry then copies nothing. A mount the registry does not do (it
    /// answers with an upload session instead) goes on as an upload.
    pub(crate) async fn upload_blob(
        &self,
        repository: &str,
        path: &Path,
        digest: &Digest,
        size: u64,
        mount_from: &[String],
    ) -> Result<bool, RegistryError> {
        let what = || format!("upload of {digest} to {repository}");
        let extra = || Extra { push: true, ..Extra::default() };
        // A mount the registry does not make starts an upload session
        // instead; the last one is used, the others expire on the registry.
        let mut started = None;
        for from in mount_from {
            let url = format!("{}/v2/{repository}/blobs/uploads/?mount={digest}&from={from}", self.base);
            let res = self.send_with(Method::POST, RequestKind::Blob, &url, repository, extra(), what).await?;
            if res.status() == StatusCode::CREATED {
                return Ok(true);
            }
            started = Some(res);
        }
        let started = match started {
            Some(res) => res,
            None => {
                let url = format!("{}/v2/{repository}/blobs/uploads/", self.base);
                self.send_with(Method::POST, RequestKind::Blob, &url, repository, extra(), what).await?
            }
        };
        let location = started
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol(format!("{}: no Location for the upload", what())))?;
        let put = self.upload_url(location, digest).ok_or_else(|| {
            RegistryError::Protocol(format!("{}: the upload goes to another host ({location:?}); not followed", what()))
        })?;
        let scope = format!("repository:{repository}:pull,push");
        let mut attempt = 1;
        loop {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|e| RegistryError::Protocol(format!("{}: {}: {e}", what(), path.display())))?;
            let mut req = self
                .http
                .request(Method::PUT, &put)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, size)
                .body(file_body(file));
            if let Some(auth) = self.authorization(&scope) {
                req = req.header(header::AUTHORIZATION, auth);
            }
            let delay = match req.send().await {
                Ok(res) if res.status() == StatusCode::CREATED || res.status().is_success() => return Ok(false),
                Ok(res) => {
                    let status = res.status().as_u16();
                    let body = res.text().await.unwrap_or_default().chars().take(300).collect::<String>();
                    self.retry.delay(attempt, Outcome::Status(status), None).ok_or(RegistryError::Status {
                        status,
                        what: what(),
                        attempts: attempt,
                        body,
                    })?
                }
                Err(e) => self
                    .retry
                    .delay(attempt, Outcome::Transport, None)
                    .ok_or_else(|| RegistryError::unreachable(&put, &e))?,
            };
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Put `body` (a manifest of `media_type`) at `reference` (a tag or its
    /// digest).
    pub(crate) async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<(), RegistryError> {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let extra = Extra { push: true, body: Some((media_type, body)), ..Extra::default() };
        let what = || format!("manifest {repository}:{reference}");
        self.send_with(Method::PUT, RequestKind::Manifest, &url, repository, extra, what).await.map(|_| ())
    }

    /// The PUT that completes an upload at `location` (absolute, or relative
    /// to the registry), with the digest added to its query; `None` when it
    /// is on another host.
    fn upload_url(&self, location: &str, digest: &Digest) -> Option<String> {
        let full = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else if location.starts_with(&format!("{}/", self.base)) {
            location.to_string()
        } else {
            return None;
        };
        let sep = if full.contains('?') { '&' } else { '?' };
        Some(format!("{full}{sep}digest={digest}"))
    }
}

/// A file as a request body in 1 MiB pieces: tokio's own `File` body reads
/// 4 KiB at a time, each a trip to the blocking pool, which made a 170 MiB
/// upload take seconds.
fn file_body(file: tokio::fs::File) -> reqwest::Body {
    use tokio::io::AsyncReadExt;
    const PIECE: usize = 1 << 20;
    let pieces = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = bytes::BytesMut::with_capacity(PIECE);
        while buf.len() < PIECE {
            match file.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Some((Err(e), None)),
            }
        }
        if buf.is_empty() { None } else { Some((Ok::<_, std::io::Error>(buf.freeze()), Some(file))) }
    });
    reqwest::Body::wrap_stream(pieces)
}
