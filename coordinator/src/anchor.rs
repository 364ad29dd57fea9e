//! The anchor: a small file beside the journal that holds the latest seal the
//! coordinator committed, so that a journal cut short (a tail deleted, an older copy
//! restored) is noticed at the next start instead of silently losing jobs, payments
//! and decisions.
//!
//! The journal commits first and the anchor follows, written by its own thread so the
//! batch loop never waits on a second fsync: the anchor may lag the journal by a batch
//! after a crash, never lead it. At start the journal must still hold the entry the
//! anchor names, with the same hash. An anchor file is created empty with a new journal,
//! before its first entry, so a missing anchor beside a journal that has entries means
//! the two were separated.
//!
//! The anchor guards against accidents on the coordinator's machine; against someone
//! who can rewrite both files, the seals members and workers keep are the guard.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use icn_protocol::{ContentId, PublicKey, Seal, Signature};

use crate::journal::{JournalError, with_suffix};

/// The anchor file beside a journal.
pub fn path(journal: &Path) -> PathBuf {
    with_suffix(journal, ".anchor")
}

/// What the anchor file says: `None` when it does not exist, `Some(None)` when the
/// journal has not sealed anything yet.
pub fn read(path: &Path) -> Result<Option<Option<Seal>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the journal's anchor {}: {e}", path.display())),
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(Some(None));
    }
    let bad = || format!("the journal's anchor {} does not hold a seal: {text:?}", path.display());
    let fields: Vec<&str> = text.split_whitespace().collect();
    let ["seal", seq, hash, signature] = fields.as_slice() else { return Err(bad()) };
    let signature: [u8; 64] =
        hex::decode(signature).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(bad)?;
    Ok(Some(Some(Seal {
        seq: seq.parse().map_err(|_| bad())?,
        hash: hash.parse::<ContentId>().map_err(|_| bad())?,
        signature: Signature(signature),
    })))
}

/// Writes the anchor durably: a temporary file, fsynced, renamed over the old one, and
/// the folder fsynced, so a crash leaves the old anchor or the new one.
fn write(path: &Path, seal: Option<&Seal>) -> std::io::Result<()> {
    let temporary = with_suffix(path, ".tmp");
    let mut file = std::fs::File::create(&temporary)?;
    if let Some(seal) = seal {
        writeln!(file, "seal {} {} {}", seal.seq, seal.hash, hex::encode(seal.signature.0))?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Checks a loaded journal of `len` entries against its anchor; `hash_at` gives the
/// journal's hash of an entry. The error says what is wrong and what the operator can do.
pub fn check(
    journal: &Path,
    owner: &PublicKey,
    len: u64,
    last: Option<&Seal>,
    hash_at: impl Fn(u64) -> Option<ContentId>,
) -> Result<(), String> {
    let anchor_path = path(journal);
    let end = last.map_or("no sealed entry".to_string(), |s| format!("entry {}", s.seq));
    let remedy = "restore the journal together with its anchor from the same backup; if the missing entries are \
                  gone for good, start once with --accept-journal-end to continue from the journal as it is (members \
                  and workers that saw a later seal will refuse this coordinator until they accept the loss too)";
    let anchored = match read(&anchor_path)? {
        None if len == 0 => return Ok(()),
        None => {
            return Err(format!(
                "journal {} holds {len} entries (up to {end}) but its anchor {} is missing, so nothing shows whether \
                 entries were cut from its end; {remedy}",
                journal.display(),
                anchor_path.display()
            ));
        }
        Some(None) => return Ok(()),
        Some(Some(seal)) => seal,
    };
    anchored.verify(owner).map_err(|e| {
        format!(
            "the journal's anchor {} is not this coordinator's seal ({e}); {remedy}",
            anchor_path.display()
        )
    })?;
    match (anchored.seq < len).then(|| hash_at(anchored.seq)).flatten() {
        None => Err(format!(
            "journal {} ends at {end}, but its anchor shows entry {} was sealed: {} entries are missing from its \
             end; {remedy}",
            journal.display(),
            anchored.seq,
            (anchored.seq + 1).saturating_sub(len)
        )),
        Some(hash) if hash != anchored.hash => Err(format!(
            "entry {} of journal {} is not the entry its anchor sealed (hash {} then, {hash} now): the journal was \
             replaced; {remedy}",
            anchored.seq,
            journal.display(),
            anchored.hash,
        )),
        Some(_) => Ok(()),
    }
}

#[derive(Default)]
struct State {
    /// The newest seal not yet written.
    pending: Option<Seal>,
    /// A write is under way.
    writing: bool,
    /// Someone waits for the pending seal: no pause before writing it.
    flushing: bool,
    stop: bool,
    /// The last write's failure, reported by [`AnchorWriter::flush`].
    error: Option<String>,
}

/// The shortest pause between two anchor writes: the anchor guards against a tail cut
/// off a stopped journal, not against losing the last few milliseconds, and each write
/// costs two fsyncs that compete with the journal's own.
pub const ANCHOR_WRITE_INTERVAL_MS: u64 = 50;

/// The thread that keeps the anchor up to date. It writes only the newest seal it was
/// given, at most every [`ANCHOR_WRITE_INTERVAL_MS`], so it never falls behind by more
/// than one write however fast batches come.
pub struct AnchorWriter {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnchorWriter {
    /// Starts the writer for the anchor at `path`, creating it empty if it does not exist
    /// and `create` says the journal is new.
    pub fn start(path: PathBuf, create: bool) -> Result<AnchorWriter, JournalError> {
        if create && !path.exists() {
            write(&path, None)?;
        }
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new().name("icn-anchor".into()).spawn(move || run(&path, &shared))?
        };
        Ok(AnchorWriter { shared, thread: Some(thread) })
    }

    pub fn update(&self, seal: Seal) {
        let (state, wake) = &*self.shared;
        state.lock().expect("anchor lock").pending = Some(seal);
        wake.notify_all();
    }

    /// Waits until every seal given so far is written.
    pub fn flush(&self) -> Result<(), JournalError> {
        let (state, wake) = &*self.shared;
        let mut state = state.lock().expect("anchor lock");
        state.flushing = true;
        wake.notify_all();
        while state.pending.is_some() || state.writing {
            state = wake.wait(state).expect("anchor lock");
        }
        state.flushing = false;
        match state.error.take() {
            Some(error) => Err(JournalError::Anchor(error)),
            None => Ok(()),
        }
    }
}

fn run(path: &Path, shared: &(Mutex<State>, Condvar)) {
    let (state, wake) = shared;
    let mut guard = state.lock().expect("anchor lock");
    loop {
        while guard.pending.is_none() && !guard.stop {
            guard = wake.wait(guard).expect("anchor lock");
        }
        let Some(seal) = guard.pending.take() else { return };
        guard.writing = true;
        drop(guard);
        let written = write(path, Some(&seal));
        guard = state.lock().expect("anchor lock");
        guard.writing = false;
        if let Err(e) = written {
            tracing::error!(error = %e, anchor = %path.display(), "cannot write the journal's anchor");
            guard.error = Some(format!("cannot write the journal's anchor {}: {e}", path.display()));
        }
        wake.notify_all();
        if !guard.stop && guard.pending.is_none() {
            let pause = std::time::Duration::from_millis(ANCHOR_WRITE_INTERVAL_MS);
            guard = wake.wait_timeout_while(guard, pause, |s| !s.stop && !s.flushing).expect("anchor lock").0;
        }
    }
}

impl Drop for AnchorWriter {
    /// Writes what is pending, then stops: a clean stop leaves the anchor at the last seal.
    fn drop(&mut self) {
        let (state, wake) = &*self.shared;
        state.lock().expect("anchor lock").stop = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_protocol::Keypair;

    #[test]
    fn the_anchor_round_trips_and_keeps_the_newest_seal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("journal.db.anchor");
        let key = Keypair::from_seed([1; 32]);
        let writer = AnchorWriter::start(file.clone(), true).unwrap();
        assert_eq!(read(&file).unwrap(), Some(None), "a new journal's anchor is empty");
        for seq in 0..50 {
            writer.update(Seal::sign(&key, seq, ContentId::of(&seq.to_le_bytes())));
        }
        writer.flush().unwrap();
        let kept = read(&file).unwrap().unwrap().unwrap();
        assert_eq!(kept.seq, 49);
        assert!(kept.verify(&key.public()).is_ok());
        std::fs::write(&file, "seal 3 zz 00").unwrap();
        assert!(read(&file).unwrap_err().contains("does not hold a seal"));
    }
}
