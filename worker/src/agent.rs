//! The worker's connection to the coordinator.
//!
//! One control stream carries the hello and then heartbeats. The coordinator opens one
//! stream per task attempt: it sends the assignment, the worker asks for the module
//! if it does not hold it, runs the task and answers with its signed report.
//!
//! Tasks belong to the agent, not to a connection: the slots are the agent's, so a
//! worker never runs more tasks than it has slots however often it reconnects. A task
//! that ends while the connection is down keeps its report in a bounded outbox, and the
//! next connection names the tasks still running in its hello and delivers the outbox
//! on streams of its own, so a network blip costs the worker no trust.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use icn_protocol::wire::{
    Assignment, CLOSE_REPLACED, Capacity, CoordinatorMessage, ExecutionReport, Hello, MESSAGE_SIZE_BYTES_MAX,
    MODULE_SIZE_BYTES_MAX, PROGRESS_INTERVAL_MS, Role, WorkerMessage,
};
use icn_protocol::{ContentId, Envelope, Keypair, PublicKey, Seal, SealKeeper, TaskId};
use icn_transport::endpoint::{self as transport, Session};
use icn_transport::{Error, FrameReader, FrameWriter};
use quinn::{Connection, RecvStream, SendStream};

type Outgoing = FrameWriter<SendStream>;
type Incoming = FrameReader<RecvStream>;
use tokio::sync::Semaphore;

use crate::executor::{Execution, Executors, LiveStderr, Running, Stop};

/// The longest pause between two attempts to reach the coordinator.
pub const RECONNECT_DELAY_MS_MAX: u64 = 2_000;
pub const RECONNECT_DELAY_MS_MIN: u64 = 50;
/// While the coordinator cannot be reached, how often the worker says so at most.
pub const UNREACHABLE_LOG_INTERVAL_MS: u64 = 30_000;
/// Frames that carry a module: the module plus the frame's own overhead.
const MODULE_FRAME_BYTES_MAX: usize = MODULE_SIZE_BYTES_MAX + 1024;
const _: () = assert!(MODULE_FRAME_BYTES_MAX <= MESSAGE_SIZE_BYTES_MAX);
/// A cancel is a tag; anything longer on a running task's stream is not one.
const CANCEL_FRAME_BYTES_MAX: usize = 1024;

#[derive(Clone)]
pub struct WorkerConfig {
    pub key: Arc<Keypair>,
    pub coordinator: SocketAddr,
    pub coordinator_key: PublicKey,
    pub slots: u32,
    /// The most linear memory one task may have on this machine.
    pub memory_bytes: u64,
    pub agent: String,
    /// Where `/metrics` is served over HTTP for Prometheus; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
}

/// What the agent holds across connections.
struct Agent {
    metrics: Arc<crate::metrics::Metrics>,
    config: WorkerConfig,
    executors: Executors,
    slots: Arc<Semaphore>,
    /// Tasks running now, by attempt.
    running: Mutex<BTreeSet<(TaskId, u32)>>,
    /// The connection reports go to, and the reports waiting for one. One lock for both,
    /// so a report is never put in the outbox just after a new connection emptied it.
    link: Mutex<Link>,
    /// The highest journal seal seen from the coordinator.
    seals: Mutex<SealKeeper>,
    /// Why the agent stopped trusting the coordinator, once it has.
    distrust: Mutex<Option<String>>,
    /// Set once its owner asked it to drain; each connection then says so.
    draining: tokio::sync::watch::Sender<bool>,
}

/// Takes a worker out of service the way its owner would: the coordinator is told (now,
/// and on every later connection) to place no new task on it; what it runs finishes and
/// reports as before.
#[derive(Clone)]
pub struct Drain(Arc<Agent>);

impl Drain {
    pub fn start(&self) {
        self.0.draining.send_replace(true);
    }

    /// Tasks still running or with a report not yet delivered.
    pub fn held(&self) -> usize {
        self.0.held().len()
    }

    /// Resolves once nothing is held: every task ended and its report delivered.
    pub async fn drained(&self) {
        loop {
            if self.held() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A signed report not yet delivered, with the output it names.
#[derive(Clone)]
struct Pending {
    attempt: (TaskId, u32),
    report: Envelope,
    output: Vec<u8>,
}

#[derive(Default)]
struct Link {
    connection: Option<Connection>,
    /// Reports of tasks that ended while no connection was up, by attempt; at most one
    /// per slot.
    outbox: Vec<Pending>,
}

/// A worker whose `/metrics` listener (if any) is bound and whose endpoint is open, not
/// yet connected: [`Worker::run`] connects it.
pub struct Worker {
    agent: Arc<Agent>,
    endpoint: quinn::Endpoint,
    metrics_addr: Option<SocketAddr>,
}

/// Runs the worker until the coordinator refuses it (an error naming the reason), shows
/// a history other than the one it showed before, or the task is cancelled. A lost
/// connection is retried with backoff; tasks keep running meanwhile and resume on the
/// next connection.
pub async fn run(config: WorkerConfig, executors: impl Into<Executors>) -> anyhow::Result<()> {
    Worker::start(config, executors).await?.run().await
}

impl Worker {
    /// Binds `/metrics` (when `config.metrics_listen` is set; port 0 takes a free one)
    /// and opens the QUIC endpoint; an address already taken fails here, before any
    /// connection is tried.
    pub async fn start(config: WorkerConfig, executors: impl Into<Executors>) -> anyhow::Result<Worker> {
        let executors = executors.into();
        let endpoint = transport::client_endpoint()?;
        let slots = Arc::new(Semaphore::new(config.slots as usize));
        let metrics = crate::metrics::Metrics::new(config.slots, slots.clone(), executors.collectors());
        let metrics_addr = match config.metrics_listen {
            Some(listen) => {
                let addr = crate::metrics::serve(listen, metrics.clone()).await?;
                tracing::info!(%addr, "metrics for Prometheus at /metrics");
                Some(addr)
            }
            None => None,
        };
        let agent = Arc::new(Agent {
            metrics,
            slots,
            seals: Mutex::new(SealKeeper::new(config.coordinator_key, None)?),
            config,
            executors,
            running: Mutex::default(),
            link: Mutex::default(),
            distrust: Mutex::default(),
            draining: tokio::sync::watch::Sender::new(false),
        });
        Ok(Worker { agent, endpoint, metrics_addr })
    }

    /// A handle that drains this worker: see [`Drain`].
    pub fn drain_handle(&self) -> Drain {
        Drain(self.agent.clone())
    }

    /// Where `/metrics` is served, once bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Connects and serves the coordinator; see [`run`].
    pub async fn run(self) -> anyhow::Result<()> {
        let Worker { agent, endpoint, .. } = self;
        let mut backoff = reconnect_backoff();
        // When the coordinator was last said to be unreachable: said at once, then at
        // most every UNREACHABLE_LOG_INTERVAL_MS while it stays so.
        let mut said_unreachable: Option<std::time::Instant> = None;
        loop {
            match agent.connect(&endpoint).await {
                Ok(session) => {
                    backoff = reconnect_backoff();
                    said_unreachable = None;
                    tracing::info!(coordinator = %agent.config.coordinator, "connected and admitted");
                    agent.metrics.connected.set(1);
                    let connection = session.connection.clone();
                    let reason = agent.clone().serve(session).await;
                    agent.metrics.connected.set(0);
                    if let Some(quinn::ConnectionError::ApplicationClosed(close)) = connection.close_reason()
                        && close.error_code == quinn::VarInt::from_u32(CLOSE_REPLACED)
                    {
                        anyhow::bail!(
                            "another worker connected to the coordinator with this worker's key ({}), and the \
                             coordinator let go of this one: two workers cannot share a key. Stop the other, or give \
                             each machine its own key (`icn keygen --out worker.key`) and have its cooperative admit \
                             it by decision",
                            agent.config.key.public()
                        );
                    }
                    agent.link.lock().expect("link lock").connection = None;
                    if let Some(distrust) = agent.distrust.lock().expect("distrust lock").clone() {
                        anyhow::bail!(
                            "this worker refuses coordinator {}: {distrust}",
                            agent.config.coordinator_key
                        );
                    }
                    tracing::warn!(%reason, "connection to the coordinator lost; reconnecting");
                }
                Err(Error::Refused(reason)) => {
                    anyhow::bail!("the coordinator refused this worker: {reason}");
                }
                Err(Error::History(e)) => {
                    anyhow::bail!("this worker refuses coordinator {}: {e}", agent.config.coordinator_key);
                }
                Err(e) => {
                    let due = said_unreachable.is_none_or(|said| {
                        said.elapsed() >= Duration::from_millis(UNREACHABLE_LOG_INTERVAL_MS)
                    });
                    if due {
                        said_unreachable = Some(std::time::Instant::now());
                        tracing::warn!(
                            "cannot reach the coordinator at {}: {e}; still trying, every {} s at most",
                            agent.config.coordinator,
                            RECONNECT_DELAY_MS_MAX / 1000
                        );
                    } else {
                        tracing::debug!(error = %e, "cannot reach the coordinator yet");
                    }
                }
            }
            let delay = backoff.next().unwrap_or(Duration::from_millis(RECONNECT_DELAY_MS_MAX));
            tokio::time::sleep(delay).await;
        }
    }
}

/// Delays between attempts to reach the coordinator: doubling from 50 ms to 2 s, each
/// with random jitter, so workers that lost a restarted coordinator do not all come back
/// in the same instant.
fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(RECONNECT_DELAY_MS_MIN))
        .with_max_delay(Duration::from_millis(RECONNECT_DELAY_MS_MAX))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Agent {
    async fn connect(&self, endpoint: &quinn::Endpoint) -> Result<Session, Error> {
        let config = &self.config;
        let hello = Hello {
            role: Role::Worker,
            channel_binding: [0; 32],
            agent: config.agent.clone(),
            capacity: Some(Capacity {
                slots: config.slots,
                memory_bytes: config.memory_bytes,
                executors: self.executors.kinds(),
            }),
            seen: None,
            running: self.held(),
        };
        let kept = self.seals.lock().expect("seal lock").kept();
        let mut seals = SealKeeper::new(config.coordinator_key, kept)?;
        let session = transport::connect(
            endpoint,
            config.coordinator,
            config.coordinator_key,
            &config.key,
            hello,
            &mut seals,
        )
        .await?;
        *self.seals.lock().expect("seal lock") = seals;
        let outbox = {
            let mut link = self.link.lock().expect("link lock");
            link.connection = Some(session.connection.clone());
            std::mem::take(&mut link.outbox)
        };
        for pending in outbox {
            self.send_later(pending).await;
        }
        Ok(session)
    }

    /// The attempts this worker holds: running, or ended with a report not yet
    /// delivered. A new connection names them so the coordinator keeps them placed here.
    fn held(&self) -> Vec<(TaskId, u32)> {
        let mut held: BTreeSet<(TaskId, u32)> = self.running.lock().expect("running lock").clone();
        held.extend(self.link.lock().expect("link lock").outbox.iter().map(|pending| pending.attempt));
        held.into_iter().collect()
    }

    /// Serves one connection until it ends; returns why it ended.
    async fn serve(self: Arc<Self>, session: Session) -> String {
        let Session { connection, control: (mut control_send, _control_recv), welcome } = session;
        let heartbeat_every = Duration::from_millis(welcome.heartbeat_interval_ms.clamp(10, 60_000));
        let heartbeat = {
            let agent = self.clone();
            async move {
                let mut interval = tokio::time::interval(heartbeat_every);
                let mut draining = agent.draining.subscribe();
                // Said on each connection once the drain began, and when it begins.
                draining.mark_changed();
                loop {
                    let message = tokio::select! {
                        _ = interval.tick() => WorkerMessage::Heartbeat {
                            running: agent.running.lock().expect("running lock").iter().copied().collect(),
                            free_slots: agent.slots.available_permits() as u32,
                        },
                        Ok(()) = draining.changed() => {
                            if !*draining.borrow_and_update() {
                                continue;
                            }
                            WorkerMessage::Drain
                        }
                    };
                    if let Err(e) = control_send.write(&message).await {
                        return format!("heartbeat failed: {e}");
                    }
                }
            }
        };
        let tasks = async {
            loop {
                let (send, recv) = match transport::accept(&connection).await {
                    Ok(streams) => streams,
                    Err(e) => return format!("{e}"),
                };
                let agent = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = agent.handle(send, recv).await {
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

    async fn handle(self: Arc<Self>, mut send: Outgoing, mut recv: Incoming) -> Result<(), Error> {
        let (assignment, input, seal) = match recv.read::<CoordinatorMessage>(MESSAGE_SIZE_BYTES_MAX).await? {
            Some(CoordinatorMessage::Assign { assignment, input, seal }) => (assignment, input, seal),
            other => {
                return Err(Error::invalid(format!(
                    "a task stream must open with an assignment, got {other:?}"
                )));
            }
        };
        if let Err(e) = self.check_seal(&seal) {
            // Running tasks for a coordinator whose history shrank would serve a record
            // that lost what came before: stop serving it altogether.
            *self.distrust.lock().expect("distrust lock") = Some(e.to_string());
            if let Some(connection) = &self.link.lock().expect("link lock").connection {
                connection
                    .close(4u32.into(), b"the coordinator's history does not extend what it showed before");
            }
            return Err(e);
        }
        let attempt = (assignment.task, assignment.attempt);
        let execution = match self.slots.clone().try_acquire_owned() {
            Err(_) => Execution::refused("the worker has no free slot".into()),
            Ok(_permit) => {
                // Held from here until its report is delivered or in the outbox.
                self.running.lock().expect("running lock").insert(attempt);
                let started = std::time::Instant::now();
                let execution = self.execute(&assignment, input, &mut send, &mut recv).await;
                if let Ok(ran) = &execution {
                    let seconds = started.elapsed().as_secs_f64();
                    self.metrics.ran(assignment.executor, &ran.outcome, seconds, ran.fuel.0);
                }
                match execution {
                    Ok(execution) => execution,
                    Err(e) => {
                        self.running.lock().expect("running lock").remove(&attempt);
                        return Err(e);
                    }
                }
            }
        };
        let report = ExecutionReport {
            task: assignment.task,
            attempt: assignment.attempt,
            output_digest: ContentId::of(&execution.output),
            output_bytes: execution.output.len() as u64,
            // Signed text is shown on members' terminals: no control characters in it.
            outcome: execution.outcome.printable(),
            stderr: execution.stderr,
            fuel: execution.fuel,
            usage: execution.usage,
        };
        let envelope = Envelope::seal(&self.config.key, transport::nonce(), &report);
        let pending = Pending { attempt, report: envelope, output: execution.output };
        if let Err(e) = report_on(&mut send, &mut recv, &pending).await {
            // The stream went with its connection: the report goes by the next one.
            tracing::info!(task = %assignment.task, error = %e, "report not delivered; it waits for a connection");
            self.send_later(pending).await;
        }
        self.running.lock().expect("running lock").remove(&attempt);
        Ok(())
    }

    /// Checks a seal the coordinator shows: its history only grows.
    fn check_seal(&self, seal: &Seal) -> Result<(), Error> {
        self.seals.lock().expect("seal lock").check(seal).map(drop).map_err(|e| {
            tracing::error!(error = %e, "the coordinator's journal does not extend what it showed before");
            Error::History(e)
        })
    }

    /// A report whose own stream is gone: on a stream of the worker's own over the
    /// current connection, or, when that fails too, into the outbox for the next one.
    async fn send_later(&self, pending: Pending) {
        let current = self.link.lock().expect("link lock").connection.clone();
        if let Some(connection) = current {
            let delivered = async {
                let (mut send, mut recv) = transport::open(&connection).await?;
                report_on(&mut send, &mut recv, &pending).await
            };
            match delivered.await {
                Ok(()) => return,
                Err(e) => {
                    tracing::info!(error = %e, "late report not delivered; it waits for the next connection")
                }
            }
        }
        let mut link = self.link.lock().expect("link lock");
        if link.outbox.len() >= self.config.slots as usize {
            // More reports than slots cannot be pending; if they are, the oldest is the
            // one its coordinator has most surely given up on.
            link.outbox.remove(0);
        }
        link.outbox.push(pending);
    }

    /// Runs the assignment; `None` when the coordinator cancelled it on the way.
    async fn execute(
        &self,
        assignment: &Assignment,
        input: Vec<u8>,
        send: &mut Outgoing,
        recv: &mut Incoming,
    ) -> Result<Execution, Error> {
        let stop = Stop::default();
        if let Err(e) = icn_protocol::wire::check_input(&input) {
            return Ok(Execution::refused(format!("the assignment's input is refused: {e}")));
        }
        if ContentId::of(&input) != assignment.input {
            return Ok(Execution::refused(format!(
                "the input sent hashes to {}, not to the assignment's {}",
                ContentId::of(&input).short(),
                assignment.input.short()
            )));
        }
        if let Err(e) = assignment.limits.validate() {
            return Ok(Execution::refused(format!("the assignment's limits are invalid: {e}")));
        }
        if assignment.limits.memory_bytes > self.config.memory_bytes {
            return Ok(Execution::refused(format!(
                "the task wants {} bytes of memory; this worker offers {}",
                assignment.limits.memory_bytes, self.config.memory_bytes
            )));
        }
        let Some(executor) = self.executors.get(assignment.executor).cloned() else {
            return Ok(Execution::refused(format!(
                "this worker does not run the {} executor",
                assignment.executor
            )));
        };
        let module = assignment.module;
        if !executor.has_program(&module) {
            send.write(&WorkerMessage::FetchModule(module)).await?;
            let bytes = match recv.read::<CoordinatorMessage>(MODULE_FRAME_BYTES_MAX).await? {
                Some(CoordinatorMessage::Module(bytes)) => bytes,
                Some(CoordinatorMessage::NoModule(reason)) => {
                    return Ok(Execution::refused(format!("module unavailable: {reason}")));
                }
                other => return Err(Error::invalid(format!("expected the module's bytes, got {other:?}"))),
            };
            let loader = executor.clone();
            let loaded = tokio::task::spawn_blocking(move || loader.load_program(module, &bytes))
                .await
                .map_err(|e| Error::Transport(format!("module compilation panicked: {e}")))?;
            if let Err(reason) = loaded {
                return Ok(Execution::refused(reason));
            }
        }
        let live = LiveStderr::default();
        let running = executor.run(assignment.clone(), input, stop.clone(), live.clone());
        Ok(run_until_cancelled(running, &stop, &live, send, recv).await)
    }
}

/// Runs a task while listening on its stream for the coordinator's cancel: on one, the
/// executor is told to stop, and the run ends as `Cancelled` with the fuel it used until
/// then, which the report carries (the job pays what ran). A stream that ends or fails
/// otherwise went with its connection: the task runs on and reports later. Meanwhile,
/// what the task writes to stderr goes to the coordinator as progress, every
/// [`PROGRESS_INTERVAL_MS`] while there is some.
async fn run_until_cancelled(
    running: Running,
    stop: &Stop,
    live: &LiveStderr,
    send: &mut Outgoing,
    recv: &mut Incoming,
) -> Execution {
    tokio::pin!(running);
    let mut listening = true;
    let mut progress = tokio::time::interval(Duration::from_millis(PROGRESS_INTERVAL_MS));
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut streaming = true;
    loop {
        tokio::select! {
            _ = progress.tick(), if streaming => {
                if let Some((stderr, skipped)) = live.take() {
                    // Progress is best effort: a stream that cannot take it went with its
                    // connection, and the report goes by the next one.
                    streaming = send.write(&WorkerMessage::Progress { stderr, skipped }).await.is_ok();
                }
            }
            execution = &mut running => {
                if !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return execution;
                }
                tracing::info!("task stopped: its job was cancelled");
                let detail = "the worker stopped it: its job was cancelled".to_string();
                return Execution {
                    outcome: icn_protocol::wire::Outcome::Failed { kind: icn_protocol::wire::FailureKind::Cancelled, detail },
                    output: Vec::new(),
                    ..execution
                };
            }
            message = recv.read::<CoordinatorMessage>(CANCEL_FRAME_BYTES_MAX), if listening => {
                listening = false;
                if let Ok(Some(CoordinatorMessage::Cancel)) = message {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

/// Sends a report and waits for the coordinator to close its side of the stream, which
/// it does once it has taken the report: only then is the report delivered. (A report
/// delivered twice is harmless: the second is stale.)
async fn report_on(send: &mut Outgoing, recv: &mut Incoming, pending: &Pending) -> Result<(), Error> {
    let message = WorkerMessage::Report { report: pending.report.clone(), output: pending.output.clone() };
    send.write(&message).await?;
    send.get_mut().finish().map_err(|e| Error::Transport(e.to_string()))?;
    recv.finished().await
}
