//! Identity: turning a verified token's claims into the caller's scopes.
//!
//! | file        | owns                                                                  |
//! |-------------|-----------------------------------------------------------------------|
//! | `scopes.rs` | claims -> `claim:value` keys -> scopes (`auth.claims`, `auth.mappings`) |
//!
//! Deciding what those scopes allow is [`crate::policy`]'s job.

pub mod scopes;

pub use scopes::{claim_keys, ScopeMap, ALWAYS_READ};
