//! A signed envelope from bytes (`Envelope::from_bytes`: a hello's first frame, a
//! journal row's statement), then every check a receiver makes of it: the signature
//! (`verify`), the statement opened as the kind it was signed as (`open`, `open_trusted`
//! through each kind's `Signed::decode_payload`, the earlier encodings included),
//! validated, and sealed anew.
//!
//! A fuzzer cannot forge a signature, so `open` succeeds only for the committed seeds;
//! mode byte odd reads the remaining bytes as a payload of the kind the second byte
//! names instead, signed here, so that every decoder behind `open` is reached.
#![no_main]

use icn_protocol::governance::{Ballot, ClearRequest, Proposal};
use icn_protocol::request::SignedRequest;
use icn_protocol::wire::{Cancel, ExecutionReport, Hello, Submission, Welcome};
use icn_protocol::{Envelope, Kind, PROTOCOL_VERSION, Signature, Signed};

const KINDS: [Kind; 10] = [
    Kind::Hello,
    Kind::Welcome,
    Kind::Submission,
    Kind::ExecutionReport,
    Kind::JournalRecord,
    Kind::Proposal,
    Kind::Ballot,
    Kind::ClearRequest,
    Kind::Cancel,
    Kind::Request,
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Some(envelope) = icn_fuzz::canonical_eq::<Envelope>(bytes) {
            assert_eq!(Envelope::from_bytes(bytes).expect("decoded once"), envelope);
            icn_fuzz::check_envelope(&envelope);
        }
        return;
    }
    let Some((&kind, payload)) = bytes.split_first() else { return };
    let kind = KINDS[usize::from(kind) % KINDS.len()];
    let mut envelope = Envelope {
        version: PROTOCOL_VERSION,
        kind,
        signer: icn_fuzz::KEY.public(),
        seq: u64::from(mode),
        payload: payload.to_vec(),
        signature: Signature([0; 64]),
    };
    resign(&mut envelope);
    assert!(envelope.verify().is_ok(), "signed here as Envelope::seal signs");
    match kind {
        Kind::Hello => opens::<Hello>(&envelope),
        Kind::Welcome => opens::<Welcome>(&envelope),
        Kind::Submission => opens::<Submission>(&envelope),
        Kind::ExecutionReport => opens::<ExecutionReport>(&envelope),
        Kind::JournalRecord => {}
        Kind::Proposal => opens::<Proposal>(&envelope),
        Kind::Ballot => opens::<Ballot>(&envelope),
        Kind::ClearRequest => opens::<ClearRequest>(&envelope),
        Kind::Cancel => opens::<Cancel>(&envelope),
        Kind::Request => opens::<SignedRequest>(&envelope),
    }
    icn_fuzz::check_envelope(&envelope);
});

/// A validly signed envelope opens as `M` exactly when its payload decodes as `M`
/// (`Signed::decode_payload`), and as that statement.
fn opens<M: Signed + PartialEq + std::fmt::Debug>(envelope: &Envelope) {
    match (envelope.open::<M>(), M::decode_payload(&envelope.payload)) {
        (Ok(opened), Ok(decoded)) => assert_eq!(opened, decoded),
        (Err(_), Err(_)) => {}
        (opened, decoded) => panic!("a signed payload opened as {opened:?} and decoded as {decoded:?}"),
    }
}

/// Signs `envelope` as it stands with the targets' key: what `Envelope::seal` does for
/// a payload of any bytes.
fn resign(envelope: &mut Envelope) {
    #[derive(serde::Serialize)]
    struct SigningInput<'a> {
        domain: &'a str,
        version: u16,
        kind: Kind,
        signer: &'a icn_protocol::PublicKey,
        seq: u64,
        payload_digest: icn_protocol::ContentId,
    }
    envelope.version = PROTOCOL_VERSION;
    envelope.signer = icn_fuzz::KEY.public();
    let input = SigningInput {
        domain: "icn/envelope/v1",
        version: envelope.version,
        kind: envelope.kind,
        signer: &envelope.signer,
        seq: envelope.seq,
        payload_digest: icn_protocol::ContentId::of(&envelope.payload),
    };
    envelope.signature = icn_fuzz::KEY.sign(&icn_protocol::encode(&input));
}
