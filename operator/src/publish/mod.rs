//! Putting fetched files where they are used: a ConfigMap for now.

pub mod configmap;
