//! The journal: an append-only, hash-chained record in one SQLite file (WAL).
//!
//! Each entry holds its sequence number, the previous entry's blake3 hash, its cause
//! (the earlier entry it follows from), the time, its signer and the encoded
//! [`Record`]. An entry's hash covers all of those, so each hash vouches for the whole
//! chain before it. The coordinator seals the last entry of every committed batch with
//! its signature over that entry's hash: one signature per group commit authenticates
//! every entry up to it. Records that carry a member's or a worker's signed envelope
//! name that member or worker as the signer; the others are the coordinator's own.
//!
//! Storage holds modules too (by content id), so one file is the whole state.

use std::path::Path;

use icn_protocol::{ContentId, Keypair, PublicKey, Signature};
use rusqlite::{Connection, OptionalExtension, params};
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
    /// The coordinator's signature over `hash`, on the last entry of each batch.
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

    pub fn decode_record(&self) -> Result<Record, JournalError> {
        icn_protocol::decode(&self.record).map_err(|e| JournalError::Corrupt {
            seq: self.seq,
            reason: format!("the record does not decode: {e}"),
        })
    }

    pub fn seal_with(&mut self, key: &Keypair) {
        self.seal = Some(key.sign(&self.hash));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal entry {seq} is bad: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("journal {path} belongs to coordinator {found}, not to this coordinator's key {ours}")]
    WrongOwner { path: String, found: PublicKey, ours: PublicKey },
}

pub struct Journal {
    connection: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    prev_hash BLOB NOT NULL,
    cause INTEGER,
    time_ms INTEGER NOT NULL,
    signer BLOB NOT NULL,
    record BLOB NOT NULL,
    hash BLOB NOT NULL,
    seal BLOB
);
CREATE TABLE IF NOT EXISTS modules (cid BLOB PRIMARY KEY, bytes BLOB NOT NULL);
";

/// Opens a connection with the settings every user of the file shares: WAL, full
/// fsync on commit (an acknowledged submission survives a power cut), and a busy
/// timeout so the module store and the journal writer can share the file.
pub fn open_connection(path: &Path) -> Result<Connection, JournalError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

impl Journal {
    /// Opens (or creates) the journal at `path` for the coordinator holding `owner`.
    pub fn open(path: &Path, owner: PublicKey) -> Result<Self, JournalError> {
        let connection = open_connection(path)?;
        let found: Option<Vec<u8>> = connection
            .query_row("SELECT value FROM meta WHERE name = 'coordinator'", [], |row| row.get(0))
            .optional()?;
        match found {
            None => {
                connection.execute(
                    "INSERT INTO meta (name, value) VALUES ('coordinator', ?1)",
                    params![owner.0.as_slice()],
                )?;
            }
            Some(bytes) => {
                let found = public_key(&bytes, 0)?;
                if found != owner {
                    return Err(JournalError::WrongOwner {
                        path: path.display().to_string(),
                        found,
                        ours: owner,
                    });
                }
            }
        }
        Ok(Journal { connection })
    }

    /// Appends a batch in one transaction: one fsync for all of it.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), JournalError> {
        if entries.is_empty() {
            return Ok(());
        }
        debug_assert!(entries.last().is_some_and(|e| e.seal.is_some()), "a batch ends sealed");
        let transaction = self.connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO journal (seq, prev_hash, cause, time_ms, signer, record, hash, seal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for entry in entries {
                insert.execute(params![
                    entry.seq as i64,
                    entry.prev_hash.as_slice(),
                    entry.cause.map(|c| c as i64),
                    entry.time_ms as i64,
                    entry.signer.0.as_slice(),
                    entry.record,
                    entry.hash.as_slice(),
                    entry.seal.map(|s| s.0.to_vec()),
                ])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// Every entry in order, with each hash link checked on the way: a journal that
    /// does not chain is not loaded. Signatures are checked by [`verify`].
    pub fn load(&self) -> Result<Vec<Entry>, JournalError> {
        load_entries(&self.connection)
    }
}

/// Reads the journal at `path` without writing to it, links checked; for reading
/// while a coordinator runs (WAL lets readers in beside the writer).
pub fn read(path: &Path) -> Result<Vec<Entry>, JournalError> {
    if !path.exists() {
        return Err(JournalError::Corrupt { seq: 0, reason: format!("no journal at {}", path.display()) });
    }
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    load_entries(&connection)
}

fn load_entries(connection: &Connection) -> Result<Vec<Entry>, JournalError> {
    let mut statement = connection.prepare(
        "SELECT seq, prev_hash, cause, time_ms, signer, record, hash, seal FROM journal ORDER BY seq",
    )?;
    let rows = statement.query_map([], read_row)?;
    let mut entries = Vec::new();
    let mut prev = GENESIS_HASH;
    for row in rows {
        let entry = row??;
        check_link(&entry, entries.len() as u64, &prev)?;
        prev = entry.hash;
        entries.push(entry);
    }
    Ok(entries)
}

type RowResult = Result<Entry, JournalError>;

fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let seq: i64 = row.get(0)?;
    let seq = seq as u64;
    let prev_hash: Vec<u8> = row.get(1)?;
    let cause: Option<i64> = row.get(2)?;
    let time_ms: i64 = row.get(3)?;
    let signer: Vec<u8> = row.get(4)?;
    let record: Vec<u8> = row.get(5)?;
    let hash: Vec<u8> = row.get(6)?;
    let seal: Option<Vec<u8>> = row.get(7)?;
    Ok((|| {
        let bytes32 = |bytes: Vec<u8>, what: &str| -> Result<[u8; 32], JournalError> {
            bytes
                .try_into()
                .map_err(|_| JournalError::Corrupt { seq, reason: format!("{what} is not 32 bytes") })
        };
        let seal = match seal {
            None => None,
            Some(bytes) => Some(Signature(
                bytes
                    .try_into()
                    .map_err(|_| JournalError::Corrupt { seq, reason: "the seal is not 64 bytes".into() })?,
            )),
        };
        Ok(Entry {
            seq,
            prev_hash: bytes32(prev_hash, "prev_hash")?,
            cause: cause.map(|c| c as u64),
            time_ms: time_ms as u64,
            signer: public_key(&signer, seq)?,
            record,
            hash: bytes32(hash, "hash")?,
            seal,
        })
    })())
}

fn public_key(bytes: &[u8], seq: u64) -> Result<PublicKey, JournalError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| JournalError::Corrupt { seq, reason: "the signer is not 32 bytes".into() })?;
    Ok(PublicKey(bytes))
}

fn check_link(entry: &Entry, expected_seq: u64, prev: &[u8; 32]) -> Result<(), JournalError> {
    let bad = |reason: String| Err(JournalError::Corrupt { seq: entry.seq, reason });
    if entry.seq != expected_seq {
        return bad(format!("expected entry {expected_seq} here; the chain has a gap or a reordering"));
    }
    if entry.prev_hash != *prev {
        return bad("its previous-hash link does not match the entry before it".into());
    }
    let hash =
        entry_hash(entry.seq, &entry.prev_hash, entry.cause, entry.time_ms, &entry.signer, &entry.record);
    if hash != entry.hash {
        return bad("its contents do not match its hash (the row was changed)".into());
    }
    if entry.cause.is_some_and(|cause| cause >= entry.seq) {
        return bad(format!("its cause {} is not an earlier entry", entry.cause.unwrap_or_default()));
    }
    Ok(())
}

/// What `icn journal verify` found.
#[derive(Debug)]
pub struct Verification {
    pub coordinator: PublicKey,
    pub entries: u64,
    pub seals: u64,
    /// The first entry that fails a check, and why.
    pub first_bad: Option<(u64, String)>,
}

/// Re-checks every link, hash, seal and carried signature of the journal at `path`.
pub fn verify(path: &Path, coordinator: Option<PublicKey>) -> Result<Verification, JournalError> {
    if !path.exists() {
        return Err(JournalError::Corrupt { seq: 0, reason: format!("no journal at {}", path.display()) });
    }
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let stored: Vec<u8> =
        connection.query_row("SELECT value FROM meta WHERE name = 'coordinator'", [], |row| row.get(0))?;
    let stored = public_key(&stored, 0)?;
    let coordinator = coordinator.unwrap_or(stored);
    let mut verification = Verification { coordinator, entries: 0, seals: 0, first_bad: None };
    if stored != coordinator {
        verification.first_bad =
            Some((0, format!("the journal names coordinator {stored}, not the expected {coordinator}")));
        return Ok(verification);
    }
    let mut statement = connection.prepare(
        "SELECT seq, prev_hash, cause, time_ms, signer, record, hash, seal FROM journal ORDER BY seq",
    )?;
    let rows = statement.query_map([], read_row)?;
    let mut prev = GENESIS_HASH;
    let mut last_sealed = true;
    for row in rows {
        let checked = row?.and_then(|entry| {
            check_link(&entry, verification.entries, &prev)?;
            check_signatures(&entry, &coordinator)?;
            Ok(entry)
        });
        match checked {
            Ok(entry) => {
                prev = entry.hash;
                last_sealed = entry.seal.is_some();
                verification.seals += u64::from(last_sealed);
                verification.entries += 1;
            }
            Err(JournalError::Corrupt { seq, reason }) => {
                verification.first_bad = Some((seq, reason));
                return Ok(verification);
            }
            Err(other) => return Err(other),
        }
    }
    if !last_sealed {
        verification.first_bad = Some((
            verification.entries.saturating_sub(1),
            "the last entry is not sealed by the coordinator (entries were appended by someone else)".into(),
        ));
    }
    Ok(verification)
}

fn check_signatures(entry: &Entry, coordinator: &PublicKey) -> Result<(), JournalError> {
    let bad = |reason: String| JournalError::Corrupt { seq: entry.seq, reason };
    if let Some(seal) = &entry.seal {
        coordinator
            .verify(&entry.hash, seal)
            .map_err(|e| bad(format!("its seal is not the coordinator's: {e}")))?;
    }
    let record = entry.decode_record()?;
    match record.evidence() {
        Some(envelope) => {
            envelope.verify().map_err(|e| bad(format!("the signed statement it carries is forged: {e}")))?;
            if envelope.signer != entry.signer {
                return Err(bad(format!(
                    "it names {} as signer but carries a statement signed by {}",
                    entry.signer, envelope.signer
                )));
            }
        }
        None if entry.signer != *coordinator => {
            return Err(bad(format!("a coordinator record signed by {}", entry.signer)));
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_protocol::JobId;

    fn entries(key: &Keypair, n: u64) -> Vec<Entry> {
        let mut prev = GENESIS_HASH;
        let mut out = Vec::new();
        for seq in 0..n {
            let record =
                Record::JobFailed { job: JobId(ContentId::of(&seq.to_le_bytes())), reason: "test".into() };
            let mut entry = Entry::new(seq, prev, seq.checked_sub(1), 1000 + seq, key.public(), &record);
            entry.seal_with(key);
            prev = entry.hash;
            out.push(entry);
        }
        out
    }

    #[test]
    fn appended_entries_load_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let mut journal = Journal::open(&path, key.public()).unwrap();
        let written = entries(&key, 5);
        journal.append(&written[..3]).unwrap();
        journal.append(&written[3..]).unwrap();
        assert_eq!(journal.load().unwrap(), written);
        let verification = verify(&path, None).unwrap();
        assert_eq!(verification.entries, 5);
        assert!(verification.first_bad.is_none(), "{:?}", verification.first_bad);
    }

    #[test]
    fn journal_of_another_coordinator_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        Journal::open(&path, Keypair::from_seed([5; 32]).public()).unwrap();
        let other = Journal::open(&path, Keypair::from_seed([6; 32]).public());
        assert!(matches!(other, Err(JournalError::WrongOwner { .. })));
    }

    #[test]
    fn changed_row_is_named_by_verify_and_refused_by_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let mut journal = Journal::open(&path, key.public()).unwrap();
        journal.append(&entries(&key, 6)).unwrap();
        journal.connection.execute("UPDATE journal SET time_ms = 1 WHERE seq = 3", []).unwrap();
        let verification = verify(&path, None).unwrap();
        let (seq, reason) = verification.first_bad.unwrap();
        assert_eq!(seq, 3);
        assert!(reason.contains("changed"), "{reason}");
        assert!(matches!(journal.load(), Err(JournalError::Corrupt { seq: 3, .. })));
    }

    #[test]
    fn rewritten_tail_without_the_coordinator_key_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let forger = Keypair::from_seed([7; 32]);
        let mut journal = Journal::open(&path, key.public()).unwrap();
        journal.append(&entries(&key, 2)).unwrap();
        // A forger appends a well-chained entry but cannot seal it with the coordinator key.
        let prev = journal.load().unwrap().last().unwrap().hash;
        let record = Record::JobFailed { job: JobId(ContentId::of(b"x")), reason: "forged".into() };
        let mut forged = Entry::new(2, prev, None, 5, key.public(), &record);
        forged.seal_with(&forger);
        journal.append(&[forged]).unwrap();
        let (seq, reason) = verify(&path, None).unwrap().first_bad.unwrap();
        assert_eq!(seq, 2);
        assert!(reason.contains("seal"), "{reason}");
    }
}
