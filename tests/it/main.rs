//! In-process integration tests: gateway and upstreams on port 0, readiness signalled, no sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Test clients and servers, not the request path: whole-body reads and test locks are fine.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod cases;
mod common;
