//! Modules by content id, stored in the journal's database file and kept in a bounded
//! in-memory cache for dispatch.

use std::path::Path;
use std::sync::{Arc, Mutex};

use icn_protocol::ContentId;
use icn_protocol::wire::MODULE_SIZE_BYTES_MAX;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use rusqlite::{Connection, OptionalExtension, params};

use crate::journal::{JournalError, open_connection};

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
    /// Stores `bytes` under `cid` durably; storing the same id twice is not an error. Blocking.
    fn insert(&self, cid: &ContentId, bytes: &[u8]) -> Result<(), JournalError>;
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
    fn insert(&self, cid: &ContentId, bytes: &[u8]) -> Result<(), JournalError> {
        self.connection.lock().expect("module store lock").execute(
            "INSERT OR IGNORE INTO modules (cid, bytes) VALUES (?1, ?2)",
            params![cid.0.as_slice(), bytes],
        )?;
        Ok(())
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

    /// Checks that `bytes` are a valid WebAssembly module, then stores them durably.
    /// Blocking.
    pub fn put(&self, bytes: Vec<u8>) -> Result<ContentId, String> {
        if bytes.len() > MODULE_SIZE_BYTES_MAX {
            return Err(format!(
                "the module is {} bytes; at most {MODULE_SIZE_BYTES_MAX} are accepted",
                bytes.len()
            ));
        }
        if let Err(e) = wasmparser::Validator::new().validate_all(&bytes) {
            return Err(format!(
                "the module is not valid WebAssembly: {} (at byte offset {})",
                e.message(),
                e.offset()
            ));
        }
        let cid = ContentId::of(&bytes);
        self.store.insert(&cid, &bytes).map_err(|e| format!("cannot store the module: {e}"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_module_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Modules::open(&dir.path().join("j.db")).unwrap();
        let error = store.put(b"\0asm\x01\0\0\0garbage".to_vec()).unwrap_err();
        assert!(error.contains("not valid WebAssembly") && error.contains("at byte offset 10"), "{error}");
        let error = store.put(b"not wasm at all".to_vec()).unwrap_err();
        assert!(error.contains("not valid WebAssembly"), "{error}");
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
        let ids: Vec<ContentId> = modules.iter().map(|m| store.put(m.clone()).unwrap()).collect();
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
        let cid = Modules::open(&path).unwrap().put(bytes.clone()).unwrap();
        let reopened = Modules::open(&path).unwrap();
        assert!(reopened.contains(&cid).unwrap());
        assert_eq!(*reopened.get(&cid).unwrap().unwrap(), bytes);
        assert!(reopened.get(&ContentId::of(b"other")).unwrap().is_none());
    }
}
