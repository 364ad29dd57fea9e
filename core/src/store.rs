//! The seam between the core and where its journal lives. The chain (hashes, links,
//! seals) is the core's; a store only keeps entries in order and gives them back. SQLite
//! is the embedded default (in the coordinator); [`MemoryJournal`] serves tests and
//! simulations.

use std::collections::BTreeMap;

use icn_protocol::governance::ScopeId;
use icn_protocol::{ContentId, PublicKey, Seal};

use crate::chain::Entry;
use crate::index::{IndexKey, IndexRow};

/// Entries the journal reads at once, so that loading never holds more than a bounded
/// number of them beyond what the caller keeps.
pub const READ_ENTRIES_MAX: usize = 4_096;

/// What a payload is to its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    Input = 0,
    Output = 1,
}

/// Who may read a payload, and so name it as a job's input: privacy holds per payload,
/// not per route, so a payload carries its readers wherever it is named.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reader {
    /// The member who uploaded these bytes (who had them already).
    Uploader(PublicKey),
    /// What a job of `scope` made: its submitter and the members with standing in
    /// `scope` (`Core::sees_job_data`).
    Job { scope: ScopeId, submitter: PublicKey },
}

/// A job's input or output, stored by content id beside the entries that name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub kind: PayloadKind,
    pub bytes: Vec<u8>,
    /// When it was stored (wall ms): its retention counts from then.
    pub stored_ms: u64,
    /// Who may read it; storing the same bytes again for another reader adds that one.
    pub reader: Reader,
}

pub trait JournalStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends a batch, which ends with its seal, the index rows of its entries and the
    /// payloads they name, in one atomic step: all of it is stored, or none, so no entry
    /// is ever durable without the payloads it names. Index rows of entries stored
    /// before (a replay files them again) are ignored. A batch may hold payloads alone.
    fn append(
        &mut self,
        entries: &[Entry],
        index: &[IndexRow],
        payloads: &[Payload],
    ) -> Result<(), Self::Error>;

    /// Up to `limit` entries from entry `from` on, in order.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<Entry>, Self::Error>;

    /// How many entries the journal holds: the next entry's number.
    fn len(&self) -> Result<u64, Self::Error>;

    fn is_empty(&self) -> Result<bool, Self::Error> {
        Ok(self.len()? == 0)
    }

    /// The seal stored on entry `seq`, if that entry ended a batch.
    fn seal_at(&self, seq: u64) -> Result<Option<Seal>, Self::Error> {
        Ok(self.read(seq, 1)?.first().filter(|e| e.seq == seq).and_then(Entry::sealed))
    }
}

/// A journal in memory, with its index.
#[derive(Clone, Debug, Default)]
pub struct MemoryJournal {
    pub entries: Vec<Entry>,
    index: BTreeMap<IndexKey, BTreeMap<u64, i64>>,
    pub payloads: BTreeMap<ContentId, Payload>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MemoryError(String);

impl MemoryError {
    pub fn new(message: impl Into<String>) -> MemoryError {
        MemoryError(message.into())
    }
}

impl MemoryJournal {
    /// Keeps the first `len` entries and lets the rest go, with their index rows: an
    /// operator's way past an unsealed tail (`icn journal truncate`).
    pub fn truncate(&mut self, len: u64) {
        self.entries.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        for rows in self.index.values_mut() {
            rows.retain(|seq, _| *seq < len);
        }
        self.index.retain(|_, rows| !rows.is_empty());
    }
}

impl JournalStore for MemoryJournal {
    type Error = MemoryError;

    fn append(
        &mut self,
        entries: &[Entry],
        index: &[IndexRow],
        payloads: &[Payload],
    ) -> Result<(), MemoryError> {
        let next = self.entries.len() as u64;
        if entries.first().is_some_and(|e| e.seq != next) {
            return Err(MemoryError(format!("entry {} appended where {next} was next", entries[0].seq)));
        }
        self.entries.extend_from_slice(entries);
        for row in index {
            self.index.entry(row.key.clone()).or_default().entry(row.seq).or_insert(row.change);
        }
        for payload in payloads {
            self.payloads.insert(ContentId::of(&payload.bytes), payload.clone());
        }
        Ok(())
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Entry>, MemoryError> {
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(self.entries.len());
        Ok(self.entries[from..].iter().take(limit).cloned().collect())
    }

    fn len(&self) -> Result<u64, MemoryError> {
        Ok(self.entries.len() as u64)
    }
}

impl crate::trace::Source for MemoryJournal {
    fn entry(&self, seq: u64) -> Result<Entry, String> {
        self.entries.get(seq as usize).cloned().ok_or_else(|| format!("no entry {seq}"))
    }

    fn indexed(&self, key: &IndexKey, after: Option<u64>, limit: usize) -> Result<Vec<IndexRow>, String> {
        let Some(rows) = self.index.get(key) else { return Ok(vec![]) };
        let from = after.map_or(0, |a| a + 1);
        Ok(rows
            .range(from..)
            .take(limit)
            .map(|(seq, change)| IndexRow { key: key.clone(), seq: *seq, change: *change })
            .collect())
    }

    fn position_before(&self, scope: &ScopeId, before: u64) -> Result<i64, String> {
        let key = IndexKey::Scope(scope.clone());
        Ok(self.index.get(&key).map_or(0, |rows| rows.range(..before).map(|(_, change)| change).sum()))
    }
}
