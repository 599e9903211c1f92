//! Deciding which version an Artifact wants: a tag, the highest tag in a
//! semver range, or a pinned digest.

pub mod semver;
