//! One run: a coordinator's core and driver over an in-memory journal, workers, members
//! and a network, all simulated, all drawn from one seed. Events wait in one queue
//! ordered by simulated time (ties by the order they were made), so a seed gives the same
//! run, and the same journal byte for byte, every time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use icn_core::store::{JournalStore, MemoryError, MemoryJournal, Payload};
use icn_core::{Command, Core, CoreConfig, Driver, Entry, IndexRow, Now};
use icn_governance::Genesis;
use icn_governance::genesis::{GenesisMember, GenesisScope, GenesisWorker};
use icn_protocol::governance::{
    Ballot, Choice, ClearRequest, Credits, Effect, Mandate, PlacementPolicy, PriceSchedule, Proposal, Rule,
    ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::{
    Assignment, Cancel, Capacity, ExecutionReport, ExecutorKind, FailureKind, JobState, Limits,
    Outcome as RunOutcome, Submission,
};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, Keypair, TaskId};

use crate::check::{Fold, Invariant, Violation};
use crate::{Adversary, Config};

/// Simulated time starts here (wall ms), so records carry plausible times.
const EPOCH_MS: u64 = 1_800_000_000_000;
const HEARTBEAT_MS: u64 = 1_000;
/// How long a dead connection takes to be noticed (QUIC's idle timeout).
const IDLE_TIMEOUT_MS: u64 = 3_000;
const WORKER_TIMEOUT_MS: u64 = 5_000;
/// A job without an accepted result this long after submission fails.
const JOB_EXPIRY_MS: u64 = 120_000;
const TASK_TIMEOUT_MS: u64 = 10_000;
const TRAIL_MAX: usize = 400;

/// What one run found.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub violation: Option<Violation>,
    /// The run's last steps, for a failing seed.
    pub trail: Vec<String>,
    pub stats: Stats,
    /// blake3 over every entry's hash, in order: equal runs have equal journals.
    pub journal_digest: [u8; 32],
    pub journal_entries: u64,
}

impl Outcome {
    /// A run that panicked: the core (or the simulation) broke an assertion.
    pub fn panicked(seed: u64, detail: String) -> Outcome {
        let violation = Violation { invariant: Invariant::NoPanic, at_ms: 0, detail };
        Outcome {
            seed,
            violation: Some(violation),
            trail: vec!["(the run panicked: replay the seed alone to see its steps)".into()],
            stats: Stats::default(),
            journal_digest: [0; 32],
            journal_entries: 0,
        }
    }
}

/// What a run measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub submitted: u64,
    pub accepted: u64,
    /// Accepted results whose output or fuel differs from an honest run's.
    pub wrong_accepted: u64,
    pub replicas_placed: u64,
    /// Replicas placed for the jobs whose result was accepted, per accepted result.
    pub replicas_per_accepted: f64,
    pub crashes: u64,
    pub steps: u64,
}

/// How a simulated worker behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    Honest,
    /// Runs take five times as long.
    Slow,
    /// Crashes now and then, losing what it ran, and comes back.
    Crashing,
    /// Its connection drops now and then; it keeps running and reconnects.
    Flapping,
    Adversary(Adversary),
}

struct SimWorker {
    key: Keypair,
    owner: ScopeId,
    behaviour: Behaviour,
    /// The session it is connected on, if any.
    session: Option<u64>,
    /// Cut off from the coordinator until then.
    cut_until: u64,
    /// Down (crashed) until then.
    down_until: u64,
    /// Runs in progress: their assignment.
    running: BTreeMap<(TaskId, u32), Assignment>,
    /// Reports not yet acknowledged: sent again on every new connection.
    outbox: BTreeMap<(TaskId, u32), (Envelope, ExecutionReport)>,
    /// Tasks it has finished.
    done: u32,
    nonce: u64,
}

/// Boxed in the event queue ([`Ev::ToCore`]), so its largest variant costs the queue nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum ToCore {
    Hello {
        session: u64,
        running: Vec<(TaskId, u32)>,
    },
    Beat {
        session: u64,
        running: Vec<(TaskId, u32)>,
    },
    Report {
        session: u64,
        envelope: Envelope,
        report: ExecutionReport,
    },
    /// The coordinator notices the connection died.
    Gone {
        session: u64,
    },
}

#[derive(Clone, Debug)]
enum Ev {
    Member(usize),
    /// A worker's heartbeat on one session; the chain ends with the session.
    Beat(usize, u64),
    Finish(usize, TaskId, u32),
    ToCore(usize, Box<ToCore>),
    ToWorker(usize, u64, Command),
    Connect(usize),
    Wake,
    CrashCoordinator,
    StartCoordinator,
    Cut(usize),
    CrashWorker(usize),
    FaultsEnd,
}

/// The in-memory journal, with faults: an append can fail whole, or tear, leaving the
/// batch's entries before its sealed last one.
#[derive(Clone, Default)]
pub struct SimStore {
    pub journal: MemoryJournal,
    fail_next: Option<bool>,
    /// An append failed: the coordinator is to stop.
    failed: bool,
}

impl JournalStore for SimStore {
    type Error = MemoryError;

    fn append(
        &mut self,
        entries: &[Entry],
        index: &[IndexRow],
        payloads: &[Payload],
    ) -> Result<(), MemoryError> {
        match self.fail_next.take() {
            None => self.journal.append(entries, index, payloads),
            Some(torn) => {
                self.failed = true;
                if torn && entries.len() > 1 {
                    let kept = &entries[..entries.len() - 1];
                    let last = kept.last().map_or(0, |e| e.seq);
                    let rows: Vec<IndexRow> = index.iter().filter(|r| r.seq <= last).cloned().collect();
                    self.journal.append(kept, &rows, &[])?;
                }
                Err(MemoryError::new("the simulated disk failed mid-append"))
            }
        }
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Entry>, MemoryError> {
        self.journal.read(from, limit)
    }

    fn len(&self) -> Result<u64, MemoryError> {
        self.journal.len()
    }
}

/// What a member is told by a step, once it is durable.
enum Ack {
    Submitted(JobId),
    Proposed(ContentId),
    Nothing,
}

pub(crate) struct World {
    config: Config,
    rng: fastrand::Rng,
    now: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    made: u64,
    coordinator: Arc<Keypair>,
    genesis: Genesis,
    core_config: CoreConfig,
    driver: Option<Driver<SimStore>>,
    /// The store while the coordinator is down.
    resting: Option<SimStore>,
    workers: Vec<SimWorker>,
    members: Vec<Arc<Keypair>>,
    sessions: u64,
    nonce: u64,
    faults_on: bool,
    wake_at: Option<u64>,
    fold: Fold,
    /// Jobs and proposals members were told of.
    acked_jobs: BTreeSet<JobId>,
    open_proposals: Vec<ContentId>,
    stats: Stats,
    trail: VecDeque<String>,
}

fn scope(name: &str) -> ScopeId {
    name.parse().expect("a valid scope name")
}

/// What an honest run of `job` reports: the same on every worker.
fn honest(job: &JobId) -> (ContentId, Fuel) {
    let mut bytes = job.0.0.to_vec();
    bytes.extend_from_slice(b"honest");
    (ContentId::of(&bytes), Fuel(1_000_000 + u64::from(job.0.0[0]) * 100_000))
}

/// Whether spot checks would leave a trusted worker alone on `job`, as anyone who knows
/// how the coordinator draws them can compute from the job's id.
pub fn drawn_alone(job: &JobId, spot_check: f64) -> bool {
    let bytes: [u8; 8] = job.0.0[..8].try_into().expect("an id has eight bytes");
    let draw = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    draw >= spot_check
}

impl World {
    pub fn new(seed: u64, config: &Config) -> World {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut seed_bytes = |tag: u8| {
            let mut bytes = [tag; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            bytes[8] = rng.u8(..);
            bytes
        };
        let coordinator = Arc::new(Keypair::from_seed(seed_bytes(1)));
        let members: Vec<Arc<Keypair>> =
            (0..4).map(|i| Arc::new(Keypair::from_seed(seed_bytes(10 + i)))).collect();
        let adversaries = (config.workers as f64 * config.adversarial_share).round() as usize;
        let workers: Vec<SimWorker> = (0..config.workers)
            .map(|i| {
                let behaviour = match (i < adversaries, config.adversary) {
                    (true, Some(adversary)) => Behaviour::Adversary(adversary),
                    _ if config.faults => match i % 5 {
                        1 => Behaviour::Slow,
                        2 => Behaviour::Crashing,
                        3 => Behaviour::Flapping,
                        _ => Behaviour::Honest,
                    },
                    _ => Behaviour::Honest,
                };
                SimWorker {
                    key: Keypair::from_seed(seed_bytes(100 + i as u8)),
                    owner: scope(&format!("coop-{i}")),
                    behaviour,
                    session: None,
                    cut_until: 0,
                    down_until: 0,
                    running: BTreeMap::new(),
                    outbox: BTreeMap::new(),
                    done: 0,
                    nonce: 0,
                }
            })
            .collect();
        let genesis = genesis(config, &members, &workers);
        let core_config = CoreConfig {
            worker_timeout_ms: WORKER_TIMEOUT_MS,
            job_expiry_ms: JOB_EXPIRY_MS,
            retry_backoff_ms: 500,
            retry_backoff_max_ms: 8_000,
            ..CoreConfig::default()
        };
        let mut world = World {
            config: config.clone(),
            rng,
            now: 0,
            queue: BTreeMap::new(),
            made: 0,
            coordinator,
            genesis,
            core_config,
            driver: None,
            resting: Some(SimStore::default()),
            workers,
            members,
            sessions: 0,
            nonce: 0,
            faults_on: config.faults,
            wake_at: None,
            fold: Fold::default(),
            acked_jobs: BTreeSet::new(),
            open_proposals: Vec::new(),
            stats: Stats::default(),
            trail: VecDeque::new(),
        };
        world.at(0, Ev::StartCoordinator);
        for i in 0..world.members.len() {
            let first = world.rng.u64(100..1_000);
            world.at(first, Ev::Member(i));
        }
        for i in 0..world.workers.len() {
            let first = world.rng.u64(10..500);
            world.at(first, Ev::Connect(i));
        }
        world.at(config.active_ms, Ev::FaultsEnd);
        world
    }

    fn at(&mut self, after_ms: u64, ev: Ev) {
        self.made += 1;
        self.queue.insert((self.now + after_ms, self.made), ev);
    }

    fn now(&self) -> Now {
        Now::at(EPOCH_MS + self.now)
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.trail.len() == TRAIL_MAX {
            self.trail.pop_front();
        }
        let line = line();
        self.trail.push_back(format!("{:>8} ms  {line}", self.now));
    }

    fn violation(&self, invariant: Invariant, detail: String) -> Violation {
        Violation { invariant, at_ms: self.now, detail }
    }

    /// Runs until the queue is empty or an invariant breaks.
    pub fn run(mut self, seed: u64) -> Outcome {
        let end = self.config.active_ms + JOB_EXPIRY_MS + 30_000;
        let mut violation = None;
        while let Some(((time, _), ev)) = self.queue.pop_first() {
            if time > end {
                break;
            }
            self.now = time;
            self.stats.steps += 1;
            if let Err(v) = self.handle(ev) {
                violation = Some(v);
                break;
            }
            // Once faults stopped and every job a member was told of ended, the run is done.
            if !self.faults_on
                && self.now >= self.config.active_ms
                && self.driver.is_some()
                && self.acked_jobs.iter().all(|job| self.fold.ended(job))
            {
                break;
            }
        }
        if violation.is_none() {
            violation = self.finish().err();
        }
        let store = self.driver.as_ref().map(|d| d.store()).or(self.resting.as_ref()).expect("a store");
        let mut digest = blake3::Hasher::new();
        for entry in &store.journal.entries {
            digest.update(&entry.hash);
        }
        self.stats.accepted = self.fold.accepted.len() as u64;
        self.stats.wrong_accepted =
            self.fold.accepted.iter().filter(|(job, output, fuel)| honest(job) != (*output, *fuel)).count()
                as u64;
        self.stats.replicas_placed = self.fold.placements;
        self.stats.replicas_per_accepted = self.fold.replicas_per_accepted();
        Outcome {
            seed,
            violation,
            trail: self.trail.into_iter().collect(),
            stats: self.stats,
            journal_digest: *digest.finalize().as_bytes(),
            journal_entries: store.journal.entries.len() as u64,
        }
    }

    /// After the run: every job ended, the chain verifies, a replay equals the live state.
    fn finish(&mut self) -> Result<(), Violation> {
        let Some(driver) = &self.driver else { return Ok(()) };
        let core = driver.core();
        for job in &self.acked_jobs {
            if let Some(view) = core.job(job)
                && !matches!(view.state, JobState::Completed | JobState::Failed | JobState::Cancelled)
            {
                let bound = JOB_EXPIRY_MS + 30_000;
                return Err(self.violation(
                    Invariant::JobsEnd,
                    format!("job {job} is {:?} {bound} ms after faults stopped", view.state),
                ));
            }
        }
        let entries = &driver.store().journal.entries;
        if let Some(bad) =
            icn_core::first_bad(entries, 0, icn_core::GENESIS_HASH, &self.coordinator.public(), None)
        {
            return Err(
                self.violation(Invariant::ChainVerifies, format!("entry {}: {}", bad.seq, bad.reason))
            );
        }
        let mut replayed = Core::new(self.coordinator.clone(), self.core_config.clone());
        self.plant(&mut replayed);
        replayed.replay(entries).map_err(|e| self.violation(Invariant::ChainVerifies, e.to_string()))?;
        if replayed.governance() != core.governance()
            || replayed.ledger() != core.ledger()
            || replayed.state() != core.state()
        {
            return Err(self.violation(Invariant::ReplayEqualsLive, "a replay of the journal differs".into()));
        }
        Ok(())
    }

    fn plant(&self, core: &mut Core) {
        for plant in &self.config.plants {
            assert!(core.plant(*plant), "planting needs icn-core's `plant` feature");
        }
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Violation> {
        match ev {
            Ev::StartCoordinator => self.start_coordinator(),
            Ev::CrashCoordinator => {
                self.crash_coordinator("crashes");
                Ok(())
            }
            Ev::Wake => {
                self.wake_at = None;
                let now = self.now();
                self.step(|core| {
                    core.tick(now);
                    Ack::Nothing
                })?;
                if let Some(driver) = &self.driver
                    && driver.core().next_wake().after(now) == Some(0)
                {
                    return Err(self.violation(
                        Invariant::WakesAfterWork,
                        format!(
                            "after a tick the core asks to run again at once: {:?}",
                            driver.core().next_wake()
                        ),
                    ));
                }
                Ok(())
            }
            Ev::Member(i) => self.member(i),
            Ev::Connect(w) => self.connect(w),
            Ev::Beat(w, session) => self.beat(w, session),
            Ev::Finish(w, task, attempt) => self.finish_run(w, task, attempt),
            Ev::ToCore(w, message) => self.at_coordinator(w, *message),
            Ev::ToWorker(w, session, command) => {
                self.at_worker(w, session, command);
                Ok(())
            }
            Ev::Cut(w) => {
                let ms = self.rng.u64(500..12_000);
                self.workers[w].cut_until = self.now + ms;
                self.log(|| format!("worker {w} cut off for {ms} ms"));
                if let Some(session) = self.workers[w].session {
                    self.at(IDLE_TIMEOUT_MS, Ev::ToCore(w, Box::new(ToCore::Gone { session })));
                }
                self.at(ms + 1, Ev::Connect(w));
                Ok(())
            }
            Ev::CrashWorker(w) => {
                let ms = self.rng.u64(1_000..8_000);
                let worker = &mut self.workers[w];
                worker.down_until = self.now + ms;
                worker.running.clear();
                worker.outbox.clear();
                if let Some(session) = worker.session.take() {
                    self.at(IDLE_TIMEOUT_MS, Ev::ToCore(w, Box::new(ToCore::Gone { session })));
                }
                self.log(|| format!("worker {w} crashes for {ms} ms, losing its runs"));
                self.at(ms + 1, Ev::Connect(w));
                Ok(())
            }
            Ev::FaultsEnd => {
                self.faults_on = false;
                self.log(|| "faults stop".into());
                Ok(())
            }
        }
    }

    // ---- the coordinator ---------------------------------------------------------

    fn start_coordinator(&mut self) -> Result<(), Violation> {
        let mut store = self.resting.take().expect("a coordinator starts from its resting store");
        if let Some(keep) = store.journal.entries.iter().rposition(|e| e.seal.is_some()) {
            // The operator's `icn journal truncate`: a torn batch was never acknowledged.
            store.journal.truncate(keep as u64 + 1);
        }
        store.failed = false;
        // A failure meant for a batch that never came goes with the process.
        store.fail_next = None;
        let mut core = Core::new(self.coordinator.clone(), self.core_config.clone());
        self.plant(&mut core);
        // Kept, so a journal the coordinator refuses can still be shown.
        self.resting = Some(store.clone());
        let driver = Driver::recover(core, store, self.now(), &self.genesis).map_err(|e| {
            self.violation(Invariant::ChainVerifies, format!("the coordinator cannot start: {e}"))
        })?;
        self.resting = None;
        self.driver = Some(driver);
        self.log(|| "coordinator starts from its journal".into());
        self.check()?;
        // Every job a member was told of survived.
        if let Some(job) = self.acked_jobs.iter().find(|job| !self.fold.admitted(job)) {
            return Err(self.violation(
                Invariant::AcknowledgedIsDurable,
                format!("job {job} was acknowledged to its member but is not in the journal"),
            ));
        }
        self.schedule_wake();
        Ok(())
    }

    fn crash_coordinator(&mut self, how: &str) {
        let Some(driver) = self.driver.take() else { return };
        self.stats.crashes += 1;
        let (_, store) = driver.into_parts();
        self.resting = Some(store);
        self.log(|| format!("coordinator {how}"));
        // Every connection dies with it; workers notice and reconnect when it is back.
        for w in 0..self.workers.len() {
            if self.workers[w].session.take().is_some() {
                let ms = self.rng.u64(200..2_000);
                self.at(ms, Ev::Connect(w));
            }
        }
        let down = self.rng.u64(200..3_000);
        self.at(down, Ev::StartCoordinator);
    }

    /// One batch through the driver: `input` runs on the core, the batch is appended,
    /// then its acknowledgement and commands go out. Faults strike here.
    fn step(&mut self, input: impl FnOnce(&mut Core) -> Ack) -> Result<Option<Ack>, Violation> {
        let Some(driver) = self.driver.as_mut() else { return Ok(None) };
        if self.faults_on && self.rng.f64() < self.config.crash_rate {
            // The disk fails under this batch: whole, or torn partway.
            driver.store_mut().fail_next = Some(self.rng.bool());
        }
        let stepped = driver.step(|turn| input(turn.core));
        let failed = driver.store().failed;
        let (ack, durable) = match stepped {
            Ok(stepped) => stepped,
            Err(e) => {
                let how = format!("stops: {e}");
                self.crash_coordinator(&how);
                return Ok(None);
            }
        };
        // The batch is durable (or a planted bug says so): read it, check, hand out.
        if !failed {
            self.check()?;
        }
        if self.faults_on && self.rng.f64() < self.config.crash_rate {
            // Between the append and the replies: nothing goes out.
            self.crash_coordinator("crashes after an append, before its replies");
            return Ok(None);
        }
        match &ack {
            Ack::Submitted(job) => {
                self.acked_jobs.insert(*job);
            }
            Ack::Proposed(id) => self.open_proposals.push(*id),
            Ack::Nothing => {}
        }
        for command in durable.commands {
            self.command(command);
        }
        if failed {
            self.crash_coordinator("stops: its journal could not be written");
            return Ok(None);
        }
        self.schedule_wake();
        Ok(Some(ack))
    }

    /// Reads what became durable and checks it, and the core against it.
    fn check(&mut self) -> Result<(), Violation> {
        let driver = self.driver.as_ref().expect("running");
        let entries = &driver.store().journal.entries;
        let sealed = entries.iter().rposition(|e| e.seal.is_some()).map_or(0, |i| i as u64 + 1);
        let from = self.fold.next;
        if sealed > from {
            let new = entries[from as usize..sealed as usize].to_vec();
            self.fold.read(&new).map_err(|(invariant, detail)| self.violation(invariant, detail))?;
        }
        let core = self.driver.as_ref().expect("running").core();
        self.fold.compare(core).map_err(|(invariant, detail)| self.violation(invariant, detail))
    }

    fn schedule_wake(&mut self) {
        let Some(driver) = &self.driver else { return };
        let Some(after) = driver.core().next_wake().after(self.now()) else { return };
        let at = self.now + after.max(1);
        if self.wake_at.is_none_or(|w| at < w) {
            self.wake_at = Some(at);
            self.at(after.max(1), Ev::Wake);
        }
    }

    fn command(&mut self, command: Command) {
        let (worker, session) = match &command {
            Command::Dispatch { worker, session, .. }
            | Command::Disconnect { worker, session, .. }
            | Command::Stop { worker, session, .. } => (*worker, *session),
            Command::JobChanged(_) => return,
        };
        let Some(w) = self.workers.iter().position(|x| x.key.public() == worker) else { return };
        let delay = self.delay();
        self.at(delay, Ev::ToWorker(w, session, command));
    }

    fn delay(&mut self) -> u64 {
        if self.faults_on { self.rng.u64(1..80) } else { self.rng.u64(1..5) }
    }

    // ---- workers -------------------------------------------------------------------

    fn reachable(&self, w: usize) -> bool {
        let worker = &self.workers[w];
        self.driver.is_some() && worker.cut_until <= self.now && worker.down_until <= self.now
    }

    fn connect(&mut self, w: usize) -> Result<(), Violation> {
        if self.workers[w].session.is_some() {
            return Ok(());
        }
        if !self.reachable(w) {
            // The agent's reconnect loop: again shortly.
            self.at(500, Ev::Connect(w));
            return Ok(());
        }
        self.sessions += 1;
        let session = self.sessions;
        self.workers[w].session = Some(session);
        let running: Vec<(TaskId, u32)> = self.workers[w].running.keys().copied().collect();
        let delay = self.delay();
        self.at(delay, Ev::ToCore(w, Box::new(ToCore::Hello { session, running })));
        // What waits in the outbox goes again on the new connection.
        let outbox: Vec<(Envelope, ExecutionReport)> = self.workers[w].outbox.values().cloned().collect();
        for (envelope, report) in outbox {
            let delay = self.delay() + 1;
            self.at(delay, Ev::ToCore(w, Box::new(ToCore::Report { session, envelope, report })));
        }
        self.at(HEARTBEAT_MS, Ev::Beat(w, session));
        if self.faults_on {
            match self.workers[w].behaviour {
                Behaviour::Flapping => {
                    let ms = self.rng.u64(2_000..15_000);
                    self.at(ms, Ev::Cut(w));
                }
                Behaviour::Crashing => {
                    let ms = self.rng.u64(5_000..30_000);
                    self.at(ms, Ev::CrashWorker(w));
                }
                _ if self.rng.f64() < 0.1 => {
                    let ms = self.rng.u64(1_000..30_000);
                    self.at(ms, Ev::Cut(w));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn beat(&mut self, w: usize, session: u64) -> Result<(), Violation> {
        if self.workers[w].session != Some(session) {
            return Ok(());
        }
        if self.reachable(w) {
            let running = self.workers[w].running.keys().copied().collect();
            let delay = self.delay();
            self.at(delay, Ev::ToCore(w, Box::new(ToCore::Beat { session, running })));
        }
        self.at(HEARTBEAT_MS, Ev::Beat(w, session));
        Ok(())
    }

    fn at_worker(&mut self, w: usize, session: u64, command: Command) {
        if self.workers[w].session != Some(session) || !self.reachable(w) {
            return;
        }
        match command {
            Command::Dispatch { assignment, .. } => {
                let key = (assignment.task, assignment.attempt);
                let base = self.rng.u64(100..2_000);
                let ms = if self.workers[w].behaviour == Behaviour::Slow { base * 4 } else { base };
                self.log(|| format!("worker {w} runs {} attempt {}", assignment.task, assignment.attempt));
                self.workers[w].running.insert(key, assignment);
                self.at(ms, Ev::Finish(w, key.0, key.1));
            }
            Command::Stop { task, attempt, .. } => {
                if let Some(assignment) = self.workers[w].running.remove(&(task, attempt)) {
                    let report = ExecutionReport {
                        task,
                        attempt,
                        outcome: RunOutcome::Failed {
                            kind: FailureKind::Cancelled,
                            detail: "stopped".into(),
                        },
                        output_digest: ContentId::of(b""),
                        output_bytes: 0,
                        stderr: vec![],
                        fuel: Fuel(assignment.limits.fuel.0 / 10),
                        usage: Default::default(),
                    };
                    self.send_report(w, report);
                }
            }
            Command::Disconnect { .. } => {
                self.workers[w].session = None;
                let ms = self.rng.u64(500..3_000);
                self.at(ms, Ev::Connect(w));
            }
            Command::JobChanged(_) => {}
        }
    }

    /// What this worker reports for a run of `job`: honest, or its lie.
    fn result_of(&mut self, w: usize, job: &JobId) -> (ContentId, Fuel) {
        let (digest, fuel) = honest(job);
        let lie = |tag: &[u8]| {
            let mut bytes = job.0.0.to_vec();
            bytes.extend_from_slice(tag);
            (ContentId::of(&bytes), fuel)
        };
        let worker = &self.workers[w];
        match worker.behaviour {
            Behaviour::Adversary(Adversary::Liar) => lie(&[b'l', w as u8]),
            Behaviour::Adversary(Adversary::TrustThenLie) => {
                let done = worker.done;
                if done >= self.config.honest_first && self.rng.f64() < self.config.lie_probability {
                    lie(&[b't', w as u8])
                } else {
                    (digest, fuel)
                }
            }
            Behaviour::Adversary(Adversary::Learner) => {
                // Honest until trusted, then lies only where it can tell it runs alone.
                let alone = drawn_alone(job, icn_placement::Policy::default().spot_check);
                if worker.done >= self.config.honest_first && alone {
                    lie(&[b'a', w as u8])
                } else {
                    (digest, fuel)
                }
            }
            Behaviour::Adversary(Adversary::Colluding) => {
                // The colluders agree on which jobs to lie about, and on the lie.
                let together = f64::from(job.0.0[1]) / 256.0 < self.config.lie_probability;
                if together { lie(b"collude") } else { (digest, fuel) }
            }
            Behaviour::Adversary(Adversary::OverReport) => (digest, Fuel(fuel.0 * 3 / 2)),
            _ => (digest, fuel),
        }
    }

    fn finish_run(&mut self, w: usize, task: TaskId, attempt: u32) -> Result<(), Violation> {
        if self.workers[w].running.remove(&(task, attempt)).is_none() {
            return Ok(());
        }
        let (digest, fuel) = self.result_of(w, &task.job);
        self.workers[w].done += 1;
        let report = ExecutionReport {
            task,
            attempt,
            outcome: RunOutcome::Exited { code: 0 },
            output_digest: digest,
            output_bytes: 0,
            stderr: vec![],
            fuel,
            usage: Default::default(),
        };
        self.send_report(w, report);
        Ok(())
    }

    fn send_report(&mut self, w: usize, report: ExecutionReport) {
        let worker = &mut self.workers[w];
        worker.nonce += 1;
        let envelope = Envelope::seal(&worker.key, worker.nonce, &report);
        worker.outbox.insert((report.task, report.attempt), (envelope.clone(), report.clone()));
        let Some(session) = worker.session else { return };
        if !self.reachable(w) {
            return;
        }
        let delay = self.delay();
        self.at(
            delay,
            Ev::ToCore(
                w,
                Box::new(ToCore::Report { session, envelope: envelope.clone(), report: report.clone() }),
            ),
        );
        if self.faults_on && self.rng.f64() < 0.05 {
            // Duplicated on the way.
            let delay = self.delay() + 5;
            self.at(delay, Ev::ToCore(w, Box::new(ToCore::Report { session, envelope, report })));
        }
    }

    fn at_coordinator(&mut self, w: usize, message: ToCore) -> Result<(), Violation> {
        if self.driver.is_none() {
            return Ok(());
        }
        let key = self.workers[w].key.public();
        let now = self.now();
        let live =
            |world: &World, session: u64| world.workers[w].session == Some(session) && world.reachable(w);
        match message {
            ToCore::Hello { session, running } => {
                if !live(self, session) {
                    return Ok(());
                }
                let capacity =
                    Capacity { slots: 2, memory_bytes: 1 << 30, executors: vec![ExecutorKind::Wasm] };
                self.step(|core| {
                    let _ = core.worker_connected(now, key, session, capacity, &running);
                    Ack::Nothing
                })?;
            }
            ToCore::Beat { session, running } => {
                if !live(self, session) {
                    return Ok(());
                }
                self.step(|core| {
                    core.heartbeat(now, key, session, &running);
                    Ack::Nothing
                })?;
            }
            ToCore::Report { session, envelope, report } => {
                if !live(self, session) {
                    return Ok(());
                }
                let id = (report.task, report.attempt);
                if self
                    .step(|core| {
                        core.report(now, key, session, envelope, report);
                        Ack::Nothing
                    })?
                    .is_some()
                {
                    // Durable: the coordinator closes the stream, and the worker forgets it.
                    self.workers[w].outbox.remove(&id);
                }
            }
            ToCore::Gone { session } => {
                self.step(|core| {
                    core.worker_disconnected(now, key, session, "the connection timed out".into());
                    Ack::Nothing
                })?;
                if self.workers[w].session == Some(session) {
                    self.workers[w].session = None;
                    let ms = self.rng.u64(100..1_000);
                    self.at(ms, Ev::Connect(w));
                }
            }
        }
        Ok(())
    }

    // ---- members -------------------------------------------------------------------

    fn member(&mut self, i: usize) -> Result<(), Violation> {
        if self.now < self.config.active_ms {
            let next = self.rng.u64(200..1_500);
            self.at(next, Ev::Member(i));
        }
        if self.now >= self.config.active_ms {
            return Ok(());
        }
        self.nonce += 1;
        let (now, nonce) = (self.now(), self.nonce);
        let key = self.members[i].clone();
        let roll = self.rng.u32(0..100);
        if self.config.crash_rate > 0.0 && self.faults_on && roll == 0 {
            self.at(0, Ev::CrashCoordinator);
            return Ok(());
        }
        match roll {
            0..60 => {
                let mut submission = Submission {
                    scope: scope("fed"),
                    executor: ExecutorKind::Wasm,
                    module: ContentId::of(b"simulated module"),
                    input: ContentId::of(&nonce.to_le_bytes()),
                    args: vec![],
                    limits: Limits { timeout_ms: TASK_TIMEOUT_MS, ..Limits::default() },
                    options: Default::default(),
                };
                if self.rng.u8(..) < 40 {
                    submission.options.deadline_ms = Some(now.wall_ms + self.rng.u64(3_000..60_000));
                }
                let envelope = Envelope::seal(&key, nonce, &submission);
                self.stats.submitted += 1;
                let acked = self.step(|core| match core.submit(now, envelope, submission) {
                    Ok(job) => Ack::Submitted(job),
                    Err(_) => Ack::Nothing,
                })?;
                if let Some(Ack::Submitted(job)) = acked {
                    self.log(|| format!("member {i} submits {job}"));
                }
            }
            60..66 => {
                let jobs: Vec<JobId> = self.acked_jobs.iter().copied().collect();
                if jobs.is_empty() {
                    return Ok(());
                }
                let job = jobs[self.rng.usize(..jobs.len())];
                let request = Cancel { job };
                let envelope = Envelope::seal(&key, nonce, &request);
                self.log(|| format!("member {i} cancels {job}"));
                self.step(|core| {
                    let _ = core.cancel(now, envelope, request);
                    Ack::Nothing
                })?;
            }
            66..76 => {
                let kinds = if self.config.policy_decisions { 3 } else { 2 };
                let (in_scope, effect) = match self.rng.u8(0..kinds) {
                    0 => (
                        "commons",
                        Effect::CreditLimit {
                            scope: scope("fed"),
                            limit: Credits(self.rng.i64(1..4) * 1_000_000_000),
                        },
                    ),
                    2 => {
                        let replicas = self.rng.u32(1..4);
                        (
                            "fed",
                            Effect::PlacementPolicy(PlacementPolicy {
                                replicas,
                                quorum: self.rng.u32(1..=replicas),
                            }),
                        )
                    }
                    _ => (
                        "fed",
                        Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: self.rng.u64(1..4) }),
                    ),
                };
                let proposal = Proposal { scope: scope(in_scope), title: "simulated".into(), effect };
                let envelope = Envelope::seal(&key, nonce, &proposal);
                self.log(|| format!("member {i} proposes {:?}", proposal.effect));
                self.step(|core| match core.propose(now, envelope, proposal) {
                    Ok((id, _)) => Ack::Proposed(id),
                    Err(_) => Ack::Nothing,
                })?;
            }
            76..95 => {
                let Some(&proposal) = self.open_proposals.iter().rev().nth(self.rng.usize(0..3)) else {
                    return Ok(());
                };
                let choice = if self.rng.u8(..) < 200 { Choice::Yes } else { Choice::No };
                let ballot = Ballot { proposal, choice, reason: None };
                let envelope = Envelope::seal(&key, nonce, &ballot);
                self.step(|core| {
                    let _ = core.vote(now, envelope, ballot);
                    Ack::Nothing
                })?;
            }
            _ => {
                let request = ClearRequest { federation: scope("fed"), made_ms: now.wall_ms };
                let envelope = Envelope::seal(&key, nonce, &request);
                self.step(|core| {
                    let _ = core.clear(now, envelope, request);
                    Ack::Nothing
                })?;
            }
        }
        if self.open_proposals.len() > 16 {
            self.open_proposals.remove(0);
        }
        Ok(())
    }
}

fn genesis(config: &Config, members: &[Arc<Keypair>], workers: &[SimWorker]) -> Genesis {
    let rule =
        Rule { quorum: "1/2".parse().unwrap(), approval: "1/2".parse().unwrap(), voting_window_ms: 3_000 };
    let coop = |name: String| GenesisScope {
        id: scope(&name),
        kind: ScopeKind::Cooperative,
        parent: Some(scope("fed")),
        rule,
        prices: None,
        policy: None,
        credit_limit: None,
    };
    let mut scopes = vec![
        GenesisScope {
            id: scope("commons"),
            kind: ScopeKind::Commons,
            parent: None,
            rule,
            prices: Some(PriceSchedule { credits_per_mega_fuel: 1 }),
            policy: None,
            credit_limit: None,
        },
        GenesisScope {
            id: scope("fed"),
            kind: ScopeKind::Federation,
            parent: Some(scope("commons")),
            rule,
            prices: None,
            policy: Some(config.policy),
            credit_limit: Some(Credits(1_000_000_000)),
        },
    ];
    scopes.extend(workers.iter().map(|w| coop(w.owner.to_string())));
    let standing = BTreeMap::from([
        (scope("commons"), vec![Standing::Vote]),
        (scope("fed"), vec![Standing::Vote, Standing::Submit]),
    ]);
    Genesis {
        scopes,
        members: members
            .iter()
            .enumerate()
            .map(|(i, key)| GenesisMember {
                name: format!("member-{i}"),
                key: key.public(),
                standing: standing.clone(),
            })
            .collect(),
        workers: workers
            .iter()
            .map(|w| GenesisWorker { key: w.key.public(), owner: w.owner.clone() })
            .collect(),
        mandates: vec![Mandate {
            scope: scope("fed"),
            budget: Credits(1_000_000_000_000),
            period_ms: 30 * 86_400_000,
            executors: vec![ExecutorKind::Wasm],
            limits: Limits { timeout_ms: TASK_TIMEOUT_MS, ..Limits::default() },
        }],
        free_compute: false,
    }
}
