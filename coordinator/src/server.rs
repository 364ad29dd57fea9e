//! The coordinator's IO shell: QUIC for workers and members, the journal on disk, and
//! one thread that owns the [`Core`].
//!
//! The core thread takes every event waiting in its channel as one batch, feeds them to
//! the core, appends the resulting journal entries and their index rows in one
//! transaction (group commit: one fsync for the whole batch), and only then answers
//! members and dispatches tasks. Signature checks happen in the connection tasks, in
//! parallel, before events reach the core. Every channel is bounded: a full event queue
//! makes connection tasks wait (backpressure), and the core thread never waits on one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use icn_core::store::{JournalStore, Payload, PayloadKind, Reader};
use icn_core::{Command, Core, CoreConfig, Driver, Entry, Genesis, IndexRow, Now, Refusal, Turn};
use icn_protocol::wire::{
    Answer, Assignment, CLOSE_REPLACED, Capacity, ClientRequest, ClientResponse, CoordinatorMessage,
    ExecutionReport, JobState, JobView, MESSAGE_SIZE_BYTES_MAX, PROGRESS_STDERR_BYTES_MAX, Role, SLOTS_MAX,
    WorkerMessage,
};
use icn_protocol::{ContentId, Envelope, JobId, Keypair, PublicKey, Seal, TaskId};
use icn_transport::endpoint as transport;
use icn_transport::{FrameReader, FrameWriter};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::MemberApi;
use crate::blobs::{BlobStore, Retention};
use crate::journal::{Journal, JournalError};
use crate::metrics::Metrics;
use crate::modules::Modules;

/// The halves of a framed QUIC stream.
type Outgoing = FrameWriter<SendStream>;
type Incoming = FrameReader<RecvStream>;

pub const HELLO_TIMEOUT_MS: u64 = 5_000;
/// The core is woken when it says it next has work ([`icn_core::Core::next_wake`]), and
/// at least this often: a deadline it failed to name costs at most this long.
pub const WAKE_BACKSTOP_MS: u64 = 1_000;
/// Events the core thread takes into one batch (and one journal commit) at most.
pub const BATCH_EVENTS_MAX: usize = 4_096;
/// Events waiting for the core thread, at most; a connection task with one more waits.
pub const EVENTS_QUEUE_MAX: usize = 16_384;
/// Commands waiting for one worker's connection: its assignments (never more than its
/// slots, since the core places no more) and a close.
const WORKER_COMMANDS_MAX: usize = SLOTS_MAX as usize + 4;
/// Heartbeat frames are small; anything larger on the control stream is refused.
const CONTROL_FRAME_BYTES_MAX: usize = 64 * 1024;
const _: () = assert!(BATCH_EVENTS_MAX <= EVENTS_QUEUE_MAX);
const _: () = assert!(CONTROL_FRAME_BYTES_MAX <= MESSAGE_SIZE_BYTES_MAX);

#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub listen: SocketAddr,
    pub journal: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub core: CoreConfig,
    /// The founding document: written as the journal's first entry on the first start,
    /// and checked against it on every later start.
    pub genesis: Genesis,
    /// Start from the journal as it is even when its anchor shows entries missing from
    /// its end: the operator's explicit acceptance that they are lost.
    pub accept_journal_end: bool,
    /// How long jobs' inputs and outputs are kept beside the journal.
    pub retention: Retention,
    /// Where `/metrics` is served over HTTP for Prometheus; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the member API is served over HTTP/JSON ([`crate::http`]); `None`: not served.
    pub http_listen: Option<SocketAddr>,
    /// How often a member, and a connection, may ask the member API.
    pub limits: crate::limits::RateLimits,
}

/// How often payloads past their retention are let go.
pub const SWEEP_INTERVAL_MS: u64 = 60_000;

/// A reply held back until the batch it belongs to is durable.
pub(crate) type Reply = Box<dyn FnOnce()>;
/// A read of the core's state that makes its reply.
pub(crate) type ReadFn = Box<dyn FnOnce(&Core) -> Reply + Send>;
/// A change to the core's state, at the batch's time, that makes its reply.
pub(crate) type WriteFn = Box<dyn FnOnce(&mut Core, Now, &Journaled) -> Reply + Send>;

/// What a change may ask of the journal on the core's thread, where its connection is:
/// whether a job the core no longer holds was journaled.
pub(crate) struct Journaled<'a>(&'a Metered);

impl Journaled<'_> {
    /// Whether `job` ended and left the core's memory: the core no longer holds it but
    /// the journal does.
    pub fn forgotten(&self, core: &Core, job: &JobId) -> Result<bool, String> {
        Ok(core.job(job).is_none() && self.0.journal.holds_job(job).map_err(|e| e.to_string())?)
    }
}

pub(crate) enum Event {
    WorkerHello {
        worker: PublicKey,
        session: u64,
        capacity: Capacity,
        running: Vec<(TaskId, u32)>,
        commands: mpsc::Sender<WorkerCommand>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    WorkerGone {
        worker: PublicKey,
        session: u64,
        reason: String,
    },
    Heartbeat {
        worker: PublicKey,
        session: u64,
        running: Vec<(TaskId, u32)>,
    },
    /// The worker's owner takes it out of service: no new tasks on this session.
    Draining {
        worker: PublicKey,
        session: u64,
    },
    Report {
        worker: PublicKey,
        session: u64,
        envelope: Envelope,
        report: Box<ExecutionReport>,
        /// Checked against the report; stored with the batch that journals it.
        output: Vec<u8>,
        budget: Option<Budget>,
    },
    /// A member's input, stored with the next batch; its id is answered once durable.
    PutInput {
        bytes: Vec<u8>,
        uploader: PublicKey,
        budget: Option<Budget>,
        reply: oneshot::Sender<ContentId>,
    },
    MemberHello {
        member: PublicKey,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A read of the core's state (the member API's), answered after the batch.
    Read(ReadFn),
    /// A change a member asked for, answered once the batch is durable.
    Write(WriteFn),
    Watch {
        job: JobId,
        updates: mpsc::Sender<JobView>,
    },
    Tick,
    Stop,
}

pub(crate) enum WorkerCommand {
    Assign(Box<Assignment>, Seal),
    /// Stop this attempt: its job was cancelled.
    Stop(TaskId, u32),
    Close(String),
    /// Another connection with this worker's key replaced this one.
    Replaced,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedWorker {
    pub key: PublicKey,
    pub owner: String,
    pub free_slots: u32,
}

/// A running coordinator.
pub struct Coordinator {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    key: PublicKey,
    events: mpsc::Sender<Event>,
    api: Arc<MemberApi>,
    endpoint: Endpoint,
    /// Resolves with the core thread's result when it stops.
    core_done: oneshot::Receiver<anyhow::Result<()>>,
    core_finished: bool,
}

impl Coordinator {
    /// Opens the journal, rebuilds the state it records, and starts serving.
    pub async fn start(key: Arc<Keypair>, config: CoordinatorConfig) -> anyhow::Result<Coordinator> {
        config
            .limits
            .validate()
            .map_err(|e| anyhow::anyhow!("the coordinator's limits are not valid: {e}"))?;
        let metrics = Metrics::new();
        let (driver, clock) = recover(&key, &config, &metrics)?;
        let sealed =
            driver.store().seal_at(driver.core().journal_len() - 1)?.expect("the journal ends sealed");
        let modules = Arc::new(Modules::open(&config.journal)?);
        let blobs = Arc::new(BlobStore::open(&config.journal, config.retention)?);
        tokio::spawn(sweep(blobs.clone(), modules.clone()));
        let payload_budget = payload_budget();
        let endpoint = transport::server_endpoint(config.listen)?;
        let addr = endpoint.local_addr()?;
        let (events, receiver) = mpsc::channel(EVENTS_QUEUE_MAX);
        let (done, core_done) = oneshot::channel();
        let (seals, seal) = watch::channel(sealed);
        let (standing, members) = watch::channel(Members::of(driver.core()));
        let recorder = metrics.clone();
        let (wake, next_wake) = watch::channel(Some(Instant::now()));
        std::thread::Builder::new().name("icn-core".into()).spawn(move || {
            let run = || core_loop(driver, receiver, (seals, standing, wake), clock, &recorder);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the core thread panicked")));
            let _ = done.send(result);
        })?;
        let api = Arc::new(MemberApi::new(
            events.clone(),
            modules.clone(),
            (blobs.clone(), payload_budget.clone()),
            config.journal.clone(),
            (seal.clone(), members),
            (metrics.clone(), Arc::new(crate::limits::Limits::new(config.limits))),
            blake3::derive_key(
                "icn coordinator: output digests shown to members who may not read them",
                &key.seed(),
            ),
        ));
        let metrics_addr = match config.metrics_listen {
            Some(listen) => Some(crate::metrics::serve(listen, metrics, api.clone()).await?),
            None => None,
        };
        let http_addr = match config.http_listen {
            Some(listen) => Some(crate::http::serve(listen, api.clone(), key.public()).await?),
            None => None,
        };
        let shell = Shell {
            key: key.clone(),
            events: events.clone(),
            api: api.clone(),
            modules,
            blobs,
            payload_budget,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            journal: config.journal.clone(),
            seal,
        };
        tokio::spawn(accept_loop(endpoint.clone(), shell));
        tokio::spawn(waker(events.clone(), next_wake));
        Ok(Coordinator {
            addr,
            metrics_addr,
            http_addr,
            key: key.public(),
            events,
            api,
            endpoint,
            core_done,
            core_finished: false,
        })
    }

    /// Where the HTTP/JSON member API is served, when the config asked for it.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where `/metrics` is served, when the config asked for it.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The member API, for adapters beside QUIC.
    pub fn api(&self) -> Arc<MemberApi> {
        self.api.clone()
    }

    /// The workers connected now.
    pub async fn workers(&self) -> anyhow::Result<Vec<ConnectedWorker>> {
        let connected = self.api.read(|core| {
            core.connected_workers()
                .map(|(key, owner, free_slots)| ConnectedWorker {
                    key: *key,
                    owner: owner.to_string(),
                    free_slots,
                })
                .collect()
        });
        connected.await.map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn public_key(&self) -> PublicKey {
        self.key
    }

    /// Resolves when the core stops on its own, which only a failure makes it do (the
    /// journal cannot be written); the error says why. Safe to cancel.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        let result =
            (&mut self.core_done).await.unwrap_or_else(|_| Err(anyhow::anyhow!("the core thread vanished")));
        self.core_finished = true;
        self.endpoint.close(0u32.into(), b"coordinator stopped");
        result
    }

    /// Stops accepting, lets the core finish its batch, and closes every connection.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.events.send(Event::Stop).await;
        self.endpoint.close(0u32.into(), b"coordinator shutting down");
        if !self.core_finished {
            (&mut self.core_done)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the core thread vanished")))?;
        }
        self.endpoint.wait_idle().await;
        Ok(())
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.events.try_send(Event::Stop);
        self.endpoint.close(0u32.into(), b"coordinator dropped");
    }
}

/// Opens the journal, checks and replays it chunk by chunk into a new core, checks its
/// anchor, requeues what was in flight and writes (or checks) the genesis.
fn recover(
    key: &Arc<Keypair>,
    config: &CoordinatorConfig,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Driver<Metered>, Clock)> {
    let refused = |e: crate::journal::JournalError| {
        anyhow::anyhow!(
            "{e}\nThe coordinator starts only from a journal that verifies; `icn journal verify --journal {}` \
             shows what is wrong.",
            config.journal.display()
        )
    };
    let mut journal = Journal::open(&config.journal, key.public())?;
    let mut core = Core::new(key.clone(), config.core.clone());
    let indexed = journal.indexed_through()?;
    let mut unindexed = Vec::new();
    let loaded = journal
        .load(|chunk| {
            core.replay(chunk)?;
            unindexed.extend(
                core.take_index().into_iter().filter(|row| indexed.is_none_or(|through| row.seq > through)),
            );
            Ok(())
        })
        .map_err(refused)?;
    journal.reindex(&unindexed)?;
    journal.check_anchor(&loaded, config.accept_journal_end).map_err(refused)?;
    let clock = Clock::start();
    core.resume(clock.now());
    core.found(clock.now(), &config.genesis)?;
    let mut driver = Driver::new(core, Metered { journal, metrics: metrics.clone() });
    // The requeues and the genesis just recorded; nothing is connected yet, so their
    // commands have no one to go to.
    driver.step(|_| ())?;
    tracing::info!(entries = loaded.entries, "journal replayed");
    Ok((driver, clock))
}

/// Lets go of payloads past their retention, every [`SWEEP_INTERVAL_MS`], while the
/// coordinator runs.
async fn sweep(blobs: Arc<BlobStore>, modules: Arc<Modules>) {
    let mut interval = tokio::time::interval(Duration::from_millis(SWEEP_INTERVAL_MS));
    loop {
        interval.tick().await;
        if Arc::strong_count(&blobs) == 1 {
            return;
        }
        let (store, unused) = (blobs.clone(), modules.clone());
        let swept = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            Ok::<_, JournalError>((store.sweep(now)?, unused.sweep(now)?))
        });
        match swept.await {
            Ok(Ok((0, 0))) => {}
            Ok(Ok((payloads, modules))) => {
                tracing::info!(payloads, modules, "payloads past their retention and unused modules let go")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot sweep the payload store"),
            Err(e) => tracing::error!(error = %e, "the payload sweep failed"),
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The core's two clocks: wall time for records, monotonic time (from the start) for
/// timeouts.
#[derive(Clone, Copy)]
struct Clock {
    started: Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock { started: Instant::now() }
    }

    fn now(&self) -> Now {
        Now { wall_ms: now_ms(), mono_ms: self.started.elapsed().as_millis() as u64 }
    }
}

fn later<T: 'static>(to: oneshot::Sender<T>, value: T) -> Reply {
    Box::new(move || drop(to.send(value)))
}

/// What the core's thread keeps beside the driver: the connections commands go to.
struct CoreShell {
    workers: HashMap<PublicKey, (u64, mpsc::Sender<WorkerCommand>)>,
    watchers: HashMap<JobId, Vec<mpsc::Sender<JobView>>>,
    /// The latest seal committed: dispatches carry it.
    seal: Seal,
    /// The budgets the batch's payloads hold until they are stored.
    budgets: Vec<Budget>,
}

/// Payload bytes on their way to the journal, at most: a flood of outputs or inputs
/// waits for room instead of growing memory.
pub const PAYLOADS_IN_FLIGHT_BYTES_MAX: usize = 64 * 1024 * 1024;
const _: () = assert!(icn_protocol::wire::OUTPUT_SIZE_BYTES_MAX as usize <= PAYLOADS_IN_FLIGHT_BYTES_MAX);

/// A payload's share of [`PAYLOADS_IN_FLIGHT_BYTES_MAX`], in KiB, held until it is stored.
pub(crate) type Budget = tokio::sync::OwnedSemaphorePermit;

/// The budgets of payloads in flight.
pub(crate) fn payload_budget() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(PAYLOADS_IN_FLIGHT_BYTES_MAX / 1024))
}

/// Waits for room for `bytes` of payload; none is needed for an empty one.
pub(crate) async fn reserve(budget: &Arc<tokio::sync::Semaphore>, bytes: &[u8]) -> Option<Budget> {
    if bytes.is_empty() {
        return None;
    }
    let kib = bytes.len().div_ceil(1024) as u32;
    budget.clone().acquire_many_owned(kib).await.ok()
}

/// Requests one member's session has answered at once.
pub const MEMBER_REQUESTS_CONCURRENT_MAX: usize = 64;

/// The keys in standing now, as the shell's request paths check them without a trip to
/// the core's thread; published after every batch that made a decision.
#[derive(Clone, Debug, Default)]
pub(crate) struct Members {
    keys: Arc<std::collections::BTreeSet<PublicKey>>,
    /// The decisions made when it was taken: only a decision changes standing.
    decisions: usize,
}

impl Members {
    fn of(core: &Core) -> Members {
        Members { keys: Arc::new(core.members_in_standing()), decisions: core.decisions_made() }
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.keys.contains(key)
    }
}

/// Wakes the core when it said it next has work (or after [`WAKE_BACKSTOP_MS`]), then
/// waits for the core to say again: one tick in flight at a time.
async fn waker(events: mpsc::Sender<Event>, mut next: watch::Receiver<Option<Instant>>) {
    loop {
        let backstop = Instant::now() + Duration::from_millis(WAKE_BACKSTOP_MS);
        let at = next.borrow_and_update().map_or(backstop, |at| at.min(backstop));
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => match events.try_send(Event::Tick) {
                Ok(()) => {
                    if next.changed().await.is_err() {
                        return;
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                // The core is busy with a full queue: try again shortly.
                Err(mpsc::error::TrySendError::Full(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            changed = next.changed() => if changed.is_err() { return },
        }
    }
}

/// The SQLite journal, timing each append for `/metrics`.
pub(crate) struct Metered {
    pub journal: Journal,
    metrics: Arc<Metrics>,
}

impl JournalStore for Metered {
    type Error = JournalError;

    fn append(
        &mut self,
        entries: &[Entry],
        index: &[IndexRow],
        payloads: &[Payload],
    ) -> Result<(), JournalError> {
        let appending = Instant::now();
        let appended = self.journal.append(entries, index, payloads);
        if !entries.is_empty() {
            self.metrics.journal_append_seconds.observe(appending.elapsed().as_secs_f64());
            self.metrics.journal_batch_entries.observe(entries.len() as f64);
        }
        appended
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Entry>, JournalError> {
        self.journal.read(from, limit)
    }

    fn len(&self) -> Result<u64, JournalError> {
        self.journal.len()
    }
}

type Publish = (watch::Sender<Seal>, watch::Sender<Members>, watch::Sender<Option<Instant>>);

fn core_loop(
    mut driver: Driver<Metered>,
    mut receiver: mpsc::Receiver<Event>,
    (seals, standing, wake): Publish,
    clock: Clock,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let seal = *seals.borrow();
    let mut shell =
        CoreShell { workers: HashMap::new(), watchers: HashMap::new(), seal, budgets: Vec::new() };
    let mut batch = Vec::with_capacity(BATCH_EVENTS_MAX);
    while receiver.blocking_recv_many(&mut batch, BATCH_EVENTS_MAX) > 0 {
        let now = clock.now();
        let ticked = batch.iter().any(|event| matches!(event, Event::Tick));
        // The outputs the batch's reports name are stored in the same append.
        let stepped = driver.step(|turn| {
            let mut replies = Vec::new();
            let mut stop = false;
            for event in batch.drain(..) {
                stop |= shell.handle(turn, now, event, &mut replies);
            }
            (replies, stop)
        });
        let ((replies, stop), durable) = match stepped {
            Ok(stepped) => stepped,
            Err(e) => {
                // Nothing of this batch was acknowledged or dispatched; stopping here loses
                // nothing a member or worker was told about.
                tracing::error!(error = %e, "cannot write the journal; stopping");
                return Err(anyhow::anyhow!("{e}"));
            }
        };
        shell.budgets.clear();
        metrics.observe(driver.take_observations());
        if let Some(sealed) = durable.seal {
            shell.seal = sealed;
            seals.send_replace(sealed);
        }
        let core = driver.core();
        if core.decisions_made() != standing.borrow().decisions {
            // Before the replies: a member told of a revocation is already refused.
            standing.send_replace(Members::of(core));
        }
        for reply in replies {
            reply();
        }
        for command in durable.commands {
            shell.carry_out(core, command);
        }
        let at = durable.wake.after(now).map(|ms| Instant::now() + Duration::from_millis(ms));
        wake.send_if_modified(|next| {
            let changed = ticked || *next != at;
            *next = at;
            changed
        });
        if stop {
            driver.store().journal.checkpoint()?;
            return Ok(());
        }
    }
    Ok(())
}

impl CoreShell {
    /// Stores `bytes`, readable by `reader`, with this batch.
    fn keep(
        &mut self,
        turn: &mut Turn<'_, Metered>,
        (kind, bytes, reader): (PayloadKind, Vec<u8>, Reader),
        budget: Option<Budget>,
        now: Now,
    ) {
        turn.keep(Payload { kind, bytes, stored_ms: now.wall_ms, reader });
        self.budgets.extend(budget);
    }

    fn handle(
        &mut self,
        turn: &mut Turn<'_, Metered>,
        now: Now,
        event: Event,
        replies: &mut Vec<Reply>,
    ) -> bool {
        let core = &mut *turn.core;
        match event {
            Event::WorkerHello { worker, session, capacity, running, commands, reply } => {
                let result = core.worker_connected(now, worker, session, capacity, &running);
                if result.is_ok() {
                    // A second connection with one key replaces the first. After a blip the
                    // first is dead already; if it is not, another process holds this key,
                    // and closing it so tells that process why.
                    if let Some((_, replaced)) = self.workers.insert(worker, (session, commands)) {
                        let _ = replaced.try_send(WorkerCommand::Replaced);
                    }
                }
                replies.push(later(reply, result));
            }
            Event::WorkerGone { worker, session, reason } => {
                if self.workers.get(&worker).is_some_and(|(s, _)| *s == session) {
                    self.workers.remove(&worker);
                }
                core.worker_disconnected(now, worker, session, reason);
            }
            Event::Heartbeat { worker, session, running } => core.heartbeat(now, worker, session, &running),
            Event::Draining { worker, session } => core.worker_draining(now, worker, session),
            Event::Report { worker, session, envelope, report, output, budget } => {
                // An output is what its job made: its submitter's and its scope's to read.
                // A report on a job no longer held is no result, and its output is not kept.
                if let Some(reader) = core.output_reader(&report.task.job) {
                    self.keep(turn, (PayloadKind::Output, output, reader), budget, now);
                }
                turn.core.report(now, worker, session, envelope, *report)
            }
            Event::PutInput { bytes, uploader, budget, reply } => {
                let id = ContentId::of(&bytes);
                self.keep(turn, (PayloadKind::Input, bytes, Reader::Uploader(uploader)), budget, now);
                replies.push(later(reply, id));
            }
            Event::MemberHello { member, reply } => replies.push(later(reply, core.admit_member(&member))),
            Event::Read(read) => replies.push(read(core)),
            Event::Write(write) => replies.push(write(turn.core, now, &Journaled(turn.store))),
            Event::Watch { job, updates } => self.watch(core, job, updates, replies),
            Event::Tick => core.tick(now),
            Event::Stop => return true,
        }
        false
    }

    /// A member follows `job`. Like every answer, the first view waits for this batch to
    /// be durable: a member never hears of a state the journal could still lose.
    fn watch(&mut self, core: &Core, job: JobId, updates: mpsc::Sender<JobView>, replies: &mut Vec<Reply>) {
        let Some(view) = core.job(&job) else { return };
        if !ends_watch(&view.state) {
            self.watchers.entry(job).or_default().push(updates.clone());
        }
        replies.push(Box::new(move || drop(updates.try_send(view))));
    }

    fn carry_out(&mut self, core: &Core, command: Command) {
        match command {
            Command::Dispatch { worker, session, assignment } => {
                self.send_to(worker, session, WorkerCommand::Assign(Box::new(assignment), self.seal));
            }
            Command::Disconnect { worker, session, reason } => {
                self.send_to(worker, session, WorkerCommand::Close(reason));
                if self.workers.get(&worker).is_some_and(|(s, _)| *s == session) {
                    self.workers.remove(&worker);
                }
            }
            Command::Stop { worker, session, task, attempt } => {
                self.send_to(worker, session, WorkerCommand::Stop(task, attempt));
            }
            Command::JobChanged(job) => {
                if !self.watchers.contains_key(&job) {
                    return;
                }
                let Some(view) = core.job(&job) else {
                    // It ended and left memory at once: its followers read the end from
                    // the journal once this batch is durable.
                    self.watchers.remove(&job);
                    return;
                };
                let ended = ends_watch(&view.state);
                let watchers = self.watchers.get_mut(&job).expect("checked above");
                // A follower too slow to take the view is let go; it can follow again.
                watchers.retain(|w| w.try_send(view.clone()).is_ok());
                if ended || watchers.is_empty() {
                    self.watchers.remove(&job);
                }
            }
        }
    }

    fn send_to(&self, worker: PublicKey, session: u64, command: WorkerCommand) {
        if let Some((s, commands)) = self.workers.get(&worker)
            && *s == session
            && let Err(mpsc::error::TrySendError::Full(_)) = commands.try_send(command)
        {
            tracing::error!(worker = %worker.short(), "a worker's command queue is full; its connection is stuck");
        }
    }
}

pub fn is_final(state: &JobState) -> bool {
    matches!(state, JobState::Completed | JobState::Failed | JobState::Cancelled)
}

/// Where a member following a job stops: the job ended, or it waits on a decision of the
/// commons that may take days.
pub fn ends_watch(state: &JobState) -> bool {
    is_final(state) || matches!(state, JobState::Disputed)
}

#[derive(Clone)]
struct Shell {
    key: Arc<Keypair>,
    events: mpsc::Sender<Event>,
    api: Arc<MemberApi>,
    modules: Arc<Modules>,
    blobs: Arc<BlobStore>,
    /// Room for outputs on their way to the journal.
    payload_budget: Arc<tokio::sync::Semaphore>,
    heartbeat_interval_ms: u64,
    journal: PathBuf,
    /// The latest committed seal, which every answer carries.
    seal: watch::Receiver<Seal>,
}

async fn accept_loop(endpoint: Endpoint, shell: Shell) {
    let mut next_session = 0u64;
    while let Some(incoming) = endpoint.accept().await {
        next_session += 1;
        let session = next_session;
        let shell = shell.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(e) => return tracing::debug!(error = %e, "handshake failed"),
            };
            let remote = connection.remote_address();
            if let Err(e) = shell.serve(connection, session).await {
                tracing::info!(%remote, error = %e, "connection ended");
            }
        });
    }
}

impl Shell {
    async fn serve(&self, connection: Connection, session: u64) -> anyhow::Result<()> {
        let hello =
            tokio::time::timeout(Duration::from_millis(HELLO_TIMEOUT_MS), transport::read_hello(&connection));
        let (peer, hello, (mut send, recv)) = match hello.await {
            Ok(Ok(hello)) => hello,
            Ok(Err(e)) => {
                connection.close(1u32.into(), b"bad hello");
                anyhow::bail!("bad hello: {e}");
            }
            Err(_) => {
                connection.close(1u32.into(), b"no hello in time");
                anyhow::bail!("no hello within {HELLO_TIMEOUT_MS} ms");
            }
        };
        let known = self.seal_known_to(&peer, hello.seen).await;
        let (reply, admitted) = oneshot::channel();
        let (commands, command_receiver) = mpsc::channel(WORKER_COMMANDS_MAX);
        let event = match (hello.role, hello.capacity) {
            (Role::Worker, Some(capacity)) => {
                let running = hello.running;
                Event::WorkerHello { worker: peer, session, capacity, running, commands, reply }
            }
            _ => Event::MemberHello { member: peer, reply },
        };
        self.events.send(event).await.map_err(|_| anyhow::anyhow!("the coordinator is stopping"))?;
        if let Err(reason) = admitted.await? {
            tracing::warn!(peer = %peer, %reason, "refused");
            transport::refuse(&mut send, &reason.to_string()).await?;
            let _ = tokio::time::timeout(Duration::from_secs(2), connection.closed()).await;
            return Ok(());
        }
        let seal = *self.seal.borrow();
        transport::welcome(&mut send, &self.key, &connection, self.heartbeat_interval_ms, seal, known)
            .await?;
        match hello.role {
            Role::Worker => self.serve_worker(connection, peer, session, recv, command_receiver).await,
            Role::Member => self.serve_member(connection, peer).await,
        }
    }

    /// This journal's seal at the entry of a seal `peer` says it saw. A seal of ours
    /// that this journal no longer holds means its history was cut or replaced: the
    /// peer will refuse us, and the operator must hear of it.
    async fn seal_known_to(&self, peer: &PublicKey, seen: Option<Seal>) -> Option<Seal> {
        let seen = seen?;
        let path = self.journal.clone();
        let ours = tokio::task::spawn_blocking(move || {
            crate::journal::open_read_only(&path).and_then(|c| crate::journal::seal_at(&c, seen.seq))
        })
        .await;
        let ours = match ours {
            Ok(Ok(ours)) => ours,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the journal to answer a peer's seal");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "the journal read for a peer's seal failed");
                None
            }
        };
        let genuine = seen.verify(&self.key.public()).is_ok();
        if genuine && ours.is_none_or(|o| o.hash != seen.hash) {
            tracing::error!(
                peer = %peer.short(),
                seq = seen.seq,
                hash = %seen.hash,
                "this coordinator once sealed entry {} for the peer, and its journal no longer holds it: the journal \
                 was cut short or replaced; the peer will refuse this coordinator",
                seen.seq
            );
        }
        ours
    }

    async fn serve_worker(
        &self,
        connection: Connection,
        worker: PublicKey,
        session: u64,
        mut control: Incoming,
        mut commands: mpsc::Receiver<WorkerCommand>,
    ) -> anyhow::Result<()> {
        tracing::info!(worker = %worker.short(), remote = %connection.remote_address(), "worker joined");
        let heartbeats = async {
            loop {
                match control.read::<WorkerMessage>(CONTROL_FRAME_BYTES_MAX).await {
                    Ok(Some(WorkerMessage::Heartbeat { running, .. })) => {
                        if self.events.send(Event::Heartbeat { worker, session, running }).await.is_err() {
                            return "the coordinator is stopping".to_string();
                        }
                    }
                    Ok(Some(WorkerMessage::Drain)) => {
                        if self.events.send(Event::Draining { worker, session }).await.is_err() {
                            return "the coordinator is stopping".to_string();
                        }
                    }
                    Ok(Some(other)) => return format!("unexpected message on the control stream: {other:?}"),
                    Ok(None) => return "the worker closed its control stream".to_string(),
                    Err(e) => return e.to_string(),
                }
            }
        };
        let dispatch = async {
            // How to stop each attempt whose stream is open: at most the worker's slots,
            // as streams that ended are dropped at each new one.
            let mut stops: HashMap<(TaskId, u32), oneshot::Sender<()>> = HashMap::new();
            while let Some(command) = commands.recv().await {
                match command {
                    WorkerCommand::Assign(assignment, seal) => {
                        let task = TaskStream {
                            shell: self.clone(),
                            connection: connection.clone(),
                            worker,
                            session,
                        };
                        let (stop, stopped) = oneshot::channel();
                        stops.retain(|_, stop| !stop.is_closed());
                        stops.insert((assignment.task, assignment.attempt), stop);
                        tokio::spawn(task.run(*assignment, seal, stopped));
                    }
                    WorkerCommand::Stop(task, attempt) => {
                        if let Some(stop) = stops.remove(&(task, attempt)) {
                            let _ = stop.send(());
                        }
                    }
                    WorkerCommand::Close(reason) => {
                        connection.close(2u32.into(), reason.as_bytes());
                        return reason;
                    }
                    WorkerCommand::Replaced => {
                        let reason = "another connection with this worker's key replaced this one";
                        tracing::warn!(
                            worker = %worker.short(),
                            remote = %connection.remote_address(),
                            "{reason}: if this worker did not just reconnect, two workers share its key"
                        );
                        connection.close(CLOSE_REPLACED.into(), reason.as_bytes());
                        return reason.to_string();
                    }
                }
            }
            "the coordinator is stopping".to_string()
        };
        // Reports of tasks that ended while the worker was away come back on streams
        // the worker opens.
        let late_reports = async {
            loop {
                let (send, recv) = match transport::accept(&connection).await {
                    Ok(streams) => streams,
                    Err(e) => return e.to_string(),
                };
                let shell = self.clone();
                tokio::spawn(async move {
                    if let Err(reason) = shell.late_report(worker, session, send, recv).await {
                        tracing::warn!(worker = %worker.short(), %reason, "late report refused");
                    }
                });
            }
        };
        let reason = tokio::select! {
            reason = heartbeats => reason,
            reason = dispatch => reason,
            reason = late_reports => reason,
        };
        tracing::info!(worker = %worker.short(), %reason, "worker left");
        connection.close(0u32.into(), b"");
        let _ = self.events.send(Event::WorkerGone { worker, session, reason }).await;
        Ok(())
    }

    /// One report a worker sends on a stream of its own: a task it finished while its
    /// connection was down. The core accepts it only for the attempt still placed on it.
    async fn late_report(
        &self,
        worker: PublicKey,
        session: u64,
        mut send: Outgoing,
        mut recv: Incoming,
    ) -> Result<(), String> {
        let message = recv
            .read::<WorkerMessage>(MESSAGE_SIZE_BYTES_MAX)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the worker closed the stream without a report")?;
        let WorkerMessage::Report { report: envelope, output } = message else {
            return Err("a worker's own stream carries a report, not another message".into());
        };
        let report: ExecutionReport = envelope.open().map_err(|e| format!("report refused: {e}"))?;
        if envelope.signer != worker {
            return Err(format!("report signed by {} on the connection of worker {worker}", envelope.signer));
        }
        let budget = self.check_output(&report, &output).await?;
        let report = Box::new(report);
        let _ = self.events.send(Event::Report { worker, session, envelope, report, output, budget }).await;
        let _ = send.get_mut().finish();
        Ok(())
    }

    /// Checks that `output` is what `report` commits to, and waits for room for it on its
    /// way to the journal, which stores it with the report.
    async fn check_output(&self, report: &ExecutionReport, output: &[u8]) -> Result<Option<Budget>, String> {
        report.check_output(output).map_err(|e| e.to_string())?;
        Ok(reserve(&self.payload_budget, output).await)
    }

    /// The QUIC adapter of the member API: one request per stream, each answer with the
    /// latest seal; a watch answers with every change until the job ends.
    /// A member's session: its requests, at most [`MEMBER_REQUESTS_CONCURRENT_MAX`]
    /// answered at once (the rest wait unread), until the member holds no standing any
    /// more, when the session is closed with the reason.
    async fn serve_member(&self, connection: Connection, member: PublicKey) -> anyhow::Result<()> {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MEMBER_REQUESTS_CONCURRENT_MAX));
        let limit = Arc::new(self.api.limits().connection());
        let requests = async {
            loop {
                let permit = in_flight.clone().acquire_owned().await.expect("never closed");
                let (send, recv) = transport::accept(&connection).await?;
                let (shell, limit) = (self.clone(), limit.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = shell.answer(member, &limit, send, recv).await {
                        tracing::debug!(error = %e, "member request failed");
                    }
                });
            }
        };
        tokio::select! {
            ended = requests => ended,
            () = self.api.revoked(member) => {
                connection.close(2u32.into(), b"this key holds no standing in this commons any more");
                Ok(())
            }
        }
    }

    async fn answer(
        &self,
        member: PublicKey,
        limit: &crate::limits::ConnectionLimit,
        mut send: Outgoing,
        mut recv: Incoming,
    ) -> anyhow::Result<()> {
        let response = match recv.read::<ClientRequest>(MESSAGE_SIZE_BYTES_MAX).await {
            Ok(Some(request)) => match (limit.check(), request) {
                (Err(limited), _) => {
                    self.api.refuse("connection", &limited.error);
                    ClientResponse::Error(limited.error)
                }
                (Ok(()), ClientRequest::Watch(job)) => return self.watch(member, job, send).await,
                (Ok(()), request) => self.api.handle(member, request).await,
            },
            Ok(None) => return Ok(()),
            Err(e) => ClientResponse::Error(icn_protocol::wire::ApiError::new(
                "bad_request",
                format!("bad request: {e}"),
            )),
        };
        send.write(&Answer { seal: self.api.seal(), response }).await?;
        let _ = send.get_mut().finish();
        let _ = send.get_mut().stopped().await;
        Ok(())
    }

    async fn watch(&self, member: PublicKey, job: JobId, mut send: Outgoing) -> anyhow::Result<()> {
        let mut sent_any = false;
        match self.api.watch(member, job).await {
            Ok(mut watching) => {
                while let Some(view) = watching.next().await {
                    sent_any = true;
                    let ended = ends_watch(&view.state);
                    send.write(&Answer {
                        seal: self.api.seal(),
                        response: ClientResponse::Job(Box::new(view)),
                    })
                    .await?;
                    if ended {
                        break;
                    }
                }
                if !sent_any {
                    let unknown = icn_protocol::wire::ApiError::new(
                        "unknown_job",
                        format!("no job {job} is known to this coordinator"),
                    );
                    send.write(&Answer { seal: self.api.seal(), response: ClientResponse::Error(unknown) })
                        .await?;
                }
            }
            Err(refused) => {
                send.write(&Answer { seal: self.api.seal(), response: ClientResponse::Error(refused) })
                    .await?;
            }
        }
        let _ = send.get_mut().finish();
        let _ = send.get_mut().stopped().await;
        Ok(())
    }
}

/// The empty input without a trip to the blob store; any other through `read`, off the
/// async threads.
async fn empty_or_blocking<T: Send + 'static>(
    digest: ContentId,
    read: impl FnOnce() -> Result<Result<Vec<u8>, T>, JournalError> + Send + 'static,
) -> Result<Result<Result<Vec<u8>, T>, JournalError>, tokio::task::JoinError> {
    if digest == icn_protocol::wire::empty_input() {
        return Ok(Ok(Ok(Vec::new())));
    }
    tokio::task::spawn_blocking(read).await
}

/// Why a task stream failed: the worker broke the protocol (it is disconnected), or the
/// connection went (the worker's connection task sees to that).
enum StreamError {
    Protocol(String),
    Connection(String),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Protocol(reason) => write!(f, "protocol: {reason}"),
            StreamError::Connection(reason) => f.write_str(reason),
        }
    }
}

/// One task attempt's stream to its worker.
struct TaskStream {
    shell: Shell,
    connection: Connection,
    worker: PublicKey,
    session: u64,
}

impl TaskStream {
    async fn run(self, assignment: Assignment, seal: Seal, stopped: oneshot::Receiver<()>) {
        let exchanged = self.exchange(&assignment, seal, stopped).await;
        self.shell.api.live().ended((assignment.task, assignment.attempt));
        if let Err(error) = exchanged {
            tracing::warn!(worker = %self.worker.short(), task = %assignment.task, %error, "task stream failed");
            if let StreamError::Protocol(reason) = error {
                self.connection.close(3u32.into(), reason.as_bytes());
            }
        }
    }

    async fn exchange(
        &self,
        assignment: &Assignment,
        seal: Seal,
        mut stopped: oneshot::Receiver<()>,
    ) -> Result<(), StreamError> {
        let lost = |e: icn_transport::Error| StreamError::Connection(e.to_string());
        let blobs = self.shell.blobs.clone();
        let digest = assignment.input;
        let input = match empty_or_blocking(digest, move || blobs.get(&digest)).await {
            Ok(Ok(Ok(bytes))) => bytes,
            Ok(Ok(Err(missing))) => {
                return Err(StreamError::Connection(format!(
                    "the task's input {digest} is not stored: {missing:?}"
                )));
            }
            Ok(Err(e)) => return Err(StreamError::Connection(format!("cannot read the task's input: {e}"))),
            Err(e) => return Err(StreamError::Connection(format!("cannot read the task's input: {e}"))),
        };
        let (mut send, mut recv) = transport::open(&self.connection).await.map_err(lost)?;
        let assign = CoordinatorMessage::Assign { assignment: Box::new(assignment.clone()), input, seal };
        send.write(&assign).await.map_err(lost)?;
        let mut cancelled = false;
        loop {
            let message = tokio::select! {
                message = recv.read::<WorkerMessage>(MESSAGE_SIZE_BYTES_MAX) => message,
                Ok(()) = &mut stopped, if !cancelled => {
                    // The job was cancelled: the worker stops the task and reports what the
                    // run used until then, on this stream, as for any other ending.
                    cancelled = true;
                    send.write(&CoordinatorMessage::Cancel).await.map_err(lost)?;
                    continue;
                }
            };
            let message = message.map_err(|e| StreamError::Protocol(e.to_string()))?.ok_or_else(|| {
                StreamError::Connection("the worker closed the task stream without a report".into())
            })?;
            match message {
                WorkerMessage::FetchModule(cid) if cid == assignment.module => {
                    let modules = self.shell.modules.clone();
                    let found = tokio::task::spawn_blocking(move || modules.get(&cid)).await;
                    let reply = match found {
                        Ok(Ok(Some(bytes))) => CoordinatorMessage::Module(bytes.to_vec()),
                        Ok(Ok(None)) => CoordinatorMessage::NoModule(format!("module {cid} is not stored")),
                        Ok(Err(e)) => CoordinatorMessage::NoModule(e.to_string()),
                        Err(e) => CoordinatorMessage::NoModule(e.to_string()),
                    };
                    send.write(&reply).await.map_err(lost)?;
                }
                WorkerMessage::FetchModule(cid) => {
                    return Err(StreamError::Protocol(format!(
                        "the worker asked for module {cid}, which its task does not use"
                    )));
                }
                WorkerMessage::Report { report: envelope, output } => {
                    let report: ExecutionReport =
                        envelope.open().map_err(|e| StreamError::Protocol(format!("report refused: {e}")))?;
                    if envelope.signer != self.worker {
                        return Err(StreamError::Protocol(format!(
                            "report signed by {} on the connection of worker {}",
                            envelope.signer, self.worker
                        )));
                    }
                    if report.task != assignment.task || report.attempt != assignment.attempt {
                        return Err(StreamError::Protocol(format!(
                            "report for {} on the stream of {}",
                            report.task, assignment.task
                        )));
                    }
                    let budget =
                        self.shell.check_output(&report, &output).await.map_err(StreamError::Protocol)?;
                    let event = Event::Report {
                        worker: self.worker,
                        session: self.session,
                        envelope,
                        report: Box::new(report),
                        output,
                        budget,
                    };
                    let _ = self.shell.events.send(event).await;
                    let _ = send.get_mut().finish();
                    return Ok(());
                }
                WorkerMessage::Progress { stderr, skipped } => {
                    if stderr.len() > PROGRESS_STDERR_BYTES_MAX {
                        return Err(StreamError::Protocol(format!(
                            "progress of {} bytes of stderr; at most {PROGRESS_STDERR_BYTES_MAX} are accepted",
                            stderr.len()
                        )));
                    }
                    let run = (assignment.task, assignment.attempt);
                    self.shell.api.live().append(run, self.worker, skipped, &stderr);
                }
                WorkerMessage::Heartbeat { .. } | WorkerMessage::Drain => {
                    return Err(StreamError::Protocol("a control message on a task stream".into()));
                }
            }
        }
    }
}
