//! Modules by content id, stored in the journal's database file and kept in a bounded
//! in-memory cache for dispatch.

use std::path::Path;
use std::sync::{Arc, Mutex};

use icn_protocol::ContentId;
use icn_protocol::cache::ContentCache;
use icn_protocol::wire::MODULE_SIZE_BYTES_MAX;
use rusqlite::{Connection, OptionalExtension, params};

use crate::journal::{JournalError, open_connection};

pub const MODULE_CACHE_ENTRIES_MAX: usize = 256;

pub struct ModuleStore {
    connection: Mutex<Connection>,
    cache: ContentCache<Arc<Vec<u8>>>,
}

impl ModuleStore {
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Ok(ModuleStore {
            connection: Mutex::new(open_connection(path)?),
            cache: ContentCache::new(MODULE_CACHE_ENTRIES_MAX),
        })
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
        self.connection
            .lock()
            .expect("module store lock")
            .execute(
                "INSERT OR IGNORE INTO modules (cid, bytes) VALUES (?1, ?2)",
                params![cid.0.as_slice(), bytes],
            )
            .map_err(|e| format!("cannot store the module: {e}"))?;
        self.cache.insert(cid, Arc::new(bytes));
        Ok(cid)
    }

    /// The module's bytes, from the cache or the database. Blocking.
    pub fn get(&self, cid: &ContentId) -> Result<Option<Arc<Vec<u8>>>, JournalError> {
        if let Some(bytes) = self.cache.get(cid) {
            return Ok(Some(bytes));
        }
        let bytes: Option<Vec<u8>> = self
            .connection
            .lock()
            .expect("module store lock")
            .query_row("SELECT bytes FROM modules WHERE cid = ?1", params![cid.0.as_slice()], |row| {
                row.get(0)
            })
            .optional()?;
        let Some(bytes) = bytes else { return Ok(None) };
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

    pub fn contains(&self, cid: &ContentId) -> Result<bool, JournalError> {
        if self.cache.contains(cid) {
            return Ok(true);
        }
        let found: Option<i64> = self
            .connection
            .lock()
            .expect("module store lock")
            .query_row("SELECT 1 FROM modules WHERE cid = ?1", params![cid.0.as_slice()], |row| row.get(0))
            .optional()?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_module_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(&dir.path().join("j.db")).unwrap();
        let error = store.put(b"\0asm\x01\0\0\0garbage".to_vec()).unwrap_err();
        assert!(error.contains("not valid WebAssembly") && error.contains("at byte offset 10"), "{error}");
        let error = store.put(b"not wasm at all".to_vec()).unwrap_err();
        assert!(error.contains("not valid WebAssembly"), "{error}");
    }

    #[test]
    fn stored_module_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let bytes = b"\0asm\x01\0\0\0".to_vec();
        let cid = ModuleStore::open(&path).unwrap().put(bytes.clone()).unwrap();
        let reopened = ModuleStore::open(&path).unwrap();
        assert!(reopened.contains(&cid).unwrap());
        assert_eq!(*reopened.get(&cid).unwrap().unwrap(), bytes);
        assert!(reopened.get(&ContentId::of(b"other")).unwrap().is_none());
    }
}
