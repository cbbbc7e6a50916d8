//! In-process integration tests: gateway and upstreams on port 0, readiness signalled, no sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod cases;
mod common;
