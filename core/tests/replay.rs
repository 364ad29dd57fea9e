//! The core is a deterministic state machine whose journal is its whole history: any
//! sequence of proposals, ballots (replication, credit-limit, admission, share and dispute
//! decisions among them), submissions, honest and lying results, workers coming and
//! going, passing time and coordinator crashes gives
//!
//! - the same journal, byte for byte, from two fresh cores fed the same inputs;
//! - a live state (governance, ledger, jobs, trust, quarantine) equal to what replaying
//!   that journal from empty gives, crashes and restarts included;
//! - a view of every job, held or forgotten, that the journal's index tells the same.

use std::collections::BTreeMap;
use std::sync::Arc;

use icn_core::store::MemoryJournal;
use icn_core::trace::Provenance;
use icn_core::{Command, Core, CoreConfig, Driver, GENESIS_HASH, Now};
use icn_governance::Genesis;
use icn_governance::genesis::{GenesisMember, GenesisScope, GenesisWorker};
use icn_protocol::governance::{
    Ballot, Choice, Credits, Effect, Mandate, PlacementPolicy, PriceSchedule, Proposal, Rule, ScopeId,
    ScopeKind, Standing,
};
use icn_protocol::wire::{
    Assignment, Capacity, ExecutionReport, ExecutorKind, FailureKind, JobState, Limits, Outcome, Submission,
};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, Keypair};
use proptest::prelude::*;

const MEMBERS: usize = 4;
/// Workers 0 to 3 are founded; worker 4 joins only by a decision to admit it.
const WORKERS: usize = 5;
const OWNERS: [&str; WORKERS] = ["coop-a", "coop-b", "coop-c", "coop-d", "coop-b"];
const WINDOW_MS: u64 = 1_000;

fn scope(id: &str) -> ScopeId {
    id.parse().unwrap()
}

fn key(member: usize) -> Keypair {
    Keypair::from_seed([member as u8 + 1; 32])
}

fn worker(i: usize) -> Keypair {
    Keypair::from_seed([70 + i as u8; 32])
}

fn genesis() -> Genesis {
    let rule = |approval: &str| Rule {
        quorum: "1/2".parse().unwrap(),
        approval: approval.parse().unwrap(),
        voting_window_ms: WINDOW_MS,
    };
    let coop = |id: &str| GenesisScope {
        id: scope(id),
        kind: ScopeKind::Cooperative,
        parent: Some(scope("fed")),
        rule: rule("1/2"),
        prices: None,
        policy: None,
        credit_limit: None,
    };
    Genesis {
        scopes: vec![
            GenesisScope {
                id: scope("commons"),
                kind: ScopeKind::Commons,
                parent: None,
                rule: rule("1/2"),
                prices: Some(PriceSchedule { credits_per_mega_fuel: 1 }),
                policy: None,
                credit_limit: None,
            },
            GenesisScope {
                id: scope("fed"),
                kind: ScopeKind::Federation,
                parent: Some(scope("commons")),
                rule: rule("2/3"),
                prices: None,
                // Replicated from the start, so results are compared, disagree and go
                // to dispute; decisions change it.
                policy: Some(PlacementPolicy { replicas: 2, quorum: 2 }),
                credit_limit: Some(Credits(1_000_000_000)),
            },
            coop("coop-a"),
            coop("coop-b"),
            coop("coop-c"),
            coop("coop-d"),
        ],
        members: (0..MEMBERS)
            .map(|i| GenesisMember {
                name: format!("m{i}"),
                key: key(i).public(),
                standing: BTreeMap::from([
                    (scope("fed"), vec![Standing::Vote, Standing::Submit]),
                    (scope("commons"), vec![Standing::Vote]),
                ]),
            })
            .collect(),
        workers: (0..WORKERS - 1)
            .map(|i| GenesisWorker { key: worker(i).public(), owner: scope(OWNERS[i]) })
            .collect(),
        mandates: vec![Mandate {
            scope: scope("fed"),
            budget: Credits(50_000),
            period_ms: 3_600_000,
            executors: vec![ExecutorKind::Wasm],
            limits: Limits { fuel: Fuel(3_000_000_000), ..Limits::default() },
        }],
        free_compute: false,
    }
}

fn submission(fuel: u64) -> Submission {
    Submission {
        scope: scope("fed"),
        executor: ExecutorKind::Wasm,
        module: ContentId::of(b"m"),
        input: icn_protocol::wire::empty_input(),
        args: vec![],
        limits: Limits { fuel: Fuel(fuel), ..Limits::default() },
        options: Default::default(),
    }
}

/// Small limits, so that forgetting ended jobs, expiry and lost workers all happen.
fn config() -> CoreConfig {
    CoreConfig {
        worker_timeout_ms: 2_000,
        job_expiry_ms: 20_000,
        ended_jobs_max: 4,
        ended_job_memory_ms: 10_000,
        ..CoreConfig::default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Propose {
        member: usize,
        effect: u8,
        value: u32,
    },
    Vote {
        member: usize,
        proposal: usize,
        choice: u8,
    },
    Submit {
        member: usize,
        fuel_mega: u64,
    },
    /// A member asks to cancel one of the jobs submitted so far (refused when it ended).
    Cancel {
        member: usize,
        job: usize,
    },
    Advance {
        ms: u64,
    },
    /// A connected worker reports on one of its tasks: what an honest run gives, or a
    /// made-up output, or a failure of its own that is retried.
    Finish {
        task: usize,
        lie: bool,
        flaky: bool,
    },
    Connect {
        worker: usize,
    },
    Disconnect {
        worker: usize,
    },
    /// The coordinator's process dies and starts again from its journal.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    // Weighted so that many proposals gather enough ballots to pass, jobs then run
    // against the mandates they grant, and workers report on them.
    prop_oneof![
        3 => (0..MEMBERS, 0..14u8, 1..7u32).prop_map(|(member, effect, value)| Op::Propose { member, effect, value }),
        10 => (0..MEMBERS, prop_oneof![3 => Just(0usize), 1 => 1..3usize], 0..10u8)
            .prop_map(|(member, proposal, choice)| Op::Vote { member, proposal, choice }),
        4 => (0..MEMBERS, 1..3_000u64).prop_map(|(member, fuel_mega)| Op::Submit { member, fuel_mega }),
        1 => (0..MEMBERS, 0..16usize).prop_map(|(member, job)| Op::Cancel { member, job }),
        3 => (1..1_500u64).prop_map(|ms| Op::Advance { ms }),
        8 => (0..8usize, proptest::bool::weighted(0.45), proptest::bool::weighted(0.1))
            .prop_map(|(task, lie, flaky)| Op::Finish { task, lie, flaky }),
        1 => (0..WORKERS).prop_map(|worker| Op::Connect { worker }),
        1 => (0..WORKERS).prop_map(|worker| Op::Disconnect { worker }),
        1 => Just(Op::Crash),
    ]
}

/// What an honest run of `job` gives: the same for every replica.
fn honest(job: &JobId, limits: &Limits) -> (Outcome, ContentId, Fuel) {
    let byte = job.0.0[0] as u64;
    if byte.is_multiple_of(6) {
        let outcome = Outcome::Failed { kind: FailureKind::OutOfFuel, detail: "out of fuel".into() };
        (outcome, ContentId::of(b""), limits.fuel)
    } else {
        (Outcome::Exited { code: 0 }, ContentId::of(&job.0.0), Fuel(limits.fuel.0 / 100 * (byte % 100)))
    }
}

fn lie_of(worker: usize) -> ContentId {
    ContentId::of(&[b'l', worker as u8])
}

/// A coordinator core and the world around it: members, workers and a journal.
struct Sim {
    coordinator: Arc<Keypair>,
    /// The core over its journal, as the coordinator's thread runs it.
    driver: Driver<MemoryJournal>,
    now_ms: u64,
    sessions: u64,
    /// Connected workers and their session; a worker away is not in it.
    connected: BTreeMap<usize, u64>,
    /// Tasks each worker runs, as assigned.
    running: Vec<(usize, Assignment)>,
    proposals: Vec<ContentId>,
    jobs: Vec<JobId>,
    /// The limits each job ran under, as assigned: an honest run's fuel depends on them.
    limits: BTreeMap<JobId, Limits>,
    nonce: u64,
}

impl Sim {
    fn new() -> Sim {
        let coordinator = Arc::new(Keypair::from_seed([99; 32]));
        let core = Core::new(coordinator.clone(), config());
        let driver = Driver::recover(core, MemoryJournal::default(), Now::at(1_000_000), &genesis()).unwrap();
        let mut sim = Sim {
            coordinator,
            driver,
            now_ms: 1_000_000,
            sessions: 0,
            connected: BTreeMap::new(),
            running: vec![],
            proposals: vec![],
            jobs: vec![],
            limits: BTreeMap::new(),
            nonce: 0,
        };
        for i in 0..WORKERS - 1 {
            sim.connect(i);
        }
        sim
    }

    fn now(&self) -> Now {
        Now::at(self.now_ms)
    }

    fn core(&self) -> &Core {
        self.driver.core()
    }

    fn journal(&self) -> &MemoryJournal {
        self.driver.store()
    }

    /// One input to the core, made durable, then its commands carried out.
    fn input<R>(&mut self, input: impl FnOnce(&mut Core) -> R) -> R {
        let (r, durable) = self.driver.step(|turn| input(turn.core)).unwrap();
        self.carry_out(durable.commands);
        r
    }

    fn connect(&mut self, i: usize) {
        if self.connected.contains_key(&i) {
            return;
        }
        self.sessions += 1;
        let capacity = Capacity { slots: 2, memory_bytes: 1 << 30, executors: vec![ExecutorKind::Wasm] };
        let running: Vec<_> =
            self.running.iter().filter(|(w, _)| *w == i).map(|(_, a)| (a.task, a.attempt)).collect();
        let (now, session) = (self.now(), self.sessions);
        if self
            .input(|core| core.worker_connected(now, worker(i).public(), session, capacity, &running))
            .is_ok()
        {
            self.connected.insert(i, self.sessions);
        }
    }

    fn step(&mut self, op: &Op) {
        self.nonce += 1;
        let (now, nonce) = (self.now(), self.nonce);
        match *op {
            Op::Propose { member, effect, value } => {
                let Some((in_scope, effect)) = self.effect(effect, value) else { return };
                let proposal = Proposal { scope: scope(in_scope), title: "p".into(), effect };
                let envelope = Envelope::seal(&key(member), nonce, &proposal);
                if let Ok((id, _)) = self.input(|core| core.propose(now, envelope, proposal)) {
                    self.proposals.push(id);
                }
            }
            Op::Vote { member, proposal, choice } => {
                // One of the newest proposals: those are the ones still open.
                let Some(id) = self.proposals.iter().rev().nth(proposal).copied() else { return };
                let choice = match choice {
                    0..7 => Choice::Yes,
                    7..9 => Choice::No,
                    _ => Choice::Abstain,
                };
                let ballot = Ballot {
                    proposal: id,
                    choice,
                    reason: (choice == Choice::No).then(|| "not now".to_string()),
                };
                let _ =
                    self.input(|core| core.vote(now, Envelope::seal(&key(member), nonce, &ballot), ballot));
            }
            Op::Submit { member, fuel_mega } => {
                let mut submission = submission(fuel_mega * 1_000_000);
                // Some jobs name a class (refused until a decision makes it), some have a
                // deadline they may miss.
                submission.options.priority =
                    ["urgent", "batch"].get(fuel_mega as usize % 4).map(|c| c.to_string());
                submission.options.deadline_ms = (fuel_mega % 5 == 0).then_some(self.now_ms + fuel_mega * 5);
                let envelope = Envelope::seal(&key(member), nonce, &submission);
                if let Ok(job) = self.input(|core| core.submit(now, envelope, submission)) {
                    self.jobs.push(job);
                }
            }
            Op::Cancel { member, job } => {
                if let Some(job) = self.jobs.get(job).copied() {
                    let request = icn_protocol::wire::Cancel { job };
                    let envelope = Envelope::seal(&key(member), nonce, &request);
                    let _ = self.input(|core| core.cancel(now, envelope, request));
                }
            }
            Op::Advance { ms } => {
                self.now_ms += ms;
                for (i, session) in self.connected.clone() {
                    let running: Vec<_> = self
                        .running
                        .iter()
                        .filter(|(w, _)| *w == i)
                        .map(|(_, a)| (a.task, a.attempt))
                        .collect();
                    let now = self.now();
                    self.input(|core| core.heartbeat(now, worker(i).public(), session, &running));
                }
                let now = self.now();
                self.input(|core| core.tick(now));
            }
            Op::Finish { task, lie, flaky } => self.finish(task, lie, flaky),
            Op::Connect { worker } => self.connect(worker),
            Op::Disconnect { worker: i } => {
                if let Some(session) = self.connected.remove(&i) {
                    self.input(|core| {
                        core.worker_disconnected(now, worker(i).public(), session, "test".into())
                    });
                }
            }
            Op::Crash => self.crash(),
        }
    }

    /// A decision to propose, and the scope that may make it; `None` when there is
    /// nothing to decide of that kind now.
    fn effect(&self, kind: u8, value: u32) -> Option<(&'static str, Effect)> {
        let member = value as usize % MEMBERS;
        let some_worker = worker(value as usize % WORKERS).public();
        Some(match kind {
            0 | 1 => (
                "fed",
                Effect::Mandate(Mandate {
                    scope: scope("fed"),
                    budget: Credits(i64::from(value) * 1_000),
                    period_ms: u64::from(value) * 4_000,
                    executors: vec![ExecutorKind::Wasm],
                    limits: Limits { fuel: Fuel(3_000_000_000), ..Limits::default() },
                }),
            ),
            2 => ("fed", Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: u64::from(value) })),
            3 => (
                "fed",
                Effect::RevokeStanding { key: key(member).public(), standing: vec![Standing::Submit] },
            ),
            4 => (
                "fed",
                Effect::GrantStanding {
                    name: format!("m{member}"),
                    key: key(member).public(),
                    standing: vec![Standing::Submit],
                },
            ),
            5 => {
                let replicas = 1 + value % 3;
                let quorum = 1 + (value / 3) % replicas;
                ("fed", Effect::PlacementPolicy(PlacementPolicy { replicas, quorum }))
            }
            6 => (
                "commons",
                Effect::CreditLimit { scope: scope("fed"), limit: Credits(i64::from(value) * 20_000) },
            ),
            7 => (
                "fed",
                Effect::AdmitWorker { key: worker(WORKERS - 1).public(), owner: scope(OWNERS[WORKERS - 1]) },
            ),
            8 => ("fed", Effect::RemoveWorker { key: some_worker }),
            9 => ("fed", Effect::Readmit { key: some_worker }),
            10 => ("commons", Effect::Share { scope: scope("fed"), weight: value }),
            11 => (
                "fed",
                Effect::PriorityClasses {
                    classes: vec![
                        icn_protocol::governance::PriorityClass { name: "urgent".into(), weight: value },
                        icn_protocol::governance::PriorityClass { name: "batch".into(), weight: 1 },
                    ],
                },
            ),
            _ => {
                let job = *self
                    .jobs
                    .iter()
                    .rev()
                    .find(|j| self.core().job(j).is_some_and(|v| v.state == JobState::Disputed))?;
                let limits = self.limits.get(&job).cloned().unwrap_or_default();
                let (_, digest, fuel) = honest(&job, &limits);
                let digest = if value.is_multiple_of(3) { lie_of(value as usize % WORKERS) } else { digest };
                ("commons", Effect::ResolveDispute { job, output_digest: digest, fuel })
            }
        })
    }

    fn finish(&mut self, task: usize, lie: bool, flaky: bool) {
        let reachable: Vec<usize> =
            (0..self.running.len()).filter(|i| self.connected.contains_key(&self.running[*i].0)).collect();
        if reachable.is_empty() {
            return;
        }
        let (i, assignment) = self.running.remove(reachable[task % reachable.len()]);
        let (mut outcome, mut digest, fuel) = honest(&assignment.task.job, &assignment.limits);
        if lie {
            // Each liar makes up its own output.
            digest = lie_of(i);
        }
        if flaky {
            outcome = Outcome::Failed { kind: FailureKind::WorkerError, detail: "the disk filled".into() };
        }
        let report = ExecutionReport {
            task: assignment.task,
            attempt: assignment.attempt,
            outcome,
            output_digest: digest,
            output_bytes: 0,
            stderr: vec![],
            fuel,
            usage: Default::default(),
        };
        let envelope = Envelope::seal(&worker(i), self.nonce, &report);
        let (now, session) = (self.now(), self.connected[&i]);
        self.input(|core| core.report(now, worker(i).public(), session, envelope, report));
    }

    /// Carries out the commands of a batch made durable, as the coordinator's shell does.
    fn carry_out(&mut self, commands: Vec<Command>) {
        let mut stopped = vec![];
        for command in commands {
            match command {
                Command::Dispatch { worker: key, assignment, .. } => {
                    let i = (0..WORKERS).find(|i| worker(*i).public() == key).unwrap();
                    self.limits.insert(assignment.task.job, assignment.limits);
                    self.running.push((i, assignment));
                }
                Command::Disconnect { worker: key, session, .. } => {
                    let i = (0..WORKERS).find(|i| worker(*i).public() == key).unwrap();
                    if self.connected.get(&i) == Some(&session) {
                        self.connected.remove(&i);
                    }
                    // A worker let go drops what it ran for this coordinator.
                    self.running.retain(|(w, _)| *w != i);
                }
                Command::Stop { task, attempt, .. } => {
                    // The worker stops the run and, most times, says what it used until then.
                    if let Some(at) =
                        self.running.iter().position(|(_, a)| (a.task, a.attempt) == (task, attempt))
                    {
                        let (i, assignment) = self.running.remove(at);
                        if !self.nonce.is_multiple_of(4) {
                            stopped.push((i, assignment));
                        }
                    }
                }
                Command::JobChanged(_) => {}
            }
        }
        for (i, assignment) in stopped {
            let Some(session) = self.connected.get(&i).copied() else { continue };
            let report = ExecutionReport {
                task: assignment.task,
                attempt: assignment.attempt,
                outcome: Outcome::Failed { kind: FailureKind::Cancelled, detail: "stopped".into() },
                output_digest: ContentId::of(b""),
                output_bytes: 0,
                stderr: vec![],
                fuel: Fuel(assignment.limits.fuel.0 / 3),
                usage: Default::default(),
            };
            let envelope = Envelope::seal(&worker(i), self.nonce, &report);
            let now = self.now();
            self.input(|core| core.report(now, worker(i).public(), session, envelope, report));
        }
    }

    /// The process dies; nothing not yet durable survives. A new core starts from the
    /// journal and the workers connect again, with what they still run.
    fn crash(&mut self) {
        let core = Core::new(self.coordinator.clone(), config());
        let journal = self.journal().clone();
        self.driver = Driver::recover(core, journal, self.now(), &genesis()).unwrap();
        self.connected.clear();
        for i in 0..WORKERS {
            if self.running.iter().any(|(w, _)| *w == i) || i < WORKERS - 1 {
                self.connect(i);
            }
        }
    }

    /// Checks the journal and that replaying it from empty gives the live state.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let entries = &self.journal().entries;
        let bad = icn_core::first_bad(entries, 0, GENESIS_HASH, &self.coordinator.public(), None);
        prop_assert!(bad.is_none(), "{bad:?}");
        let mut replayed = Core::new(self.coordinator.clone(), config());
        replayed.replay(entries).unwrap();
        prop_assert_eq!(self.core().governance(), replayed.governance());
        prop_assert_eq!(self.core().ledger(), replayed.ledger());
        prop_assert_eq!(self.core().state(), replayed.state());
        prop_assert_eq!(self.core().ledger().check(), Ok(()));
        Ok(())
    }

    /// Every ended job's view, held in memory or not, is what the journal's index says.
    fn check_views(&self) -> Result<(), TestCaseError> {
        let names = self.core().names();
        let provenance = Provenance::new(self.journal(), &names);
        for job in &self.jobs {
            let journaled = provenance.job_view(job).unwrap();
            prop_assert!(journaled.is_some(), "job {} is in the index", job);
            match self.core().job(job) {
                Some(view)
                    if matches!(view.state, JobState::Completed | JobState::Failed | JobState::Cancelled) =>
                {
                    prop_assert_eq!(Some(view), journaled)
                }
                Some(_) => {}
                None => prop_assert!(
                    matches!(
                        journaled.unwrap().state,
                        JobState::Completed | JobState::Failed | JobState::Cancelled
                    ),
                    "only ended jobs leave memory"
                ),
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn replaying_the_journal_from_empty_gives_the_live_state_through_crashes(ops in proptest::collection::vec(op(), 20..160)) {
        let mut sim = Sim::new();
        for op in &ops {
            sim.step(op);
        }
        sim.check_replay()?;
        sim.check_views()?;
    }

    #[test]
    fn two_fresh_cores_fed_the_same_inputs_write_the_same_journal(ops in proptest::collection::vec(op(), 20..160)) {
        let (mut one, mut two) = (Sim::new(), Sim::new());
        for op in &ops {
            one.step(op);
            two.step(op);
        }
        prop_assert_eq!(one.journal().entries.len(), two.journal().entries.len());
        for (a, b) in one.journal().entries.iter().zip(&two.journal().entries) {
            // Every field: the record's bytes, the time, the links, the hash and the seal.
            prop_assert_eq!(a, b, "entry {}", a.seq);
        }
    }
}

#[test]
fn a_job_that_cannot_end_expires_and_its_reservation_is_voided() {
    let coordinator = Arc::new(Keypair::from_seed([99; 32]));
    let config = CoreConfig { job_expiry_ms: 60_000, ..CoreConfig::default() };
    let mut core = Core::new(coordinator, config);
    let mut now_ms = 1_000_000;
    let mut genesis = genesis();
    genesis.scopes[1].policy = None;
    genesis.mandates[0] = Mandate {
        scope: scope("fed"),
        budget: Credits(1_000_000),
        period_ms: 3_600_000,
        executors: vec![ExecutorKind::Wasm],
        limits: Limits::default(),
    };
    core.found(Now::at(now_ms), &genesis).unwrap();
    // No worker ever connects: the job can only wait.
    let submission = submission(Limits::default().fuel.0);
    let job = core.submit(Now::at(now_ms), Envelope::seal(&key(0), 1, &submission), submission).unwrap();
    assert_eq!(core.ledger().account(&scope("fed")).unwrap().reserved, 1_000);
    now_ms += 59_999;
    core.tick(Now::at(now_ms));
    assert_eq!(core.job(&job).unwrap().state, icn_protocol::wire::JobState::Queued);
    now_ms += 1;
    core.tick(Now::at(now_ms));
    let view = core.job(&job).unwrap();
    assert_eq!(view.state, icn_protocol::wire::JobState::Failed);
    assert!(view.failure.unwrap().starts_with("expired: no accepted result within 60000 ms"));
    assert_eq!(core.ledger().account(&scope("fed")).unwrap().reserved, 0);
    assert_eq!(core.governance().mandates[&0].held, Credits(0));
}
