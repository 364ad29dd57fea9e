//! The journal in one SQLite file (WAL, `synchronous=FULL`): the embedded
//! [`JournalStore`]. The chain itself — entries, hashes, links, seals and their checks —
//! is the core's (`icn_core::chain`); this module stores entries, locks the file to one
//! coordinator, keeps its anchor, and streams entries back in bounded chunks for a start
//! or a verification, checking each chunk as `icn journal verify` does.
//!
//! The file holds modules too (by content id), so one file is the whole state.

use std::path::{Path, PathBuf};

use icn_core::store::{JournalStore, Payload, READ_ENTRIES_MAX};
use icn_core::{BadEntry, Entry, GENESIS_HASH, IndexKey, IndexRow, check_link, first_bad};
use icn_protocol::governance::ScopeId;
use icn_protocol::{ContentId, PublicKey, Seal, Signature};
use rusqlite::{Connection, OptionalExtension, params};

use crate::anchor::{self, AnchorWriter};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("journal entry {seq} is bad: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error("journal {path} belongs to coordinator {found}, not to this coordinator's key {ours}")]
    WrongOwner { path: String, found: PublicKey, ours: PublicKey },
    #[error(
        "journal {path} is in use by another coordinator ({holder}); two coordinators must never write one journal"
    )]
    InUse { path: String, holder: String },
    #[error(
        "journal entries {from} to {last} are not sealed by the coordinator. A batch and its seal are committed \
         together, so no crash leaves such a tail: something else appended them. Restore the journal from a \
         backup, or drop them with `icn journal truncate --journal {path} --unsealed-tail` if you accept losing them"
    )]
    UnsealedTail { path: String, from: u64, last: u64 },
    #[error("module {cid} in the journal's module store is bad: {reason}")]
    BadModule { cid: ContentId, reason: String },
    #[error("{0}")]
    Anchor(String),
    #[error("journal file: {0}")]
    Io(#[from] std::io::Error),
}

impl From<BadEntry> for JournalError {
    fn from(BadEntry { seq, reason }: BadEntry) -> Self {
        JournalError::Corrupt { seq, reason }
    }
}

/// The journal's storage: one SQLite file, locked by the one coordinator that writes it,
/// with an anchor file beside it that remembers the latest seal (see [`crate::anchor`]).
pub struct Journal {
    connection: Connection,
    path: PathBuf,
    owner: PublicKey,
    anchor: AnchorWriter,
    /// Held for the journal's lifetime: the lock that keeps a second coordinator out.
    _lock: std::fs::File,
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
CREATE TABLE IF NOT EXISTS journal_index (
    kind INTEGER NOT NULL,
    key BLOB NOT NULL,
    seq INTEGER NOT NULL,
    change INTEGER NOT NULL,
    PRIMARY KEY (kind, key, seq)
) WITHOUT ROWID;
";

const SELECT_ENTRIES: &str = "SELECT seq, prev_hash, cause, time_ms, signer, record, hash, seal FROM journal WHERE seq >= ?1 ORDER BY seq LIMIT ?2";

/// Opens a connection with the settings every user of the file shares: WAL, full
/// fsync on commit (an acknowledged submission survives a power cut), and a busy
/// timeout so the module store and the journal writer can share the file.
pub fn open_connection(path: &Path) -> Result<Connection, JournalError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.execute_batch(SCHEMA)?;
    connection.execute_batch(crate::blobs::SCHEMA)?;
    connection.execute_batch(crate::modules::SCHEMA)?;
    Ok(connection)
}

/// The lock file beside a journal.
pub fn lock_path(journal: &Path) -> PathBuf {
    with_suffix(journal, ".lock")
}

pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Takes the journal's exclusive lock, or says who holds it.
fn lock(journal: &Path) -> Result<std::fs::File, JournalError> {
    use std::io::{Read, Seek, Write};
    let path = lock_path(journal);
    let mut file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.seek(std::io::SeekFrom::Start(0))?;
            write!(file, "pid {}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = if holder.is_empty() { "a process that holds its lock".to_string() } else { holder };
            Err(JournalError::InUse { path: journal.display().to_string(), holder })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(JournalError::Io(e)),
    }
}

/// What a full pass over a journal found: how many entries checked, how many sealed,
/// the last seal, and the first entry that failed a check.
#[derive(Debug, Default)]
pub struct Pass {
    pub entries: u64,
    pub seals: u64,
    pub last_seal: Option<Seal>,
    pub first_bad: Option<BadEntry>,
    /// The entries after the last seal, if the journal does not end sealed.
    pub unsealed: Option<(u64, u64)>,
}

/// Reads every entry of the journal on `connection` in chunks of at most
/// [`READ_ENTRIES_MAX`], checks each chunk as `icn journal verify` does (links, hashes,
/// causes, seals and the signatures of the statements entries carry), and hands the good
/// ones to `each` — only up to a seal, so that entries nobody sealed never reach a
/// replay. Stops at the first bad entry.
fn pass(
    connection: &Connection,
    coordinator: &PublicKey,
    mut each: impl FnMut(&[Entry]) -> Result<(), JournalError>,
) -> Result<Pass, JournalError> {
    let mut pass = Pass::default();
    let mut prev = GENESIS_HASH;
    // Checked entries after the last seal seen, held back until a seal covers them.
    let mut pending: Vec<Entry> = Vec::new();
    loop {
        let (chunk, unreadable) = read_chunk(connection, pass.entries, READ_ENTRIES_MAX)?;
        let bad = first_bad(&chunk, pass.entries, prev, coordinator, unreadable);
        let good = bad.as_ref().map_or(chunk.len(), |b| (b.seq - pass.entries) as usize).min(chunk.len());
        for entry in &chunk[..good] {
            pass.seals += u64::from(entry.seal.is_some());
            pass.last_seal = entry.sealed().or(pass.last_seal);
            prev = entry.hash;
        }
        pass.entries += good as u64;
        pending.extend_from_slice(&chunk[..good]);
        if let Some(sealed) = pending.iter().rposition(|e| e.seal.is_some()) {
            each(&pending[..=sealed])?;
            pending.drain(..=sealed);
        }
        if bad.is_some() || chunk.len() < READ_ENTRIES_MAX {
            pass.first_bad = bad;
            pass.unsealed = pending.first().zip(pending.last()).map(|(first, last)| (first.seq, last.seq));
            return Ok(pass);
        }
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` for the coordinator holding `owner`,
    /// taking its exclusive lock.
    pub fn open(path: &Path, owner: PublicKey) -> Result<Self, JournalError> {
        let lock = lock(path)?;
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
        // An empty journal gets an empty anchor before its first entry, so that a
        // journal with entries and no anchor always means the two were separated.
        let empty: bool =
            connection.query_row("SELECT NOT EXISTS (SELECT 1 FROM journal)", [], |row| row.get(0))?;
        let anchor = AnchorWriter::start(anchor::path(path), empty)?;
        Ok(Journal { connection, path: path.to_path_buf(), owner, anchor, _lock: lock })
    }

    /// Every entry in order, checked chunk by chunk as `icn journal verify` checks them,
    /// handed to `replay`; then that the journal ends sealed and that every stored module
    /// matches its content id. A journal that fails any check is refused, naming the
    /// first bad entry. Memory holds one chunk at a time.
    pub fn load(
        &self,
        replay: impl FnMut(&[Entry]) -> Result<(), JournalError>,
    ) -> Result<Pass, JournalError> {
        let pass = pass(&self.connection, &self.owner, replay)?;
        if let Some(bad) = pass.first_bad {
            return Err(bad.into());
        }
        if let Some((from, last)) = pass.unsealed {
            return Err(JournalError::UnsealedTail { path: self.path.display().to_string(), from, last });
        }
        if let Some((cid, reason)) = first_bad_module(&self.connection)? {
            return Err(JournalError::BadModule { cid, reason });
        }
        Ok(pass)
    }

    /// Checks the loaded journal against its anchor: the journal must still hold the
    /// entry the anchor names, with the same hash. With `accept_end`, a journal that
    /// falls short is taken as it is and the anchor moved back to its last seal.
    pub fn check_anchor(&mut self, loaded: &Pass, accept_end: bool) -> Result<(), JournalError> {
        let hash_at =
            |seq: u64| self.read(seq, 1).ok()?.first().filter(|e| e.seq == seq).map(|e| ContentId(e.hash));
        let checked =
            anchor::check(&self.path, &self.owner, loaded.entries, loaded.last_seal.as_ref(), hash_at);
        match checked {
            Ok(()) => Ok(()),
            Err(problem) if accept_end => {
                tracing::warn!(%problem, "continuing from the journal as it is, by the operator's choice");
                if let Some(last) = loaded.last_seal {
                    self.anchor.update(last);
                    self.anchor.flush()?;
                }
                Ok(())
            }
            Err(problem) => Err(JournalError::Anchor(problem)),
        }
    }

    /// Waits until the anchor holds the latest seal appended.
    pub fn flush_anchor(&self) -> Result<(), JournalError> {
        self.anchor.flush()
    }
}

impl Journal {
    /// The highest entry whose index rows are stored.
    pub fn indexed_through(&self) -> Result<Option<u64>, JournalError> {
        let found: Option<Vec<u8>> = self
            .connection
            .query_row("SELECT value FROM meta WHERE name = 'indexed_through'", [], |row| row.get(0))
            .optional()?;
        Ok(found.and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok()).map(u64::from_be_bytes))
    }

    /// Stores index rows of entries already in the journal (a replay files every entry
    /// again): only those past what is indexed, so a start writes nothing unless the
    /// index fell behind.
    pub fn reindex(&mut self, rows: &[IndexRow]) -> Result<(), JournalError> {
        let through = self.indexed_through()?;
        let missing: Vec<&IndexRow> = rows.iter().filter(|r| through.is_none_or(|t| r.seq > t)).collect();
        let Some(last) = missing.iter().map(|r| r.seq).max() else { return Ok(()) };
        let transaction = self.connection.transaction()?;
        insert_index(&transaction, missing.into_iter(), last)?;
        transaction.commit()?;
        Ok(())
    }
}

/// Inserts index rows and moves the indexed mark to `through`.
fn insert_index<'a>(
    transaction: &rusqlite::Transaction<'_>,
    rows: impl Iterator<Item = &'a IndexRow>,
    through: u64,
) -> Result<(), JournalError> {
    let mut insert = transaction.prepare_cached(
        "INSERT OR IGNORE INTO journal_index (kind, key, seq, change) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for row in rows {
        let (kind, key) = index_key(&row.key);
        insert.execute(params![kind, key, row.seq as i64, row.change])?;
    }
    transaction
        .prepare_cached(
            "INSERT INTO meta (name, value) VALUES ('indexed_through', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![through.to_be_bytes().to_vec()])?;
    Ok(())
}

/// How an index key is stored: a kind and the key's bytes.
fn index_key(key: &IndexKey) -> (i64, Vec<u8>) {
    match key {
        IndexKey::Job(job) => (0, job.0.0.to_vec()),
        IndexKey::Scope(scope) => (1, scope.as_str().as_bytes().to_vec()),
        IndexKey::Decision(seq) => (2, seq.to_be_bytes().to_vec()),
        IndexKey::Proposal(id) => (3, id.0.to_vec()),
        IndexKey::Share(scope) => (4, scope.as_str().as_bytes().to_vec()),
        IndexKey::JobEntries(seq) => (5, seq.to_be_bytes().to_vec()),
    }
}

impl Journal {
    /// Moves everything in the write-ahead log into the database file, so that the file
    /// alone holds the journal (a clean stop does this; copies and backups then need only
    /// the one file).
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        self.connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Whether the journal holds a job (its submission is durable): one indexed read.
    pub fn holds_job(&self, job: &icn_protocol::JobId) -> Result<bool, JournalError> {
        holds_job(&self.connection, job)
    }
}

/// Whether the journal on `connection` holds a job: one indexed read.
fn holds_job(connection: &Connection, job: &icn_protocol::JobId) -> Result<bool, JournalError> {
    let (kind, bytes) = index_key(&IndexKey::Job(*job));
    let found: Option<i64> = connection
        .prepare_cached("SELECT 1 FROM journal_index WHERE kind = ?1 AND key = ?2 LIMIT 1")?
        .query_row(params![kind, bytes], |row| row.get(0))
        .optional()?;
    Ok(found.is_some())
}

impl JournalStore for Journal {
    type Error = JournalError;

    /// Appends a batch, its index rows and the payloads it names in one transaction: one
    /// fsync for all of it.
    /// The batch ends with its seal, so what commits is always sealed; the anchor
    /// follows once it has.
    fn append(
        &mut self,
        entries: &[Entry],
        index: &[IndexRow],
        payloads: &[Payload],
    ) -> Result<(), JournalError> {
        if entries.is_empty() && payloads.is_empty() {
            return Ok(());
        }
        let transaction = self.connection.transaction()?;
        crate::blobs::insert(&transaction, payloads)?;
        let Some(last) = entries.last() else {
            transaction.commit()?;
            return Ok(());
        };
        let seal = last.sealed().expect("a batch ends with its seal");
        insert_index(&transaction, index.iter(), last.seq)?;
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
        self.anchor.update(seal);
        Ok(())
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Entry>, JournalError> {
        match read_chunk(&self.connection, from, limit)? {
            (entries, None) => Ok(entries),
            (_, Some(bad)) => Err(bad.into()),
        }
    }

    fn len(&self) -> Result<u64, JournalError> {
        let next: Option<i64> =
            self.connection.query_row("SELECT MAX(seq) + 1 FROM journal", [], |row| row.get(0))?;
        Ok(next.unwrap_or(0) as u64)
    }

    fn seal_at(&self, seq: u64) -> Result<Option<Seal>, JournalError> {
        seal_at(&self.connection, seq)
    }
}

/// The seal stored at entry `seq`, if that entry is sealed.
pub fn seal_at(connection: &Connection, seq: u64) -> Result<Option<Seal>, JournalError> {
    let Ok(position) = i64::try_from(seq) else { return Ok(None) };
    let found: Option<(Vec<u8>, Option<Vec<u8>>)> = connection
        .query_row("SELECT hash, seal FROM journal WHERE seq = ?1", params![position], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((hash, Some(signature))) = found else { return Ok(None) };
    let bad = || JournalError::Corrupt { seq, reason: "its hash or seal has the wrong length".into() };
    Ok(Some(Seal {
        seq,
        hash: ContentId(hash.try_into().map_err(|_| bad())?),
        signature: Signature(signature.try_into().map_err(|_| bad())?),
    }))
}

/// Opens a journal file read-only, for reading beside a running coordinator (WAL lets
/// readers in beside the writer).
pub fn open_read_only(path: &Path) -> Result<Connection, JournalError> {
    if !path.exists() {
        return Err(JournalError::Corrupt { seq: 0, reason: format!("no journal at {}", path.display()) });
    }
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(connection)
}

/// Reads the journal at `path` without writing to it, hash links checked; for tools
/// that show entries while a coordinator runs. Seals and signatures are checked by
/// [`verify`] and at every start.
pub fn read(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let connection = open_read_only(path)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut prev = GENESIS_HASH;
    loop {
        let (chunk, unreadable) = read_chunk(&connection, entries.len() as u64, READ_ENTRIES_MAX)?;
        for entry in &chunk {
            check_link(entry, entries.len() as u64, &prev)
                .map_err(|reason| JournalError::Corrupt { seq: entry.seq, reason })?;
            prev = entry.hash;
            entries.push(entry.clone());
        }
        if let Some(bad) = unreadable {
            return Err(bad.into());
        }
        if chunk.len() < READ_ENTRIES_MAX {
            return Ok(entries);
        }
    }
}

/// Up to `limit` rows from entry `from` on that read as entries, and the first that does not.
fn read_chunk(
    connection: &Connection,
    from: u64,
    limit: usize,
) -> Result<(Vec<Entry>, Option<BadEntry>), JournalError> {
    let mut statement = connection.prepare_cached(SELECT_ENTRIES)?;
    let rows = statement.query_map(params![from as i64, limit as i64], read_row)?;
    let mut entries = Vec::new();
    for row in rows {
        match row? {
            Ok(entry) => entries.push(entry),
            Err(JournalError::Corrupt { seq, reason }) => {
                return Ok((entries, Some(BadEntry { seq, reason })));
            }
            Err(other) => return Err(other),
        }
    }
    Ok((entries, None))
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

/// The first stored module whose bytes do not hash to its content id.
fn first_bad_module(connection: &Connection) -> Result<Option<(ContentId, String)>, JournalError> {
    let mut statement = connection.prepare("SELECT cid, bytes FROM modules ORDER BY cid")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let cid: Vec<u8> = row.get(0)?;
        let bytes: Vec<u8> = row.get(1)?;
        let Ok(cid) = <[u8; 32]>::try_from(cid.as_slice()).map(ContentId) else {
            return Ok(Some((ContentId::of(&cid), "its content id is not 32 bytes".into())));
        };
        if ContentId::of(&bytes) != cid {
            return Ok(Some((cid, "its bytes do not hash to its content id (the row was changed)".into())));
        }
    }
    Ok(None)
}

/// What `icn journal verify` found.
#[derive(Debug)]
pub struct Verification {
    pub coordinator: PublicKey,
    pub entries: u64,
    pub seals: u64,
    /// The latest seal, which a member can keep and check a later copy against.
    pub last_seal: Option<Seal>,
    /// The first entry that fails a check, and why.
    pub first_bad: Option<BadEntry>,
    /// The first stored module that fails its content id.
    pub bad_module: Option<(ContentId, String)>,
}

/// Re-checks every link, hash, seal and carried signature of the journal at `path`, that
/// it ends sealed, and every stored module against its content id.
pub fn verify(path: &Path, coordinator: Option<PublicKey>) -> Result<Verification, JournalError> {
    let connection = open_read_only(path)?;
    let stored: Vec<u8> =
        connection.query_row("SELECT value FROM meta WHERE name = 'coordinator'", [], |row| row.get(0))?;
    let stored = public_key(&stored, 0)?;
    let coordinator = coordinator.unwrap_or(stored);
    let mut verification = Verification {
        coordinator,
        entries: 0,
        seals: 0,
        last_seal: None,
        first_bad: None,
        bad_module: None,
    };
    if stored != coordinator {
        let reason = format!("the journal names coordinator {stored}, not the expected {coordinator}");
        verification.first_bad = Some(BadEntry { seq: 0, reason });
        return Ok(verification);
    }
    let pass = pass(&connection, &coordinator, |_| Ok(()))?;
    verification.entries = pass.entries;
    verification.seals = pass.seals;
    verification.last_seal = pass.last_seal;
    verification.first_bad = pass.first_bad.or_else(|| {
        pass.unsealed.map(|(from, last)| BadEntry {
            seq: from,
            reason: format!(
                "entries {from} to {last} are not sealed by the coordinator (they were appended by something else)"
            ),
        })
    });
    verification.bad_module = first_bad_module(&connection)?;
    Ok(verification)
}

/// Deletes the entries after the last seal: what an operator does, once warned, to start
/// from a journal whose tail something other than the coordinator appended. Sealed
/// history is never removed. Returns how many entries went.
pub fn truncate_unsealed_tail(path: &Path) -> Result<u64, JournalError> {
    let _lock = lock(path)?;
    let connection = open_connection(path)?;
    let last_sealed: Option<i64> =
        connection.query_row("SELECT MAX(seq) FROM journal WHERE seal IS NOT NULL", [], |row| row.get(0))?;
    let removed =
        connection.execute("DELETE FROM journal WHERE seq > ?1", params![last_sealed.unwrap_or(-1)])?;
    Ok(removed as u64)
}

/// A read-only view of a journal file for traces and statements, beside a running
/// coordinator: entries by number and the index, never a scan.
pub struct JournalReader {
    connection: Connection,
}

impl JournalReader {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Ok(JournalReader { connection: open_read_only(path)? })
    }
}

impl JournalReader {
    /// The coordinator's seal that vouches for entry `seq`: the seal of the first sealed
    /// entry at or after it (the last of its batch), which by the hash chain covers it.
    pub fn covering_seal(&self, seq: u64) -> Result<Option<Seal>, JournalError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT seq, prev_hash, cause, time_ms, signer, record, hash, seal FROM journal \
             WHERE seq >= ?1 AND seal IS NOT NULL ORDER BY seq LIMIT 1",
        )?;
        match statement.query_row(params![seq as i64], read_row).optional()? {
            Some(entry) => Ok(entry?.sealed()),
            None => Ok(None),
        }
    }

    /// Ids of the jobs the journal's index holds between `lo` and `hi`, in order, at most
    /// `limit`: jobs that left the coordinator's memory are found here.
    pub fn jobs_between(
        &self,
        lo: &[u8; 32],
        hi: &[u8; 32],
        limit: usize,
    ) -> Result<Vec<[u8; 32]>, JournalError> {
        let (kind, _) = index_key(&IndexKey::Job(icn_protocol::JobId(icn_protocol::ContentId(*lo))));
        let mut statement = self.connection.prepare_cached(
            "SELECT DISTINCT key FROM journal_index WHERE kind = ?1 AND key >= ?2 AND key <= ?3 ORDER BY key LIMIT ?4",
        )?;
        let rows = statement.query_map(params![kind, lo.as_slice(), hi.as_slice(), limit as i64], |row| {
            row.get::<_, Vec<u8>>(0)
        })?;
        let mut ids = Vec::new();
        for row in rows {
            if let Ok(id) = <[u8; 32]>::try_from(row?) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

impl icn_core::trace::Source for JournalReader {
    fn entry(&self, seq: u64) -> Result<Entry, String> {
        match read_chunk(&self.connection, seq, 1).map_err(|e| e.to_string())? {
            (entries, None) => {
                entries.into_iter().find(|e| e.seq == seq).ok_or_else(|| format!("no entry {seq}"))
            }
            (_, Some(bad)) => Err(bad.to_string()),
        }
    }

    fn indexed(&self, key: &IndexKey, after: Option<u64>, limit: usize) -> Result<Vec<IndexRow>, String> {
        let (kind, bytes) = index_key(key);
        let from = after.map_or(0, |a| a as i64 + 1);
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT seq, change FROM journal_index WHERE kind = ?1 AND key = ?2 AND seq >= ?3 ORDER BY seq LIMIT ?4",
            )
            .map_err(|e| e.to_string())?;
        let rows = statement
            .query_map(params![kind, bytes, from, limit as i64], |row| {
                Ok(IndexRow { key: key.clone(), seq: row.get::<_, i64>(0)? as u64, change: row.get(1)? })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
    }

    fn position_before(&self, scope: &ScopeId, before: u64) -> Result<i64, String> {
        self.connection
            .query_row(
                "SELECT COALESCE(SUM(change), 0) FROM journal_index WHERE kind = 1 AND key = ?1 AND seq < ?2",
                params![scope.as_str().as_bytes(), before as i64],
                |row| row.get(0),
            )
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_core::Record;
    use icn_protocol::{JobId, Keypair};

    /// Loads with every check and nothing replayed; the entries, as `read` gives them.
    fn load(journal: &Journal) -> Result<Vec<Entry>, JournalError> {
        journal.load(|_| Ok(()))?;
        journal.read(0, usize::MAX)
    }

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
        journal.append(&written[..3], &[], &[]).unwrap();
        journal.append(&written[3..], &[], &[]).unwrap();
        assert_eq!(load(&journal).unwrap(), written);
        let verification = verify(&path, None).unwrap();
        assert_eq!(verification.entries, 5);
        assert!(verification.first_bad.is_none(), "{:?}", verification.first_bad);
    }

    #[test]
    fn a_journal_longer_than_a_read_chunk_replays_whole_batches_and_names_a_bad_entry_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let mut journal = Journal::open(&path, key.public()).unwrap();
        // Batches of 7 entries, each sealed at its end, across several read chunks.
        let total = 2 * READ_ENTRIES_MAX as u64 + 100;
        let mut all = entries(&key, total);
        for entry in &mut all {
            if (entry.seq + 1) % 7 != 0 && entry.seq + 1 != total {
                entry.seal = None;
            }
        }
        for batch in all.chunks(7) {
            journal.append(batch, &[], &[]).unwrap();
        }
        let mut replayed = Vec::new();
        let pass = journal
            .load(|chunk| {
                assert!(chunk.last().unwrap().seal.is_some(), "a replay chunk ends sealed");
                replayed.extend(chunk.iter().map(|e| e.seq));
                Ok(())
            })
            .unwrap();
        assert_eq!(replayed, (0..total).collect::<Vec<_>>());
        assert_eq!(pass.entries, total);
        let bad = READ_ENTRIES_MAX as u64 + 500;
        journal.connection.execute("UPDATE journal SET time_ms = 1 WHERE seq = ?1", [bad as i64]).unwrap();
        assert!(matches!(load(&journal), Err(JournalError::Corrupt { seq, .. }) if seq == bad));
        assert_eq!(verify(&path, None).unwrap().first_bad.unwrap().seq, bad);
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
        journal.append(&entries(&key, 6), &[], &[]).unwrap();
        journal.connection.execute("UPDATE journal SET time_ms = 1 WHERE seq = 3", []).unwrap();
        let verification = verify(&path, None).unwrap();
        let BadEntry { seq, reason } = verification.first_bad.unwrap();
        assert_eq!(seq, 3);
        assert!(reason.contains("changed"), "{reason}");
        assert!(matches!(load(&journal), Err(JournalError::Corrupt { seq: 3, .. })));
    }

    /// A journal of `n` entries, each its own sealed batch, for the coordinator `key`.
    fn journal_with(path: &Path, key: &Keypair, n: u64) -> Journal {
        let mut journal = Journal::open(path, key.public()).unwrap();
        for entry in entries(key, n) {
            journal.append(&[entry], &[], &[]).unwrap();
        }
        journal
    }

    #[test]
    fn a_forged_entry_linked_after_the_last_seal_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let journal = journal_with(&path, &key, 3);
        // A forger who knows the format appends a well-linked record in the coordinator's
        // name, but cannot seal it.
        let prev = load(&journal).unwrap().last().unwrap().hash;
        let record = Record::JobFailed { job: JobId(ContentId::of(b"x")), reason: "forged".into() };
        let forged = Entry::new(3, prev, None, 5, key.public(), &record);
        insert_raw(&journal.connection, &forged);
        let error = load(&journal).unwrap_err();
        assert!(matches!(error, JournalError::UnsealedTail { from: 3, last: 3, .. }), "{error}");
        assert!(error.to_string().contains("icn journal truncate"), "{error}");
        let BadEntry { seq, reason } = verify(&path, None).unwrap().first_bad.unwrap();
        assert_eq!(seq, 3);
        assert!(reason.contains("not sealed"), "{reason}");
    }

    #[test]
    fn a_stripped_seal_is_refused_at_load_and_truncation_removes_only_the_unsealed_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let journal = journal_with(&path, &key, 4);
        journal.connection.execute("UPDATE journal SET seal = NULL WHERE seq = 3", []).unwrap();
        assert!(matches!(load(&journal), Err(JournalError::UnsealedTail { from: 3, last: 3, .. })));
        drop(journal);
        assert_eq!(truncate_unsealed_tail(&path).unwrap(), 1);
        let journal = Journal::open(&path, key.public()).unwrap();
        assert_eq!(load(&journal).unwrap().len(), 3, "sealed history stays");
    }

    #[test]
    fn a_changed_module_is_named_by_verify_and_refused_by_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let journal = journal_with(&path, &key, 2);
        let module = b"\0asm\x01\0\0\0".to_vec();
        let cid = ContentId::of(&module);
        let mut changed = module.clone();
        changed.push(0);
        journal
            .connection
            .execute("INSERT INTO modules (cid, bytes) VALUES (?1, ?2)", params![cid.0.as_slice(), changed])
            .unwrap();
        assert!(matches!(load(&journal), Err(JournalError::BadModule { cid: bad, .. }) if bad == cid));
        let verification = verify(&path, None).unwrap();
        assert!(verification.first_bad.is_none());
        assert_eq!(verification.bad_module.unwrap().0, cid);
    }

    #[test]
    fn a_second_coordinator_cannot_open_a_journal_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let first = Journal::open(&path, key.public()).unwrap();
        let second = Journal::open(&path, key.public());
        let Err(JournalError::InUse { holder, .. }) = second else { panic!("the journal is in use") };
        assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
        drop(first);
        assert!(Journal::open(&path, key.public()).is_ok(), "free again once the first is gone");
    }

    #[test]
    fn a_cut_tail_is_caught_by_the_anchor_unless_the_operator_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let journal = journal_with(&path, &key, 6);
        journal.flush_anchor().unwrap();
        // Cut back to entry 3, which is sealed: every link, seal and signature still holds.
        journal.connection.execute("DELETE FROM journal WHERE seq > 3", []).unwrap();
        drop(journal);
        assert!(verify(&path, None).unwrap().first_bad.is_none(), "the cut journal verifies on its own");
        let mut journal = Journal::open(&path, key.public()).unwrap();
        let loaded = journal.load(|_| Ok(())).unwrap();
        let error = journal.check_anchor(&loaded, false).unwrap_err().to_string();
        assert!(error.contains("ends at entry 3") && error.contains("entry 5 was sealed"), "{error}");
        assert!(error.contains("--accept-journal-end"), "{error}");
        journal.check_anchor(&loaded, true).unwrap();
        drop(journal);
        let mut journal = Journal::open(&path, key.public()).unwrap();
        let loaded = journal.load(|_| Ok(())).unwrap();
        journal.check_anchor(&loaded, false).expect("accepted once, the anchor moved back");
    }

    #[test]
    fn a_journal_without_its_anchor_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        drop(journal_with(&path, &key, 2));
        std::fs::remove_file(anchor::path(&path)).unwrap();
        let mut journal = Journal::open(&path, key.public()).unwrap();
        let loaded = journal.load(|_| Ok(())).unwrap();
        let error = journal.check_anchor(&loaded, false).unwrap_err().to_string();
        assert!(error.contains("anchor") && error.contains("is missing"), "{error}");
    }

    fn insert_raw(connection: &Connection, entry: &Entry) {
        connection
            .execute(
                "INSERT INTO journal (seq, prev_hash, cause, time_ms, signer, record, hash, seal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
                params![
                    entry.seq as i64,
                    entry.prev_hash.as_slice(),
                    entry.cause.map(|c| c as i64),
                    entry.time_ms as i64,
                    entry.signer.0.as_slice(),
                    entry.record,
                    entry.hash.as_slice(),
                ],
            )
            .unwrap();
    }

    #[test]
    fn rewritten_tail_without_the_coordinator_key_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let key = Keypair::from_seed([5; 32]);
        let forger = Keypair::from_seed([7; 32]);
        let mut journal = Journal::open(&path, key.public()).unwrap();
        journal.append(&entries(&key, 2), &[], &[]).unwrap();
        // A forger appends a well-chained entry but cannot seal it with the coordinator key.
        let prev = load(&journal).unwrap().last().unwrap().hash;
        let record = Record::JobFailed { job: JobId(ContentId::of(b"x")), reason: "forged".into() };
        let mut forged = Entry::new(2, prev, None, 5, key.public(), &record);
        forged.seal_with(&forger);
        journal.append(&[forged], &[], &[]).unwrap();
        let BadEntry { seq, reason } = verify(&path, None).unwrap().first_bad.unwrap();
        assert_eq!(seq, 2);
        assert!(reason.contains("seal"), "{reason}");
    }
}
