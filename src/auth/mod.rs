//! Identity: who is calling. A bearer token is verified and its claims become a [`Principal`]
//! holding the caller's scopes.
//!
//! | file           | owns                                                                  |
//! |----------------|-----------------------------------------------------------------------|
//! | `verifier.rs`  | [`Authn`]: token -> principal on the request path, 401 reasons        |
//! | `principal.rs` | [`Principal`]: subject, issuer, client, scopes                        |
//! | `scopes.rs`    | claims -> `claim:value` keys -> scopes (`auth.claims`, `auth.mappings`) |
//! | `jwt.rs`       | JWT verification (no I/O): the verifier                               |
//! | `keys.rs`      | verification keys from a JWK set, and which a refresh retired         |
//! | `cache.rs`     | the bounded cache of verified tokens                                  |
//! | `jwks.rs`      | JWK set sources (file, URL, OIDC discovery), refresh, background service |
//!
//! Deciding what those scopes allow is [`crate::policy`]'s job.

pub mod cache;
pub mod claims;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod principal;
pub mod scopes;
pub mod verifier;

pub use cache::TokenCache;
pub use jwks::{Jwks, JwksRefresher, JwksSource};
pub use jwt::{JwtError, KeySet, Verified, Verifier};
pub use principal::Principal;
pub use scopes::{claim_keys, ScopeMap, ALWAYS_READ};
pub use verifier::{bearer, Authn, Refusal};
