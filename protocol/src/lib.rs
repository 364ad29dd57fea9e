//! The language the parts of the ICN compute commons speak: identities, signed
//! envelopes, content ids, journal seals, wire messages and the views members read.
//! No IO: sockets, files and the async runtime live in `icn-transport` and the shells.

pub mod envelope;
pub mod governance;
pub mod identity;
pub mod ids;
#[cfg(feature = "openapi")]
mod openapi;
pub mod request;
pub mod seal;
pub mod views;
pub mod wire;

pub use envelope::{Envelope, Kind, Signed};
pub use identity::{Keypair, PublicKey, Signature};
pub use ids::{ContentId, Fuel, JobId, TaskId};
pub use ids::{PREFIX_HEX_MIN, prefix_bounds};
pub use seal::{HistoryError, Seal, SealKeeper, SealPoint};

/// The wire protocol's version; a peer speaking another is refused with both numbers.
pub const PROTOCOL_VERSION: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not an ed25519 public key (64 hex digits)")]
    BadPublicKey(String),
    #[error("{0:?} is not an id (64 hex digits)")]
    BadId(String),
    #[error("signature by {signer} rejected: {reason}")]
    BadSignature { signer: PublicKey, reason: &'static str },
    #[error("protocol version {got} is not supported; this build speaks version {PROTOCOL_VERSION}")]
    UnsupportedVersion { got: u16 },
    #[error("expected a signed {expected:?}, got a {got:?}")]
    WrongKind { expected: Kind, got: Kind },
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl Error {
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }
}

/// The canonical encoding (postcard): the same value always encodes to the same bytes.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("encoding into memory cannot fail for our message types")
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| Error::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::Decode(format!("{} unexpected bytes after the message", rest.len())));
    }
    Ok(value)
}
