//! The seam between the agent and what runs tasks: an [`Executor`] runs one task within
//! its limits and says what it used. The agent holds one per kind it offers and
//! advertises exactly those; wasm (wasmtime) is the first, containers come next behind
//! the same trait.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use icn_protocol::wire::{Assignment, ExecutorKind, FailureKind, Outcome, PROGRESS_STDERR_BYTES_MAX, Usage};
use icn_protocol::{ContentId, Fuel};

use crate::wasm::WasmExecutor;

/// What one run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub outcome: Outcome,
    pub output: Vec<u8>,
    pub stderr: Vec<u8>,
    pub fuel: Fuel,
    /// What a container's run used (zero for wasm, whose usage is its fuel).
    pub usage: Usage,
}

impl Execution {
    /// A run that did not happen, for a reason of the worker's own: the task may
    /// succeed elsewhere.
    pub fn refused(detail: String) -> Execution {
        Execution {
            outcome: Outcome::Failed { kind: FailureKind::WorkerError, detail },
            output: Vec::new(),
            stderr: Vec::new(),
            fuel: Fuel(0),
            usage: Usage::default(),
        }
    }
}

pub type Running = Pin<Box<dyn Future<Output = Execution> + Send>>;

/// Set when the task is to stop (its job was cancelled); an executor checks it while
/// the task runs and ends the run soon after.
pub type Stop = Arc<std::sync::atomic::AtomicBool>;

/// What a running task wrote to stderr and the agent has not sent yet: the last
/// [`PROGRESS_STDERR_BYTES_MAX`] bytes, and a count of those it had to drop. The executor
/// appends as the task writes; the agent takes it every [`icn_protocol::wire::PROGRESS_INTERVAL_MS`]
/// and sends it as progress. Bounded whether or not anyone takes it.
#[derive(Clone, Default)]
pub struct LiveStderr(Arc<Mutex<Unsent>>);

#[derive(Default)]
struct Unsent {
    bytes: VecDeque<u8>,
    skipped: u64,
}

impl LiveStderr {
    pub fn push(&self, bytes: &[u8]) {
        let mut unsent = self.0.lock().expect("live stderr lock");
        let kept = &bytes[bytes.len().saturating_sub(PROGRESS_STDERR_BYTES_MAX)..];
        unsent.skipped += (bytes.len() - kept.len()) as u64;
        let over = (unsent.bytes.len() + kept.len()).saturating_sub(PROGRESS_STDERR_BYTES_MAX);
        unsent.bytes.drain(..over);
        unsent.skipped += over as u64;
        unsent.bytes.extend(kept);
    }

    /// What was written since the last take, and how many bytes before it were dropped;
    /// `None` when nothing was.
    pub fn take(&self) -> Option<(Vec<u8>, u64)> {
        let mut unsent = self.0.lock().expect("live stderr lock");
        if unsent.bytes.is_empty() && unsent.skipped == 0 {
            return None;
        }
        let skipped = std::mem::take(&mut unsent.skipped);
        Some((std::mem::take(&mut unsent.bytes).into(), skipped))
    }
}

pub trait Executor: Send + Sync + 'static {
    fn kind(&self) -> ExecutorKind;

    /// Whether `program` (a module's content id) is ready to run here.
    fn has_program(&self, program: &ContentId) -> bool;

    /// Prepares `program` from its bytes, fetched from the coordinator (a module is
    /// compiled). Blocking. A program that cannot be prepared is remembered as such and
    /// fails its tasks as invalid, so it is not fetched again.
    fn load_program(&self, program: ContentId, bytes: &[u8]) -> Result<(), String>;

    /// Runs one task on `input` within its limits, off the async threads where it blocks,
    /// until it ends or `stop` is set; what it writes to stderr goes to `live` as it is
    /// written, as well as into the execution's tail.
    fn run(self: Arc<Self>, assignment: Assignment, input: Vec<u8>, stop: Stop, live: LiveStderr) -> Running;

    /// Metrics of the executor's own, registered with the worker's at its start.
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        Vec::new()
    }
}

/// The executors a worker offers, by kind.
#[derive(Clone, Default)]
pub struct Executors {
    by_kind: BTreeMap<ExecutorKind, Arc<dyn Executor>>,
}

impl Executors {
    pub fn with(mut self, executor: Arc<dyn Executor>) -> Self {
        self.by_kind.insert(executor.kind(), executor);
        self
    }

    pub fn get(&self, kind: ExecutorKind) -> Option<&Arc<dyn Executor>> {
        self.by_kind.get(&kind)
    }

    /// Every executor's own metrics.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.by_kind.values().flat_map(|executor| executor.collectors()).collect()
    }

    /// The kinds this worker offers: what its hello advertises.
    pub fn kinds(&self) -> Vec<ExecutorKind> {
        self.by_kind.keys().copied().collect()
    }
}

impl From<Arc<WasmExecutor>> for Executors {
    fn from(wasm: Arc<WasmExecutor>) -> Self {
        Executors::default().with(wasm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_stderr_keeps_the_newest_bytes_and_counts_what_it_dropped() {
        let live = LiveStderr::default();
        assert_eq!(live.take(), None);
        live.push(b"first line\n");
        assert_eq!(live.take(), Some((b"first line\n".to_vec(), 0)));
        assert_eq!(live.take(), None, "taken bytes are not sent twice");

        // More than fits, in pieces and in one write: the newest bytes stay.
        live.push(&[b'a'; PROGRESS_STDERR_BYTES_MAX - 2]);
        live.push(b"bcd");
        let (bytes, skipped) = live.take().unwrap();
        assert_eq!((bytes.len(), skipped), (PROGRESS_STDERR_BYTES_MAX, 1));
        assert!(bytes.ends_with(b"abcd"));
        live.push(&vec![b'z'; PROGRESS_STDERR_BYTES_MAX + 10]);
        let (bytes, skipped) = live.take().unwrap();
        assert_eq!((bytes.len(), skipped), (PROGRESS_STDERR_BYTES_MAX, 10));
    }
}
