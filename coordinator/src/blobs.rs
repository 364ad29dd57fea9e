//! Payloads: jobs' inputs and outputs, by content id, in a table of their own in the
//! journal's database file. The journal holds only their digests and sizes, inside the
//! signed submissions and reports, so the chain still commits to every byte while its
//! entries stay small and a replay never reads a payload.
//!
//! Payloads are written by the journal itself, in the transaction of the batch whose
//! entries name them (`JournalStore::append`): an output is never durable later than the
//! report that names it, and both share the batch's one fsync. This store reads them,
//! records first fetches and lets them go under the retention policy.
//!
//! Outputs are kept for members to fetch: an output already fetched goes after
//! `fetched_retention_ms`, any output after `retention_ms`. Inputs go after
//! `retention_ms` too (a job cannot wait that long: jobs expire sooner). A fetch of what
//! is gone says so, and the journal's digest still proves what it was.
//!
//! Every payload carries who may read it (`blob_readers`): an input its uploaders, an
//! output the job's submitter and its scope. Privacy holds per payload, not per route:
//! a job may name as its input only bytes its submitter may read, so a private output is
//! never read back through another member's job. Only a member's own fetch of an output
//! starts its fetched retention; a worker reading an input does not.

use std::path::Path;
use std::sync::Mutex;

use icn_core::store::{Payload, Reader};
use icn_protocol::governance::ScopeId;
use icn_protocol::{ContentId, PublicKey};
use rusqlite::{Connection, OptionalExtension, params};

use crate::journal::JournalError;

/// How long payloads are kept, and how much each member may keep uploaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Any payload older than this goes.
    pub retention_ms: u64,
    /// An output fetched at least once goes this long after its first fetch.
    pub fetched_retention_ms: u64,
    /// Bytes of inputs and modules one member's uploads may keep stored at once; an
    /// upload past it is refused (`quota`).
    pub upload_quota_bytes: u64,
}

/// The upload quota when the config names none: enough for a few hundred of the largest
/// modules and inputs, and small beside a disk.
pub const UPLOAD_QUOTA_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

impl Default for Retention {
    fn default() -> Self {
        Retention {
            retention_ms: 7 * 24 * 3_600_000,
            fetched_retention_ms: 3_600_000,
            upload_quota_bytes: UPLOAD_QUOTA_BYTES_DEFAULT,
        }
    }
}

pub use icn_core::store::PayloadKind as Kind;

/// A payload that is not (or no longer) stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// Never stored here.
    Unknown,
    /// Stored, then let go at `dropped_ms` under the retention policy.
    Expired { dropped_ms: u64 },
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blobs (
    cid BLOB PRIMARY KEY,
    kind INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    stored_ms INTEGER NOT NULL,
    fetched_ms INTEGER
);
CREATE TABLE IF NOT EXISTS expired (cid BLOB PRIMARY KEY, dropped_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS blobs_by_age ON blobs (stored_ms);
CREATE TABLE IF NOT EXISTS blob_readers (
    cid BLOB NOT NULL,
    member BLOB NOT NULL,
    scope TEXT NOT NULL,
    PRIMARY KEY (cid, member, scope)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_readers_by_member ON blob_readers (member, scope);
";

/// Who may read a stored payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// The empty input: no bytes, nothing to keep from anyone.
    Public,
    /// Stored, readable by these (see [`Reader`]).
    Readers(Vec<Reader>),
    /// Not stored (never, or no longer).
    NotStored,
}

/// A reader as its row keeps it: an uploader has no scope ('').
fn reader_row(reader: &Reader) -> (&[u8], String) {
    match reader {
        Reader::Uploader(key) => (key.0.as_slice(), String::new()),
        Reader::Job { scope, submitter } => (submitter.0.as_slice(), scope.to_string()),
    }
}

fn reader_of(member: Vec<u8>, scope: String) -> Option<Reader> {
    let key = PublicKey(member.try_into().ok()?);
    if scope.is_empty() {
        return Some(Reader::Uploader(key));
    }
    Some(Reader::Job { scope: scope.parse::<ScopeId>().ok()?, submitter: key })
}

/// Expired ids remembered, at most; beyond, the oldest are forgotten and a fetch of one
/// says only that it is not stored.
pub const EXPIRED_REMEMBERED_MAX: i64 = 1_000_000;

pub struct BlobStore {
    connection: Mutex<Connection>,
    retention: Retention,
}

impl BlobStore {
    /// The policy this store keeps payloads by.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    pub fn open(journal: &Path, retention: Retention) -> Result<Self, JournalError> {
        let connection = crate::journal::open_connection(journal)?;
        Ok(BlobStore { connection: Mutex::new(connection), retention })
    }

    /// Bytes of payloads stored now.
    pub fn stored_bytes(&self) -> Result<u64, JournalError> {
        let sum: i64 =
            self.connection()
                .query_row("SELECT COALESCE(SUM(LENGTH(bytes)), 0) FROM blobs", [], |row| row.get(0))?;
        Ok(sum as u64)
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().expect("blob store lock")
    }

    /// Stores `bytes` by their content id (once), alone: for tools and tests; the
    /// coordinator stores payloads with the journal batch that names them. Blocking.
    pub fn put(
        &self,
        kind: Kind,
        bytes: &[u8],
        reader: Reader,
        now_ms: u64,
    ) -> Result<ContentId, JournalError> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        insert(&transaction, &[Payload { kind, bytes: bytes.to_vec(), stored_ms: now_ms, reader }])?;
        transaction.commit()?;
        Ok(ContentId::of(bytes))
    }

    /// Who may read `cid`, or that it is not stored.
    pub fn access(&self, cid: &ContentId) -> Result<Access, JournalError> {
        if *cid == icn_protocol::wire::empty_input() {
            return Ok(Access::Public);
        }
        let connection = self.connection();
        let stored: Option<i64> = connection
            .prepare_cached("SELECT 1 FROM blobs WHERE cid = ?1")?
            .query_row(params![cid.0.as_slice()], |row| row.get(0))
            .optional()?;
        if stored.is_none() {
            return Ok(Access::NotStored);
        }
        let mut statement = connection
            .prepare_cached("SELECT member, scope FROM blob_readers WHERE cid = ?1 ORDER BY member, scope")?;
        let rows = statement.query_map(params![cid.0.as_slice()], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let mut readers = Vec::new();
        for row in rows {
            let (member, scope): (Vec<u8>, String) = row?;
            readers.extend(reader_of(member, scope));
        }
        Ok(Access::Readers(readers))
    }

    /// The bytes of `cid`, checked against it. Reading does not change its retention
    /// (workers read inputs this way); a member's fetch of an output is [`BlobStore::fetch_output`].
    pub fn get(&self, cid: &ContentId) -> Result<Result<Vec<u8>, Missing>, JournalError> {
        if *cid == icn_protocol::wire::empty_input() {
            return Ok(Ok(Vec::new()));
        }
        let connection = self.connection();
        let found: Option<Vec<u8>> = connection
            .query_row("SELECT bytes FROM blobs WHERE cid = ?1", params![cid.0.as_slice()], |row| row.get(0))
            .optional()?;
        let Some(bytes) = found else {
            let dropped: Option<i64> = connection
                .query_row(
                    "SELECT dropped_ms FROM expired WHERE cid = ?1",
                    params![cid.0.as_slice()],
                    |row| row.get(0),
                )
                .optional()?;
            return Ok(
                Err(dropped.map_or(Missing::Unknown, |ms| Missing::Expired { dropped_ms: ms as u64 })),
            );
        };
        if ContentId::of(&bytes) != *cid {
            return Err(JournalError::Corrupt {
                seq: 0,
                reason: format!("stored payload {cid} does not hash to its id"),
            });
        }
        Ok(Ok(bytes))
    }

    /// A member's fetch of an output: its bytes, and its first fetch starts its fetched
    /// retention.
    pub fn fetch_output(
        &self,
        cid: &ContentId,
        now_ms: u64,
    ) -> Result<Result<Vec<u8>, Missing>, JournalError> {
        let found = self.get(cid)?;
        if found.is_ok() {
            self.connection().execute(
                "UPDATE blobs SET fetched_ms = ?2 WHERE cid = ?1 AND kind = ?3 AND fetched_ms IS NULL",
                params![cid.0.as_slice(), now_ms as i64, Kind::Output as i64],
            )?;
        }
        Ok(found)
    }

    /// Bytes of the inputs `member` uploaded that are stored now: what counts against
    /// their upload quota.
    pub fn uploaded_bytes(&self, member: &PublicKey) -> Result<u64, JournalError> {
        let sum: i64 = self.connection().query_row(
            "SELECT COALESCE(SUM(LENGTH(b.bytes)), 0) FROM blob_readers r JOIN blobs b ON b.cid = r.cid
             WHERE r.member = ?1 AND r.scope = ''",
            params![member.0.as_slice()],
            |row| row.get(0),
        )?;
        Ok(sum as u64)
    }

    /// Lets go of what the retention policy says is due at `now_ms`; returns how many.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, JournalError> {
        let aged = now_ms.saturating_sub(self.retention.retention_ms) as i64;
        let fetched = now_ms.saturating_sub(self.retention.fetched_retention_ms) as i64;
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        transaction.execute(
            "DELETE FROM blob_readers WHERE cid IN
             (SELECT cid FROM blobs WHERE stored_ms < ?1 OR (fetched_ms IS NOT NULL AND fetched_ms < ?2))",
            params![aged, fetched],
        )?;
        transaction.execute(
            "INSERT OR REPLACE INTO expired (cid, dropped_ms)
             SELECT cid, ?3 FROM blobs WHERE stored_ms < ?1 OR (fetched_ms IS NOT NULL AND fetched_ms < ?2)",
            params![aged, fetched, now_ms as i64],
        )?;
        let dropped = transaction.execute(
            "DELETE FROM blobs WHERE stored_ms < ?1 OR (fetched_ms IS NOT NULL AND fetched_ms < ?2)",
            params![aged, fetched],
        )?;
        transaction.execute(
            "DELETE FROM expired WHERE cid IN (SELECT cid FROM expired ORDER BY dropped_ms DESC LIMIT -1 OFFSET ?1)",
            params![EXPIRED_REMEMBERED_MAX],
        )?;
        transaction.commit()?;
        Ok(dropped)
    }
}

/// Stores `payloads` by content id in `transaction` (each once; storing one again
/// renews it, forgets that it had expired and adds its reader).
pub(crate) fn insert(
    transaction: &rusqlite::Transaction<'_>,
    payloads: &[Payload],
) -> Result<(), JournalError> {
    for payload in payloads {
        let cid = ContentId::of(&payload.bytes);
        transaction
            .prepare_cached(
                "INSERT INTO blobs (cid, kind, bytes, stored_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (cid) DO UPDATE SET stored_ms = MAX(stored_ms, excluded.stored_ms)",
            )?
            .execute(params![
                cid.0.as_slice(),
                payload.kind as i64,
                payload.bytes,
                payload.stored_ms as i64
            ])?;
        transaction
            .prepare_cached("DELETE FROM expired WHERE cid = ?1")?
            .execute(params![cid.0.as_slice()])?;
        let (member, scope) = reader_row(&payload.reader);
        transaction
            .prepare_cached("INSERT OR IGNORE INTO blob_readers (cid, member, scope) VALUES (?1, ?2, ?3)")?
            .execute(params![cid.0.as_slice(), member, scope])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploader(n: u8) -> Reader {
        Reader::Uploader(PublicKey([n; 32]))
    }

    #[test]
    fn payloads_round_trip_and_expire_by_age_or_after_a_members_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        let retention = Retention { retention_ms: 1_000, fetched_retention_ms: 100, ..Retention::default() };
        let store = BlobStore::open(&journal, retention).unwrap();
        let job = Reader::Job { scope: "coop-a".parse().unwrap(), submitter: PublicKey([9; 32]) };
        let input = store.put(Kind::Input, b"19 23", uploader(1), 0).unwrap();
        let fetched = store.put(Kind::Output, b"42\n", job.clone(), 0).unwrap();
        let kept = store.put(Kind::Output, b"kept\n", job.clone(), 500).unwrap();
        assert_eq!(store.access(&icn_protocol::wire::empty_input()).unwrap(), Access::Public);
        // A worker's read of an output (as an input) does not start its fetched retention.
        assert_eq!(store.get(&fetched).unwrap(), Ok(b"42\n".to_vec()));
        assert_eq!(store.sweep(350).unwrap(), 0, "only a member's fetch starts the fetched retention");
        assert_eq!(store.fetch_output(&fetched, 200).unwrap(), Ok(b"42\n".to_vec()));
        assert_eq!(store.get(&input).unwrap(), Ok(b"19 23".to_vec()));
        assert_eq!(store.sweep(350).unwrap(), 1, "the output fetched at 200 goes 100 ms later");
        assert_eq!(store.get(&fetched).unwrap(), Err(Missing::Expired { dropped_ms: 350 }));
        assert_eq!(store.access(&fetched).unwrap(), Access::NotStored);
        assert_eq!(store.get(&input).unwrap(), Ok(b"19 23".to_vec()));
        assert_eq!(store.sweep(1_100).unwrap(), 1, "the input is older than 1000 ms");
        assert_eq!(store.get(&kept).unwrap(), Ok(b"kept\n".to_vec()));
        assert_eq!(store.get(&ContentId::of(b"never")).unwrap(), Err(Missing::Unknown));
        // Stored again, it is back.
        store.put(Kind::Input, b"19 23", uploader(1), 1_200).unwrap();
        assert_eq!(store.access(&input).unwrap(), Access::Readers(vec![uploader(1)]));
    }

    #[test]
    fn a_payload_names_each_of_its_readers_and_uploads_count_for_their_uploader() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("journal.db"), Retention::default()).unwrap();
        let job = Reader::Job { scope: "coop-a".parse().unwrap(), submitter: PublicKey([9; 32]) };
        let output = store.put(Kind::Output, b"COOP-A PAYROLL", job.clone(), 0).unwrap();
        assert_eq!(store.access(&output).unwrap(), Access::Readers(vec![job.clone()]));
        assert_eq!(store.uploaded_bytes(&PublicKey([9; 32])).unwrap(), 0, "an output is no one's upload");
        // Someone who uploads the same bytes had them already: they may read them too.
        store.put(Kind::Input, b"COOP-A PAYROLL", uploader(2), 0).unwrap();
        store.put(Kind::Input, b"mine", uploader(2), 0).unwrap();
        assert_eq!(store.access(&output).unwrap(), Access::Readers(vec![uploader(2), job]));
        assert_eq!(store.uploaded_bytes(&PublicKey([2; 32])).unwrap(), 14 + 4);
        assert_eq!(store.uploaded_bytes(&PublicKey([3; 32])).unwrap(), 0);
    }
}
