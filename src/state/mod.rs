//! The live state of the gateway: the one [`Store`] holding the current [`Snapshot`] (reload,
//! keep-last-good), what triggers reloads ([`watcher`]), and upstream reachability ([`probe`]).

pub mod probe;
pub mod snapshot;
pub mod store;
pub mod watcher;

pub use snapshot::Snapshot;
pub use store::{Outcome, ReloadError, Store};
