//! A journal entry's record bytes, as `icn journal verify` and every start read them
//! from the journal's rows (`icn_core::Entry::decode_record`, postcard), in an entry
//! hashed and linked around them; then every check of the chain: the link
//! (`check_link`), the carried signature against the signer the entry names
//! (`check_signatures`), `first_bad` agreeing with both, and the record in words
//! (`Record::describe`) and its job.
//!
//! Input: one byte of mode (bit 0: the entry names the record's evidence signer rather
//! than the coordinator; bit 1: the entry has a cause), then the record bytes.
#![no_main]

use icn_core::{Entry, GENESIS_HASH, Record, check_link, check_signatures, entry_hash, first_bad};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, record)) = data.split_first() else { return };
    let coordinator = icn_fuzz::KEY.public();
    let decoded = icn_fuzz::canonical_eq::<Record>(record);
    let signer = match (&decoded, mode & 1) {
        (Some(record), 1) => record.evidence().map_or(coordinator, |envelope| envelope.signer),
        _ => coordinator,
    };
    let cause = (mode & 2 != 0).then_some(0);
    let (seq, time_ms) = (1, 1_700_000_000_000);
    let entry = Entry {
        seq,
        prev_hash: GENESIS_HASH,
        cause,
        time_ms,
        signer,
        record: record.to_vec(),
        hash: entry_hash(seq, &GENESIS_HASH, cause, time_ms, &signer, record),
        seal: None,
    };
    assert!(check_link(&entry, seq, &GENESIS_HASH).is_ok(), "an entry hashed over its contents links");
    let signatures = check_signatures(&entry, &coordinator);
    assert_eq!(entry.decode_record().is_ok(), decoded.is_some());
    if decoded.is_none() {
        assert!(signatures.is_err(), "an entry whose record does not decode passed");
    }
    let bad = first_bad(std::slice::from_ref(&entry), seq, GENESIS_HASH, &coordinator, None);
    assert_eq!(bad.is_none(), signatures.is_ok(), "first_bad {bad:?} disagrees with {signatures:?}");
    let Some(record) = decoded else { return };
    assert!(!record.describe().is_empty());
    let _ = record.job();
    if let Some(envelope) = record.evidence() {
        icn_fuzz::check_envelope(envelope);
    }
});
