//! A deterministic, seeded simulation of a commons with dishonest workers: trust-aware
//! placement and verification against fixed two-fold replication, in the same run.
//!
//! Honest workers return the true result of a task. Independent Byzantine workers return
//! a random wrong result every time. Every worker of the colluding cooperative returns
//! the same wrong result, so colluders agree with each other.

use std::collections::{BTreeMap, BTreeSet};

use icn_protocol::governance::ScopeId;
use icn_protocol::wire::ExecutorKind;
use icn_protocol::{ContentId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::{Candidate, Policy, Pool, Report, Request, Trust, Verdict, Weights, judge, plan};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimConfig {
    pub workers: usize,
    pub cooperatives: usize,
    /// Independent Byzantine workers, spread over the honest cooperatives.
    pub byzantine: usize,
    /// Whether the last cooperative's workers all collude.
    pub colluding_cooperative: bool,
    pub tasks: usize,
    /// A replica holds its worker's one slot for this many task arrivals, so placement
    /// must spread work over the pool as a busy commons would.
    pub task_duration: usize,
    pub seed: u64,
    pub policy: Policy,
    pub weights: Weights,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            workers: 200,
            cooperatives: 20,
            byzantine: 10,
            colluding_cooperative: true,
            tasks: 5_000,
            task_duration: 60,
            seed: 7,
            policy: Policy::default(),
            weights: Weights::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SimReport {
    pub strategy: String,
    pub tasks: usize,
    pub accepted: usize,
    pub wrong_accepted: usize,
    pub wrong_from_byzantine: usize,
    pub wrong_from_colluders: usize,
    pub executions: usize,
    pub replicas_per_accepted: f64,
    /// Replicas per task over the second half of the run, once trust has formed.
    pub replicas_per_task_late: f64,
    pub disputes: usize,
    /// Tasks no plan could be made for (not enough free workers).
    pub unplaced: usize,
    pub quarantined_byzantine: usize,
    pub quarantined_colluders: usize,
    pub quarantined_honest: usize,
    /// Highest over lowest earnings among the honest cooperatives.
    pub earnings_max_over_min: f64,
    /// Gini coefficient of earnings among the honest cooperatives (0 is perfectly even).
    pub earnings_gini: f64,
}

/// splitmix64: small, fast and good enough for a reproducible simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Honest,
    Byzantine,
    Colluder,
}

struct World {
    keys: Vec<PublicKey>,
    owners: Vec<ScopeId>,
    behaviour: BTreeMap<PublicKey, Behaviour>,
    colluders: Option<ScopeId>,
}

fn world(config: &SimConfig) -> World {
    let owners: Vec<ScopeId> =
        (0..config.cooperatives).map(|c| format!("coop-{c:02}").parse().expect("valid name")).collect();
    let colluders = config.colluding_cooperative.then(|| owners[config.cooperatives - 1].clone());
    let mut keys = vec![];
    let mut worker_owner = vec![];
    let mut behaviour = BTreeMap::new();
    let mut byzantine_left = config.byzantine;
    for i in 0..config.workers {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let key = PublicKey(bytes);
        let owner = owners[i % config.cooperatives].clone();
        let kind = if Some(&owner) == colluders.as_ref() {
            Behaviour::Colluder
        } else if byzantine_left > 0 && i / config.cooperatives % 3 == 1 {
            // Spread over the honest cooperatives: one per cooperative in a pass.
            byzantine_left -= 1;
            Behaviour::Byzantine
        } else {
            Behaviour::Honest
        };
        keys.push(key);
        worker_owner.push(owner);
        behaviour.insert(key, kind);
    }
    World { keys, owners: worker_owner, behaviour, colluders }
}

fn truth(task: usize) -> ContentId {
    ContentId::of(format!("truth of task {task}").as_bytes())
}

fn run_replica(world: &World, rng: &mut Rng, task: usize, worker: PublicKey, owner: &ScopeId) -> Report {
    let (digest, fuel) = match world.behaviour[&worker] {
        Behaviour::Honest => (truth(task), 1_000),
        Behaviour::Byzantine => (ContentId::of(&rng.next().to_le_bytes()), 1_000 + rng.next() % 3),
        Behaviour::Colluder => (ContentId::of(format!("collusion on task {task}").as_bytes()), 1_000),
    };
    Report { worker, owner: owner.clone(), digest, fuel, usage: Default::default() }
}

struct Tally {
    report: SimReport,
    earned: BTreeMap<ScopeId, u64>,
}

impl Tally {
    fn new(strategy: &str, tasks: usize) -> Tally {
        Tally {
            report: SimReport { strategy: strategy.into(), tasks, ..SimReport::default() },
            earned: BTreeMap::new(),
        }
    }

    fn accept(&mut self, world: &World, task: usize, digest: ContentId, agreeing: &[PublicKey]) {
        self.report.accepted += 1;
        if digest != truth(task) {
            self.report.wrong_accepted += 1;
            if agreeing.iter().any(|w| world.behaviour[w] == Behaviour::Colluder) {
                self.report.wrong_from_colluders += 1;
            } else {
                self.report.wrong_from_byzantine += 1;
            }
        }
    }

    fn finish(mut self, world: &World, late_executions: usize, late_tasks: usize) -> SimReport {
        let r = &mut self.report;
        r.replicas_per_accepted = r.executions as f64 / r.accepted.max(1) as f64;
        r.replicas_per_task_late = late_executions as f64 / late_tasks.max(1) as f64;
        let honest: BTreeSet<&ScopeId> =
            world.owners.iter().filter(|o| Some(*o) != world.colluders.as_ref()).collect();
        let mut earnings: Vec<f64> =
            honest.iter().map(|o| self.earned.get(*o).copied().unwrap_or(0) as f64).collect();
        earnings.sort_by(f64::total_cmp);
        let (min, max) = (earnings[0], earnings[earnings.len() - 1]);
        r.earnings_max_over_min = if min > 0.0 { max / min } else { f64::INFINITY };
        let n = earnings.len() as f64;
        let sum: f64 = earnings.iter().sum();
        let weighted: f64 =
            earnings.iter().enumerate().map(|(i, e)| (2.0 * (i as f64 + 1.0) - n - 1.0) * e).sum();
        r.earnings_gini = if sum > 0.0 { weighted / (n * sum) } else { 0.0 };
        self.report
    }
}

/// Trust-aware placement: adaptive replicas, owner diversity, escalation to
/// high-trust distinct owners, disputes settled by re-execution on trusted arbiters,
/// quarantine below the floor.
pub fn trust_aware(config: &SimConfig) -> SimReport {
    let world = world(config);
    let mut rng = Rng(config.seed);
    let mut pool = Pool::new(config.weights);
    for (key, owner) in world.keys.iter().zip(&world.owners) {
        pool.insert(Candidate {
            key: *key,
            owner: owner.clone(),
            slots: 1,
            free_slots: 1,
            memory_bytes: 1 << 30,
            executors: vec![ExecutorKind::Wasm],
            quarantined: false,
            trust: Trust::default(),
        });
    }
    let policy = config.policy;
    let mut tally = Tally::new("trust-aware", config.tasks);
    let (mut late_executions, late_from) = (0, config.tasks / 2);
    let mut busy: std::collections::VecDeque<(usize, PublicKey)> = std::collections::VecDeque::new();
    let occupy = |pool: &mut Pool,
                  busy: &mut std::collections::VecDeque<(usize, PublicKey)>,
                  task: usize,
                  key: PublicKey| {
        pool.update(&key, |c| c.free_slots -= 1);
        busy.push_back((task + config.task_duration, key));
    };
    for task in 0..config.tasks {
        while busy.front().is_some_and(|(until, _)| *until <= task) {
            let (_, key) = busy.pop_front().expect("checked");
            pool.update(&key, |c| c.free_slots += 1);
        }
        let request = Request::new(ExecutorKind::Wasm, 0, policy.replicas);
        let Some(first) = plan(&pool, &request, &policy, rng.unit()) else {
            tally.report.unplaced += 1;
            continue;
        };
        for (key, _) in &first.chosen {
            occupy(&mut pool, &mut busy, task, *key);
        }
        let owners: BTreeSet<&ScopeId> =
            first.chosen.iter().map(|(k, _)| pool.owner_of(k).expect("in pool")).collect();
        assert_eq!(owners.len(), first.chosen.len(), "no two replicas of a task share an owner");
        let mut placed: Vec<PublicKey> = first.chosen.iter().map(|(k, _)| *k).collect();
        let mut reports: Vec<Report> = placed
            .iter()
            .map(|k| run_replica(&world, &mut rng, task, *k, pool.owner_of(k).expect("in pool")))
            .collect();
        let executions_before = tally.report.executions;
        tally.report.executions += placed.len();
        let verdict = loop {
            match judge(&reports, counts(first.quorum, placed.len() as u32, policy.replicas_max), None) {
                Verdict::NeedMore => {
                    let mut more = Request::new(ExecutorKind::Wasm, 0, 1);
                    more.exclude_workers = placed.iter().copied().collect();
                    more.exclude_owners =
                        placed.iter().map(|k| pool.owner_of(k).expect("in pool").clone()).collect();
                    let extra = pool.place_most_trusted(&more);
                    let Some((key, _)) = extra.first() else { break Verdict::Dispute };
                    occupy(&mut pool, &mut busy, task, *key);
                    placed.push(*key);
                    reports.push(run_replica(
                        &world,
                        &mut rng,
                        task,
                        *key,
                        pool.owner_of(key).expect("in pool"),
                    ));
                    tally.report.executions += 1;
                }
                other => break other,
            }
        };
        let (digest, agreeing, dissenting) = match verdict {
            Verdict::Accepted(judged) => (judged.digest, judged.agreeing, judged.dissenting),
            Verdict::Dispute | Verdict::NeedMore | Verdict::Pending => {
                tally.report.disputes += 1;
                // Re-execution on the three most trusted free workers of owners not yet
                // involved.
                let mut arbiters = Request::new(ExecutorKind::Wasm, 0, 3);
                arbiters.exclude_workers = placed.iter().copied().collect();
                arbiters.exclude_owners =
                    placed.iter().map(|k| pool.owner_of(k).expect("in pool").clone()).collect();
                let chosen = pool.place_most_trusted(&arbiters);
                for (key, _) in &chosen {
                    occupy(&mut pool, &mut busy, task, *key);
                }
                let arbiter_reports: Vec<Report> = chosen
                    .iter()
                    .map(|(k, _)| run_replica(&world, &mut rng, task, *k, pool.owner_of(k).expect("in pool")))
                    .collect();
                tally.report.executions += arbiter_reports.len();
                match judge(&arbiter_reports, counts(2, 3, 3), None) {
                    Verdict::Accepted(judged) => {
                        let winners: Vec<PublicKey> = reports
                            .iter()
                            .filter(|r| r.digest == judged.digest && r.fuel == judged.fuel)
                            .map(|r| r.worker)
                            .collect();
                        let losers: Vec<PublicKey> = reports
                            .iter()
                            .filter(|r| r.digest != judged.digest || r.fuel != judged.fuel)
                            .map(|r| r.worker)
                            .collect();
                        (judged.digest, winners, losers)
                    }
                    _ => continue,
                }
            }
        };
        tally.accept(&world, task, digest, &agreeing);
        // Only agreement between independent results is evidence of honesty.
        let verified = agreeing.len() >= 2;
        for worker in &agreeing {
            pool.earn(&pool.owner_of(worker).expect("in pool").clone(), 1);
            *tally.earned.entry(pool.owner_of(worker).expect("in pool").clone()).or_default() += 1;
            if verified {
                pool.update(worker, |c| c.trust.agreements += 1);
            }
        }
        for worker in &dissenting {
            pool.update(worker, |c| {
                c.trust.disagreements += 1;
                c.quarantined |= policy.quarantines(&c.trust);
            });
        }
        if task >= late_from {
            late_executions += tally.report.executions - executions_before;
        }
    }
    for candidate in pool.candidates().filter(|c| c.quarantined) {
        match world.behaviour[&candidate.key] {
            Behaviour::Honest => tally.report.quarantined_honest += 1,
            Behaviour::Byzantine => tally.report.quarantined_byzantine += 1,
            Behaviour::Colluder => tally.report.quarantined_colluders += 1,
        }
    }
    tally.finish(&world, late_executions, config.tasks - late_from)
}

/// The baseline: two replicas on workers drawn at random, a third when they disagree,
/// the majority accepted; no trust, no owner diversity, no quarantine.
pub fn fixed_two_fold(config: &SimConfig) -> SimReport {
    let world = world(config);
    let mut rng = Rng(config.seed);
    let mut tally = Tally::new("fixed two-fold", config.tasks);
    let (mut late_executions, late_from) = (0, config.tasks / 2);
    for task in 0..config.tasks {
        let executions_before = tally.report.executions;
        let mut placed: Vec<usize> = vec![];
        let mut reports = vec![];
        let verdict = loop {
            let replicas = if placed.is_empty() { 2 } else { 1 };
            for _ in 0..replicas {
                let mut i = rng.below(world.keys.len());
                while placed.contains(&i) {
                    i = rng.below(world.keys.len());
                }
                placed.push(i);
                reports.push(run_replica(&world, &mut rng, task, world.keys[i], &world.owners[i]));
                tally.report.executions += 1;
            }
            match judge(&reports, counts(2, placed.len() as u32, 3), None) {
                Verdict::NeedMore => continue,
                other => break other,
            }
        };
        match verdict {
            Verdict::Accepted(judged) => {
                tally.accept(&world, task, judged.digest, &judged.agreeing);
                for worker in &judged.agreeing {
                    let i = world.keys.iter().position(|k| k == worker).expect("a placed worker");
                    *tally.earned.entry(world.owners[i].clone()).or_default() += 1;
                }
            }
            _ => tally.report.disputes += 1,
        }
        if task >= late_from {
            late_executions += tally.report.executions - executions_before;
        }
    }
    tally.finish(&world, late_executions, config.tasks - late_from)
}

/// Judging once every replica placed has reported.
fn counts(quorum: u32, placed: u32, replicas_max: u32) -> crate::Counts {
    crate::Counts { quorum, outstanding: 0, placed, replicas_max }
}
