//! The coordinator's IO shell: QUIC for workers and members, the journal on disk, and
//! one thread that owns the [`Core`].
//!
//! The core thread takes every event waiting in its channel as one batch, feeds them to
//! the core, appends the resulting journal entries in one transaction (group commit:
//! one fsync for the whole batch), and only then answers members and dispatches tasks.
//! Signature checks happen in the connection tasks, in parallel, before events reach
//! the core.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use icn_protocol::wire::{
    Answer, Assignment, Capacity, ClientRequest, ClientResponse, CoordinatorMessage, ExecutionReport,
    JobState, JobView, MESSAGE_SIZE_BYTES_MAX, Role, Submission, WorkerMessage,
};
use icn_protocol::{Envelope, JobId, Keypair, PublicKey, Seal, TaskId};
use icn_transport::endpoint as transport;
use icn_transport::{FrameReader, FrameWriter};
use quinn::{Connection, Endpoint, RecvStream, SendStream};

/// The halves of a framed QUIC stream.
type Outgoing = FrameWriter<SendStream>;
type Incoming = FrameReader<RecvStream>;
use tokio::sync::{mpsc, oneshot, watch};

use icn_governance::Genesis;
use icn_protocol::ContentId;
use icn_protocol::governance::{Ballot, ClearRequest, Proposal};
use icn_protocol::wire::TraceQuery;

use icn_core::store::JournalStore;
use icn_core::{Command, Core, CoreConfig, Now, Refusal};

use crate::journal::Journal;
use crate::modules::ModuleStore;

pub const HELLO_TIMEOUT_MS: u64 = 5_000;
pub const TICK_INTERVAL_MS: u64 = 100;
/// Events the core thread takes into one batch (and one journal commit) at most.
pub const BATCH_EVENTS_MAX: usize = 4_096;
/// Heartbeat frames are small; anything larger on the control stream is refused.
const CONTROL_FRAME_BYTES_MAX: usize = 64 * 1024;

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
}

enum Event {
    WorkerHello {
        worker: PublicKey,
        session: u64,
        capacity: Capacity,
        running: Vec<(TaskId, u32)>,
        commands: mpsc::UnboundedSender<WorkerCommand>,
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
    Report {
        worker: PublicKey,
        session: u64,
        envelope: Envelope,
        report: ExecutionReport,
    },
    MemberHello {
        member: PublicKey,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Submit {
        envelope: Envelope,
        submission: Submission,
        reply: oneshot::Sender<Result<JobId, Refusal>>,
    },
    Status {
        job: JobId,
        reply: oneshot::Sender<Option<JobView>>,
    },
    Propose {
        envelope: Envelope,
        proposal: Proposal,
        reply: oneshot::Sender<Result<(ContentId, u64), Refusal>>,
    },
    Vote {
        envelope: Envelope,
        ballot: Ballot,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Governance {
        reply: oneshot::Sender<String>,
    },
    Positions {
        reply: oneshot::Sender<String>,
    },
    WorkersView {
        reply: oneshot::Sender<String>,
    },
    Clear {
        envelope: Envelope,
        request: ClearRequest,
        reply: oneshot::Sender<Result<String, Refusal>>,
    },
    Watch {
        job: JobId,
        updates: mpsc::UnboundedSender<JobView>,
    },
    Workers {
        reply: oneshot::Sender<Vec<ConnectedWorker>>,
    },
    Tick,
    Stop,
}

enum WorkerCommand {
    Assign(Box<Assignment>, Seal),
    Close(String),
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
    key: PublicKey,
    events: mpsc::UnboundedSender<Event>,
    endpoint: Endpoint,
    /// Resolves with the core thread's result when it stops.
    core_done: oneshot::Receiver<anyhow::Result<()>>,
    core_finished: bool,
}

impl Coordinator {
    /// Opens the journal, rebuilds the state it records, and starts serving.
    pub async fn start(key: Arc<Keypair>, config: CoordinatorConfig) -> anyhow::Result<Coordinator> {
        let refused = |e: crate::journal::JournalError| {
            anyhow::anyhow!(
                "{e}\nThe coordinator starts only from a journal that verifies; `icn journal verify --journal {}` \
                 shows what is wrong.",
                config.journal.display()
            )
        };
        let mut journal = Journal::open(&config.journal, key.public())?;
        let mut core = Core::new(key.clone(), config.core.clone());
        let loaded = journal.load(|chunk| Ok(core.replay(chunk)?)).map_err(refused)?;
        journal.check_anchor(&loaded, config.accept_journal_end).map_err(refused)?;
        let clock = Clock::start();
        core.resume(clock.now());
        core.found(clock.now(), &config.genesis)?;
        journal.append(&core.take_entries())?;
        // Nothing is connected yet, so recovery commands have no one to go to.
        let _ = core.take_commands();
        tracing::info!(entries = loaded.entries, "journal replayed");
        let sealed = journal.seal_at(core.journal_len() - 1)?.expect("the journal ends sealed");
        let modules = Arc::new(ModuleStore::open(&config.journal)?);
        let endpoint = transport::server_endpoint(config.listen)?;
        let addr = endpoint.local_addr()?;
        let (events, receiver) = mpsc::unbounded_channel();
        let (done, core_done) = oneshot::channel();
        let (seals, seal) = watch::channel(sealed);
        std::thread::Builder::new().name("icn-core".into()).spawn(move || {
            let run = || core_loop(core, journal, receiver, seals, clock);
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the core thread panicked")));
            let _ = done.send(result);
        })?;
        let shell = Shell {
            key: key.clone(),
            events: events.clone(),
            modules,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            journal: config.journal.clone(),
            seal,
        };
        tokio::spawn(accept_loop(endpoint.clone(), shell));
        let ticker = events.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(TICK_INTERVAL_MS));
            loop {
                interval.tick().await;
                if ticker.send(Event::Tick).is_err() {
                    return;
                }
            }
        });
        Ok(Coordinator { addr, key: key.public(), events, endpoint, core_done, core_finished: false })
    }

    /// The workers connected now.
    pub async fn workers(&self) -> anyhow::Result<Vec<ConnectedWorker>> {
        let (reply, answer) = oneshot::channel();
        self.events.send(Event::Workers { reply }).map_err(|_| anyhow::anyhow!("the coordinator stopped"))?;
        Ok(answer.await?)
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
        let _ = self.events.send(Event::Stop);
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
        let _ = self.events.send(Event::Stop);
        self.endpoint.close(0u32.into(), b"coordinator dropped");
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

/// A reply held back until the batch it belongs to is durable.
type Reply = Box<dyn FnOnce()>;

fn later<T: 'static>(to: oneshot::Sender<T>, value: T) -> Reply {
    Box::new(move || drop(to.send(value)))
}

struct CoreShell {
    core: Core,
    journal: Journal,
    workers: HashMap<PublicKey, (u64, mpsc::UnboundedSender<WorkerCommand>)>,
    watchers: HashMap<JobId, Vec<mpsc::UnboundedSender<JobView>>>,
    /// The latest seal committed: dispatches carry it.
    seal: Seal,
}

fn core_loop(
    core: Core,
    journal: Journal,
    mut receiver: mpsc::UnboundedReceiver<Event>,
    seals: watch::Sender<Seal>,
    clock: Clock,
) -> anyhow::Result<()> {
    let seal = *seals.borrow();
    let mut shell = CoreShell { core, journal, workers: HashMap::new(), watchers: HashMap::new(), seal };
    let mut batch = Vec::with_capacity(BATCH_EVENTS_MAX);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH_EVENTS_MAX {
            match receiver.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let now = clock.now();
        let mut replies = Vec::new();
        let mut stop = false;
        for event in batch.drain(..) {
            stop |= shell.handle(now, event, &mut replies);
        }
        let entries = shell.core.take_entries();
        if let Err(e) = shell.journal.append(&entries) {
            // Nothing of this batch was acknowledged or dispatched; stopping here loses
            // nothing a member or worker was told about.
            tracing::error!(error = %e, "cannot write the journal; stopping");
            return Err(anyhow::anyhow!("cannot write the journal: {e}"));
        }
        if let Some(sealed) = entries.last().and_then(|e| e.sealed()) {
            shell.seal = sealed;
            seals.send_replace(sealed);
        }
        for reply in replies {
            reply();
        }
        for command in shell.core.take_commands() {
            shell.carry_out(command);
        }
        if stop {
            return Ok(());
        }
    }
    Ok(())
}

impl CoreShell {
    fn handle(&mut self, now: Now, event: Event, replies: &mut Vec<Reply>) -> bool {
        match event {
            Event::WorkerHello { worker, session, capacity, running, commands, reply } => {
                let result = self.core.worker_connected(now, worker, session, capacity, &running);
                if result.is_ok() {
                    self.workers.insert(worker, (session, commands));
                }
                replies.push(later(reply, result));
            }
            Event::WorkerGone { worker, session, reason } => {
                if self.workers.get(&worker).is_some_and(|(s, _)| *s == session) {
                    self.workers.remove(&worker);
                }
                self.core.worker_disconnected(now, worker, session, reason);
            }
            Event::Heartbeat { worker, session, running } => {
                self.core.heartbeat(now, worker, session, &running)
            }
            Event::Report { worker, session, envelope, report } => {
                self.core.report(now, worker, session, envelope, report)
            }
            Event::MemberHello { member, reply } => {
                let result = if self.core.is_member(&member) {
                    Ok(())
                } else {
                    Err(Refusal::Governance(icn_governance::Refusal::NotAMember { key: member }))
                };
                replies.push(later(reply, result));
            }
            Event::Submit { envelope, submission, reply } => {
                let result = self.core.submit(now, envelope, submission);
                replies.push(later(reply, result));
            }
            Event::Status { job, reply } => replies.push(later(reply, self.core.job(&job))),
            Event::Propose { envelope, proposal, reply } => {
                let result = self.core.propose(now, envelope, proposal);
                replies.push(later(reply, result));
            }
            Event::Vote { envelope, ballot, reply } => {
                let result = self.core.vote(now, envelope, ballot);
                replies.push(later(reply, result));
            }
            Event::WorkersView { reply } => {
                let json = serde_json::to_string(&self.core.workers_view()).expect("workers encode as JSON");
                replies.push(later(reply, json));
            }
            Event::Positions { reply } => {
                let json =
                    serde_json::to_string(&self.core.ledger().positions()).expect("positions encode as JSON");
                replies.push(later(reply, json));
            }
            Event::Clear { envelope, request, reply } => {
                let result = self
                    .core
                    .clear(now, envelope, request)
                    .map(|clearing| serde_json::to_string(&clearing).expect("a clearing encodes as JSON"));
                replies.push(later(reply, result));
            }
            Event::Governance { reply } => {
                let json = serde_json::to_string(self.core.governance()).expect("governance encodes as JSON");
                replies.push(later(reply, json));
            }
            Event::Watch { job, updates } => match self.core.job(&job) {
                Some(view) => {
                    // Like every answer, the first view waits for this batch to be durable:
                    // a member never hears of a state the journal could still lose.
                    if !ends_watch(&view.state) {
                        self.watchers.entry(job).or_default().push(updates.clone());
                    }
                    replies.push(Box::new(move || drop(updates.send(view))));
                }
                None => drop(updates),
            },
            Event::Workers { reply } => {
                let workers = self
                    .core
                    .connected_workers()
                    .map(|(key, owner, free_slots)| ConnectedWorker {
                        key: *key,
                        owner: owner.to_string(),
                        free_slots,
                    })
                    .collect();
                let _ = reply.send(workers);
            }
            Event::Tick => self.core.tick(now),
            Event::Stop => return true,
        }
        false
    }

    fn carry_out(&mut self, command: Command) {
        match command {
            Command::Dispatch { worker, session, assignment } => {
                if let Some((s, commands)) = self.workers.get(&worker)
                    && *s == session
                {
                    let _ = commands.send(WorkerCommand::Assign(Box::new(assignment), self.seal));
                }
            }
            Command::Disconnect { worker, session, reason } => {
                if let Some((s, commands)) = self.workers.get(&worker)
                    && *s == session
                {
                    let _ = commands.send(WorkerCommand::Close(reason));
                    self.workers.remove(&worker);
                }
            }
            Command::JobChanged(job) => {
                let Some(view) = self.core.job(&job) else { return };
                let ended = ends_watch(&view.state);
                if let Some(watchers) = self.watchers.get_mut(&job) {
                    watchers.retain(|w| w.send(view.clone()).is_ok());
                    if ended || watchers.is_empty() {
                        self.watchers.remove(&job);
                    }
                }
            }
        }
    }
}

pub fn is_final(state: &JobState) -> bool {
    matches!(state, JobState::Completed | JobState::Failed)
}

/// Where a member following a job stops: the job ended, or it waits on a decision of the
/// commons that may take days.
pub fn ends_watch(state: &JobState) -> bool {
    is_final(state) || matches!(state, JobState::Disputed)
}

#[derive(Clone)]
struct Shell {
    key: Arc<Keypair>,
    events: mpsc::UnboundedSender<Event>,
    modules: Arc<ModuleStore>,
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
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let event = match (hello.role, hello.capacity) {
            (Role::Worker, Some(capacity)) => {
                let running = hello.running;
                Event::WorkerHello { worker: peer, session, capacity, running, commands, reply }
            }
            _ => Event::MemberHello { member: peer, reply },
        };
        self.events.send(event).map_err(|_| anyhow::anyhow!("the coordinator is stopping"))?;
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
        mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
    ) -> anyhow::Result<()> {
        tracing::info!(worker = %worker.short(), remote = %connection.remote_address(), "worker joined");
        let heartbeats = async {
            loop {
                match control.read::<WorkerMessage>(CONTROL_FRAME_BYTES_MAX).await {
                    Ok(Some(WorkerMessage::Heartbeat { running, .. })) => {
                        let _ = self.events.send(Event::Heartbeat { worker, session, running });
                    }
                    Ok(Some(other)) => return format!("unexpected message on the control stream: {other:?}"),
                    Ok(None) => return "the worker closed its control stream".to_string(),
                    Err(e) => return e.to_string(),
                }
            }
        };
        let dispatch = async {
            while let Some(command) = commands.recv().await {
                match command {
                    WorkerCommand::Assign(assignment, seal) => {
                        let task = TaskStream {
                            shell: self.clone(),
                            connection: connection.clone(),
                            worker,
                            session,
                        };
                        tokio::spawn(task.run(*assignment, seal));
                    }
                    WorkerCommand::Close(reason) => {
                        connection.close(2u32.into(), reason.as_bytes());
                        return reason;
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
        let _ = self.events.send(Event::WorkerGone { worker, session, reason });
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
        let WorkerMessage::Report(envelope) = message else {
            return Err(format!("a worker's own stream carries a report, not {message:?}"));
        };
        let report: ExecutionReport = envelope.open().map_err(|e| format!("report refused: {e}"))?;
        if envelope.signer != worker {
            return Err(format!("report signed by {} on the connection of worker {worker}", envelope.signer));
        }
        let _ = self.events.send(Event::Report { worker, session, envelope, report });
        let _ = send.get_mut().finish();
        Ok(())
    }

    async fn serve_member(&self, connection: Connection, member: PublicKey) -> anyhow::Result<()> {
        loop {
            let (send, recv) = transport::accept(&connection).await?;
            let shell = self.clone();
            tokio::spawn(async move {
                if let Err(e) = shell.answer(member, send, recv).await {
                    tracing::debug!(error = %e, "member request failed");
                }
            });
        }
    }

    /// A frame for the member: the response and the latest seal. Sent only after the
    /// batch that answers it is durable, so the seal covers what the response says.
    fn answer_frame(&self, response: ClientResponse) -> Answer {
        Answer { seal: *self.seal.borrow(), response }
    }

    async fn answer(&self, member: PublicKey, mut send: Outgoing, mut recv: Incoming) -> anyhow::Result<()> {
        let request = match recv.read::<ClientRequest>(MESSAGE_SIZE_BYTES_MAX).await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(e) => {
                let answer = self.answer_frame(ClientResponse::Error(format!("bad request: {e}")));
                send.write(&answer).await?;
                let _ = send.get_mut().finish();
                return Ok(());
            }
        };
        if let ClientRequest::Watch(job) = request {
            return self.watch(job, send).await;
        }
        let response = match relayed(&request, &member) {
            Some(refusal) => refusal,
            None => self.respond(request).await,
        };
        send.write(&self.answer_frame(response)).await?;
        let _ = send.get_mut().finish();
        let _ = send.get_mut().stopped().await;
        Ok(())
    }

    async fn respond(&self, request: ClientRequest) -> ClientResponse {
        let modules = self.modules.clone();
        match request {
            ClientRequest::HasModule(cid) => {
                match tokio::task::spawn_blocking(move || modules.contains(&cid)).await {
                    Ok(Ok(found)) => ClientResponse::HasModule(found),
                    Ok(Err(e)) => ClientResponse::Error(e.to_string()),
                    Err(e) => ClientResponse::Error(e.to_string()),
                }
            }
            ClientRequest::PutModule(bytes) => {
                match tokio::task::spawn_blocking(move || modules.put(bytes)).await {
                    Ok(Ok(cid)) => ClientResponse::ModuleStored(cid),
                    Ok(Err(reason)) => ClientResponse::Error(reason),
                    Err(e) => ClientResponse::Error(e.to_string()),
                }
            }
            ClientRequest::Submit(envelope) => self.submit(envelope).await,
            ClientRequest::Status(job) => {
                let (reply, answer) = oneshot::channel();
                if self.events.send(Event::Status { job, reply }).is_err() {
                    return ClientResponse::Error("the coordinator is stopping".into());
                }
                match answer.await {
                    Ok(Some(view)) => ClientResponse::Job(Box::new(view)),
                    _ => ClientResponse::Error(format!("no job {job} is known to this coordinator")),
                }
            }
            ClientRequest::Watch(_) => unreachable!("watch requests are answered by watch()"),
            ClientRequest::Propose(envelope) => {
                let proposal: Proposal = match envelope.open() {
                    Ok(proposal) => proposal,
                    Err(e) => return ClientResponse::Error(format!("proposal refused: {e}")),
                };
                match self
                    .ask(|reply| Event::Propose { envelope, proposal, reply }, "the coordinator stopped")
                    .await
                {
                    Ok(Ok((proposal, closes_ms))) => ClientResponse::Proposed { proposal, closes_ms },
                    Ok(Err(reason)) => ClientResponse::Error(format!("proposal refused: {reason}")),
                    Err(stopped) => stopped,
                }
            }
            ClientRequest::Vote(envelope) => {
                let ballot: Ballot = match envelope.open() {
                    Ok(ballot) => ballot,
                    Err(e) => return ClientResponse::Error(format!("ballot refused: {e}")),
                };
                let proposal = ballot.proposal;
                match self
                    .ask(|reply| Event::Vote { envelope, ballot, reply }, "the coordinator stopped")
                    .await
                {
                    Ok(Ok(())) => ClientResponse::Voted { proposal },
                    Ok(Err(reason)) => ClientResponse::Error(format!("ballot refused: {reason}")),
                    Err(stopped) => stopped,
                }
            }
            ClientRequest::Governance => self.json_from_core(|reply| Event::Governance { reply }).await,
            ClientRequest::Positions => self.json_from_core(|reply| Event::Positions { reply }).await,
            ClientRequest::Workers => self.json_from_core(|reply| Event::WorkersView { reply }).await,
            ClientRequest::Trace(query) => {
                self.json_from_journal(move |provenance| match query {
                    TraceQuery::Job(job) => Ok(serde_json::to_string(&provenance.job(&job)?)),
                    TraceQuery::Decision(seq) => Ok(serde_json::to_string(&provenance.decision(seq)?)),
                })
                .await
            }
            ClientRequest::Statement(scope) => {
                self.json_from_journal(move |provenance| {
                    Ok(serde_json::to_string(&provenance.statement(&scope)?))
                })
                .await
            }
            ClientRequest::Clear(envelope) => {
                let request: ClearRequest = match envelope.open() {
                    Ok(request) => request,
                    Err(e) => return ClientResponse::Error(format!("clearing refused: {e}")),
                };
                match self
                    .ask(|reply| Event::Clear { envelope, request, reply }, "the coordinator stopped")
                    .await
                {
                    Ok(Ok(json)) => ClientResponse::Json(json),
                    Ok(Err(reason)) => ClientResponse::Error(format!("clearing refused: {reason}")),
                    Err(stopped) => stopped,
                }
            }
        }
    }

    /// Sends an event to the core thread and waits for its answer; the error is the
    /// answer for the member when the core is stopping, or stopped (`stopped`) first.
    async fn ask<T>(
        &self,
        event: impl FnOnce(oneshot::Sender<T>) -> Event,
        stopped: &str,
    ) -> Result<T, ClientResponse> {
        let (reply, answer) = oneshot::channel();
        if self.events.send(event(reply)).is_err() {
            return Err(ClientResponse::Error("the coordinator is stopping".into()));
        }
        answer.await.map_err(|_| ClientResponse::Error(stopped.into()))
    }

    /// A JSON document the core thread writes.
    async fn json_from_core(&self, event: impl FnOnce(oneshot::Sender<String>) -> Event) -> ClientResponse {
        self.ask(event, "the coordinator stopped").await.map_or_else(|stopped| stopped, ClientResponse::Json)
    }

    /// A JSON document read from the journal file itself: the journal is the record.
    async fn json_from_journal(
        &self,
        build: impl FnOnce(&icn_core::trace::Provenance) -> Result<serde_json::Result<String>, String>
        + Send
        + 'static,
    ) -> ClientResponse {
        let path = self.journal.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let entries = crate::journal::read(&path).map_err(|e| e.to_string())?;
            let provenance = icn_core::trace::Provenance::new(entries).map_err(|bad| bad.to_string())?;
            build(&provenance)?.map_err(|e| e.to_string())
        })
        .await;
        match built {
            Ok(Ok(json)) => ClientResponse::Json(json),
            Ok(Err(reason)) => ClientResponse::Error(reason),
            Err(e) => ClientResponse::Error(e.to_string()),
        }
    }

    async fn submit(&self, envelope: Envelope) -> ClientResponse {
        let submission: Submission = match envelope.open() {
            Ok(submission) => submission,
            Err(e) => return ClientResponse::Error(format!("submission refused: {e}")),
        };
        if let Err(e) = submission.validate() {
            return ClientResponse::Error(format!("submission refused: {e}"));
        }
        let modules = self.modules.clone();
        let module = submission.module;
        match tokio::task::spawn_blocking(move || modules.contains(&module)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return ClientResponse::Error(format!(
                    "submission refused: module {module} is not stored here; upload it first"
                ));
            }
            Ok(Err(e)) => return ClientResponse::Error(e.to_string()),
            Err(e) => return ClientResponse::Error(e.to_string()),
        }
        let stopped = "the coordinator stopped before the job was recorded";
        match self.ask(|reply| Event::Submit { envelope, submission, reply }, stopped).await {
            Ok(Ok(job)) => ClientResponse::Submitted(job),
            Ok(Err(reason)) => ClientResponse::Error(format!("submission refused: {reason}")),
            Err(stopped) => stopped,
        }
    }

    async fn watch(&self, job: JobId, mut send: Outgoing) -> anyhow::Result<()> {
        let (updates, mut receiver) = mpsc::unbounded_channel();
        self.events.send(Event::Watch { job, updates }).map_err(|_| anyhow::anyhow!("stopping"))?;
        let mut sent_any = false;
        while let Some(view) = receiver.recv().await {
            sent_any = true;
            let ended = ends_watch(&view.state);
            send.write(&self.answer_frame(ClientResponse::Job(Box::new(view)))).await?;
            if ended {
                break;
            }
        }
        if !sent_any {
            let unknown = ClientResponse::Error(format!("no job {job} is known to this coordinator"));
            send.write(&self.answer_frame(unknown)).await?;
        }
        let _ = send.get_mut().finish();
        let _ = send.get_mut().stopped().await;
        Ok(())
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
    async fn run(self, assignment: Assignment, seal: Seal) {
        if let Err(reason) = self.exchange(&assignment, seal).await {
            // The connection's own loss is handled by the worker's connection task; a
            // worker that breaks the protocol is disconnected, which requeues its tasks.
            tracing::warn!(worker = %self.worker.short(), task = %assignment.task, %reason, "task stream failed");
            if reason.starts_with("protocol:") {
                self.connection.close(3u32.into(), reason.as_bytes());
            }
        }
    }

    async fn exchange(&self, assignment: &Assignment, seal: Seal) -> Result<(), String> {
        let (mut send, mut recv) = transport::open(&self.connection).await.map_err(|e| e.to_string())?;
        send.write(&CoordinatorMessage::Assign { assignment: Box::new(assignment.clone()), seal })
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let message = recv
                .read::<WorkerMessage>(MESSAGE_SIZE_BYTES_MAX)
                .await
                .map_err(|e| format!("protocol: {e}"))?
                .ok_or("the worker closed the task stream without a report")?;
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
                    send.write(&reply).await.map_err(|e| e.to_string())?;
                }
                WorkerMessage::FetchModule(cid) => {
                    return Err(format!(
                        "protocol: the worker asked for module {cid}, which its task does not use"
                    ));
                }
                WorkerMessage::Report(envelope) => {
                    let report: ExecutionReport =
                        envelope.open().map_err(|e| format!("protocol: report refused: {e}"))?;
                    if envelope.signer != self.worker {
                        return Err(format!(
                            "protocol: report signed by {} on the connection of worker {}",
                            envelope.signer, self.worker
                        ));
                    }
                    if report.task != assignment.task || report.attempt != assignment.attempt {
                        return Err(format!(
                            "protocol: report for {} on the stream of {}",
                            report.task, assignment.task
                        ));
                    }
                    let event =
                        Event::Report { worker: self.worker, session: self.session, envelope, report };
                    let _ = self.shell.events.send(event);
                    let _ = send.get_mut().finish();
                    return Ok(());
                }
                WorkerMessage::Heartbeat { .. } => {
                    return Err("protocol: a heartbeat on a task stream".into());
                }
            }
        }
    }
}

/// A member's connection carries only statements the member signed: a signed envelope
/// is evidence of who asked, and a connection relaying another member's envelopes could
/// replay them. The refusal, when `request` carries someone else's.
fn relayed(request: &ClientRequest, member: &PublicKey) -> Option<ClientResponse> {
    let envelope = match request {
        ClientRequest::Submit(e)
        | ClientRequest::Propose(e)
        | ClientRequest::Vote(e)
        | ClientRequest::Clear(e) => e,
        _ => return None,
    };
    (envelope.signer != *member).then(|| {
        ClientResponse::Error(format!(
            "refused: this connection is member {}'s and cannot carry a statement signed by {}; each member sends \
             their own",
            member.short(),
            envelope.signer.short()
        ))
    })
}
