//! Governed fair share: two federations flood a four-slot commons; the commons decides
//! their weights, 3 to 1, and the completed jobs split 3 to 1; a later decision turns the
//! weights around and the split follows. The order is the journal's: two fresh cores fed
//! the same inputs write the same journal, and replaying it rebuilds the live state. The
//! trace of a job names the decision that set its scope's share.

use std::collections::BTreeMap;
use std::sync::Arc;

use icn_core::store::{JournalStore, MemoryJournal};
use icn_core::trace::Provenance;
use icn_core::{Command, Core, CoreConfig, Now};
use icn_governance::Genesis;
use icn_governance::genesis::{GenesisMember, GenesisScope, GenesisWorker};
use icn_protocol::governance::{
    Ballot, Choice, Credits, Effect, Mandate, PriceSchedule, Proposal, Rule, ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::{Assignment, Capacity, ExecutionReport, ExecutorKind, Limits, Outcome, Submission};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, Keypair};

const WORKERS: usize = 4;
const WINDOW_MS: u64 = 1_000;
/// How long each task holds its slot.
const TASK_MS: u64 = 40;

fn scope(id: &str) -> ScopeId {
    id.parse().unwrap()
}

fn member(i: usize) -> Keypair {
    Keypair::from_seed([10 + i as u8; 32])
}

fn worker(i: usize) -> Keypair {
    Keypair::from_seed([40 + i as u8; 32])
}

/// The commons, federations north and south (members 0 and 1 submit for them, and both
/// vote in the commons), and four one-slot workers of four cooperatives.
fn genesis() -> Genesis {
    let rule = Rule {
        quorum: "1/2".parse().unwrap(),
        approval: "1/2".parse().unwrap(),
        voting_window_ms: WINDOW_MS,
    };
    let scope_of = |id: &str, kind, parent: Option<&str>| GenesisScope {
        id: scope(id),
        kind,
        parent: parent.map(scope),
        rule,
        prices: (kind == ScopeKind::Commons).then_some(PriceSchedule { credits_per_mega_fuel: 1 }),
        policy: None,
        credit_limit: (kind == ScopeKind::Federation).then_some(Credits(1_000_000)),
    };
    let feds = ["fed-north", "fed-south"];
    let coops = ["coop-a", "coop-b", "coop-c", "coop-d"];
    let mut scopes = vec![scope_of("commons", ScopeKind::Commons, None)];
    scopes.extend(feds.iter().map(|f| scope_of(f, ScopeKind::Federation, Some("commons"))));
    scopes.extend(
        coops.iter().enumerate().map(|(i, c)| scope_of(c, ScopeKind::Cooperative, Some(feds[i / 2]))),
    );
    Genesis {
        scopes,
        members: (0..2)
            .map(|i| GenesisMember {
                name: format!("m{i}"),
                key: member(i).public(),
                standing: BTreeMap::from([
                    (scope(feds[i]), vec![Standing::Submit, Standing::Vote]),
                    (scope("commons"), vec![Standing::Vote]),
                ]),
            })
            .collect(),
        workers: (0..WORKERS)
            .map(|i| GenesisWorker { key: worker(i).public(), owner: scope(coops[i]) })
            .collect(),
        mandates: feds
            .iter()
            .map(|f| Mandate {
                scope: scope(f),
                budget: Credits(1_000_000),
                period_ms: 86_400_000,
                executors: vec![ExecutorKind::Wasm],
                limits: Limits::default(),
            })
            .collect(),
        free_compute: false,
    }
}

fn config() -> CoreConfig {
    // A short half-life, so that after the weights change the past fades within the test.
    CoreConfig { share_half_life_ms: 500, share_quantum_ms: 100, ..CoreConfig::default() }
}

struct Commons {
    core: Core,
    journal: MemoryJournal,
    now_ms: u64,
    nonce: u64,
    /// Tasks running, oldest first, with the worker running each.
    running: std::collections::VecDeque<(usize, Assignment)>,
    scope_of: BTreeMap<JobId, ScopeId>,
    class_of: BTreeMap<JobId, String>,
    /// The scope of each job that completed, in order.
    completed: Vec<ScopeId>,
    completed_jobs: Vec<JobId>,
}

impl Commons {
    fn new() -> Commons {
        Commons::with(config())
    }

    fn with(config: CoreConfig) -> Commons {
        let mut core = Core::new(Arc::new(Keypair::from_seed([99; 32])), config);
        core.found(Now::at(1_000_000), &genesis()).unwrap();
        let mut commons = Commons {
            core,
            journal: MemoryJournal::default(),
            now_ms: 1_000_000,
            nonce: 0,
            running: Default::default(),
            scope_of: BTreeMap::new(),
            class_of: BTreeMap::new(),
            completed: vec![],
            completed_jobs: vec![],
        };
        for i in 0..WORKERS {
            let capacity = Capacity { slots: 1, memory_bytes: 1 << 30, executors: vec![ExecutorKind::Wasm] };
            commons
                .core
                .worker_connected(commons.now(), worker(i).public(), i as u64, capacity, &[])
                .unwrap();
        }
        commons.settle();
        commons
    }

    fn now(&self) -> Now {
        Now::at(self.now_ms)
    }

    fn seal<T: icn_protocol::Signed>(&mut self, key: &Keypair, value: &T) -> Envelope {
        self.nonce += 1;
        Envelope::seal(key, self.nonce, value)
    }

    fn submit(&mut self, who: usize) -> JobId {
        self.submit_in_class(who, None).unwrap()
    }

    fn submit_in_class(&mut self, who: usize, class: Option<&str>) -> Result<JobId, icn_core::Refusal> {
        let fed = scope(["fed-north", "fed-south"][who]);
        let mut submission = Submission {
            scope: fed.clone(),
            executor: ExecutorKind::Wasm,
            module: ContentId::of(b"m"),
            input: icn_protocol::wire::empty_input(),
            args: vec![],
            limits: Limits { fuel: Fuel(1_000_000), ..Limits::default() },
            options: Default::default(),
        };
        submission.options.priority = class.map(str::to_string);
        let envelope = self.seal(&member(who), &submission);
        let job = self.core.submit(self.now(), envelope, submission)?;
        self.scope_of.insert(job, fed);
        self.class_of.insert(job, class.unwrap_or("default").to_string());
        self.settle();
        Ok(job)
    }

    /// Both members propose and pass `effects` in the commons; returns the decisions' entries.
    fn decide(&mut self, effects: Vec<Effect>) -> Vec<u64> {
        self.decide_in("commons", &[0, 1], effects)
    }

    /// `voters` propose and pass `effects` in scope `deciding`.
    fn decide_in(&mut self, deciding: &str, voters: &[usize], effects: Vec<Effect>) -> Vec<u64> {
        let mut proposals = vec![];
        for effect in effects {
            let proposal = Proposal { scope: scope(deciding), title: "shares".into(), effect };
            let envelope = self.seal(&member(voters[0]), &proposal);
            proposals.push(self.core.propose(self.now(), envelope, proposal).unwrap().0);
        }
        for proposal in &proposals {
            for &who in voters {
                let ballot = Ballot { proposal: *proposal, choice: Choice::Yes, reason: None };
                let envelope = self.seal(&member(who), &ballot);
                self.core.vote(self.now(), envelope, ballot).unwrap();
            }
        }
        self.settle();
        let before = self.core.journal_len();
        // The voting window closes while the workers keep working.
        let closes_ms = self.now_ms + WINDOW_MS;
        while self.now_ms <= closes_ms {
            self.finish_oldest();
        }
        let decided: Vec<u64> = self.journal.entries[before as usize..]
            .iter()
            .filter(|e| {
                matches!(
                    e.decode_record().unwrap(),
                    icn_core::Record::Governance(icn_governance::Event::DecisionMade(ref d)) if d.accepted
                )
            })
            .map(|e| e.seq)
            .collect();
        assert_eq!(decided.len(), proposals.len(), "every share proposal passed");
        decided
    }

    /// Time passes by one task's share of a slot; the oldest task reports its result.
    fn finish_oldest(&mut self) {
        self.now_ms += TASK_MS / WORKERS as u64;
        self.core.tick(self.now());
        self.settle();
        let Some((i, assignment)) = self.running.pop_front() else { return };
        let report = ExecutionReport {
            task: assignment.task,
            attempt: assignment.attempt,
            outcome: Outcome::Exited { code: 0 },
            output_digest: ContentId::of(b"42"),
            output_bytes: 2,
            stderr: vec![],
            fuel: Fuel(1_000),
            usage: Default::default(),
        };
        let envelope = self.seal(&worker(i), &report);
        self.core.report(self.now(), worker(i).public(), i as u64, envelope, report);
        self.completed.push(self.scope_of[&assignment.task.job].clone());
        self.completed_jobs.push(assignment.task.job);
        self.settle();
    }

    fn settle(&mut self) {
        let entries = self.core.take_entries();
        self.journal.append(&entries, &self.core.take_index(), &[]).unwrap();
        for command in self.core.take_commands() {
            if let Command::Dispatch { worker: key, assignment, .. } = command {
                let i = (0..WORKERS).find(|i| worker(*i).public() == key).unwrap();
                self.running.push_back((i, assignment));
            }
        }
    }

    /// How many of the `n` jobs that completed after the first `from` were north's, and south's.
    fn split(&self, from: usize, n: usize) -> (usize, usize) {
        let window = &self.completed[from..from + n];
        let north = window.iter().filter(|s| s.as_str() == "fed-north").count();
        (north, n - north)
    }
}

/// The whole scenario: returns the commons as it ends, for the checks.
fn run() -> (Commons, [JobId; 3], Vec<u64>, Vec<u64>) {
    let mut commons = Commons::new();
    // Before any decision: weight 1 each, and the trace says so.
    let early = commons.submit(0);
    commons.finish_oldest();
    let first = commons.decide(vec![Effect::Share { scope: scope("fed-north"), weight: 3 }]);
    for _ in 0..700 {
        commons.submit(0);
        commons.submit(1);
    }
    let start = commons.completed.len();
    while commons.completed.len() < start + 400 {
        commons.finish_oldest();
    }
    let under_first = *commons.running.back().map(|(_, a)| &a.task.job).unwrap();
    let view = commons.core.queue();
    let second = commons.decide(vec![
        Effect::Share { scope: scope("fed-north"), weight: 1 },
        Effect::Share { scope: scope("fed-south"), weight: 3 },
    ]);
    // Let the weights turn the split around before measuring it.
    let changed = commons.completed.len() + 100;
    while commons.completed.len() < changed + 400 {
        commons.finish_oldest();
    }
    let under_second = *commons.running.back().map(|(_, a)| &a.task.job).unwrap();
    assert_eq!(view.scopes.len(), 2, "{view:?}");
    let north = &view.scopes[0];
    assert_eq!(
        (north.scope.as_str(), north.weight, north.decision, north.share),
        ("fed-north", 3, Some(first[0]), 0.75),
        "{view:?}"
    );
    assert_eq!((view.scopes[1].weight, view.scopes[1].decision, view.scopes[1].share), (1, None, 0.25));
    assert_eq!((view.slots, view.free_slots), (4, 0));
    assert!(north.waiting > 0 && north.running > 0 && north.recent_ms > 0, "{view:?}");
    let (commons_start, commons_changed) = (start, changed);
    let split = |c: &Commons, from| c.split(from, 400);
    let (n1, s1) = split(&commons, commons_start);
    let (n2, s2) = split(&commons, commons_changed);
    assert!((2.7..=3.3).contains(&(n1 as f64 / s1 as f64)), "weights 3:1 split 400 jobs {n1}:{s1}");
    assert!((2.7..=3.3).contains(&(s2 as f64 / n2 as f64)), "weights 1:3 split 400 jobs {n2}:{s2}");
    (commons, [early, under_first, under_second], first, second)
}

#[test]
fn decided_weights_split_a_flooded_commons_and_a_new_decision_changes_the_split() {
    let (commons, [early, under_first, under_second], first, second) = run();

    // The trace of a job names the share decision that ordered it.
    let names = commons.core.names();
    let provenance = Provenance::new(&commons.journal, &names);
    let order = |job: &JobId| provenance.job(job).unwrap().job.unwrap().order.unwrap();
    assert!(order(&early).contains("weight 1, as no decision had set another"), "{}", order(&early));
    let expected = format!("weight 3 among the scopes of commons, set by decision #{}", first[0]);
    assert!(order(&under_first).contains(&expected), "{}", order(&under_first));
    let north_or_south = &commons.scope_of[&under_second];
    let decision = if north_or_south.as_str() == "fed-north" { second[0] } else { second[1] };
    let weight = if north_or_south.as_str() == "fed-north" { 1 } else { 3 };
    let expected = format!(
        "{north_or_south}'s fair share had weight {weight} among the scopes of commons, set by decision #{decision}"
    );
    assert!(order(&under_second).contains(&expected), "{}", order(&under_second));

    // Replay rebuilds the live state, recent usage by scope included.
    let mut replayed = Core::new(Arc::new(Keypair::from_seed([99; 32])), config());
    replayed.replay(&commons.journal.entries).unwrap();
    assert_eq!(commons.core.state(), replayed.state());
    assert_eq!(commons.core.queue().scopes, replayed.queue().scopes);
}

#[test]
fn the_same_inputs_give_the_same_order() {
    let (a, ..) = run();
    let (b, ..) = run();
    assert_eq!(a.completed, b.completed);
    let hashes = |c: &Commons| c.journal.entries.iter().map(|e| e.hash).collect::<Vec<_>>();
    assert_eq!(hashes(&a), hashes(&b));
}

/// Inside a scope, priority classes share its slots by the weights its own decision set:
/// urgent 3, batch 1 split 400 completions 3 to 1; a class the scope has not decided is
/// refused, naming the ones it has.
#[test]
fn a_scopes_priority_classes_split_its_slots_by_their_decided_weights() {
    use icn_protocol::governance::PriorityClass;
    let mut commons = Commons::new();
    let class = |name: &str, weight| PriorityClass { name: name.into(), weight };
    commons.decide_in(
        "fed-north",
        &[0],
        vec![Effect::PriorityClasses { classes: vec![class("urgent", 3), class("batch", 1)] }],
    );
    let refused = commons.submit_in_class(0, Some("someday")).unwrap_err().to_string();
    assert!(
        refused.contains("no priority class \"someday\"; its classes are urgent, batch, default"),
        "{refused}"
    );
    for _ in 0..500 {
        commons.submit_in_class(0, Some("urgent")).unwrap();
        commons.submit_in_class(0, Some("batch")).unwrap();
    }
    let start = commons.completed_jobs.len();
    while commons.completed_jobs.len() < start + 400 {
        commons.finish_oldest();
    }
    let urgent =
        commons.completed_jobs[start..].iter().filter(|job| commons.class_of[*job] == "urgent").count();
    let ratio = urgent as f64 / (400 - urgent) as f64;
    assert!((2.7..=3.3).contains(&ratio), "urgent 3, batch 1 split 400 jobs {urgent}:{}", 400 - urgent);
    let mut replayed = Core::new(Arc::new(Keypair::from_seed([99; 32])), config());
    replayed.replay(&commons.journal.entries).unwrap();
    assert_eq!(commons.core.state(), replayed.state());
}

/// M3: the open jobs were shared by the whole commons, so one member could fill them.
/// Now one member, and one scope, holds at most its share; others submit all the while,
/// and a member whose job ends may submit again.
#[test]
fn no_member_and_no_scope_fills_the_open_jobs() {
    let mut commons = Commons::with(CoreConfig { jobs_open_per_submitter_max: 6, ..config() });
    for _ in 0..6 {
        commons.submit(0);
    }
    let before = commons.core.journal_len();
    let refused = commons.submit_in_class(0, None).unwrap_err();
    assert_eq!(refused.code(), "too_many_jobs");
    assert!(refused.to_string().contains("has 6 jobs open, as many as one member may"), "{refused}");
    assert_eq!(commons.core.journal_len(), before, "a refused submission journals nothing");
    commons.submit(1);
    while commons.completed_jobs.is_empty() {
        commons.finish_oldest();
    }
    assert!(commons.submit_in_class(0, None).is_ok(), "a job ended: room again");

    let mut commons = Commons::with(CoreConfig { jobs_open_per_scope_max: 5, ..config() });
    for _ in 0..5 {
        commons.submit(0);
    }
    let refused = commons.submit_in_class(0, None).unwrap_err();
    assert!(refused.to_string().contains("scope fed-north has 5 jobs open"), "{refused}");
    commons.submit(1);
}
