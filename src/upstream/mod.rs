//! Upstream connections: reachability ([`health`]) and the lean HTTP/1.1 client ([`h1`]).

pub mod h1;
pub mod health;
