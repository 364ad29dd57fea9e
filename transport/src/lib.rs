//! How the parts of the ICN compute commons reach each other: QUIC endpoints with TLS for
//! confidentiality and ed25519 for identity (the signed hello and welcome, bound to the
//! TLS session), length-prefixed frames whose size is checked before they are read, and
//! key files on disk; and HTTP listeners bounded for strangers ([`http::serve`]).
//! Everything here does IO; what it carries is defined, IO-free, in `icn-protocol`.

pub mod endpoint;
pub mod frame;
pub mod http;
pub mod keyfile;

pub use endpoint::{Session, Stream, accept, client_endpoint, connect, nonce, open, server_endpoint};
pub use frame::{FrameReader, FrameWriter};

use icn_protocol::HistoryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Protocol(#[from] icn_protocol::Error),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("a frame is over the limit of {max} bytes")]
    FrameTooLarge { max: usize },
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("transport: {0}")]
    Transport(String),
    #[error("refused by the coordinator: {0}")]
    Refused(String),
    #[error("this coordinator's history is not the one it showed before: {0}")]
    History(#[from] HistoryError),
}

impl Error {
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Protocol(icn_protocol::Error::invalid(reason))
    }
}
