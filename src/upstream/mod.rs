//! Upstream servers beyond a single request: reachability ([`health`]).

pub mod health;
