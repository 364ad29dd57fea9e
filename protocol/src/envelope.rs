//! Signed envelopes: the form in which anything that becomes evidence travels and is
//! kept — a worker's hello, a member's submission, a worker's execution report, a
//! coordinator's journal record.
//!
//! The signature covers a canonical encoding (postcard) of a domain tag, the protocol
//! version, the kind, the signer, the sequence number and the blake3 digest of the
//! payload. Signing the digest rather than the payload keeps signing cost flat for large
//! payloads; the digest is recomputed from the payload on every verification.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::identity::{Keypair, PublicKey, Signature};
use crate::ids::ContentId;
use crate::{Error, PROTOCOL_VERSION};

const SIGNING_DOMAIN: &str = "icn/envelope/v1";

/// What an envelope's payload is. A payload is only decoded as the kind it was signed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Kind {
    Hello,
    Welcome,
    Submission,
    ExecutionReport,
    JournalRecord,
    Proposal,
    Ballot,
    ClearRequest,
    Cancel,
    /// A member's HTTP request (`crate::request`); appended last, so the kinds before
    /// it keep their encoding.
    Request,
}

/// A payload type that travels in an envelope.
pub trait Signed: Serialize + DeserializeOwned {
    const KIND: Kind;

    /// Decodes a payload of this kind; a type whose encoding grew overrides it to read
    /// the earlier encodings too.
    fn decode_payload(bytes: &[u8]) -> Result<Self, crate::Error> {
        crate::decode(bytes)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u16,
    pub kind: Kind,
    pub signer: PublicKey,
    /// Chosen by the signer so that no two of its envelopes are alike; replay is
    /// prevented where the envelope is used (channel binding, ids derived from the
    /// envelope, one report per task attempt), not by ordering these numbers.
    pub seq: u64,
    pub payload: Vec<u8>,
    pub signature: Signature,
}

#[derive(Serialize)]
struct SigningInput<'a> {
    domain: &'a str,
    version: u16,
    kind: Kind,
    signer: &'a PublicKey,
    seq: u64,
    payload_digest: ContentId,
}

fn signing_bytes(version: u16, kind: Kind, signer: &PublicKey, seq: u64, payload: &[u8]) -> Vec<u8> {
    let input = SigningInput {
        domain: SIGNING_DOMAIN,
        version,
        kind,
        signer,
        seq,
        payload_digest: ContentId::of(payload),
    };
    postcard::to_stdvec(&input).expect("encoding a fixed-shape struct into memory cannot fail")
}

impl Envelope {
    pub fn seal<M: Signed>(key: &Keypair, seq: u64, message: &M) -> Self {
        let payload = crate::encode(message);
        let signer = key.public();
        let signature = key.sign(&signing_bytes(PROTOCOL_VERSION, M::KIND, &signer, seq, &payload));
        Envelope { version: PROTOCOL_VERSION, kind: M::KIND, signer, seq, payload, signature }
    }

    /// Checks the version and the signature.
    pub fn verify(&self) -> Result<(), Error> {
        if self.version != PROTOCOL_VERSION {
            return Err(Error::UnsupportedVersion { got: self.version });
        }
        let bytes = signing_bytes(self.version, self.kind, &self.signer, self.seq, &self.payload);
        self.signer.verify(&bytes, &self.signature)
    }

    /// Verifies the envelope and decodes its payload as `M`.
    pub fn open<M: Signed>(&self) -> Result<M, Error> {
        self.verify()?;
        if self.kind != M::KIND {
            return Err(Error::WrongKind { expected: M::KIND, got: self.kind });
        }
        M::decode_payload(&self.payload)
    }

    /// Decodes the payload without checking the signature: only for envelopes that were
    /// verified when they were received and have not left trusted storage since.
    pub fn open_trusted<M: Signed>(&self) -> Result<M, Error> {
        if self.kind != M::KIND {
            return Err(Error::WrongKind { expected: M::KIND, got: self.kind });
        }
        M::decode_payload(&self.payload)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        crate::encode(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        crate::decode(bytes)
    }

    /// The content id of the whole signed envelope.
    pub fn id(&self) -> ContentId {
        ContentId::of(&self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Hello;

    fn hello() -> Hello {
        Hello {
            role: crate::wire::Role::Member,
            channel_binding: [9; 32],
            agent: "test".into(),
            capacity: None,
            seen: None,
            running: vec![],
        }
    }

    #[test]
    fn sealed_envelope_opens_as_its_kind() {
        let key = Keypair::from_seed([3; 32]);
        let envelope = Envelope::seal(&key, 7, &hello());
        assert_eq!(envelope.signer, key.public());
        let opened: Hello = envelope.open().unwrap();
        assert_eq!(opened, hello());
        let round = Envelope::from_bytes(&envelope.to_bytes()).unwrap();
        assert_eq!(round, envelope);
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let key = Keypair::from_seed([3; 32]);
        let envelope = Envelope::seal(&key, 7, &hello());
        let mut changed = envelope.clone();
        changed.seq = 8;
        assert!(matches!(changed.verify(), Err(Error::BadSignature { .. })));
        let mut changed = envelope.clone();
        changed.payload[0] ^= 1;
        assert!(matches!(changed.verify(), Err(Error::BadSignature { .. })));
        let mut changed = envelope.clone();
        changed.signer = Keypair::from_seed([4; 32]).public();
        assert!(matches!(changed.verify(), Err(Error::BadSignature { .. })));
        let mut changed = envelope.clone();
        changed.kind = Kind::Submission;
        assert!(matches!(changed.verify(), Err(Error::BadSignature { .. })));
        let mut changed = envelope;
        changed.version = 99;
        assert!(matches!(changed.verify(), Err(Error::UnsupportedVersion { got: 99 })));
    }

    #[test]
    fn payload_is_not_decoded_as_another_kind() {
        let key = Keypair::from_seed([3; 32]);
        let envelope = Envelope::seal(&key, 1, &hello());
        let error = envelope.open::<crate::wire::Submission>().unwrap_err();
        assert!(matches!(error, Error::WrongKind { expected: Kind::Submission, got: Kind::Hello }));
    }
}
