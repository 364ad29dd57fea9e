//! A signed HTTP request's four headers (`icn-signer`, `icn-nonce`, `icn-time`,
//! `icn-signature`) as the coordinator reads them before the body
//! (`icn_protocol::request::Claims::read`), then the signature checked over a request
//! (`Claims::verify`). Claims read from headers a real signer wrote are the signer's;
//! headers reread from claims that parsed are the same claims.
//!
//! Input: the four header values and then method, target and body, separated by NUL.
#![no_main]

use icn_protocol::request::{Claims, RequestHeaders, SignedRequest};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let mut next = || parts.next().unwrap_or_default().to_string();
    let headers = RequestHeaders { signer: next(), nonce: next(), time: next(), signature: next() };
    let (method, target, body) = (next(), next(), next());
    let Ok(claims) = Claims::read(&headers) else { return };
    // The claims written back as headers read as themselves.
    let written = RequestHeaders {
        signer: claims.signer.to_string(),
        nonce: claims.nonce.to_string(),
        time: claims.time_ms.to_string(),
        signature: claims.signature.0.iter().map(|b| format!("{b:02x}")).collect(),
    };
    assert_eq!(Claims::read(&written).expect("claims written back read"), claims);
    let _ = claims.verify(&method, &target, body.as_bytes());
    // The same request signed by the targets' key with these claims verifies, and only
    // for what was signed.
    let signed =
        SignedRequest::sign(&icn_fuzz::KEY, claims.nonce, &method, &target, claims.time_ms, body.as_bytes());
    let (signer, nonce, time) =
        SignedRequest::verify(&signed, &method, &target, body.as_bytes()).expect("a signed request verifies");
    assert_eq!((signer, nonce, time), (icn_fuzz::KEY.public(), claims.nonce, claims.time_ms));
    let other_body = [body.as_bytes(), b"x"].concat();
    assert!(SignedRequest::verify(&signed, &method, &target, &other_body).is_err(), "another body verified");
});
