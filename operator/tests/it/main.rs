//! Every integration test, in one binary: one harness compiled once, one
//! control plane and one shared operator for all the tests that need them.

mod agent;
mod api_server;
mod check;
mod completion;
mod controller;
mod defects;
mod diff;
mod faults;
mod hostile;
mod image;
mod keyless;
mod kills;
mod layers;
mod leader;
mod mirrors;
mod namespaced;
mod notation;
mod partial;
mod pin;
mod providers;
mod proxy;
mod pull;
mod push;
mod signatures;
mod support;
mod transport;
mod volume;
