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

use std::path::Path;
use std::sync::Mutex;

use icn_core::store::Payload;
use icn_protocol::ContentId;
use rusqlite::{Connection, OptionalExtension, params};

use crate::journal::JournalError;

/// How long payloads are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Any payload older than this goes.
    pub retention_ms: u64,
    /// An output fetched at least once goes this long after its first fetch.
    pub fetched_retention_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { retention_ms: 7 * 24 * 3_600_000, fetched_retention_ms: 3_600_000 }
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
";

/// Expired ids remembered, at most; beyond, the oldest are forgotten and a fetch of one
/// says only that it is not stored.
pub const EXPIRED_REMEMBERED_MAX: i64 = 1_000_000;

pub struct BlobStore {
    connection: Mutex<Connection>,
    retention: Retention,
}

impl BlobStore {
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
    pub fn put(&self, kind: Kind, bytes: &[u8], now_ms: u64) -> Result<ContentId, JournalError> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        insert(&transaction, &[Payload { kind, bytes: bytes.to_vec(), stored_ms: now_ms }])?;
        transaction.commit()?;
        Ok(ContentId::of(bytes))
    }

    pub fn contains(&self, cid: &ContentId) -> Result<bool, JournalError> {
        if *cid == icn_protocol::wire::empty_input() {
            return Ok(true);
        }
        let found: Option<i64> = self
            .connection()
            .prepare_cached("SELECT 1 FROM blobs WHERE cid = ?1")?
            .query_row(params![cid.0.as_slice()], |row| row.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    /// The bytes of `cid`, checked against it; an output's first fetch starts its
    /// fetched retention.
    pub fn get(&self, cid: &ContentId, now_ms: u64) -> Result<Result<Vec<u8>, Missing>, JournalError> {
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
        connection.execute(
            "UPDATE blobs SET fetched_ms = ?2 WHERE cid = ?1 AND kind = ?3 AND fetched_ms IS NULL",
            params![cid.0.as_slice(), now_ms as i64, Kind::Output as i64],
        )?;
        Ok(Ok(bytes))
    }

    /// Lets go of what the retention policy says is due at `now_ms`; returns how many.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, JournalError> {
        let aged = now_ms.saturating_sub(self.retention.retention_ms) as i64;
        let fetched = now_ms.saturating_sub(self.retention.fetched_retention_ms) as i64;
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
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
/// renews it and forgets that it had expired).
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_expire_by_age_or_after_a_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        let retention = Retention { retention_ms: 1_000, fetched_retention_ms: 100 };
        let store = BlobStore::open(&journal, retention).unwrap();
        let input = store.put(Kind::Input, b"19 23", 0).unwrap();
        let fetched = store.put(Kind::Output, b"42\n", 0).unwrap();
        let kept = store.put(Kind::Output, b"kept\n", 500).unwrap();
        assert!(
            store.contains(&icn_protocol::wire::empty_input()).unwrap(),
            "the empty input is always held"
        );
        assert_eq!(store.get(&fetched, 200).unwrap(), Ok(b"42\n".to_vec()));
        assert_eq!(
            store.get(&input, 200).unwrap(),
            Ok(b"19 23".to_vec()),
            "an input has no fetched retention"
        );
        assert_eq!(store.sweep(350).unwrap(), 1, "the output fetched at 200 goes 100 ms later");
        assert_eq!(store.get(&fetched, 400).unwrap(), Err(Missing::Expired { dropped_ms: 350 }));
        assert_eq!(store.get(&input, 400).unwrap(), Ok(b"19 23".to_vec()));
        assert_eq!(store.sweep(1_100).unwrap(), 1, "the input is older than 1000 ms");
        assert_eq!(store.get(&kept, 1_100).unwrap(), Ok(b"kept\n".to_vec()));
        assert_eq!(store.get(&ContentId::of(b"never"), 1_100).unwrap(), Err(Missing::Unknown));
        // Stored again, it is back.
        store.put(Kind::Input, b"19 23", 1_200).unwrap();
        assert!(store.contains(&input).unwrap());
    }
}
