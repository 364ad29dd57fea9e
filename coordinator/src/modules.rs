//! Modules by content id, stored in the journal's database file and kept in a bounded
//! in-memory cache for dispatch.
//!
//! Every upload is on record with its uploader (`module_uploads`), and counts against
//! that member's upload quota while the module is stored; a module no submission named
//! for [`MODULE_UNUSED_RETENTION_MS`] is let go, so the store (which every start checks
//! module by module) does not grow with everything anyone ever uploaded.

use std::path::Path;
use std::sync::{Arc, Mutex};

use icn_protocol::wire::MODULE_SIZE_BYTES_MAX;
use icn_protocol::{ContentId, PublicKey};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use rusqlite::{Connection, OptionalExtension, params};

use crate::journal::{JournalError, open_connection};

/// A module that no submission named for this long is let go (jobs end within a day, so
/// no job still needs it); whoever submits it again uploads it again.
pub const MODULE_UNUSED_RETENTION_MS: u64 = 30 * 24 * 3_600_000;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS module_uploads (
    cid BLOB NOT NULL,
    uploader BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    uploaded_ms INTEGER NOT NULL,
    PRIMARY KEY (cid, uploader)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS module_uploads_by_uploader ON module_uploads (uploader);
CREATE TABLE IF NOT EXISTS module_use (cid BLOB PRIMARY KEY, used_ms INTEGER NOT NULL) WITHOUT ROWID;
";

/// Module bytes kept in memory for dispatch, at most.
pub const MODULE_CACHE_BYTES_MAX: u64 = 256 * 1024 * 1024;
const _: () = assert!(MODULE_SIZE_BYTES_MAX as u64 <= MODULE_CACHE_BYTES_MAX);

/// A cached module weighs its bytes.
#[derive(Clone)]
struct ByLength;

impl Weighter<ContentId, Arc<Vec<u8>>> for ByLength {
    fn weight(&self, _: &ContentId, bytes: &Arc<Vec<u8>>) -> u64 {
        bytes.len().max(1) as u64
    }
}

/// Where module bytes live by content id. Implementations store and return bytes; `Modules`
/// in front of them validates, checks ids and caches.
pub trait ModuleStore: Send + Sync {
    /// Stores `bytes` under `cid` durably, with `uploader` on record; storing the same id
    /// twice is not an error (another uploader is recorded too). Blocking.
    fn insert(
        &self,
        cid: &ContentId,
        bytes: &[u8],
        uploader: &PublicKey,
        now_ms: u64,
    ) -> Result<(), JournalError>;
    /// A submission named `cid` at `now_ms`: it is in use. Blocking.
    fn touch(&self, cid: &ContentId, now_ms: u64) -> Result<(), JournalError>;
    /// Bytes of the stored modules `uploader` uploaded. Blocking.
    fn uploaded_bytes(&self, uploader: &PublicKey) -> Result<u64, JournalError>;
    /// Lets go, at `now_ms`, of modules no submission named for `unused_ms`; their ids.
    /// Blocking.
    fn sweep(&self, now_ms: u64, unused_ms: u64) -> Result<Vec<ContentId>, JournalError>;
    /// The bytes stored under `cid`, as stored. Blocking.
    fn fetch(&self, cid: &ContentId) -> Result<Option<Vec<u8>>, JournalError>;
    /// Whether anything is stored under `cid`. Blocking.
    fn holds(&self, cid: &ContentId) -> Result<bool, JournalError>;
}

/// Modules in the `modules` table of the journal's SQLite file.
pub struct SqliteModules {
    connection: Mutex<Connection>,
}

impl SqliteModules {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Ok(SqliteModules { connection: Mutex::new(open_connection(path)?) })
    }
}

impl ModuleStore for SqliteModules {
    fn insert(
        &self,
        cid: &ContentId,
        bytes: &[u8],
        uploader: &PublicKey,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        let mut connection = self.connection.lock().expect("module store lock");
        let transaction = connection.transaction()?;
        transaction.execute(
            "INSERT OR IGNORE INTO modules (cid, bytes) VALUES (?1, ?2)",
            params![cid.0.as_slice(), bytes],
        )?;
        transaction.execute(
            "INSERT OR IGNORE INTO module_uploads (cid, uploader, bytes, uploaded_ms) VALUES (?1, ?2, ?3, ?4)",
            params![cid.0.as_slice(), uploader.0.as_slice(), bytes.len() as i64, now_ms as i64],
        )?;
        transaction.execute(
            "INSERT INTO module_use (cid, used_ms) VALUES (?1, ?2)
             ON CONFLICT (cid) DO UPDATE SET used_ms = MAX(used_ms, excluded.used_ms)",
            params![cid.0.as_slice(), now_ms as i64],
        )?;
        transaction.commit()?;
        Ok(())
    }

    fn touch(&self, cid: &ContentId, now_ms: u64) -> Result<(), JournalError> {
        self.connection.lock().expect("module store lock").execute(
            "UPDATE module_use SET used_ms = MAX(used_ms, ?2) WHERE cid = ?1",
            params![cid.0.as_slice(), now_ms as i64],
        )?;
        Ok(())
    }

    fn uploaded_bytes(&self, uploader: &PublicKey) -> Result<u64, JournalError> {
        let sum: i64 = self.connection.lock().expect("module store lock").query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM module_uploads WHERE uploader = ?1",
            params![uploader.0.as_slice()],
            |row| row.get(0),
        )?;
        Ok(sum as u64)
    }

    fn sweep(&self, now_ms: u64, unused_ms: u64) -> Result<Vec<ContentId>, JournalError> {
        let mut connection = self.connection.lock().expect("module store lock");
        let transaction = connection.transaction()?;
        // Modules stored before uses were recorded count as used now: they get the
        // whole retention from the first sweep that sees them.
        transaction.execute(
            "INSERT OR IGNORE INTO module_use (cid, used_ms) SELECT cid, ?1 FROM modules",
            params![now_ms as i64],
        )?;
        let gone: Vec<Vec<u8>> = transaction
            .prepare("SELECT cid FROM module_use WHERE used_ms < ?1")?
            .query_map(params![now_ms.saturating_sub(unused_ms) as i64], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for cid in &gone {
            transaction.execute("DELETE FROM modules WHERE cid = ?1", params![cid])?;
            transaction.execute("DELETE FROM module_uploads WHERE cid = ?1", params![cid])?;
            transaction.execute("DELETE FROM module_use WHERE cid = ?1", params![cid])?;
        }
        transaction.commit()?;
        Ok(gone.into_iter().filter_map(|cid| Some(ContentId(cid.try_into().ok()?))).collect())
    }

    fn fetch(&self, cid: &ContentId) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self
            .connection
            .lock()
            .expect("module store lock")
            .query_row("SELECT bytes FROM modules WHERE cid = ?1", params![cid.0.as_slice()], |row| {
                row.get(0)
            })
            .optional()?)
    }

    fn holds(&self, cid: &ContentId) -> Result<bool, JournalError> {
        let found: Option<i64> = self
            .connection
            .lock()
            .expect("module store lock")
            .query_row("SELECT 1 FROM modules WHERE cid = ?1", params![cid.0.as_slice()], |row| row.get(0))
            .optional()?;
        Ok(found.is_some())
    }
}

/// The coordinator's modules: uploads validated as WebAssembly, bytes checked against their id
/// on the way out, and a cache bounded by bytes in front of the store.
pub struct Modules {
    store: Box<dyn ModuleStore>,
    /// Content ids never go stale: eviction only bounds memory.
    cache: Cache<ContentId, Arc<Vec<u8>>, ByLength>,
}

impl Modules {
    /// The modules of the journal at `path`, with the default cache.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Ok(Self::new(Box::new(SqliteModules::open(path)?), MODULE_CACHE_BYTES_MAX))
    }

    /// `store` behind a cache of at most `cache_bytes_max` module bytes.
    pub fn new(store: Box<dyn ModuleStore>, cache_bytes_max: u64) -> Self {
        Modules { store, cache: Cache::with_weighter(1_024, cache_bytes_max, ByLength) }
    }

    /// Checks that `bytes` are a valid WebAssembly module, then stores them durably with
    /// `uploader` on record. Blocking.
    pub fn put(&self, bytes: Vec<u8>, uploader: &PublicKey, now_ms: u64) -> Result<ContentId, String> {
        if bytes.len() > MODULE_SIZE_BYTES_MAX {
            return Err(format!(
                "the module is {} bytes; at most {MODULE_SIZE_BYTES_MAX} are accepted",
                bytes.len()
            ));
        }
        if !bytes.starts_with(b"\0asm") {
            let wat = bytes.trim_ascii_start().starts_with(b"(module");
            return Err(if wat {
                "the module is WAT text, not compiled WebAssembly: upload the .wasm that `wat2wasm` (or \
                 your compiler) makes of it; `icn submit` compiles a .wat file itself"
                    .to_string()
            } else {
                "the module is not WebAssembly: a module starts with the bytes \\0asm; upload the .wasm \
                 file your compiler made"
                    .to_string()
            });
        }
        if let Err(e) = wasmparser::Validator::new().validate_all(&bytes) {
            return Err(format!(
                "the module is not valid WebAssembly: {} (at byte offset {})",
                e.message(),
                e.offset()
            ));
        }
        let cid = ContentId::of(&bytes);
        self.store
            .insert(&cid, &bytes, uploader, now_ms)
            .map_err(|e| format!("cannot store the module: {e}"))?;
        self.cache.insert(cid, Arc::new(bytes));
        Ok(cid)
    }

    /// The module's bytes, from the cache or the store. Blocking.
    pub fn get(&self, cid: &ContentId) -> Result<Option<Arc<Vec<u8>>>, JournalError> {
        if let Some(bytes) = self.cache.get(cid) {
            return Ok(Some(bytes));
        }
        let Some(bytes) = self.store.fetch(cid)? else { return Ok(None) };
        if ContentId::of(&bytes) != *cid {
            return Err(JournalError::Corrupt {
                seq: 0,
                reason: format!("stored module {cid} does not hash to its id"),
            });
        }
        let bytes = Arc::new(bytes);
        self.cache.insert(*cid, bytes.clone());
        Ok(Some(bytes))
    }

    /// Whether the module is in memory now: a yes needs no trip to the store.
    pub fn is_cached(&self, cid: &ContentId) -> bool {
        self.cache.contains_key(cid)
    }

    pub fn contains(&self, cid: &ContentId) -> Result<bool, JournalError> {
        Ok(self.cache.contains_key(cid) || self.store.holds(cid)?)
    }

    /// A submission named `cid`. Blocking.
    pub fn touch(&self, cid: &ContentId, now_ms: u64) -> Result<(), JournalError> {
        self.store.touch(cid, now_ms)
    }

    /// Bytes of stored modules `uploader` uploaded. Blocking.
    pub fn uploaded_bytes(&self, uploader: &PublicKey) -> Result<u64, JournalError> {
        self.store.uploaded_bytes(uploader)
    }

    /// Lets go of the modules unused for [`MODULE_UNUSED_RETENTION_MS`] at `now_ms`; how
    /// many. Blocking.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, JournalError> {
        let gone = self.store.sweep(now_ms, MODULE_UNUSED_RETENTION_MS)?;
        for cid in &gone {
            self.cache.remove(cid);
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANA: PublicKey = PublicKey([1; 32]);

    #[test]
    fn invalid_module_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Modules::open(&dir.path().join("j.db")).unwrap();
        let error = store.put(b"\0asm\x01\0\0\0garbage".to_vec(), &ANA, 0).unwrap_err();
        assert!(error.contains("not valid WebAssembly") && error.contains("at byte offset 10"), "{error}");
        let error = store.put(b"# README\nnot wasm at all".to_vec(), &ANA, 0).unwrap_err();
        assert!(error.contains("not WebAssembly: a module starts with the bytes \\0asm"), "{error}");
        let error = store.put(b"\n  (module (func))".to_vec(), &ANA, 0).unwrap_err();
        assert!(error.contains("WAT text, not compiled") && error.contains("wat2wasm"), "{error}");
    }

    #[test]
    fn the_cache_holds_at_most_its_bytes_and_evicted_modules_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Modules::new(Box::new(SqliteModules::open(&dir.path().join("j.db")).unwrap()), 300);
        // Three valid modules of about 100 bytes each: a custom section pads them.
        let modules: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                let mut bytes = b"\0asm\x01\0\0\0".to_vec();
                bytes.extend_from_slice(&[0, 100, 1, b'x' + i]);
                bytes.extend(std::iter::repeat_n(i, 98));
                bytes
            })
            .collect();
        let ids: Vec<ContentId> = modules.iter().map(|m| store.put(m.clone(), &ANA, 0).unwrap()).collect();
        assert!(store.cache.weight() <= 300, "{} bytes cached", store.cache.weight());
        assert!(store.cache.len() < 3, "one module was evicted");
        for (id, bytes) in ids.iter().zip(&modules) {
            assert_eq!(*store.get(id).unwrap().unwrap(), *bytes);
        }
    }

    #[test]
    fn stored_module_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let bytes = b"\0asm\x01\0\0\0".to_vec();
        let cid = Modules::open(&path).unwrap().put(bytes.clone(), &ANA, 0).unwrap();
        let reopened = Modules::open(&path).unwrap();
        assert!(reopened.contains(&cid).unwrap());
        assert_eq!(*reopened.get(&cid).unwrap().unwrap(), bytes);
        assert!(reopened.get(&ContentId::of(b"other")).unwrap().is_none());
    }

    #[test]
    fn uploads_are_on_record_and_unused_modules_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let store = Modules::open(&path).unwrap();
        let ben = PublicKey([2; 32]);
        let old = store.put(b"\0asm\x01\0\0\0".to_vec(), &ANA, 0).unwrap();
        let mut padded = b"\0asm\x01\0\0\0".to_vec();
        padded.extend_from_slice(&[0, 5, 1, b'x', 1, 2, 3]);
        let used = store.put(padded.clone(), &ANA, 0).unwrap();
        store.put(padded.clone(), &ben, 10).unwrap();
        assert_eq!(store.uploaded_bytes(&ANA).unwrap(), 8 + padded.len() as u64);
        assert_eq!(store.uploaded_bytes(&ben).unwrap(), padded.len() as u64, "each uploader is on record");
        store.touch(&used, MODULE_UNUSED_RETENTION_MS).unwrap();
        assert_eq!(store.sweep(MODULE_UNUSED_RETENTION_MS + 1).unwrap(), 1, "the module never named goes");
        assert!(!store.contains(&old).unwrap());
        assert!(store.contains(&used).unwrap(), "a module a submission named stays");
        assert_eq!(store.uploaded_bytes(&ANA).unwrap(), padded.len() as u64, "a module gone counts no more");
        assert_eq!(store.sweep(2 * MODULE_UNUSED_RETENTION_MS + 1).unwrap(), 1);
        assert_eq!(store.uploaded_bytes(&ben).unwrap(), 0);
    }
}
