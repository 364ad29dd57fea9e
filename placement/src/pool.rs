//! Feasibility, scoring, and the indexed pool of workers that placement draws from.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use icn_protocol::PublicKey;
use icn_protocol::governance::ScopeId;
use icn_protocol::wire::ExecutorKind;
use serde::{Deserialize, Serialize};

use crate::{Score, Trust};

/// A worker as placement sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub key: PublicKey,
    pub owner: ScopeId,
    pub slots: u32,
    pub free_slots: u32,
    /// The most memory one task may use there.
    pub memory_bytes: u64,
    pub executors: Vec<ExecutorKind>,
    pub quarantined: bool,
    pub trust: Trust,
}

/// What one placement asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub executor: ExecutorKind,
    pub memory_bytes: u64,
    /// Workers to choose, each of a different owner.
    pub replicas: u32,
    /// Only workers whose trust lower bound reaches this.
    pub min_trust: f64,
    /// Owners that already hold a replica of this task.
    pub exclude_owners: BTreeSet<ScopeId>,
    /// Workers that already ran this task.
    pub exclude_workers: BTreeSet<PublicKey>,
}

impl Request {
    pub fn new(executor: ExecutorKind, memory_bytes: u64, replicas: u32) -> Request {
        Request {
            executor,
            memory_bytes,
            replicas,
            min_trust: 0.0,
            exclude_owners: BTreeSet::new(),
            exclude_workers: BTreeSet::new(),
        }
    }
}

/// Why a worker cannot take a task; the first stage that said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Infeasible {
    Quarantined,
    Excluded,
    OwnerTaken,
    Executor,
    NoFreeSlot,
    Memory,
    TrustBelow,
}

/// The feasibility stages, in order: not quarantined, not already on this task, owner
/// not already holding a replica, executor offered, a free slot, memory enough, trust
/// enough.
pub fn feasible(
    candidate: &Candidate,
    request: &Request,
    owners_taken: &BTreeSet<ScopeId>,
) -> Result<(), Infeasible> {
    if candidate.quarantined {
        return Err(Infeasible::Quarantined);
    }
    if request.exclude_workers.contains(&candidate.key) {
        return Err(Infeasible::Excluded);
    }
    if request.exclude_owners.contains(&candidate.owner) || owners_taken.contains(&candidate.owner) {
        return Err(Infeasible::OwnerTaken);
    }
    if !candidate.executors.contains(&request.executor) {
        return Err(Infeasible::Executor);
    }
    if candidate.free_slots == 0 {
        return Err(Infeasible::NoFreeSlot);
    }
    if candidate.memory_bytes < request.memory_bytes {
        return Err(Infeasible::Memory);
    }
    if candidate.trust.lower_bound() < request.min_trust {
        return Err(Infeasible::TrustBelow);
    }
    Ok(())
}

/// How much each score counts, and the earnings at which a donor's fairness score halves.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub trust: f64,
    pub capacity: f64,
    pub fairness: f64,
    pub fairness_scale: f64,
}

impl Default for Weights {
    fn default() -> Self {
        // Fairness weighs most, so work rotates between donors; trust gates who may run
        // alone (see `plan`) more than it ranks.
        Weights { trust: 0.2, capacity: 0.2, fairness: 0.6, fairness_scale: 20.0 }
    }
}

/// The scoring stage: trust lower bound, free capacity, and fairness between donors
/// (an owner that has earned less scores higher, so no one cooperative takes everything).
pub fn score(candidate: &Candidate, owner_earned: u64, weights: &Weights) -> Score {
    let trust = candidate.trust.lower_bound();
    let capacity =
        if candidate.slots == 0 { 0.0 } else { f64::from(candidate.free_slots) / f64::from(candidate.slots) };
    let fairness = 1.0 / (1.0 + owner_earned as f64 / weights.fairness_scale);
    let total = weights.trust * trust + weights.capacity * capacity + weights.fairness * fairness;
    Score { trust, capacity, fairness, total }
}

/// Orders candidates: higher total first, then by key, so every placement is deterministic.
fn rank(score: &Score) -> Reverse<u64> {
    Reverse((score.total * 1e12).round() as u64)
}

/// Every worker placement may choose from, indexed by score.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    workers: HashMap<PublicKey, (Candidate, Reverse<u64>)>,
    index: BTreeSet<(Reverse<u64>, PublicKey)>,
    by_owner: HashMap<ScopeId, BTreeSet<PublicKey>>,
    earned: HashMap<ScopeId, u64>,
    weights: Weights,
    /// Free slots of workers out of quarantine, summed.
    free_slots: u64,
}

impl Pool {
    pub fn new(weights: Weights) -> Pool {
        Pool { weights, ..Pool::default() }
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub fn get(&self, key: &PublicKey) -> Option<&Candidate> {
        self.workers.get(key).map(|(c, _)| c)
    }

    pub fn owner_of(&self, key: &PublicKey) -> Option<&ScopeId> {
        self.get(key).map(|c| &c.owner)
    }

    pub fn earned(&self, owner: &ScopeId) -> u64 {
        self.earned.get(owner).copied().unwrap_or(0)
    }

    pub fn candidates(&self) -> impl Iterator<Item = &Candidate> {
        self.workers.values().map(|(c, _)| c)
    }

    pub fn score_of(&self, candidate: &Candidate) -> Score {
        score(candidate, self.earned(&candidate.owner), &self.weights)
    }

    /// Free slots of workers out of quarantine: no placement is possible at zero.
    pub fn free_slots(&self) -> u64 {
        self.free_slots
    }

    /// Adds or replaces a worker.
    pub fn insert(&mut self, candidate: Candidate) {
        self.remove(&candidate.key);
        self.free_slots += available(&candidate);
        let rank = rank(&self.score_of(&candidate));
        self.index.insert((rank, candidate.key));
        self.by_owner.entry(candidate.owner.clone()).or_default().insert(candidate.key);
        self.workers.insert(candidate.key, (candidate, rank));
    }

    pub fn remove(&mut self, key: &PublicKey) -> Option<Candidate> {
        let (candidate, rank) = self.workers.remove(key)?;
        self.free_slots -= available(&candidate);
        self.index.remove(&(rank, *key));
        if let Some(keys) = self.by_owner.get_mut(&candidate.owner) {
            keys.remove(key);
        }
        Some(candidate)
    }

    /// Changes a worker and re-ranks it.
    pub fn update(&mut self, key: &PublicKey, change: impl FnOnce(&mut Candidate)) {
        if let Some(mut candidate) = self.remove(key) {
            change(&mut candidate);
            self.insert(candidate);
        }
    }

    /// An owner earned `credits`: its workers' fairness falls.
    pub fn earn(&mut self, owner: &ScopeId, credits: u64) {
        *self.earned.entry(owner.clone()).or_default() += credits;
        let keys: Vec<PublicKey> =
            self.by_owner.get(owner).map(|k| k.iter().copied().collect()).unwrap_or_default();
        for key in keys {
            self.update(&key, |_| {});
        }
    }

    /// Chooses up to `request.replicas` feasible workers of distinct owners, best first.
    /// Looks at workers in score order and stops as soon as it has enough.
    pub fn place(&self, request: &Request) -> Vec<(PublicKey, Score)> {
        let mut chosen = Vec::with_capacity(request.replicas as usize);
        let mut owners = BTreeSet::new();
        for (_, key) in &self.index {
            if chosen.len() >= request.replicas as usize {
                break;
            }
            let (candidate, _) = &self.workers[key];
            if feasible(candidate, request, &owners).is_ok() {
                owners.insert(candidate.owner.clone());
                chosen.push((*key, self.score_of(candidate)));
            }
        }
        chosen
    }

    /// Like [`Pool::place`] but most trusted first: for the extra replicas that resolve a
    /// disagreement, and for arbiters. A full scan, which is fine for that rare path.
    pub fn place_most_trusted(&self, request: &Request) -> Vec<(PublicKey, Score)> {
        let mut feasible_now: Vec<(&Candidate, Score)> = self
            .workers
            .values()
            .map(|(c, _)| c)
            .filter(|c| feasible(c, request, &BTreeSet::new()).is_ok())
            .map(|c| (c, self.score_of(c)))
            .collect();
        feasible_now.sort_by(|a, b| {
            b.1.trust.total_cmp(&a.1.trust).then(b.1.total.total_cmp(&a.1.total)).then(a.0.key.cmp(&b.0.key))
        });
        first_of_distinct_owners(feasible_now, request.replicas)
    }
}

/// The slots a worker offers placement now.
fn available(candidate: &Candidate) -> u64 {
    if candidate.quarantined { 0 } else { u64::from(candidate.free_slots) }
}

/// What holds a request back when it cannot be placed now: the first stage at which the
/// connected workers out of quarantine fall short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// None offers the executor.
    Executor,
    /// None of those offers enough memory; the largest offers `largest_bytes`.
    Memory { largest_bytes: u64 },
    /// Those that could take it belong to fewer owners (not excluded) than the replicas.
    Owners { owners: u32 },
    /// Enough could take it; their `slots` are busy.
    Slots { slots: u32 },
}

impl Pool {
    /// Why `request` cannot be placed now (it says `Slots` when it could be). A full
    /// scan: for a member's view of a waiting job, not for placement.
    pub fn shortfall(&self, request: &Request) -> Shortfall {
        let offering: Vec<&Candidate> = self
            .candidates()
            .filter(|c| !c.quarantined && c.executors.contains(&request.executor))
            .filter(|c| !request.exclude_workers.contains(&c.key))
            .collect();
        if offering.is_empty() {
            return Shortfall::Executor;
        }
        let fitting: Vec<&&Candidate> =
            offering.iter().filter(|c| c.memory_bytes >= request.memory_bytes).collect();
        if fitting.is_empty() {
            let largest_bytes = offering.iter().map(|c| c.memory_bytes).max().unwrap_or(0);
            return Shortfall::Memory { largest_bytes };
        }
        let owners: BTreeSet<&ScopeId> =
            fitting.iter().map(|c| &c.owner).filter(|o| !request.exclude_owners.contains(*o)).collect();
        if (owners.len() as u32) < request.replicas {
            return Shortfall::Owners { owners: owners.len() as u32 };
        }
        Shortfall::Slots { slots: fitting.iter().map(|c| c.slots).sum() }
    }
}

/// Takes candidates in the order given, skipping any whose owner was already taken,
/// until `replicas` are chosen.
fn first_of_distinct_owners<'a>(
    ordered: impl IntoIterator<Item = (&'a Candidate, Score)>,
    replicas: u32,
) -> Vec<(PublicKey, Score)> {
    let mut owners = BTreeSet::new();
    ordered
        .into_iter()
        .filter(|(c, _)| owners.insert(c.owner.clone()))
        .take(replicas as usize)
        .map(|(c, s)| (c.key, s))
        .collect()
}

/// The same choice without an index: score every worker, sort, take distinct owners.
/// The baseline `Pool::place` is measured against, and the reference it is tested against.
pub fn naive_place(
    candidates: &[Candidate],
    earned: &dyn Fn(&ScopeId) -> u64,
    weights: &Weights,
    request: &Request,
) -> Vec<(PublicKey, Score)> {
    let mut scored: Vec<(&Candidate, Score)> = candidates
        .iter()
        .filter(|c| feasible(c, request, &BTreeSet::new()).is_ok())
        .map(|c| (c, score(c, earned(&c.owner), weights)))
        .collect();
    scored.sort_by_key(|(c, s)| (rank(s), c.key));
    first_of_distinct_owners(scored, request.replicas)
}
