//! Every path that ends a job ends it once: replicated jobs whose replicas are lost,
//! late, reconnected or interrupted by a coordinator crash, any number at once and at any
//! `attempts_max`, never end twice, never stop a start, and leave the ledger at zero.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use icn_core::Entry;
use icn_core::Record;
use icn_core::store::MemoryJournal;
use icn_core::{Command, Core, CoreConfig, Driver, Now};
use icn_governance::Genesis;
use icn_governance::genesis::{GenesisMember, GenesisScope, GenesisWorker};
use icn_protocol::governance::{
    Credits, Mandate, PlacementPolicy, PriceSchedule, Rule, ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::{
    Assignment, Capacity, ExecutionReport, ExecutorKind, FailureKind, JobState, Limits, Outcome, Submission,
    Waiting,
};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, Keypair, PublicKey, TaskId};
use proptest::prelude::*;

const COOPS: usize = 4;
const TIMEOUT_MS: u64 = 1_000;

fn scope(id: &str) -> ScopeId {
    id.parse().unwrap()
}

fn member() -> Keypair {
    Keypair::from_seed([1; 32])
}

fn worker_key(i: usize) -> Keypair {
    Keypair::from_seed([10 + i as u8; 32])
}

fn genesis(replicas: u32) -> Genesis {
    let rule =
        Rule { quorum: "1/2".parse().unwrap(), approval: "1/2".parse().unwrap(), voting_window_ms: 1_000 };
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
            policy: Some(PlacementPolicy { replicas, quorum: replicas }),
            credit_limit: Some(Credits(1_000_000_000)),
        },
    ];
    for i in 0..COOPS {
        scopes.push(GenesisScope {
            id: scope(&format!("coop-{i}")),
            kind: ScopeKind::Cooperative,
            parent: Some(scope("fed")),
            rule,
            prices: None,
            policy: None,
            credit_limit: None,
        });
    }
    Genesis {
        scopes,
        members: vec![GenesisMember {
            name: "ana".into(),
            key: member().public(),
            standing: BTreeMap::from([(scope("fed"), vec![Standing::Vote, Standing::Submit])]),
        }],
        workers: (0..COOPS)
            .map(|i| GenesisWorker { key: worker_key(i).public(), owner: scope(&format!("coop-{i}")) })
            .collect(),
        mandates: vec![Mandate {
            scope: scope("fed"),
            budget: Credits(1_000_000_000),
            period_ms: 86_400_000,
            executors: vec![ExecutorKind::Wasm],
            limits: Limits::default(),
        }],
        free_compute: false,
    }
}

/// A worker as the test drives it: its session, whether it answers heartbeats, and the
/// assignments it holds.
struct Driven {
    key: Keypair,
    session: u64,
    connected: bool,
    silent: bool,
    held: Vec<Assignment>,
}

#[derive(Clone, Debug)]
enum Op {
    Submit,
    /// Time passes; workers that are not silent heartbeat first.
    Advance {
        ms: u64,
    },
    Silence {
        worker: usize,
    },
    Disconnect {
        worker: usize,
    },
    /// Connects again, naming what it still runs (`keep`) or nothing.
    Reconnect {
        worker: usize,
        keep: bool,
    },
    /// Reports one assignment it holds; `honest` results agree with each other.
    Report {
        worker: usize,
        honest: bool,
    },
    /// Reports a failure of its own (a full disk) on one assignment it holds: the
    /// replica goes back to the queue.
    Fail {
        worker: usize,
    },
    /// The coordinator crashes and starts again from its journal.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Submit),
        3 => prop_oneof![Just(100u64), Just(TIMEOUT_MS + 1), Just(20_000u64)].prop_map(|ms| Op::Advance { ms }),
        1 => (0..COOPS).prop_map(|worker| Op::Silence { worker }),
        1 => (0..COOPS).prop_map(|worker| Op::Disconnect { worker }),
        2 => (0..COOPS, any::<bool>()).prop_map(|(worker, keep)| Op::Reconnect { worker, keep }),
        4 => (0..COOPS, proptest::bool::weighted(0.85)).prop_map(|(worker, honest)| Op::Report { worker, honest }),
        1 => (0..COOPS).prop_map(|worker| Op::Fail { worker }),
        1 => Just(Op::Crash),
    ]
}

/// A heartbeat: the worker, its session, what it runs.
type Beat = (PublicKey, u64, Vec<(TaskId, u32)>);

struct World {
    config: CoreConfig,
    genesis: Genesis,
    coordinator: Arc<Keypair>,
    /// The core over its journal, as the coordinator's thread runs it.
    driver: Driver<MemoryJournal>,
    workers: Vec<Driven>,
    next_session: u64,
    now_ms: u64,
    nonce: u64,
}

impl World {
    fn new(replicas: u32, attempts_max: u32) -> World {
        let config = CoreConfig { worker_timeout_ms: TIMEOUT_MS, attempts_max, ..CoreConfig::default() };
        let coordinator = Arc::new(Keypair::from_seed([99; 32]));
        let genesis = genesis(replicas);
        let core = Core::new(coordinator.clone(), config.clone());
        let now_ms = 1_000_000;
        let driver = Driver::recover(core, MemoryJournal::default(), Now::at(now_ms), &genesis).unwrap();
        let workers = (0..COOPS)
            .map(|i| Driven { key: worker_key(i), session: 0, connected: false, silent: false, held: vec![] })
            .collect();
        let mut world =
            World { config, genesis, coordinator, driver, workers, next_session: 0, now_ms, nonce: 0 };
        for i in 0..COOPS {
            world.connect(i, false);
        }
        world
    }

    fn now(&self) -> Now {
        Now::at(self.now_ms)
    }

    fn core(&self) -> &Core {
        self.driver.core()
    }

    fn journal(&self) -> &[Entry] {
        &self.driver.store().entries
    }

    /// One input to the core at the world's time, made durable, then its commands carried
    /// out as the shell carries them out.
    fn input<R>(&mut self, input: impl FnOnce(&mut Core, Now) -> R) -> R {
        let now = self.now();
        let (r, durable) = self.driver.step(|turn| input(turn.core, now)).unwrap();
        self.carry_out(durable.commands);
        r
    }

    fn connect(&mut self, i: usize, keep: bool) {
        self.next_session += 1;
        let w = &mut self.workers[i];
        w.session = self.next_session;
        w.connected = true;
        w.silent = false;
        if !keep {
            w.held.clear();
        }
        let running: Vec<(TaskId, u32)> = w.held.iter().map(|a| (a.task, a.attempt)).collect();
        let capacity = Capacity { slots: 2, memory_bytes: 1 << 30, executors: vec![ExecutorKind::Wasm] };
        let (key, session) = (w.key.public(), w.session);
        self.input(|core, now| core.worker_connected(now, key, session, capacity, &running)).unwrap();
    }

    fn carry_out(&mut self, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Dispatch { worker, session, assignment } => {
                    let w = self.workers.iter_mut().find(|w| w.key.public() == worker).unwrap();
                    assert_eq!(w.session, session, "dispatched to the worker's current session");
                    assert!(w.connected, "dispatched only to a connected worker");
                    w.held.push(assignment);
                }
                Command::Disconnect { worker, session, .. } => {
                    let w = self.workers.iter_mut().find(|w| w.key.public() == worker).unwrap();
                    if w.session == session {
                        w.connected = false;
                        w.held.clear();
                    }
                }
                Command::Stop { worker, task, attempt, .. } => {
                    let w = self.workers.iter_mut().find(|w| w.key.public() == worker).unwrap();
                    w.held.retain(|a| (a.task, a.attempt) != (task, attempt));
                }
                Command::JobChanged(_) => {}
            }
        }
    }

    fn apply(&mut self, op: Op) {
        self.nonce += 1;
        match op {
            Op::Submit => {
                let submission = Submission {
                    scope: scope("fed"),
                    executor: ExecutorKind::Wasm,
                    module: ContentId::of(b"m"),
                    input: ContentId::of(&self.nonce.to_le_bytes()),
                    args: vec![],
                    limits: Limits { timeout_ms: 2_000, ..Limits::default() },
                    options: Default::default(),
                };
                let envelope = Envelope::seal(&member(), self.nonce, &submission);
                self.input(|core, now| core.submit(now, envelope, submission)).unwrap();
            }
            Op::Advance { ms } => {
                self.now_ms += ms;
                let beats: Vec<Beat> = self
                    .workers
                    .iter()
                    .filter(|w| w.connected && !w.silent)
                    .map(|w| {
                        (w.key.public(), w.session, w.held.iter().map(|a| (a.task, a.attempt)).collect())
                    })
                    .collect();
                for (key, session, running) in beats {
                    self.input(|core, now| core.heartbeat(now, key, session, &running));
                }
                self.input(|core, now| core.tick(now));
            }
            Op::Silence { worker } => self.workers[worker].silent = true,
            Op::Disconnect { worker } => {
                let w = &mut self.workers[worker];
                if w.connected {
                    w.connected = false;
                    let (key, session) = (w.key.public(), w.session);
                    self.input(|core, now| core.worker_disconnected(now, key, session, "test".into()));
                }
            }
            Op::Reconnect { worker, keep } => self.connect(worker, keep),
            Op::Report { .. } | Op::Fail { .. } => {
                let (worker, honest, failed) = match op {
                    Op::Report { worker, honest } => (worker, honest, false),
                    Op::Fail { worker } => (worker, true, true),
                    _ => unreachable!(),
                };
                let w = &mut self.workers[worker];
                if !w.connected || w.held.is_empty() {
                    return;
                }
                let assignment = w.held.remove(0);
                let output = if failed {
                    vec![]
                } else if honest {
                    b"42\n".to_vec()
                } else {
                    b"lie\n".to_vec()
                };
                let outcome = if failed {
                    Outcome::Failed { kind: FailureKind::WorkerError, detail: "the disk filled".into() }
                } else {
                    Outcome::Exited { code: 0 }
                };
                let report = ExecutionReport {
                    task: assignment.task,
                    attempt: assignment.attempt,
                    outcome,
                    output_digest: ContentId::of(&output),
                    output_bytes: output.len() as u64,
                    stderr: vec![],
                    fuel: Fuel(1_000),
                    usage: Default::default(),
                };
                let envelope = Envelope::seal(&w.key, self.nonce, &report);
                let (key, session) = (w.key.public(), w.session);
                self.input(|core, now| core.report(now, key, session, envelope, report));
            }
            Op::Crash => {
                let restarted = Core::new(self.coordinator.clone(), self.config.clone());
                let journal = self.driver.store().clone();
                self.driver = Driver::recover(restarted, journal, self.now(), &self.genesis).unwrap();
                // Every connection died with the coordinator; live workers reconnect and
                // name the tasks they still run.
                for i in 0..COOPS {
                    if self.workers[i].connected {
                        self.connect(i, true);
                    }
                }
            }
        }
    }
}

/// How many times each job ended in the journal.
fn endings(journal: &[Entry]) -> BTreeMap<JobId, usize> {
    let mut ended = BTreeMap::new();
    for entry in journal {
        match entry.decode_record().unwrap() {
            Record::JobCompleted { job, .. }
            | Record::JobFailed { job, .. }
            | Record::JobFailedPaid { job, .. } => *ended.entry(job).or_default() += 1,
            _ => {}
        }
    }
    ended
}

fn submitted(journal: &[Entry]) -> Vec<JobId> {
    journal
        .iter()
        .filter_map(|entry| match entry.decode_record().unwrap() {
            Record::JobSubmitted { submission, .. } => Some(JobId(submission.id())),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn replicated_jobs_end_once_through_losses_deadlines_reconnects_and_crashes(
        replicas in 2..=3u32,
        attempts_max in 1..=3u32,
        ops in proptest::collection::vec(op(), 10..80),
    ) {
        let mut world = World::new(replicas, attempts_max);
        for op in ops {
            world.apply(op);
            world.core().ledger().check().map_err(TestCaseError::fail)?;
        }
        // Time passes until nothing can be in flight: every job ends, or waits with
        // nothing placed.
        for _ in 0..(attempts_max + 3) {
            world.apply(Op::Advance { ms: 30_000 });
        }
        for (job, count) in endings(world.journal()) {
            prop_assert_eq!(count, 1, "job {} ended {} times", job, count);
        }
        let mut waiting = 0;
        for job in submitted(world.journal()) {
            let state = world.core().job(&job).unwrap().state;
            prop_assert!(!matches!(state, JobState::Running { .. }), "job {} is still running: {:?}", job, state);
            waiting += usize::from(state == JobState::Queued);
        }
        // A job that waits is in the queue: none is left neither placed nor queued.
        prop_assert_eq!(waiting, world.core().queue_len(), "jobs waiting outside the queue");
        // A start from this journal never panics and gives the same state.
        let mut replayed = Core::new(world.coordinator.clone(), world.config.clone());
        replayed.recover(world.journal(), world.now()).unwrap();
        prop_assert_eq!(replayed.governance(), world.core().governance());
        prop_assert_eq!(replayed.ledger().positions(), world.core().ledger().positions());
        prop_assert_eq!(replayed.ledger().check(), Ok(()));
    }
}

/// The case that made every start panic: two replicas in flight, `attempts_max` 1, and
/// the coordinator killed. The first requeue fails the job; the second must not end it
/// again.
#[test]
fn a_crash_with_two_replicas_in_flight_at_one_attempt_ends_the_job_once() {
    let mut world = World::new(2, 1);
    world.apply(Op::Submit);
    let placed: usize = world.workers.iter().map(|w| w.held.len()).sum();
    assert_eq!(placed, 2, "both replicas are in flight");
    world.apply(Op::Crash);
    world.apply(Op::Crash);
    let ended = endings(world.journal());
    assert_eq!(ended.values().copied().collect::<Vec<_>>(), vec![1], "{ended:?}");
    assert_eq!(world.core().ledger().check(), Ok(()));
    let fed = world.core().ledger().account(&scope("fed")).unwrap();
    assert_eq!((fed.position, fed.reserved), (0, 0), "the hold was voided once");
}

/// A worker whose connection drops and comes back while it runs a task keeps the task:
/// no requeue, no loss of trust, and its report is accepted.
#[test]
fn a_worker_that_reconnects_mid_task_resumes_without_losing_trust() {
    let mut world = World::new(2, 3);
    world.apply(Op::Submit);
    let holder = world.workers.iter().position(|w| !w.held.is_empty()).unwrap();
    world.apply(Op::Disconnect { worker: holder });
    world.apply(Op::Advance { ms: 100 });
    world.apply(Op::Reconnect { worker: holder, keep: true });
    world.apply(Op::Advance { ms: TIMEOUT_MS + 1 });
    let requeues = world
        .journal()
        .iter()
        .filter(|e| matches!(e.decode_record().unwrap(), Record::TaskRequeued { .. }))
        .count();
    assert_eq!(requeues, 0, "the task stayed with the worker");
    for worker in 0..COOPS {
        world.apply(Op::Report { worker, honest: true });
    }
    let view = world.core().workers_view();
    let trust = view.iter().find(|w| w.key == worker_key(holder).public()).unwrap().trust;
    assert_eq!(trust.missed, 0, "{trust:?}");
    let jobs: BTreeSet<JobId> = endings(world.journal()).into_keys().collect();
    assert_eq!(jobs.len(), 1);
    let job = *jobs.iter().next().unwrap();
    assert_eq!(world.core().job(&job).unwrap().state, JobState::Completed);
}

/// A worker that comes back without the task it held lost it: that costs trust, once.
#[test]
fn a_worker_that_reconnects_without_its_task_loses_it_with_fault() {
    let mut world = World::new(2, 3);
    world.apply(Op::Submit);
    let holder = world.workers.iter().position(|w| !w.held.is_empty()).unwrap();
    world.apply(Op::Reconnect { worker: holder, keep: false });
    let view = world.core().workers_view();
    let trust = view.iter().find(|w| w.key == worker_key(holder).public()).unwrap().trust;
    assert_eq!(trust.missed, 1, "{trust:?}");
}

/// Tasks a worker says it still runs but that are not placed on it here hold its slots,
/// so a worker is never given more tasks than it has slots.
#[test]
fn tasks_a_worker_still_runs_from_before_a_restart_hold_its_slots() {
    let mut world = World::new(2, 3);
    for _ in 0..4 {
        world.apply(Op::Submit);
    }
    assert!(
        world.workers.iter().all(|w| w.held.len() == 2),
        "four jobs of two replicas fill all eight slots"
    );
    world.apply(Op::Crash);
    // Every replica was requeued at the restart, but the workers still run the old
    // attempts and said so: no slot is free, so nothing new is placed.
    for w in &world.workers {
        assert_eq!(w.held.len(), 2, "a worker holds its two old attempts and nothing more");
    }
    for worker in 0..COOPS {
        world.apply(Op::Report { worker, honest: true });
    }
    let held: usize = world.workers.iter().map(|w| w.held.len()).sum();
    assert!(held <= 2 * COOPS, "{held}");
}

/// A jump of the wall clock is not silence: timeouts read the monotonic clock.
#[test]
fn a_wall_clock_jump_does_not_lose_live_workers() {
    let mut world = World::new(2, 3);
    world.apply(Op::Submit);
    let jump = Now { wall_ms: world.now_ms + 3_600_000, mono_ms: world.now_ms + 100 };
    let beats: Vec<(PublicKey, u64)> = world.workers.iter().map(|w| (w.key.public(), w.session)).collect();
    for (key, session) in beats {
        world.input(|core, now| core.heartbeat(now, key, session, &[]));
    }
    world.input(|core, _| core.tick(jump));
    let requeued =
        world.journal().iter().any(|e| matches!(e.decode_record().unwrap(), Record::TaskRequeued { .. }));
    assert!(!requeued, "an hour's jump of the wall clock requeued a task");
    assert!(world.core().workers_view().iter().all(|w| w.connected && w.trust.missed == 0));
}

/// A replica lost or failed on a worker is placed again elsewhere at once; from the second
/// requeue on it waits first (one second, doubling), saying so, and then goes to a worker
/// it has not failed on, or to any once it failed on all of them.
#[test]
fn a_replica_failed_on_workers_is_retried_elsewhere_after_a_growing_wait() {
    let mut world = World::new(1, 5);
    world.apply(Op::Submit);
    let job = world
        .journal()
        .iter()
        .find_map(|e| match e.decode_record().unwrap() {
            Record::JobSubmitted { submission, .. } => Some(JobId(submission.id())),
            _ => None,
        })
        .unwrap();
    let holder = |world: &World| world.workers.iter().position(|w| !w.held.is_empty());
    let mut failed_on = vec![holder(&world).unwrap()];
    world.apply(Op::Fail { worker: failed_on[0] });
    let next = holder(&world).expect("the first requeue is placed again at once");
    assert!(!failed_on.contains(&next), "elsewhere than where it failed");
    failed_on.push(next);
    for (requeues, wait_ms) in [(2, 1_000), (3, 2_000), (4, 4_000)] {
        world.apply(Op::Fail { worker: *failed_on.last().unwrap() });
        assert_eq!(holder(&world), None, "requeue {requeues} waits");
        let waiting = world.core().job(&job).unwrap().waiting.unwrap();
        assert_eq!(waiting, Waiting::Backoff { wait_ms, attempts: requeues, attempts_max: 5 });
        world.apply(Op::Advance { ms: wait_ms - 1 });
        assert_eq!(holder(&world), None, "not before the wait is over");
        world.apply(Op::Advance { ms: 1 });
        let next = holder(&world).expect("placed once the wait is over");
        if failed_on.len() < COOPS {
            assert!(
                !failed_on.contains(&next),
                "on a worker it has not failed on: {next} after {failed_on:?}"
            );
        }
        failed_on.push(next);
    }
    let sentence = Waiting::Backoff { wait_ms: 4_000, attempts: 4, attempts_max: 5 }.to_string();
    assert_eq!(
        sentence,
        "its replicas were lost or failed on workers 4 times (at most 5); it is tried again, on another worker \
         where one can take it, in 4.0 s"
    );
}

/// A job with a deadline that cannot be met fails when it passes, its hold voided; a
/// deadline already past is refused.
#[test]
fn a_job_past_its_deadline_fails_and_a_past_deadline_is_refused() {
    let mut world = World::new(1, 5);
    for worker in 0..COOPS {
        world.apply(Op::Disconnect { worker });
    }
    let submit = |world: &mut World, deadline_ms| {
        world.nonce += 1;
        let mut submission = Submission {
            scope: scope("fed"),
            executor: ExecutorKind::Wasm,
            module: ContentId::of(b"m"),
            input: ContentId::of(&world.nonce.to_le_bytes()),
            args: vec![],
            limits: Limits::default(),
            options: Default::default(),
        };
        submission.options.deadline_ms = Some(deadline_ms);
        let envelope = Envelope::seal(&member(), world.nonce, &submission);
        world.input(|core, now| core.submit(now, envelope, submission))
    };
    let now_ms = world.now_ms;
    let past = submit(&mut world, now_ms).unwrap_err();
    assert_eq!(past.code(), "deadline_passed");
    assert!(past.to_string().contains("has already passed"), "{past}");
    let job = submit(&mut world, now_ms + 1_500).unwrap();
    let reserved = |world: &World| world.core().ledger().account(&scope("fed")).unwrap().reserved;
    assert!(reserved(&world) > 0);
    world.apply(Op::Advance { ms: 1_499 });
    assert_eq!(world.core().job(&job).unwrap().state, JobState::Queued);
    world.apply(Op::Advance { ms: 1 });
    let view = world.core().job(&job).unwrap();
    assert_eq!(view.state, JobState::Failed);
    assert!(view.failure.as_deref().unwrap().contains("deadline"), "{view:?}");
    assert_eq!(reserved(&world), 0, "the hold is voided");
}

/// A cancelled job pays for what ran: its running replica is told to stop, reports the
/// fuel it used until then, and that is posted to the worker's cooperative; the rest of
/// the hold is released. A cancelled job that was not running pays nothing.
#[test]
fn a_cancelled_running_job_pays_for_what_ran_and_a_queued_one_pays_nothing() {
    let mut world = World::new(1, 5);
    world.apply(Op::Submit);
    let holder = world.workers.iter().position(|w| !w.held.is_empty()).unwrap();
    let assignment = world.workers[holder].held[0].clone();
    let job = assignment.task.job;
    let cancel = |world: &mut World, job| {
        world.nonce += 1;
        let request = icn_protocol::wire::Cancel { job };
        let envelope = Envelope::seal(&member(), world.nonce, &request);
        world.input(|core, now| core.cancel(now, envelope, request)).unwrap();
    };
    cancel(&mut world, job);
    assert!(world.workers[holder].held.is_empty(), "the worker was told to stop");
    assert_eq!(world.core().job(&job).unwrap().state, JobState::Cancelled);
    let account = |world: &World, id: &str| *world.core().ledger().account(&scope(id)).unwrap();
    assert!(account(&world, "fed").reserved > 0, "the hold waits for what the stopped run used");
    // The worker stopped the run and says what it used: 3 million fuel, 3 credits.
    let report = ExecutionReport {
        task: assignment.task,
        attempt: assignment.attempt,
        outcome: Outcome::Failed { kind: FailureKind::Cancelled, detail: "stopped".into() },
        output_digest: ContentId::of(b""),
        output_bytes: 0,
        stderr: vec![],
        fuel: Fuel(3_000_000),
        usage: Default::default(),
    };
    let w = &world.workers[holder];
    let envelope = Envelope::seal(&w.key, 7, &report);
    let (key, session) = (w.key.public(), w.session);
    world.input(|core, now| core.report(now, key, session, envelope, report));
    let owner = format!("coop-{holder}");
    assert_eq!((account(&world, "fed").position, account(&world, "fed").reserved), (-3, 0));
    assert_eq!(account(&world, &owner).position, 3, "the cooperative that ran it earned what ran");
    let settled = world.journal().iter().rev().find_map(|e| match e.decode_record().unwrap() {
        Record::CancelSettled { job: settled, fuel, payees } if settled == job => Some((fuel, payees)),
        _ => None,
    });
    assert_eq!(settled, Some((Fuel(3_000_000), vec![(scope(&owner), Credits(3))])));

    // Queued behind nothing that could run it: no worker connected, so nothing ran.
    for worker in 0..COOPS {
        world.apply(Op::Disconnect { worker });
    }
    world.apply(Op::Submit);
    let queued = world
        .journal()
        .iter()
        .rev()
        .find_map(|e| match e.decode_record().unwrap() {
            Record::JobSubmitted { submission, .. } => Some(JobId(submission.id())),
            _ => None,
        })
        .unwrap();
    cancel(&mut world, queued);
    assert_eq!((account(&world, "fed").position, account(&world, "fed").reserved), (-3, 0), "nobody paid");
    assert!(world.core().ledger().check().is_ok());
}

/// `holder` reports `outcome` with `fuel` on `assignment`.
fn report_on(world: &mut World, holder: usize, assignment: &Assignment, outcome: Outcome, fuel: u64) {
    let report = ExecutionReport {
        task: assignment.task,
        attempt: assignment.attempt,
        outcome,
        output_digest: ContentId::of(b""),
        output_bytes: 0,
        stderr: vec![],
        fuel: Fuel(fuel),
        usage: Default::default(),
    };
    world.nonce += 1;
    let w = &world.workers[holder];
    let envelope = Envelope::seal(&w.key, world.nonce, &report);
    let (key, session) = (w.key.public(), w.session);
    world.input(|core, now| core.report(now, key, session, envelope, report));
}

/// A wasm module that spins without calling out: one replica's worker stops it at its
/// time limit (having counted no fuel, since fuel is written back only at calls), the
/// other's, a little faster, at its fuel limit. Both honest: they agree, neither
/// dissents, and each cooperative is paid the whole fuel limit — a run stopped by time
/// pays what it was allowed to burn, so holding a donated slot until the timeout is not
/// free.
#[test]
fn wasm_replicas_stopped_by_time_and_by_fuel_agree_and_each_pays_the_fuel_limit() {
    let mut world = World::new(2, 5);
    world.apply(Op::Submit);
    let holders: Vec<usize> = (0..COOPS).filter(|i| !world.workers[*i].held.is_empty()).collect();
    assert_eq!(holders.len(), 2, "two replicas placed");
    let first = world.workers[holders[0]].held.remove(0);
    let second = world.workers[holders[1]].held.remove(0);
    let job = first.task.job;
    let limit = Limits::default().fuel.0;
    let timeout =
        Outcome::Failed { kind: FailureKind::Timeout, detail: "the module ran past 2000 ms".into() };
    report_on(&mut world, holders[0], &first, timeout, 0);
    let fuel =
        Outcome::Failed { kind: FailureKind::OutOfFuel, detail: "the module used all its fuel".into() };
    report_on(&mut world, holders[1], &second, fuel, limit);
    let records: Vec<Record> = world.journal().iter().map(|e| e.decode_record().unwrap()).collect();
    let verified = records.iter().find_map(|r| match r {
        Record::Verified { job: j, agreeing, dissenting, .. } if *j == job => {
            Some((agreeing.len(), dissenting.len()))
        }
        _ => None,
    });
    assert_eq!(verified, Some((2, 0)), "the two endings are one result: no honest worker dissents");
    let paid = records.iter().find_map(|r| match r {
        Record::JobFailedPaid { job: j, fuel, payees, .. } if *j == job => Some((*fuel, payees.clone())),
        _ => None,
    });
    let (fuel, payees) = paid.expect("the job failed by its own doing and pays");
    assert_eq!(fuel, Fuel(limit));
    assert!(payees.iter().all(|(_, each)| *each == Credits(1_000)), "{payees:?}");
    let fed = world.core().ledger().account(&scope("fed")).unwrap();
    assert_eq!((fed.position, fed.reserved), (-2_000, 0));
    assert!(world.core().ledger().check().is_ok());
}

/// A module that spins without calling out, cancelled a quarter of the way to its time
/// limit: its worker counted no fuel, and the run pays a quarter of its fuel limit —
/// the share of its time limit it held a donated slot for, on the coordinator's clock.
#[test]
fn a_cancelled_spin_pays_the_share_of_its_fuel_limit_its_time_is_of_its_time_limit() {
    let mut world = World::new(1, 5);
    world.apply(Op::Submit);
    let holder = world.workers.iter().position(|w| !w.held.is_empty()).unwrap();
    let assignment = world.workers[holder].held[0].clone();
    let job = assignment.task.job;
    world.apply(Op::Advance { ms: 500 });
    world.nonce += 1;
    let request = icn_protocol::wire::Cancel { job };
    let envelope = Envelope::seal(&member(), world.nonce, &request);
    world.input(|core, now| core.cancel(now, envelope, request)).unwrap();
    let stopped = Outcome::Failed { kind: FailureKind::Cancelled, detail: "stopped".into() };
    report_on(&mut world, holder, &assignment, stopped, 0);
    let settled = world.journal().iter().rev().find_map(|e| match e.decode_record().unwrap() {
        Record::CancelSettled { job: settled, fuel, payees } if settled == job => Some((fuel, payees)),
        _ => None,
    });
    // Submitted with a 2,000 ms time limit and the default billion fuel: 500 ms of it is
    // a quarter, 250 million fuel, 250 credits.
    let owner = scope(&format!("coop-{holder}"));
    assert_eq!(settled, Some((Fuel(250_000_000), vec![(owner, Credits(250))])));
    assert!(world.core().ledger().check().is_ok());
}
