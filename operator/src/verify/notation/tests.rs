//! Table tests of the pure parts; the cryptography is tested against
//! what the real notation signs, in `tests/it/notation.rs`.
