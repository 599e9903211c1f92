//! The registry side: references, digests, manifests, credentials and the
//! HTTP client. Knows nothing about Kubernetes or what happens to the bytes.

pub mod auth;
pub mod client;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod retry;

pub use auth::{Credentials, DockerConfig};
pub use client::{RegistryClient, TransportOptions};
pub use digest::Digest;
pub use error::RegistryError;
pub use manifest::{Descriptor, ImageIndex, ImageManifest, Manifest, Platform};
pub use reference::Reference;
