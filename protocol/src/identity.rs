//! Ed25519 identities: key pairs, public keys, signatures and key files.
//!
//! A key file holds the 32-byte secret seed as hex on one line. It is created with
//! permissions 0600 and refused on load when group or others can read it, as ssh does,
//! because whoever reads it can sign ballots, submissions and results in its owner's name.

use std::fmt;
use std::io::Write;
use std::path::Path;
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

    /// Writes a new key file with mode 0600. Refuses to overwrite an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|source| Error::KeyFile {
            path: path.display().to_string(),
            reason: format!("cannot create it ({source}); choose a path that does not exist yet"),
        })?;
        writeln!(file, "{}", hex::encode(self.signing.to_bytes())).map_err(|source| Error::KeyFile {
            path: path.display().to_string(),
            reason: source.to_string(),
        })?;
        file.sync_all()
            .map_err(|source| Error::KeyFile { path: path.display().to_string(), reason: source.to_string() })
    }

    /// Reads a key file written by [`Keypair::write_new`].
    pub fn read(path: &Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::KeyFile { path: path.display().to_string(), reason };
        let metadata = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(bad(format!(
                    "its permissions are {mode:o}, readable by others; run `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        #[cfg(not(unix))]
        let _ = metadata;
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it ({e})")))?;
        let bytes = hex::decode(text.trim())
            .map_err(|_| bad("it does not hold a hex-encoded key; make one with `icn keygen`".into()))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes; make one with `icn keygen`".into()))?;
        Ok(Self::from_seed(seed))
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
        serializer.serialize_bytes(&self.0)
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
    fn key_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        let key = Keypair::generate();
        key.write_new(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(Keypair::read(&path).unwrap().public(), key.public());
        let again = key.write_new(&path).unwrap_err();
        assert!(again.to_string().contains("does not exist yet"), "{again}");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("member.key");
        Keypair::generate().write_new(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Keypair::read(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn public_key_parses_from_its_display_and_rejects_garbage() {
        let key = Keypair::generate().public();
        assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
        assert!("zz".parse::<PublicKey>().is_err());
        assert!(hex::encode([7u8; 31]).parse::<PublicKey>().is_err());
    }
}
