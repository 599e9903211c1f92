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

/// A chunked upload's pieces, unless the registry asks for larger ones.
const PIECE: u64 = 8 << 20;
/// The largest piece held in memory, whatever the registry asks.
const MAX_PIECE: u64 = 64 << 20;
/// Pieces are halved down to this when refused as too large.
const MIN_PIECE: u64 = 256 << 10;

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
        let put = with_digest(&self.next_location(&started, &what)?, digest);
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
                // too large for one request (a proxy's body limit): in pieces
                Ok(res) if res.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return self.upload_in_pieces(repository, path, digest, size).await.map(|()| false);
                }
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

    /// The chunked upload: a new session, `PATCH`es of [`PIECE`] bytes (or
    /// the registry's `OCI-Chunk-Min-Length`, if larger, up to
    /// [`MAX_PIECE`]; halved while answered 413) in order, each answered
    /// with the next `Location`, then a `PUT` with the digest. No retries:
    /// a rerun finds what is already there.
    async fn upload_in_pieces(
        &self,
        repository: &str,
        path: &Path,
        digest: &Digest,
        size: u64,
    ) -> Result<(), RegistryError> {
        use tokio::io::AsyncReadExt;
        let what = || format!("chunked upload of {digest} to {repository}");
        let scope = format!("repository:{repository}:pull,push");
        let url = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let extra = Extra { push: true, ..Extra::default() };
        let started = self.send_with(Method::POST, RequestKind::Blob, &url, repository, extra, what).await?;
        let min: u64 =
            started.headers().get("OCI-Chunk-Min-Length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
        let read_size = usize::try_from(min.clamp(PIECE, MAX_PIECE)).unwrap_or(1 << 20);
        // a piece the registry (or a proxy) still finds too large is halved
        let (mut piece, floor) = (read_size, usize::try_from(min.max(MIN_PIECE)).unwrap_or(1 << 20));
        let mut location = self.next_location(&started, &what)?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| RegistryError::Protocol(format!("{}: {}: {e}", what(), path.display())))?;
        let (mut at, mut buf, mut off) = (0u64, Vec::with_capacity(read_size), 0usize);
        while at < size {
            if off == buf.len() {
                buf.clear();
                off = 0;
                (&mut file)
                    .take(read_size as u64)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| RegistryError::Protocol(format!("{}: {}: {e}", what(), path.display())))?;
                if buf.is_empty() {
                    return Err(RegistryError::Protocol(format!("{}: the file ended at {at} of {size} bytes", what())));
                }
            }
            let n = piece.min(buf.len() - off);
            let end = at + n as u64;
            let mut req = self
                .http
                .request(Method::PATCH, &location)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, n)
                .header(header::CONTENT_RANGE, format!("{at}-{}", end - 1))
                .body(buf[off..off + n].to_vec());
            if let Some(auth) = self.authorization(&scope) {
                req = req.header(header::AUTHORIZATION, auth);
            }
            let res = req.send().await.map_err(|e| RegistryError::unreachable(&location, &e))?;
            match res.status() {
                StatusCode::ACCEPTED => {
                    location = self.next_location(&res, &what)?;
                    (at, off) = (end, off + n);
                }
                StatusCode::PAYLOAD_TOO_LARGE if piece / 2 >= floor => piece /= 2,
                s => {
                    let body = res.text().await.unwrap_or_default().chars().take(300).collect();
                    return Err(RegistryError::Status { status: s.as_u16(), what: what(), attempts: 1, body });
                }
            }
        }
        let put = with_digest(&location, digest);
        let mut req = self.http.request(Method::PUT, &put).header(header::CONTENT_LENGTH, 0);
        if let Some(auth) = self.authorization(&scope) {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let res = req.send().await.map_err(|e| RegistryError::unreachable(&put, &e))?;
        if !res.status().is_success() {
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default().chars().take(300).collect();
            return Err(RegistryError::Status { status, what: what(), attempts: 1, body });
        }
        Ok(())
    }

    /// The upload's next URL, from an answer's `Location`, on this registry.
    fn next_location(&self, res: &reqwest::Response, what: &impl Fn() -> String) -> Result<String, RegistryError> {
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol(format!("{}: no Location for the upload", what())))?;
        if location.starts_with('/') {
            Ok(format!("{}{location}", self.base))
        } else if location.starts_with(&format!("{}/", self.base)) {
            Ok(location.to_string())
        } else {
            Err(RegistryError::Protocol(format!(
                "{}: the upload goes to another host ({location:?}); not followed",
                what()
            )))
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
}

/// The PUT that completes an upload at `url`: the digest added to its query.
fn with_digest(url: &str, digest: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
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
