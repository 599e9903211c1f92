//! ocisync: sync OCI artifacts into Kubernetes.
//!
//! The path every driver follows: resolve a reference to a digest, fetch the
//! manifest and layers by digest, unpack the selected files into a staging
//! directory, and publish it atomically. The CLI (`ocisync pull`) and the
//! controller are two drivers of the same [`fetch`] path.

pub mod api;
pub mod cli;
pub mod controller;
pub mod fetch;
pub mod oci;
pub mod publish;
pub mod resolve;
pub mod unpack;
