//! Ed25519 identities: key pairs, public keys and signatures. Key files live in
//! `icn_transport::keyfile`.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

pub const PUBLIC_KEY_LENGTH_BYTES: usize = 32;
pub const SIGNATURE_LENGTH_BYTES: usize = 64;

/// A signing identity: a member, a worker or a coordinator.
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system has no random source");
        Self::from_seed(seed)
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(&seed) }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// The secret seed, for writing a key file (`icn_transport::keyfile`). Whoever
    /// holds it can sign as this key.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

/// An ed25519 public key: the identity of a member, worker or coordinator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LENGTH_BYTES]);

crate::ids::serde_hex_or_bytes!(PublicKey);

impl PublicKey {
    /// Checks `signature` over `message` with strict verification (no malleable
    /// signatures, no small-order keys).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), Error> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| Error::BadSignature {
            signer: *self,
            reason: "the signer is not a valid ed25519 public key",
        })?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature).map_err(|_| Error::BadSignature {
            signer: *self,
            reason: "the signature does not match the signed bytes",
        })
    }

    /// The first 8 hex digits, for people reading logs and tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || Error::BadPublicKey(text.to_string());
        let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
        Ok(PublicKey(bytes))
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LENGTH_BYTES]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..4]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&hex::encode(self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Signature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{SIGNATURE_LENGTH_BYTES} signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Signature, E> {
                let bytes: [u8; SIGNATURE_LENGTH_BYTES] =
                    bytes.try_into().map_err(|_| E::invalid_length(bytes.len(), &self))?;
                Ok(Signature(bytes))
            }
        }
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            let bytes = hex::decode(&text).map_err(|_| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a signature ({} hex digits)",
                    2 * SIGNATURE_LENGTH_BYTES
                ))
            })?;
            return serde::de::Visitor::visit_bytes(Visitor, &bytes);
        }
        deserializer.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_only_for_its_message_and_key() {
        let alice = Keypair::from_seed([1; 32]);
        let bob = Keypair::from_seed([2; 32]);
        let signature = alice.sign(b"vote yes");
        assert!(alice.public().verify(b"vote yes", &signature).is_ok());
        assert!(alice.public().verify(b"vote no", &signature).is_err());
        assert!(bob.public().verify(b"vote yes", &signature).is_err());
    }

    #[test]
    fn public_key_parses_from_its_display_and_rejects_garbage() {
        let key = Keypair::generate().public();
        assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
        assert!("zz".parse::<PublicKey>().is_err());
        assert!(hex::encode([7u8; 31]).parse::<PublicKey>().is_err());
    }
}
