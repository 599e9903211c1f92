//! ocisync: sync OCI artifacts into Kubernetes.
//!
//! The path every driver follows, one module per step: `resolve` a spec or
//! reference to a digest, `verify` its signatures, `fetch` the manifest's layers by that
//! digest into a staging tree, `publish` it to a target, and record the
//! outcome in `status`. The CLI and the controller are two drivers of the
//! same `pipeline`.
//!
//! The library's public surface is the CRD types (`api`) and the binary's
//! entry point; everything else is internal.
#![forbid(unsafe_code)]

mod agent;
pub mod api;
mod cli;
mod controller;
mod diff;
mod docs;
mod fetch;
#[cfg(fuzzing)]
pub mod fuzz;
#[cfg(all(test, not(fuzzing)))]
mod fuzz;
mod gitops;
mod oci;
mod pipeline;
mod publish;
mod push;
mod resolve;
mod shutdown;
mod status;
mod unpack;
mod verify;

/// The `ocisync` command line; `main` only sets up the process.
pub fn main() -> std::process::ExitCode {
    cli::main()
}
