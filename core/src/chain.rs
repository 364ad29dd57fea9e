//! The journal's chain, apart from any storage: entries, their hashes and links, seals,
//! and every check `icn journal verify` and each start run over a sequence of entries.
//!
//! Each entry holds its sequence number, the previous entry's blake3 hash, its cause
//! (the earlier entry it follows from), the time, its signer and the encoded
//! [`Record`]. An entry's hash covers all of those, so each hash vouches for the whole
//! chain before it. The coordinator seals the last entry of every batch with its
//! signature over that entry's sequence number and hash: one signature per batch
//! authenticates every entry up to it. Records that carry a member's or a worker's
//! signed envelope name that member or worker as the signer; the others are the
//! coordinator's own.

use icn_protocol::{ContentId, Keypair, PublicKey, Seal, Signature};
use serde::Serialize;

use crate::record::Record;

pub const GENESIS_HASH: [u8; 32] = [0; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub cause: Option<u64>,
    pub time_ms: u64,
    pub signer: PublicKey,
    pub record: Vec<u8>,
    pub hash: [u8; 32],
    /// The coordinator's [`Seal`] signature over `seq` and `hash`, on the last entry
    /// of each batch.
    pub seal: Option<Signature>,
}

#[derive(Serialize)]
struct HashInput<'a> {
    domain: &'static str,
    seq: u64,
    prev_hash: &'a [u8; 32],
    cause: Option<u64>,
    time_ms: u64,
    signer: &'a PublicKey,
    record_digest: ContentId,
}

pub fn entry_hash(
    seq: u64,
    prev_hash: &[u8; 32],
    cause: Option<u64>,
    time_ms: u64,
    signer: &PublicKey,
    record: &[u8],
) -> [u8; 32] {
    let input = HashInput {
        domain: "icn/journal-entry/v1",
        seq,
        prev_hash,
        cause,
        time_ms,
        signer,
        record_digest: ContentId::of(record),
    };
    *blake3::hash(&icn_protocol::encode(&input)).as_bytes()
}

/// An entry that failed a check: its sequence number and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("journal entry {seq} is bad: {reason}")]
pub struct BadEntry {
    pub seq: u64,
    pub reason: String,
}

impl Entry {
    pub fn new(
        seq: u64,
        prev_hash: [u8; 32],
        cause: Option<u64>,
        time_ms: u64,
        signer: PublicKey,
        record: &Record,
    ) -> Self {
        let record = icn_protocol::encode(record);
        let hash = entry_hash(seq, &prev_hash, cause, time_ms, &signer, &record);
        Entry { seq, prev_hash, cause, time_ms, signer, record, hash, seal: None }
    }

    pub fn decode_record(&self) -> Result<Record, BadEntry> {
        icn_protocol::decode(&self.record)
            .map_err(|e| BadEntry { seq: self.seq, reason: format!("the record does not decode: {e}") })
    }

    pub fn seal_with(&mut self, key: &Keypair) {
        self.seal = Some(Seal::sign(key, self.seq, ContentId(self.hash)).signature);
    }

    /// The entry's seal as clients receive it, when the entry is sealed.
    pub fn sealed(&self) -> Option<Seal> {
        self.seal.map(|signature| Seal { seq: self.seq, hash: ContentId(self.hash), signature })
    }
}

/// Checks that `entry` is the one expected at `expected_seq` after an entry hashed `prev`.
pub fn check_link(entry: &Entry, expected_seq: u64, prev: &[u8; 32]) -> Result<(), String> {
    if entry.seq != expected_seq {
        return Err(format!("expected entry {expected_seq} here; the chain has a gap or a reordering"));
    }
    if entry.prev_hash != *prev {
        return Err("its previous-hash link does not match the entry before it".into());
    }
    let hash =
        entry_hash(entry.seq, &entry.prev_hash, entry.cause, entry.time_ms, &entry.signer, &entry.record);
    if hash != entry.hash {
        return Err("its contents do not match its hash (the row was changed)".into());
    }
    if entry.cause.is_some_and(|cause| cause >= entry.seq) {
        return Err(format!("its cause {} is not an earlier entry", entry.cause.unwrap_or_default()));
    }
    Ok(())
}

/// Checks an entry's seal (if it has one) and the signed statement it carries (if any)
/// against who it names as signer.
pub fn check_signatures(entry: &Entry, coordinator: &PublicKey) -> Result<(), String> {
    if let Some(seal) = entry.sealed() {
        seal.verify(coordinator).map_err(|e| format!("its seal is not the coordinator's: {e}"))?;
    }
    let record = entry.decode_record().map_err(|bad| bad.reason)?;
    match record.evidence() {
        Some(envelope) => {
            envelope.verify().map_err(|e| format!("the signed statement it carries is forged: {e}"))?;
            if envelope.signer != entry.signer {
                return Err(format!(
                    "it names {} as signer but carries a statement signed by {}",
                    entry.signer, envelope.signer
                ));
            }
        }
        None if entry.signer != *coordinator => {
            return Err(format!("a coordinator record signed by {}", entry.signer));
        }
        None => {}
    }
    Ok(())
}

/// The first of `entries` (which begin at `first_seq`, after an entry hashed `prev`) that
/// fails a check, and why: links and hashes in order, then seals and carried signatures,
/// which cost most of the time and are checked on every core. `unreadable` is the first
/// stored row that did not read as an entry, if any.
pub fn first_bad(
    entries: &[Entry],
    first_seq: u64,
    prev: [u8; 32],
    coordinator: &PublicKey,
    unreadable: Option<BadEntry>,
) -> Option<BadEntry> {
    let mut bad = unreadable;
    let mut prev = prev;
    for (offset, entry) in entries.iter().enumerate() {
        if let Err(reason) = check_link(entry, first_seq + offset as u64, &prev) {
            bad = Some(BadEntry { seq: entry.seq, reason });
            break;
        }
        prev = entry.hash;
    }
    let linked =
        bad.as_ref().map_or(entries.len(), |b| (b.seq.saturating_sub(first_seq) as usize).min(entries.len()));
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = linked.div_ceil(threads).max(1);
    let signature_bad = std::thread::scope(|scope| {
        let checks: Vec<_> = entries[..linked]
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter().find_map(|e| {
                        check_signatures(e, coordinator).err().map(|reason| BadEntry { seq: e.seq, reason })
                    })
                })
            })
            .collect();
        checks.into_iter().filter_map(|c| c.join().expect("a signature check does not panic")).next()
    });
    match (bad, signature_bad) {
        (Some(a), Some(b)) => Some(if b.seq < a.seq { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The entries after the last seal, if `entries` do not end sealed.
pub fn unsealed_tail(entries: &[Entry]) -> Option<(u64, u64)> {
    let last = entries.last()?;
    if last.seal.is_some() {
        return None;
    }
    let from = entries.iter().rev().find(|e| e.seal.is_some()).map_or(entries[0].seq, |e| e.seq + 1);
    Some((from, last.seq))
}
