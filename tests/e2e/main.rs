//! End-to-end tests against real MCP peers (shared PEERS.md): the reference `server-everything`
//! upstream behind a real `portcullis serve`, driven by raw HTTP, the official Python SDK, the
//! Inspector CLI, the MCP conformance suite and `mcp-remote`, with a real OpenID provider
//! (`oidc-provider`, `idp/server.mjs`) issuing the tokens of the identity tests.
//!
//! The peers come from `scripts/peers.sh` and are found through `PORTCULLIS_PEERS`
//! (`. .peers/env.sh`); `scripts/test.sh` does both. Without them these tests fail, they never
//! skip. Every process listens on a free loopback port, readiness is polled with a deadline and
//! every child is killed when its guard drops.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// Test clients and servers, not the request path: whole-body reads and test locks are fine.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod aggregate;
mod audit;
mod conformance;
mod harness;
mod idle_streams;
mod inspector;
mod large_bodies;
mod multi_upstream;
mod oauth;
mod okta_ingress;
mod otel;
mod protocol;
mod python_sdk;
mod reload_load;
mod session;
mod shutdown;
mod sse;
mod tls;
mod upstreams;
