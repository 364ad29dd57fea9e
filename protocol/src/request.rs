//! A member's HTTP request, signed. Over QUIC a member proves their key once per
//! connection (the signed hello, bound to the TLS session); over HTTP each request is
//! its own connection's worth of trust, so each carries a signature of its own: an
//! [`Envelope`] of kind [`Kind::Request`] over the method, the path with its query, the
//! time and the digest of the body. The envelope's `seq` is the request's nonce: the
//! coordinator refuses a nonce it saw within the clock window, and a request whose time
//! is outside it, so a captured request cannot be sent again.
//!
//! The envelope travels in four headers ([`SIGNER_HEADER`] …) rather than in the body,
//! so a body stays what it is: a module's bytes, an input, or a statement's envelope.

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, Kind, Signed};
use crate::identity::{Keypair, PublicKey, Signature};
use crate::ids::ContentId;
use crate::{Error, PROTOCOL_VERSION};

/// The signer's public key, 64 hex digits.
pub const SIGNER_HEADER: &str = "icn-signer";
/// The request's nonce: a number the signer never used before (decimal).
pub const NONCE_HEADER: &str = "icn-nonce";
/// When the request was made: ms since the Unix epoch (decimal).
pub const TIME_HEADER: &str = "icn-time";
/// The envelope's signature, 128 hex digits.
pub const SIGNATURE_HEADER: &str = "icn-signature";

/// How far a request's time may be from the coordinator's clock, either way.
pub const REQUEST_CLOCK_SKEW_MS_MAX: u64 = 60_000;

/// What the member signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// `GET`, `POST`, … in capitals.
    pub method: String,
    /// The path and query exactly as sent (`/v1/jobs?state=queued`).
    pub target: String,
    pub time_ms: u64,
    /// blake3 of the body (of no bytes for a request without one).
    pub body: ContentId,
}

impl Signed for SignedRequest {
    const KIND: Kind = Kind::Request;
}

/// The four header values of a signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeaders {
    pub signer: String,
    pub nonce: String,
    pub time: String,
    pub signature: String,
}

impl RequestHeaders {
    /// The headers by name, as they are sent.
    pub fn pairs(self) -> [(&'static str, String); 4] {
        [
            (SIGNER_HEADER, self.signer),
            (NONCE_HEADER, self.nonce),
            (TIME_HEADER, self.time),
            (SIGNATURE_HEADER, self.signature),
        ]
    }
}

impl SignedRequest {
    /// Signs a request as `key`, with `nonce` never used before by that key.
    pub fn sign(
        key: &Keypair,
        nonce: u64,
        method: &str,
        target: &str,
        time_ms: u64,
        body: &[u8],
    ) -> RequestHeaders {
        let request = SignedRequest {
            method: method.to_string(),
            target: target.to_string(),
            time_ms,
            body: ContentId::of(body),
        };
        let envelope = Envelope::seal(key, nonce, &request);
        RequestHeaders {
            signer: envelope.signer.to_string(),
            nonce: nonce.to_string(),
            time: time_ms.to_string(),
            signature: hex::encode(envelope.signature.0),
        }
    }

    /// Checks `headers` against the request as received; the signer and the nonce when
    /// the signature holds.
    pub fn verify(
        headers: &RequestHeaders,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(PublicKey, u64, u64), Error> {
        let claims = Claims::read(headers)?;
        claims.verify(method, target, body)?;
        Ok((claims.signer, claims.nonce, claims.time_ms))
    }
}

/// What a request's headers claim, read before its body: who signed it, its nonce and
/// time, and the signature. A server checks the signer's standing and the time from
/// these before it reads a byte of the body, then [`Claims::verify`] the signature over
/// the body it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub signer: PublicKey,
    pub nonce: u64,
    pub time_ms: u64,
    pub signature: Signature,
}

impl Claims {
    /// Parses the four headers; an error names the one that is malformed.
    pub fn read(headers: &RequestHeaders) -> Result<Claims, Error> {
        let signer: PublicKey = headers.signer.trim().parse()?;
        let number = |name: &str, text: &str| {
            text.trim()
                .parse::<u64>()
                .map_err(|_| Error::invalid(format!("{name} {text:?} is not a whole number")))
        };
        let nonce = number(NONCE_HEADER, &headers.nonce)?;
        let time_ms = number(TIME_HEADER, &headers.time)?;
        let signature = hex::decode(headers.signature.trim())
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .map(Signature)
            .ok_or_else(|| Error::invalid(format!("{SIGNATURE_HEADER} is not 128 hex digits")))?;
        Ok(Claims { signer, nonce, time_ms, signature })
    }

    /// Checks the signature over the request as received.
    pub fn verify(&self, method: &str, target: &str, body: &[u8]) -> Result<(), Error> {
        let request = SignedRequest {
            method: method.to_string(),
            target: target.to_string(),
            time_ms: self.time_ms,
            body: ContentId::of(body),
        };
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            kind: Kind::Request,
            signer: self.signer,
            seq: self.nonce,
            payload: crate::encode(&request),
            signature: self.signature,
        };
        envelope.verify()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_verifies_only_as_it_was_signed() {
        let key = Keypair::generate();
        let headers = SignedRequest::sign(&key, 7, "POST", "/v1/jobs", 1_000, b"{}");
        let (signer, nonce, time) = SignedRequest::verify(&headers, "POST", "/v1/jobs", b"{}").unwrap();
        assert_eq!((signer, nonce, time), (key.public(), 7, 1_000));
        assert!(SignedRequest::verify(&headers, "GET", "/v1/jobs", b"{}").is_err(), "another method");
        assert!(SignedRequest::verify(&headers, "POST", "/v1/jobs?x=1", b"{}").is_err(), "another target");
        assert!(SignedRequest::verify(&headers, "POST", "/v1/jobs", b"{ }").is_err(), "another body");
        let later = RequestHeaders { time: "1001".into(), ..headers.clone() };
        assert!(SignedRequest::verify(&later, "POST", "/v1/jobs", b"{}").is_err(), "another time");
        let other = RequestHeaders { nonce: "8".into(), ..headers };
        assert!(SignedRequest::verify(&other, "POST", "/v1/jobs", b"{}").is_err(), "another nonce");
    }
}
