//! The ICN coordinator's shell around the deterministic core (`icn-core`): QUIC for
//! workers and members ([`server`]), HTTP/JSON for members ([`http`]), the journal and modules in SQLite ([`journal`],
//! [`modules`]) and the journal's anchor ([`anchor`]).

pub mod anchor;
pub mod api;
pub mod blobs;
pub mod http;
pub mod journal;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod modules;
pub mod server;

pub use server::{Coordinator, CoordinatorConfig};
