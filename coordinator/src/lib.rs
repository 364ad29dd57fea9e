//! The ICN coordinator: a deterministic core ([`core`]) and the IO shell around it
//! ([`server`]: QUIC for workers and members, the journal in SQLite).

pub mod anchor;
pub mod core;
pub mod journal;
pub mod modules;
pub mod record;
pub mod server;
pub mod trace;

pub use server::{Coordinator, CoordinatorConfig};
