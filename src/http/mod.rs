//! The front ends: I/O only. [`front`] serves plain HTTP/1.1 on the listener's connections and
//! hands everything else to [`pingora`]'s path; both build a view of the request, ask
//! `gateway::decide` for a plan, and carry it out with the same code: [`write`] renders the
//! gateway's own answers, [`relay`] sends a forward upstream and relays the answer, both over
//! the [`downstream::Downstream`] each front end implements.

pub mod downstream;
pub mod fanout;
pub mod front;
pub mod legs;
pub mod pingora;
pub mod relay;
pub mod routed;
pub mod stream;
pub mod subscriptions;
pub mod write;
