//! Hostile-input suite of the core (docs/security.md, "Bad input"): property tests over the
//! JSON decoders, field validation, search-term parsing, cursor decoding and id/key/token
//! parsing. Pure core, no I/O: the keyring runs over an in-memory key store, which also holds
//! the key-management tests (no keys made but with an org, racing key operations).
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of the default.

mod support;

mod cursor;
mod decode;
mod ids;
mod keys;
mod matching;
mod search;
mod validation;
