//! The registry side: references, digests, manifests, credentials and the
//! HTTP client. Knows nothing about Kubernetes or what happens to the bytes.

pub(crate) mod auth;
pub(crate) mod client;
mod crl;
pub(crate) mod digest;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod helper;
pub(crate) mod manifest;
pub(crate) mod provider;
pub(crate) mod range;
pub(crate) mod reference;
pub(crate) mod referrers;
pub(crate) mod retry;
mod upload;

pub(crate) use auth::{Credentials, DockerConfig};
pub(crate) use client::{RegistryClient, TransportOptions};
pub(crate) use digest::Digest;
pub(crate) use error::RegistryError;
pub(crate) use manifest::{ImageManifest, Manifest, Platform};
pub(crate) use reference::Reference;
