//! The live state of the gateway: the one [`Store`] holding the current [`Snapshot`] (reload,
//! keep-last-good), what triggers reloads ([`watcher`]), upstream reachability ([`probe`]) and
//! the housekeeping of rate-limit buckets ([`sweeper`]).

pub mod probe;
pub mod snapshot;
pub mod store;
pub mod sweeper;
pub mod watcher;

pub use snapshot::Snapshot;
pub use store::{Outcome, ReloadError, Store};
