//! The fleet: connected workers and their sessions, the placement pool they are chosen
//! from, and the trust and quarantine every worker that ran a task has earned.
//!
//! Connections are not journaled: the fleet's sessions are rebuilt as workers connect.
//! Trust and quarantine are, through the records that move them, so they replay.

use std::collections::{BTreeMap, BTreeSet};

use icn_placement::{Candidate, Policy, Pool, Trust, Weights};
use icn_protocol::governance::ScopeId;
use icn_protocol::views::WorkerView;
use icn_protocol::wire::Capacity;
use icn_protocol::{PublicKey, TaskId};

use crate::{Command, Core, Now, Refusal};

#[derive(Clone, Debug)]
pub(crate) struct Worker {
    pub owner: ScopeId,
    pub session: u64,
    pub capacity: Capacity,
    pub running: BTreeSet<TaskId>,
    /// Tasks the worker says it runs that are not placed on it here (attempts this
    /// coordinator already gave up on): they hold slots until they end.
    pub foreign: u32,
    /// On the monotonic clock: the last time the worker was heard from.
    pub last_seen_mono_ms: u64,
    /// Its connection dropped: no new tasks, but the ones it runs stay placed on it
    /// until it has been silent for the worker timeout, so it can reconnect and resume.
    pub away: bool,
    /// It drains: it finishes what it runs and gets no new task.
    pub draining: bool,
}

impl Worker {
    fn free_slots(&self) -> u32 {
        self.capacity.slots.saturating_sub(self.running.len() as u32).saturating_sub(self.foreign)
    }
}

pub(crate) struct Fleet {
    workers: BTreeMap<PublicKey, Worker>,
    /// Connected workers, indexed for placement.
    pool: Pool,
    /// Trust earned and lost by every worker that ever ran a task.
    trust: BTreeMap<PublicKey, Trust>,
    /// Workers whose trust fell below the floor; they get no tasks until a decision
    /// readmits them.
    quarantined: BTreeSet<PublicKey>,
    policy: Policy,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            workers: BTreeMap::new(),
            pool: Pool::new(Weights::default()),
            trust: BTreeMap::new(),
            quarantined: BTreeSet::new(),
            policy: Policy::default(),
        }
    }
}

impl Fleet {
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn worker(&self, key: &PublicKey) -> Option<&Worker> {
        self.workers.get(key)
    }

    pub fn trust(&self) -> &BTreeMap<PublicKey, Trust> {
        &self.trust
    }

    pub fn quarantined(&self) -> &BTreeSet<PublicKey> {
        &self.quarantined
    }

    pub fn is_quarantined(&self, key: &PublicKey) -> bool {
        self.quarantined.contains(key)
    }

    /// The worker was heard from.
    pub fn seen(&mut self, worker: &PublicKey, now_mono_ms: u64) {
        if let Some(state) = self.workers.get_mut(worker) {
            state.last_seen_mono_ms = now_mono_ms;
        }
    }

    /// A task placed on `worker` takes one of its slots.
    pub fn occupy(&mut self, worker: &PublicKey, task: TaskId) {
        if let Some(state) = self.workers.get_mut(worker) {
            state.running.insert(task);
        }
        self.refresh(worker);
    }

    /// A task's attempt on `worker` is over: its slot comes free.
    pub fn vacate(&mut self, worker: &PublicKey, task: &TaskId) {
        if let Some(state) = self.workers.get_mut(worker) {
            state.running.remove(task);
        }
        self.refresh(worker);
    }

    /// A task this coordinator no longer places on `worker` (its job was cancelled) still
    /// runs there until the worker stops it: its slot stays taken until a heartbeat no
    /// longer names it. Connection state, like heartbeats: not journaled.
    pub fn still_running(&mut self, worker: &PublicKey) {
        if let Some(state) = self.workers.get_mut(worker) {
            state.foreign += 1;
        }
        self.refresh(worker);
    }

    /// The worker failed: `failure` counts it (a missed task, a result that disagreed).
    /// Below the floor, it is quarantined.
    pub fn lose_trust(&mut self, worker: &PublicKey, seq: u64, failure: impl FnOnce(&mut Trust)) {
        let trust = self.trust.entry(*worker).or_default();
        failure(trust);
        if self.policy.quarantines(trust) && self.quarantined.insert(*worker) {
            tracing::warn!(worker = %worker.short(), entry = seq, ?trust, "worker quarantined: trust below the floor");
        }
        self.refresh(worker);
    }

    /// Independent results agreed with the worker's, or a verdict upheld it.
    pub fn gain_trust(&mut self, worker: &PublicKey) {
        self.trust.entry(*worker).or_default().agreements += 1;
        self.refresh(worker);
    }

    /// A decision readmitted the worker: its trust starts over.
    pub fn readmit(&mut self, worker: &PublicKey) {
        self.quarantined.remove(worker);
        self.trust.remove(worker);
        self.refresh(worker);
    }

    pub fn earn(&mut self, owner: &ScopeId, credits: u64) {
        self.pool.earn(owner, credits);
    }

    /// Puts a connected worker's current state into the placement pool; a worker away
    /// (its connection dropped) or gone takes no new task.
    fn refresh(&mut self, key: &PublicKey) {
        let Some(state) = self.workers.get(key).filter(|w| !w.away && !w.draining) else {
            self.pool.remove(key);
            return;
        };
        self.pool.insert(Candidate {
            key: *key,
            owner: state.owner.clone(),
            slots: state.capacity.slots,
            free_slots: state.free_slots(),
            memory_bytes: state.capacity.memory_bytes,
            executors: state.capacity.executors.clone(),
            quarantined: self.quarantined.contains(key),
            trust: self.trust.get(key).copied().unwrap_or_default(),
        });
    }
}

impl Core {
    /// A worker connected and proved its key; `running` is what it says it still runs
    /// from an earlier connection. Reconnecting resumes: the tasks it still runs stay
    /// placed on it, and only those it no longer has are lost.
    pub fn worker_connected(
        &mut self,
        now: Now,
        worker: PublicKey,
        session: u64,
        capacity: Capacity,
        running: &[(TaskId, u32)],
    ) -> Result<(), Refusal> {
        self.clock = now;
        let Some(owner) = self.governance.workers.get(&worker).cloned() else {
            return Err(Refusal::WorkerNotAdmitted { key: worker });
        };
        let still: BTreeSet<(TaskId, u32)> = running.iter().copied().collect();
        let placed: Vec<(TaskId, u32)> = self.fleet.workers.get(&worker).map_or_else(Vec::new, |previous| {
            previous.running.iter().map(|task| (*task, self.attempt_of(task))).collect()
        });
        for (task, attempt) in placed.into_iter().filter(|placed| !still.contains(placed)) {
            let reason = format!("worker {} reconnected without it", worker.short());
            self.requeue(task, attempt, reason, true);
        }
        let kept = self.fleet.workers.remove(&worker).map(|previous| previous.running).unwrap_or_default();
        let foreign = still.iter().filter(|(task, _)| !kept.contains(task)).count() as u32;
        let state = Worker {
            owner,
            session,
            capacity,
            running: kept,
            foreign,
            last_seen_mono_ms: now.mono_ms,
            away: false,
            draining: false,
        };
        self.fleet.workers.insert(worker, state);
        self.fleet.refresh(&worker);
        self.schedule();
        Ok(())
    }

    /// A worker's connection ended. Its tasks stay placed on it until it has been silent
    /// for the worker timeout ([`Core::tick`]): a worker that reconnects in time resumes.
    pub fn worker_disconnected(&mut self, now: Now, worker: PublicKey, session: u64, reason: String) {
        self.clock = now;
        if let Some(state) = self.fleet.workers.get_mut(&worker).filter(|w| w.session == session) {
            tracing::info!(worker = %worker.short(), %reason, "worker disconnected; its tasks wait for it to return");
            state.away = true;
            self.fleet.refresh(&worker);
        }
    }

    /// A worker's heartbeat, with the tasks it runs now.
    pub fn heartbeat(&mut self, now: Now, worker: PublicKey, session: u64, running: &[(TaskId, u32)]) {
        self.clock = now;
        let Some(state) = self.fleet.workers.get_mut(&worker).filter(|w| w.session == session) else {
            return;
        };
        state.last_seen_mono_ms = now.mono_ms;
        let foreign = running.iter().filter(|(task, _)| !state.running.contains(task)).count() as u32;
        if foreign != state.foreign {
            let freed = foreign < state.foreign;
            state.foreign = foreign;
            self.fleet.refresh(&worker);
            // Tasks it ran for attempts given up on (or cancelled) have ended: their
            // slots take waiting jobs now.
            if freed {
                self.schedule();
            }
        }
    }

    /// The worker's owner takes it out of service on this connection: no new task is
    /// placed on it; what it runs stays placed and reports as before.
    pub fn worker_draining(&mut self, now: Now, worker: PublicKey, session: u64) {
        self.clock = now;
        let Some(state) = self.fleet.workers.get_mut(&worker).filter(|w| w.session == session) else {
            return;
        };
        state.last_seen_mono_ms = now.mono_ms;
        if !state.draining {
            tracing::info!(worker = %worker.short(), "worker draining: no new tasks");
            state.draining = true;
            self.fleet.refresh(&worker);
        }
    }

    /// Every worker the coordinator knows of: admitted, connected or with a history.
    pub fn workers_view(&self) -> Vec<WorkerView> {
        let fleet = &self.fleet;
        let mut keys: BTreeSet<PublicKey> = self.governance.workers.keys().copied().collect();
        keys.extend(fleet.trust.keys().copied());
        keys.into_iter()
            .map(|key| {
                let trust = fleet.trust.get(&key).copied().unwrap_or_default();
                let connected = fleet.workers.get(&key).filter(|w| !w.away);
                WorkerView {
                    key,
                    owner: self.governance.workers.get(&key).cloned(),
                    connected: connected.is_some(),
                    slots: connected.map_or(0, |w| w.capacity.slots),
                    free_slots: connected.map_or(0, |w| w.free_slots()),
                    trust,
                    trust_lower_bound: trust.lower_bound(),
                    quarantined: fleet.quarantined.contains(&key),
                    draining: connected.is_some_and(|w| w.draining),
                }
            })
            .collect()
    }

    /// The workers connected now: key, owner, free slots.
    pub fn connected_workers(&self) -> impl Iterator<Item = (&PublicKey, &str, u32)> {
        self.fleet
            .workers
            .iter()
            .filter(|(_, w)| !w.away)
            .map(|(key, w)| (key, w.owner.as_str(), w.free_slots()))
    }

    /// The attempt a replica placed on a worker is on.
    fn attempt_of(&self, task: &TaskId) -> u32 {
        self.jobs.known(&task.job).placements[&task.index].attempt
    }

    /// Workers silent past the timeout, connected or away, are lost with fault.
    /// When the first connected worker becomes silent too long, on the monotonic clock:
    /// one millisecond past its last word plus the timeout, as `lose_silent_workers`
    /// counts.
    pub(crate) fn next_silence(&self) -> Option<u64> {
        let timeout_ms = self.config.worker_timeout_ms;
        self.fleet
            .workers
            .values()
            .map(|w| w.last_seen_mono_ms.saturating_add(timeout_ms).saturating_add(1))
            .min()
    }

    pub(crate) fn lose_silent_workers(&mut self) {
        let timeout_ms = self.config.worker_timeout_ms;
        let now_ms = self.clock.mono_ms;
        let silent: Vec<(PublicKey, u64, bool)> = self
            .fleet
            .workers
            .iter()
            .filter(|(_, w)| now_ms.saturating_sub(w.last_seen_mono_ms) > timeout_ms)
            .map(|(key, w)| (*key, w.session, w.away))
            .collect();
        for (worker, session, away) in silent {
            let reason = if away {
                format!("it disconnected and did not come back within {timeout_ms} ms")
            } else {
                format!("no heartbeat for {timeout_ms} ms")
            };
            self.commands.push(Command::Disconnect { worker, session, reason: reason.clone() });
            self.worker_lost(worker, session, reason, true);
        }
    }

    /// A worker is gone for good: every task it held goes back to the queue, and it
    /// loses trust for them when `fault`.
    pub(crate) fn worker_lost(&mut self, worker: PublicKey, session: u64, reason: String, fault: bool) {
        let Some(state) = self.fleet.workers.get(&worker).filter(|w| w.session == session) else {
            return;
        };
        let running: Vec<TaskId> = state.running.iter().copied().collect();
        for task in running {
            let attempt = self.attempt_of(&task);
            let why = format!("worker {} was lost: {reason}", worker.short());
            self.requeue(task, attempt, why, fault);
        }
        self.fleet.workers.remove(&worker);
        self.fleet.pool.remove(&worker);
        self.schedule();
    }

    /// The worker broke the protocol: it is disconnected and its tasks go elsewhere now,
    /// without waiting for it to come back.
    pub(crate) fn misbehaved(&mut self, worker: PublicKey, session: u64, reason: String) {
        tracing::warn!(worker = %worker, %reason, "worker broke the protocol; disconnecting it");
        self.commands.push(Command::Disconnect { worker, session, reason: reason.clone() });
        self.worker_lost(worker, session, format!("it broke the protocol: {reason}"), true);
    }
}
