//! The repository side of GitOps: Artifact documents found in YAML files,
//! and a pinned digest written back into them without touching any other
//! byte (a span edit, not a re-serialisation: comments, key order, quoting
//! and indentation stay as the author wrote them).

mod edit;
mod find;
pub(crate) mod schema;
mod trust;

pub(crate) use edit::{Edit, apply, pin_edit};
pub(crate) use find::{artifact_documents, find_in, read_tree};
pub(crate) use trust::{Objects, policy_requirements, requirements};
