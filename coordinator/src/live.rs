//! Running jobs' stderr as their modules write it, for members who follow a job
//! (`icn logs --follow`, `GET /v1/jobs/{job}/logs/live`).
//!
//! Never journaled and never part of a result: while a job runs, what a member follows
//! is one replica's word. The record is the accepted report's stderr, on the job's view
//! once it ends. One run is followed per job — the first whose worker sends progress —
//! until its stream ends; a later attempt of that replica then takes over, its bytes
//! following on. Other replicas' bytes are not shown (they would repeat it).
//!
//! Bounded: at most [`LIVE_JOBS_MAX`] jobs, each keeping its newest
//! [`LIVE_STDERR_BYTES_MAX`] bytes; a log is let go [`LIVE_STDERR_KEEP_MS`] after its run
//! ended, or sooner, least recently written first, when room is needed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use icn_protocol::{JobId, PublicKey, TaskId};
use tokio::sync::Notify;

/// Jobs whose stderr is kept for followers at once.
pub const LIVE_JOBS_MAX: usize = 1024;
/// Newest bytes kept per job: a follower further behind is told how many it missed.
pub const LIVE_STDERR_BYTES_MAX: usize = 32 * 1024;
/// How long a log stays after its run ended, for followers to read its last bytes.
pub const LIVE_STDERR_KEEP_MS: u64 = 60_000;

/// What a follower reads: bytes `from..next`, after `skipped` bytes no longer kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub worker: Option<PublicKey>,
    pub from: u64,
    pub bytes: Vec<u8>,
    pub next: u64,
    pub skipped: u64,
    /// The run followed has ended (its report came, or its stream went).
    pub ended: bool,
}

#[derive(Default)]
pub struct LiveLogs {
    logs: Mutex<Table>,
    /// Woken at every change to any log; followers then read their own.
    changed: Notify,
}

#[derive(Default)]
struct Table {
    logs: HashMap<JobId, Log>,
    /// Appends so far: the order logs were last written in.
    writes: u64,
}

struct Log {
    /// The attempt followed, and its worker.
    run: (TaskId, u32),
    worker: PublicKey,
    /// The newest bytes, ending at offset `end` (counted over everything followed).
    bytes: VecDeque<u8>,
    end: u64,
    /// When it was last written, as a count of appends.
    written: u64,
    ended: Option<Instant>,
}

impl LiveLogs {
    /// Progress from a running attempt: `bytes` after `skipped` its worker could not keep.
    /// Ignored when another attempt of the job is followed.
    pub fn append(&self, run: (TaskId, u32), worker: PublicKey, skipped: u64, bytes: &[u8]) {
        let now = Instant::now();
        let job = run.0.job;
        {
            let mut table = self.logs.lock().expect("live logs lock");
            if !table.logs.contains_key(&job) {
                make_room(&mut table.logs, now);
            }
            table.writes += 1;
            let written = table.writes;
            let log = table.logs.entry(job).or_insert_with(|| Log {
                run,
                worker,
                bytes: VecDeque::new(),
                end: 0,
                written,
                ended: None,
            });
            if log.run != run {
                // Only a later attempt of the replica followed takes over, once that run
                // ended: another replica's bytes would repeat what was shown.
                if log.ended.is_none() || run.0.index != log.run.0.index || run.1 < log.run.1 {
                    return;
                }
                (log.run, log.worker, log.ended) = (run, worker, None);
            }
            if skipped > 0 {
                // A gap in what the worker sent: what was kept before it is not continued.
                log.end += skipped;
                log.bytes.clear();
            }
            log.end += bytes.len() as u64;
            log.bytes.extend(bytes);
            let over = log.bytes.len().saturating_sub(LIVE_STDERR_BYTES_MAX);
            log.bytes.drain(..over);
            log.written = written;
        }
        self.changed.notify_waiters();
    }

    /// The attempt's stream ended: its log stays a while for followers, and the next
    /// attempt may take it over.
    pub fn ended(&self, run: (TaskId, u32)) {
        if let Some(log) = self.logs.lock().expect("live logs lock").logs.get_mut(&run.0.job)
            && log.run == run
        {
            log.ended = Some(Instant::now());
        }
        self.changed.notify_waiters();
    }

    /// What `job`'s followed run wrote from offset `from` on.
    pub fn read(&self, job: &JobId, from: u64) -> Read {
        let table = self.logs.lock().expect("live logs lock");
        let Some(log) = table.logs.get(job) else {
            return Read { from, next: from, ..Read::default() };
        };
        let kept = log.end - log.bytes.len() as u64;
        // Past the end: the log was let go and started again; read it from its start.
        let from = if from > log.end { kept } else { from };
        let skipped = kept.saturating_sub(from);
        let start = from.max(kept);
        let bytes: Vec<u8> = log.bytes.iter().skip((start - kept) as usize).copied().collect();
        Read {
            worker: Some(log.worker),
            from: start,
            bytes,
            next: log.end,
            skipped,
            ended: log.ended.is_some(),
        }
    }

    /// A future that completes at the next change to any log. Pin it and `enable` it
    /// before reading, so a change between the read and the wait is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Jobs whose stderr is kept now.
    pub fn len(&self) -> usize {
        self.logs.lock().expect("live logs lock").logs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lets go of logs whose runs ended long enough ago and, when the table is still full,
/// of the one written least recently.
fn make_room(logs: &mut HashMap<JobId, Log>, now: Instant) {
    let keep = Duration::from_millis(LIVE_STDERR_KEEP_MS);
    logs.retain(|_, log| log.ended.is_none_or(|ended| now.duration_since(ended) < keep));
    while logs.len() >= LIVE_JOBS_MAX {
        let oldest =
            logs.iter().min_by_key(|(_, log)| (log.ended.is_none(), log.written)).map(|(job, _)| *job);
        match oldest {
            Some(job) => logs.remove(&job),
            None => break,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icn_protocol::{ContentId, Keypair};

    fn run(job: u8, attempt: u32) -> (TaskId, u32) {
        (TaskId { job: JobId(ContentId::of(&[job])), index: 0 }, attempt)
    }

    #[test]
    fn a_follower_reads_on_from_where_it_was_and_is_told_what_it_missed() {
        let (logs, worker) = (LiveLogs::default(), Keypair::generate().public());
        let job = run(1, 1).0.job;
        assert_eq!(logs.read(&job, 0), Read { from: 0, next: 0, ..Read::default() }, "nothing yet");
        logs.append(run(1, 1), worker, 0, b"one\n");
        logs.append(run(1, 1), worker, 0, b"two\n");
        let read = logs.read(&job, 0);
        assert_eq!(
            (read.bytes.as_slice(), read.from, read.next, read.skipped),
            (&b"one\ntwo\n"[..], 0, 8, 0)
        );
        assert_eq!(logs.read(&job, 4).bytes, b"two\n");
        assert_eq!(logs.read(&job, 8).bytes, b"");

        // The newest bytes are kept; a follower further behind hears how many it missed.
        logs.append(run(1, 1), worker, 0, &vec![b'x'; LIVE_STDERR_BYTES_MAX]);
        let read = logs.read(&job, 4);
        assert_eq!((read.from, read.skipped, read.bytes.len()), (8, 4, LIVE_STDERR_BYTES_MAX));
        // Bytes the worker could not keep are a gap too.
        logs.append(run(1, 1), worker, 100, b"three\n");
        let end = 8 + LIVE_STDERR_BYTES_MAX as u64;
        let read = logs.read(&job, end);
        assert_eq!((read.from, read.skipped, read.bytes.as_slice()), (end + 100, 100, &b"three\n"[..]));
    }

    #[test]
    fn one_run_is_followed_until_it_ends_and_the_next_attempt_follows_on() {
        let (logs, first, second) =
            (LiveLogs::default(), Keypair::generate().public(), Keypair::generate().public());
        let job = run(2, 1).0.job;
        logs.append(run(2, 1), first, 0, b"a\n");
        // A replica of the same job, and a later attempt while the first still runs: not shown.
        logs.append((TaskId { job, index: 1 }, 1), second, 0, b"replica\n");
        logs.append(run(2, 2), second, 0, b"b\n");
        assert_eq!(logs.read(&job, 0).bytes, b"a\n");
        assert!(!logs.read(&job, 0).ended);
        logs.ended(run(2, 1));
        assert!(logs.read(&job, 0).ended);
        logs.append((TaskId { job, index: 1 }, 1), second, 0, b"replica\n");
        assert_eq!(logs.read(&job, 0).bytes, b"a\n", "another replica never takes over");
        logs.append(run(2, 2), second, 0, b"b\n");
        let read = logs.read(&job, 2);
        assert_eq!((read.bytes.as_slice(), read.worker, read.ended), (&b"b\n"[..], Some(second), false));
    }

    #[test]
    fn the_table_is_bounded_and_lets_go_of_ended_runs_first() {
        let (logs, worker) = (LiveLogs::default(), Keypair::generate().public());
        let task = |n: usize| (TaskId { job: JobId(ContentId::of(&n.to_le_bytes())), index: 0 }, 1);
        for n in 0..LIVE_JOBS_MAX {
            logs.append(task(n), worker, 0, b".");
        }
        logs.ended(task(7));
        logs.append(task(LIVE_JOBS_MAX), worker, 0, b".");
        assert_eq!(logs.len(), LIVE_JOBS_MAX);
        assert!(logs.read(&task(7).0.job, 0).worker.is_none(), "the ended run went first");
        logs.append(task(LIVE_JOBS_MAX + 1), worker, 0, b".");
        assert_eq!(logs.len(), LIVE_JOBS_MAX);
        assert!(logs.read(&task(0).0.job, 0).worker.is_none(), "then the one written least recently");
        assert!(logs.read(&task(1).0.job, 0).worker.is_some());
    }
}
