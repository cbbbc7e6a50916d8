//! Identity: turning a verified token's claims into the caller's scopes.
//!
//! | file        | owns                                                                  |
//! |-------------|-----------------------------------------------------------------------|
//! | `scopes.rs` | claims -> `claim:value` keys -> scopes (`auth.claims`, `auth.mappings`) |
//! | `jwt.rs`    | JWT verification (no I/O): key set, verifier                            |
//! | `cache.rs`  | the bounded cache of verified tokens                                    |
//! | `jwks.rs`   | JWK set sources (file, URL, OIDC discovery), refresh, background service |
//!
//! Deciding what those scopes allow is [`crate::policy`]'s job.

pub mod cache;
pub mod jwks;
pub mod jwt;
pub mod scopes;

pub use cache::TokenCache;
pub use jwks::{Jwks, JwksRefresher, JwksSource};
pub use jwt::{JwtError, KeySet, Verified, Verifier};
pub use scopes::{claim_keys, ScopeMap, ALWAYS_READ};
