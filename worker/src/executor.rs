//! The seam between the agent and what runs tasks: an [`Executor`] runs one task within
//! its limits and says what it used. The agent holds one per kind it offers and
//! advertises exactly those; wasm (wasmtime) is the first, containers come next behind
//! the same trait.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use icn_protocol::wire::{Assignment, ExecutorKind, FailureKind, Outcome, Usage};
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

pub trait Executor: Send + Sync + 'static {
    fn kind(&self) -> ExecutorKind;

    /// Whether `program` (a module's content id) is ready to run here.
    fn has_program(&self, program: &ContentId) -> bool;

    /// Prepares `program` from its bytes, fetched from the coordinator (a module is
    /// compiled). Blocking. A program that cannot be prepared is remembered as such and
    /// fails its tasks as invalid, so it is not fetched again.
    fn load_program(&self, program: ContentId, bytes: &[u8]) -> Result<(), String>;

    /// Runs one task on `input` within its limits, off the async threads where it blocks,
    /// until it ends or `stop` is set.
    fn run(self: Arc<Self>, assignment: Assignment, input: Vec<u8>, stop: Stop) -> Running;

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
