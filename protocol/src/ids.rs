//! Content ids and the ids of jobs and tasks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The blake3 digest of some bytes: a module, an input, an output, a journal entry.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentId(pub [u8; 32]);

/// Serde for a 32-byte value: raw bytes in binary encodings (the wire, the journal),
/// hex text in text formats (TOML, JSON), where it can also be a map key.
macro_rules! serde_hex_or_bytes {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32]>::deserialize(deserializer).map(Self)
                }
            }
        }
    };
}
pub(crate) use serde_hex_or_bytes;

serde_hex_or_bytes!(ContentId);

impl ContentId {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

impl FromStr for ContentId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || Error::BadId(text.to_string());
        let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
        Ok(Self(bytes.try_into().map_err(|_| bad())?))
    }
}

/// A job is named by the content id of its signed submission: resubmitting the same
/// signed envelope names the same job, so a retried submission never runs twice.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobId(pub ContentId);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0.short())
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        ContentId::from_str(text).map(JobId).map_err(|_| Error::BadId(text.to_string()))
    }
}

/// One unit of execution within a job.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskId {
    pub job: JobId,
    pub index: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.job.0.short(), self.index)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({self})")
    }
}

/// Wasm fuel: the deterministic measure of work done by a module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fuel(pub u64);

impl fmt::Display for Fuel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} fuel", self.0)
    }
}

/// Hex digits a typed prefix of an id must have at least.
pub const PREFIX_HEX_MIN: usize = 6;

/// The ids a hex prefix stands for, as the lowest and highest 32 bytes that start with
/// it. At least [`PREFIX_HEX_MIN`] and at most 64 hex digits.
pub fn prefix_bounds(prefix: &str) -> Result<([u8; 32], [u8; 32]), String> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.len() < PREFIX_HEX_MIN || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{prefix:?} is not an id or the start of one: give at least {PREFIX_HEX_MIN} of its hex digits"
        ));
    }
    let bound = |fill: char| -> [u8; 32] {
        let padded: String = prefix.chars().chain(std::iter::repeat(fill)).take(64).collect();
        hex::decode(padded).expect("hex digits").try_into().expect("32 bytes")
    };
    Ok((bound('0'), bound('f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_id_is_blake3_and_parses_back() {
        let id = ContentId::of(b"module bytes");
        assert_eq!(id.0, *blake3::hash(b"module bytes").as_bytes());
        assert_eq!(id.to_string().parse::<ContentId>().unwrap(), id);
        assert!("abc".parse::<ContentId>().is_err());
    }
}
