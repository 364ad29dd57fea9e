//! The worker's connection to the coordinator.
//!
//! One control stream carries the hello and then heartbeats. The coordinator opens one
//! stream per task attempt: it sends the assignment, the worker asks for the module
//! if it does not hold it, runs the task and answers with its signed report.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use icn_protocol::frame::{read_frame, write_frame};
use icn_protocol::transport::{self, Session};
use icn_protocol::wire::{
    Assignment, Capacity, CoordinatorMessage, ExecutionReport, ExecutorKind, FailureKind, Hello,
    MESSAGE_SIZE_BYTES_MAX, MODULE_SIZE_BYTES_MAX, Outcome, Role, WorkerMessage,
};
use icn_protocol::{ContentId, Envelope, Error, Fuel, Keypair, PublicKey, TaskId};
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;

use crate::executor::{Execution, WasmExecutor};

/// The longest pause between two attempts to reach the coordinator.
pub const RECONNECT_DELAY_MS_MAX: u64 = 2_000;
pub const RECONNECT_DELAY_MS_MIN: u64 = 50;
/// Frames that carry a module: the module plus the frame's own overhead.
const MODULE_FRAME_BYTES_MAX: usize = MODULE_SIZE_BYTES_MAX + 1024;

#[derive(Clone)]
pub struct WorkerConfig {
    pub key: Arc<Keypair>,
    pub coordinator: SocketAddr,
    pub coordinator_key: PublicKey,
    pub slots: u32,
    /// The most linear memory one task may have on this machine.
    pub memory_bytes: u64,
    pub agent: String,
}

/// Runs the worker until the coordinator refuses it (an error naming the reason) or the
/// task is cancelled. A lost connection is retried with backoff; tasks that were
/// running when it was lost are abandoned, since the coordinator places them again.
pub async fn run(config: WorkerConfig, executor: Arc<WasmExecutor>) -> anyhow::Result<()> {
    let endpoint = transport::client_endpoint()?;
    let mut delay_ms = RECONNECT_DELAY_MS_MIN;
    loop {
        let hello = Hello {
            role: Role::Worker,
            channel_binding: [0; 32],
            agent: config.agent.clone(),
            capacity: Some(Capacity {
                slots: config.slots,
                memory_bytes: config.memory_bytes,
                executors: vec![ExecutorKind::Wasm],
            }),
        };
        match transport::connect(&endpoint, config.coordinator, config.coordinator_key, &config.key, hello)
            .await
        {
            Ok(session) => {
                delay_ms = RECONNECT_DELAY_MS_MIN;
                tracing::info!(coordinator = %config.coordinator, "connected and admitted");
                let reason = serve(session, &config, executor.clone()).await;
                tracing::warn!(%reason, "connection to the coordinator lost; reconnecting");
            }
            Err(Error::Refused(reason)) => {
                anyhow::bail!("the coordinator refused this worker: {reason}");
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot reach the coordinator yet");
            }
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        delay_ms = (delay_ms * 2).min(RECONNECT_DELAY_MS_MAX);
    }
}

type Running = Arc<Mutex<BTreeSet<(TaskId, u32)>>>;

/// Serves one connection until it ends; returns why it ended.
async fn serve(session: Session, config: &WorkerConfig, executor: Arc<WasmExecutor>) -> String {
    let Session { connection, control: (mut control_send, _control_recv), welcome } = session;
    let slots = Arc::new(Semaphore::new(config.slots as usize));
    let running: Running = Arc::default();
    let heartbeat_every = Duration::from_millis(welcome.heartbeat_interval_ms.clamp(10, 60_000));
    let heartbeat = {
        let running = running.clone();
        let slots = slots.clone();
        async move {
            let mut interval = tokio::time::interval(heartbeat_every);
            loop {
                interval.tick().await;
                let now_running: Vec<(TaskId, u32)> =
                    running.lock().expect("running lock").iter().copied().collect();
                let beat = WorkerMessage::Heartbeat {
                    running: now_running,
                    free_slots: slots.available_permits() as u32,
                };
                if let Err(e) = write_frame(&mut control_send, &beat).await {
                    return format!("heartbeat failed: {e}");
                }
            }
        }
    };
    let tasks = async {
        loop {
            let (send, recv) = match connection.accept_bi().await {
                Ok(streams) => streams,
                Err(e) => return format!("{e}"),
            };
            let context = TaskContext {
                key: config.key.clone(),
                executor: executor.clone(),
                slots: slots.clone(),
                running: running.clone(),
                memory_bytes: config.memory_bytes,
            };
            tokio::spawn(async move {
                if let Err(e) = context.handle(send, recv).await {
                    tracing::warn!(error = %e, "task stream failed");
                }
            });
        }
    };
    tokio::select! {
        reason = heartbeat => reason,
        reason = tasks => reason,
    }
}

struct TaskContext {
    key: Arc<Keypair>,
    executor: Arc<WasmExecutor>,
    slots: Arc<Semaphore>,
    running: Running,
    memory_bytes: u64,
}

impl TaskContext {
    async fn handle(self, mut send: SendStream, mut recv: RecvStream) -> Result<(), Error> {
        let assignment = match read_frame::<_, CoordinatorMessage>(&mut recv, MESSAGE_SIZE_BYTES_MAX).await? {
            Some(CoordinatorMessage::Assign(assignment)) => assignment,
            other => {
                return Err(Error::invalid(format!(
                    "a task stream must open with an assignment, got {other:?}"
                )));
            }
        };
        let execution = match self.slots.clone().try_acquire_owned() {
            Err(_) => refusal(FailureKind::WorkerError, "the worker has no free slot".into()),
            Ok(_permit) => {
                let key = (assignment.task, assignment.attempt);
                self.running.lock().expect("running lock").insert(key);
                let execution = self.execute(&assignment, &mut send, &mut recv).await;
                self.running.lock().expect("running lock").remove(&key);
                execution?
            }
        };
        let report = ExecutionReport {
            task: assignment.task,
            attempt: assignment.attempt,
            output_digest: ContentId::of(&execution.output),
            outcome: execution.outcome,
            output: execution.output,
            stderr: execution.stderr,
            fuel: execution.fuel,
        };
        let envelope = Envelope::seal(&self.key, transport::nonce(), &report);
        write_frame(&mut send, &WorkerMessage::Report(envelope)).await?;
        let _ = send.finish();
        // Wait for the coordinator to read the report before the stream is dropped.
        let _ = recv.read_to_end(16).await;
        Ok(())
    }

    async fn execute(
        &self,
        assignment: &Assignment,
        send: &mut SendStream,
        recv: &mut RecvStream,
    ) -> Result<Execution, Error> {
        if let Err(e) = assignment.limits.validate() {
            return Ok(refusal(
                FailureKind::WorkerError,
                format!("the assignment's limits are invalid: {e}"),
            ));
        }
        if assignment.limits.memory_bytes > self.memory_bytes {
            return Ok(refusal(
                FailureKind::WorkerError,
                format!(
                    "the task wants {} bytes of memory; this worker offers {}",
                    assignment.limits.memory_bytes, self.memory_bytes
                ),
            ));
        }
        let module = assignment.module;
        if !self.executor.has_module(&module) {
            write_frame(send, &WorkerMessage::FetchModule(module)).await?;
            let bytes = match read_frame::<_, CoordinatorMessage>(recv, MODULE_FRAME_BYTES_MAX).await? {
                Some(CoordinatorMessage::Module(bytes)) => bytes,
                Some(CoordinatorMessage::NoModule(reason)) => {
                    return Ok(refusal(FailureKind::WorkerError, format!("module unavailable: {reason}")));
                }
                other => return Err(Error::invalid(format!("expected the module's bytes, got {other:?}"))),
            };
            let executor = self.executor.clone();
            let loaded = tokio::task::spawn_blocking(move || executor.load_module(module, &bytes))
                .await
                .map_err(|e| Error::Transport(format!("module compilation panicked: {e}")))?;
            if let Err(reason) = loaded {
                return Ok(refusal(FailureKind::WorkerError, reason));
            }
        }
        let executor = self.executor.clone();
        let assignment = assignment.clone();
        tokio::task::spawn_blocking(move || {
            executor.run(&assignment.module, &assignment.input, &assignment.args, &assignment.limits)
        })
        .await
        .map_err(|e| Error::Transport(format!("the executor panicked: {e}")))
    }
}

fn refusal(kind: FailureKind, detail: String) -> Execution {
    Execution {
        outcome: Outcome::Failed { kind, detail },
        output: Vec::new(),
        stderr: Vec::new(),
        fuel: Fuel(0),
    }
}
