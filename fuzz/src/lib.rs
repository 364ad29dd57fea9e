//! What the fuzz targets check of anything a decoder accepted: the properties that must
//! hold for every value read from outside, whatever its bytes were. Each target decodes
//! with the decoder the coordinator, worker or client really uses, then calls these.

use std::fmt::Debug;
use std::sync::LazyLock;

use icn_protocol::governance::{Ballot, ClearRequest, Proposal, TITLE_LENGTH_MAX};
use icn_protocol::request::SignedRequest;
use icn_protocol::wire::{
    ARG_SIZE_BYTES_MAX, ARGS_COUNT_MAX, ExecutionReport, Hello, Limits, Role, SLOTS_MAX,
    STDERR_SIZE_BYTES_MAX, Submission, TEXT_SIZE_BYTES_MAX, Welcome, unprintable,
};
use icn_protocol::{Envelope, Error, Keypair, Kind, Signed};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The key the targets sign with when they seal a decoded statement anew.
pub static KEY: LazyLock<Keypair> = LazyLock::new(|| Keypair::from_seed([7; 32]));

/// Decodes `bytes` as `T` with the protocol's decoder and, when they decode, checks the
/// canonical encoding: postcard accepts over-long varints but never writes them, so the
/// re-encoding is no longer than what was read, decodes again, and is a fixed point.
pub fn canonical<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<(T, Vec<u8>)> {
    let value: T = icn_protocol::decode(bytes).ok()?;
    let encoded = icn_protocol::encode(&value);
    assert!(
        encoded.len() <= bytes.len(),
        "re-encoding grew a message from {} to {} bytes",
        bytes.len(),
        encoded.len()
    );
    let again: T = icn_protocol::decode(&encoded).expect("the canonical encoding of a decoded value decodes");
    assert_eq!(icn_protocol::encode(&again), encoded, "the canonical encoding is not a fixed point");
    Some((value, encoded))
}

/// As [`canonical`], and the value decoded again from its canonical encoding is equal.
pub fn canonical_eq<T: Serialize + DeserializeOwned + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
    let (value, encoded) = canonical::<T>(bytes)?;
    let again: T = icn_protocol::decode(&encoded).expect("checked by canonical");
    assert_eq!(again, value, "a decoded value changed through its canonical encoding");
    Some(value)
}

/// Every check a receiver makes of a signed envelope, for whatever kind it claims: its
/// encoding, its signature, and its statement opened, validated and sealed anew.
pub fn check_envelope(envelope: &Envelope) {
    let bytes = envelope.to_bytes();
    assert_eq!(&Envelope::from_bytes(&bytes).expect("an envelope's own bytes decode"), envelope);
    assert_eq!(envelope.id(), icn_protocol::ContentId::of(&bytes));
    let verified = envelope.verify().is_ok();
    if verified {
        assert_eq!(envelope.version, icn_protocol::PROTOCOL_VERSION, "verified under another version");
    }
    match envelope.kind {
        Kind::Hello => check_statement::<Hello>(envelope, verified, check_hello),
        Kind::Welcome => check_statement::<Welcome>(envelope, verified, |_| {}),
        Kind::Submission => check_statement::<Submission>(envelope, verified, check_submission),
        Kind::ExecutionReport => check_statement::<ExecutionReport>(envelope, verified, |report| {
            check_report(report, &Limits::default())
        }),
        // No statement is signed as a journal record: nothing opens as one.
        Kind::JournalRecord => {}
        Kind::Proposal => check_statement::<Proposal>(envelope, verified, check_proposal),
        Kind::Ballot => check_statement::<Ballot>(envelope, verified, check_ballot),
        Kind::ClearRequest => check_statement::<ClearRequest>(envelope, verified, |_| {}),
        Kind::Cancel => check_statement::<icn_protocol::wire::Cancel>(envelope, verified, |_| {}),
        Kind::Request => check_statement::<SignedRequest>(envelope, verified, |_| {}),
    }
}

/// Opens `envelope` as `M` both ways and checks they agree with the signature; a
/// statement that decodes decodes again from its canonical encoding as itself, and
/// sealed anew it opens as itself (the signature covers exactly what is decoded).
fn check_statement<M: Signed + PartialEq + Debug>(envelope: &Envelope, verified: bool, check: impl Fn(&M)) {
    let trusted = envelope.open_trusted::<M>();
    match (envelope.open::<M>(), verified) {
        (Ok(opened), true) => assert_eq!(Some(&opened), trusted.as_ref().ok()),
        (Ok(_), false) => panic!("an envelope opened without a valid signature"),
        (Err(_), true) => assert!(trusted.is_err(), "a verified envelope decoded only untrusted"),
        (Err(_), false) => {}
    }
    // A payload is never read as a kind it was not signed as.
    let other = if M::KIND == Kind::Cancel {
        envelope.open_trusted::<ClearRequest>().err()
    } else {
        envelope.open_trusted::<icn_protocol::wire::Cancel>().err()
    };
    assert!(matches!(other, Some(Error::WrongKind { .. })), "a payload opened as another kind");
    let Ok(statement) = trusted else { return };
    let again = M::decode_payload(&icn_protocol::encode(&statement)).expect("a canonical payload decodes");
    assert_eq!(again, statement, "a statement changed through its canonical encoding");
    let resealed = Envelope::seal(&KEY, envelope.seq, &statement);
    assert_eq!(resealed.open::<M>().expect("a statement sealed anew opens"), statement);
    check(&statement);
}

/// What `Hello::validate` promises when it accepts.
pub fn check_hello(hello: &Hello) {
    if hello.validate().is_err() {
        return;
    }
    assert_text(&hello.agent);
    match hello.role {
        Role::Worker => {
            let capacity = hello.capacity.as_ref().expect("a valid worker's hello states capacity");
            assert!((1..=SLOTS_MAX).contains(&capacity.slots));
            assert!(hello.running.len() <= capacity.slots as usize);
        }
        Role::Member => assert!(hello.running.is_empty()),
    }
}

/// What `Submission::validate` promises when it accepts.
pub fn check_submission(submission: &Submission) {
    if submission.validate().is_err() {
        return;
    }
    assert!(submission.args.len() <= ARGS_COUNT_MAX);
    assert!(submission.args.iter().all(|a| a.len() <= ARG_SIZE_BYTES_MAX && !a.contains('\0')));
    check_limits(&submission.limits);
}

/// What `Limits::validate` promises when it accepts: every limit from 1 to its maximum.
pub fn check_limits(limits: &Limits) {
    if limits.validate().is_err() {
        return;
    }
    assert!((1..=icn_protocol::wire::FUEL_MAX).contains(&limits.fuel.0));
    assert!((1..=icn_protocol::wire::MEMORY_BYTES_MAX).contains(&limits.memory_bytes));
    assert!((1..=icn_protocol::wire::TIMEOUT_MS_MAX).contains(&limits.timeout_ms));
    assert!((1..=icn_protocol::wire::OUTPUT_SIZE_BYTES_MAX).contains(&limits.output_bytes));
}

/// What `ExecutionReport::validate` promises when it accepts, and what the coordinator
/// shows of any report: its usage in words and its failure detail made printable.
pub fn check_report(report: &ExecutionReport, limits: &Limits) {
    assert!(!report.used().is_empty());
    if let icn_protocol::wire::Outcome::Failed { detail, .. } = report.outcome.clone().printable() {
        assert!(!detail.chars().any(unprintable), "printable left an unprintable character");
    }
    if report.validate(limits).is_err() {
        return;
    }
    assert!(report.output_bytes <= limits.output_bytes);
    assert!(report.stderr.len() <= STDERR_SIZE_BYTES_MAX);
    assert!(report.fuel <= limits.fuel);
    assert!(report.usage.cpu_ms <= report.usage.wall_ms * icn_protocol::wire::CONTAINER_CPUS);
    assert!(report.usage.memory_peak_bytes <= limits.memory_bytes);
}

/// What `Proposal::validate` promises when it accepts.
pub fn check_proposal(proposal: &Proposal) {
    if proposal.validate().is_err() {
        return;
    }
    assert_text(&proposal.title);
    assert!(!proposal.title.trim().is_empty() && proposal.title.chars().count() <= TITLE_LENGTH_MAX);
}

/// What `Ballot::validate` promises when it accepts.
pub fn check_ballot(ballot: &Ballot) {
    if ballot.validate().is_ok()
        && let Some(reason) = &ballot.reason
    {
        assert_text(reason);
    }
}

/// Text the commons accepted to store and show: bounded, nothing a terminal acts on.
pub fn assert_text(text: &str) {
    assert!(text.len() <= TEXT_SIZE_BYTES_MAX, "accepted text of {} bytes", text.len());
    assert!(!text.chars().any(unprintable), "accepted text holds an unprintable character: {text:?}");
}

/// What a client does with the seal an answer carries: the first one is kept, the same
/// one again is no news, and its `SEQ:HASH` reads back as itself.
pub fn check_seal(seal: &icn_protocol::Seal) {
    let mut keeper = icn_protocol::SealKeeper::new(KEY.public(), None).expect("no kept seal to check");
    assert_eq!(keeper.check(seal), Ok(true));
    assert_eq!(keeper.kept(), Some(*seal));
    assert_eq!(keeper.check(seal), Ok(false));
    let point = seal.point();
    assert_eq!(point.to_string().parse::<icn_protocol::SealPoint>().expect("a seal point reads back"), point);
}
