//! The coordinator's deterministic core: inputs in, journal entries and commands out.
//!
//! No IO, no clock, no randomness: the time comes in with each call, and the shell
//! persists [`Core::take_entries`] before it carries out [`Core::take_commands`]
//! (write-ahead: a worker never hears of a placement the journal could lose).
//!
//! Every change of job state goes through [`Core::apply`], the same function that
//! replays the journal at start, so the state rebuilt after a crash is by construction
//! the state that was live.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use icn_governance::{Authorization, Event, Genesis, Governance};
use icn_ledger::{Ledger, TransferId};
use icn_placement::{Candidate, Plan, Policy, Pool, Request, Trust, Verdict, Weights};
use icn_protocol::governance::{Ballot, ClearRequest, Credits, Effect, Proposal, ScopeId};
use icn_protocol::wire::{
    Assignment, Capacity, ExecutionReport, FailureKind, JobState, JobView, Outcome, Submission,
};
use icn_protocol::{ContentId, Envelope, JobId, Keypair, PublicKey, TaskId};

use crate::journal::{Entry, GENESIS_HASH, JournalError};
use crate::record::Record;

/// When an input arrives: wall-clock time, which records carry and governance reads
/// (voting windows, mandate periods), and monotonic time, which every timeout reads, so
/// that a jump of the wall clock never declares a live worker lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    pub wall_ms: u64,
    pub mono_ms: u64,
}

impl Now {
    /// Both clocks at `ms`: for tests and simulations, where they cannot drift apart.
    pub fn at(ms: u64) -> Now {
        Now { wall_ms: ms, mono_ms: ms }
    }
}

/// Tunables of the core, each with its unit.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// A worker silent this long is taken as lost and its tasks go elsewhere.
    pub worker_timeout_ms: u64,
    /// Attempts a task gets before its job fails (worker losses, missed deadlines).
    pub attempts_max: u32,
    /// Time allowed beyond a task's own timeout for dispatch and reporting.
    pub deadline_grace_ms: u64,
    /// Jobs the core holds that have not ended; a submission beyond it is refused.
    pub jobs_open_max: usize,
    /// A job without a final result this long after submission fails, and its
    /// reservation is voided, so credit is never held by a job that cannot end.
    pub job_expiry_ms: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            worker_timeout_ms: 5_000,
            attempts_max: 5,
            deadline_grace_ms: 5_000,
            jobs_open_max: 100_000,
            job_expiry_ms: 24 * 3_600_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Dispatch {
        worker: PublicKey,
        session: u64,
        assignment: Assignment,
    },
    /// Close a worker's connection: it was declared lost, or it broke the protocol.
    Disconnect {
        worker: PublicKey,
        session: u64,
        reason: String,
    },
    /// A job's state changed; whoever watches it wants to know.
    JobChanged(JobId),
}

#[derive(Clone, Debug)]
struct Placement {
    worker: PublicKey,
    owner: ScopeId,
    attempt: u32,
    placed_seq: u64,
    /// On the monotonic clock.
    deadline_mono_ms: u64,
}

/// A replica's final result, kept for verification.
#[derive(Clone, Debug)]
struct Received {
    worker: PublicKey,
    owner: ScopeId,
    report: ExecutionReport,
}

#[derive(Clone, Debug)]
struct Job {
    submitter: PublicKey,
    authorization: Authorization,
    submission: Submission,
    submitted_seq: u64,
    submitted_ms: u64,
    /// Replicas placed, replacements included; each placement's attempt number.
    attempts: u32,
    /// Replicas lost, late or failed for their own reasons, which were placed again.
    requeues: u32,
    /// Replicas in flight, by replica index.
    placements: BTreeMap<u32, Placement>,
    /// Replica indexes used so far; the next new replica gets this one.
    replicas_placed: u32,
    /// Replica indexes whose attempt was requeued and wait for a worker.
    vacant: BTreeSet<u32>,
    /// New replicas wanted to settle a disagreement.
    extra: u32,
    /// Results that must agree.
    quorum: u32,
    reports: Vec<Received>,
    disputed: bool,
    /// The accepted result, and the worker whose report it is.
    result: Option<(PublicKey, ExecutionReport)>,
    failure: Option<String>,
    ended: bool,
    /// Every journal entry about this job, in order.
    entries: Vec<u64>,
}

#[derive(Clone, Debug)]
struct Worker {
    owner: ScopeId,
    session: u64,
    capacity: Capacity,
    running: BTreeSet<TaskId>,
    /// Tasks the worker says it runs that are not placed on it here (attempts this
    /// coordinator already gave up on): they hold slots until they end.
    foreign: u32,
    /// On the monotonic clock: the last time the worker was heard from.
    last_seen_mono_ms: u64,
    /// Its connection dropped: no new tasks, but the ones it runs stay placed on it
    /// until it has been silent for the worker timeout, so it can reconnect and resume.
    away: bool,
}

impl Worker {
    fn free_slots(&self) -> u32 {
        self.capacity.slots.saturating_sub(self.running.len() as u32).saturating_sub(self.foreign)
    }
}

pub struct Core {
    key: Arc<Keypair>,
    config: CoreConfig,
    governance: Governance,
    ledger: Ledger,
    /// Connected workers, indexed for placement; rebuilt from connections, not journaled.
    pool: Pool,
    /// Trust earned and lost by every worker that ever ran a task; derived from the journal.
    trust: BTreeMap<PublicKey, Trust>,
    /// Workers whose trust fell below the floor; they get no tasks until a decision readmits them.
    quarantined: BTreeSet<PublicKey>,
    policy: Policy,
    /// The founding document the journal began with.
    genesis: Option<Genesis>,
    next_seq: u64,
    last_hash: [u8; 32],
    /// The time of the input being handled.
    clock: Now,
    jobs: BTreeMap<JobId, Job>,
    /// Jobs waiting for a worker, in submission order (keyed by their submission entry).
    queue: BTreeMap<u64, JobId>,
    workers: BTreeMap<PublicKey, Worker>,
    /// Clearing requests carried out within the last two request windows, by envelope
    /// id, with when they were made and their entry: a replay is refused, and older ones
    /// are refused by their age.
    clearings: BTreeMap<ContentId, (u64, u64)>,
    jobs_open: usize,
    entries: Vec<Entry>,
    commands: Vec<Command>,
}

/// Why a submission was refused, in words for the member.
pub type Refusal = String;

impl Core {
    pub fn new(key: Arc<Keypair>, config: CoreConfig) -> Self {
        Core {
            key,
            config,
            governance: Governance::default(),
            ledger: Ledger::default(),
            pool: Pool::new(Weights::default()),
            trust: BTreeMap::new(),
            quarantined: BTreeSet::new(),
            policy: Policy::default(),
            genesis: None,
            next_seq: 0,
            last_hash: GENESIS_HASH,
            clock: Now::default(),
            jobs: BTreeMap::new(),
            queue: BTreeMap::new(),
            workers: BTreeMap::new(),
            clearings: BTreeMap::new(),
            jobs_open: 0,
            entries: Vec::new(),
            commands: Vec::new(),
        }
    }

    /// Rebuilds the state from journal entries already checked. Tasks that were placed
    /// when the coordinator stopped are requeued (and that is journaled), since no
    /// worker is connected yet.
    pub fn recover(&mut self, entries: &[Entry], now: Now) -> Result<(), JournalError> {
        self.clock = now;
        for entry in entries {
            assert_eq!(entry.seq, self.next_seq, "journal entries arrive in order");
            let record = entry.decode_record()?;
            self.apply(entry.seq, entry.time_ms, &record);
            self.next_seq = entry.seq + 1;
            self.last_hash = entry.hash;
        }
        for (task, attempt) in self.in_flight() {
            self.requeue(task, attempt, "the coordinator restarted while it ran".into(), false);
        }
        Ok(())
    }

    pub fn governance(&self) -> &Governance {
        &self.governance
    }

    /// Starts a new journal from `genesis`, or checks that the journal began from it:
    /// after the first start, only decisions change what the genesis set.
    pub fn found(&mut self, now: Now, genesis: &Genesis) -> Result<(), Refusal> {
        self.clock = now;
        genesis.validate().map_err(|e| format!("the genesis is not valid: {e}"))?;
        match &self.genesis {
            None if self.next_seq == 0 => {
                let signer = self.key.public();
                self.record(None, signer, Record::Governance(Event::Genesis(genesis.clone())));
                Ok(())
            }
            None => Err("the journal holds entries but no genesis; it was not made by this version".into()),
            Some(journaled) if journaled == genesis => Ok(()),
            Some(_) => {
                Err("the genesis file differs from the genesis this journal began with; after the first \
                 start, change scopes, members and workers through decisions, not the file"
                    .into())
            }
        }
    }

    /// Every worker the coordinator knows of: admitted, connected or with a history.
    pub fn workers_view(&self) -> Vec<WorkerView> {
        let mut keys: BTreeSet<PublicKey> = self.governance.workers.keys().copied().collect();
        keys.extend(self.trust.keys().copied());
        keys.into_iter()
            .map(|key| {
                let trust = self.trust.get(&key).copied().unwrap_or_default();
                let connected = self.workers.get(&key);
                WorkerView {
                    key,
                    owner: self.governance.workers.get(&key).cloned(),
                    connected: connected.is_some(),
                    slots: connected.map_or(0, |w| w.capacity.slots),
                    free_slots: connected.map_or(0, |w| w.free_slots()),
                    trust,
                    trust_lower_bound: trust.lower_bound(),
                    quarantined: self.quarantined.contains(&key),
                }
            })
            .collect()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.governance.members.contains_key(key)
    }

    pub fn journal_len(&self) -> u64 {
        self.next_seq
    }

    /// Entries to persist, the last one sealed. Empty when nothing happened.
    pub fn take_entries(&mut self) -> Vec<Entry> {
        if let Some(last) = self.entries.last_mut() {
            last.seal_with(&self.key);
        }
        std::mem::take(&mut self.entries)
    }

    /// Commands to carry out once the entries are durable.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    // ---- inputs ------------------------------------------------------------------

    /// A member's submission, already verified as signed by `envelope.signer`.
    pub fn submit(&mut self, now: Now, envelope: Envelope, submission: Submission) -> Result<JobId, Refusal> {
        self.clock = now;
        let job = JobId(envelope.id());
        if self.jobs.contains_key(&job) {
            return Ok(job);
        }
        submission.validate().map_err(|e| e.to_string())?;
        let authorization = self
            .governance
            .authorize(now.wall_ms, &envelope.signer, &submission)
            .map_err(|e| e.to_string())?;
        // The most the job may cost is held against the scope's credit as well as its mandate.
        let account = self.ledger.account(&submission.scope).map_err(|e| e.to_string())?;
        if authorization.hold.0 > account.available() {
            return Err(format!(
                "the account of scope {} can take on {} more credits (position {}, {} reserved, credit limit {}); this job may cost up to {}",
                submission.scope,
                account.available(),
                account.position,
                account.reserved,
                account.limit,
                authorization.hold
            ));
        }
        if self.jobs_open >= self.config.jobs_open_max {
            return Err(format!(
                "the coordinator holds {} open jobs, its limit; try again when some have ended",
                self.jobs_open
            ));
        }
        let record = Record::JobSubmitted { submission: envelope.clone(), authorization };
        self.record(Some(authorization.decision), envelope.signer, record);
        self.schedule();
        Ok(job)
    }

    /// A member's proposal, already verified as signed by `envelope.signer`.
    pub fn propose(
        &mut self,
        now: Now,
        envelope: Envelope,
        proposal: Proposal,
    ) -> Result<(ContentId, u64), Refusal> {
        self.clock = now;
        if let Effect::ResolveDispute { job, .. } = &proposal.effect
            && !self.jobs.get(job).is_some_and(|j| j.disputed && !j.ended)
        {
            return Err(format!("job {job} is not in dispute"));
        }
        let event =
            self.governance.check_proposal(now.wall_ms, &envelope, &proposal).map_err(|e| e.to_string())?;
        let Event::ProposalOpened { closes_ms, .. } = &event else { unreachable!("a proposal opens") };
        let closes_ms = *closes_ms;
        self.record(None, envelope.signer, Record::Governance(event));
        Ok((envelope.id(), closes_ms))
    }

    /// A member's ballot, already verified as signed by `envelope.signer`.
    pub fn vote(&mut self, now: Now, envelope: Envelope, ballot: Ballot) -> Result<(), Refusal> {
        self.clock = now;
        let event =
            self.governance.check_ballot(now.wall_ms, &envelope, &ballot).map_err(|e| e.to_string())?;
        let opened = self.governance.open[&ballot.proposal].seq;
        self.record(Some(opened), envelope.signer, Record::Governance(event));
        Ok(())
    }

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
            return Err(format!("worker key {worker} is not admitted to this commons"));
        };
        let still: BTreeSet<(TaskId, u32)> = running.iter().copied().collect();
        let dropped: Vec<(TaskId, u32)> = self
            .workers
            .get(&worker)
            .map(|previous| {
                previous.running.iter().map(|task| (*task, self.attempt_of(task))).collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|placed| !still.contains(placed))
            .collect();
        for (task, attempt) in dropped {
            let reason = format!("worker {} reconnected without it", worker.short());
            self.requeue(task, attempt, reason, true);
        }
        let placed = self.workers.remove(&worker).map(|previous| previous.running).unwrap_or_default();
        let foreign = still.iter().filter(|(task, _)| !placed.contains(task)).count() as u32;
        let state = Worker {
            owner,
            session,
            capacity,
            running: placed,
            foreign,
            last_seen_mono_ms: now.mono_ms,
            away: false,
        };
        self.workers.insert(worker, state);
        self.refresh(&worker);
        self.schedule();
        Ok(())
    }

    /// A worker's connection ended. Its tasks stay placed on it until it has been silent
    /// for the worker timeout ([`Core::tick`]): a worker that reconnects in time resumes.
    pub fn worker_disconnected(&mut self, now: Now, worker: PublicKey, session: u64, reason: String) {
        self.clock = now;
        if let Some(state) = self.workers.get_mut(&worker).filter(|w| w.session == session) {
            tracing::info!(worker = %worker.short(), %reason, "worker disconnected; its tasks wait for it to return");
            state.away = true;
            self.pool.remove(&worker);
        }
    }

    /// A worker's heartbeat, with the tasks it runs now.
    pub fn heartbeat(&mut self, now: Now, worker: PublicKey, session: u64, running: &[(TaskId, u32)]) {
        self.clock = now;
        let Some(state) = self.workers.get_mut(&worker).filter(|w| w.session == session) else { return };
        state.last_seen_mono_ms = now.mono_ms;
        let foreign = running.iter().filter(|(task, _)| !state.running.contains(task)).count() as u32;
        if foreign != state.foreign {
            state.foreign = foreign;
            self.refresh(&worker);
        }
    }

    /// The attempt a replica in flight is on.
    fn attempt_of(&self, task: &TaskId) -> u32 {
        self.jobs[&task.job].placements[&task.index].attempt
    }

    /// A report already verified as signed by `worker`, the key its connection proved.
    pub fn report(
        &mut self,
        now: Now,
        worker: PublicKey,
        session: u64,
        envelope: Envelope,
        report: ExecutionReport,
    ) {
        self.clock = now;
        let task = report.task;
        let Some(job) = self.jobs.get(&task.job) else {
            return self.misbehaved(worker, session, format!("it reported on unknown task {task}"));
        };
        let current =
            job.placements.get(&task.index).filter(|p| p.worker == worker && p.attempt == report.attempt);
        let Some(placement) = current.cloned() else {
            // A late report for an attempt that was already requeued, or for a job already
            // decided: not evidence of anything wrong, and not a result either.
            tracing::debug!(%task, attempt = report.attempt, worker = %worker.short(), "stale report ignored");
            return;
        };
        if let Some(state) = self.workers.get_mut(&worker) {
            state.last_seen_mono_ms = now.mono_ms;
        }
        if let Err(e) = report.validate(&job.submission.limits) {
            let reason = format!("worker {} sent an invalid report", worker.short());
            self.requeue(task, placement.attempt, reason, true);
            return self.misbehaved(worker, session, e.to_string());
        }
        let retry = matches!(&report.outcome, Outcome::Failed { kind, .. } if !kind.is_final());
        let received =
            self.record(Some(placement.placed_seq), worker, Record::ReportReceived { report: envelope });
        if retry {
            self.requeue(task, placement.attempt, "the worker failed for a reason of its own".into(), false);
        } else {
            self.verify(task.job, received);
        }
        self.schedule();
    }

    /// Compares the results in hand: accept, wait, add a replica, or open a dispute.
    fn verify(&mut self, id: JobId, cause: u64) {
        let job = &self.jobs[&id];
        let reports: Vec<icn_placement::Report> = job
            .reports
            .iter()
            .map(|r| icn_placement::Report {
                worker: r.worker,
                owner: r.owner.clone(),
                digest: result_key(&r.report),
                fuel: comparable_fuel(&r.report),
            })
            .collect();
        let outstanding = (job.placements.len() + job.vacant.len()) as u32 + job.extra;
        let replicas_max = self.policy_for(&job.submission.scope).replicas_max.max(job.replicas_placed);
        let signer = self.key.public();
        match icn_placement::judge(&reports, job.quorum, outstanding, job.replicas_placed, replicas_max) {
            Verdict::Pending => {}
            Verdict::Accepted(judged) => self.accept(id, &judged.agreeing, &judged.dissenting, cause, None),
            Verdict::NeedMore if !self.another_owner_admitted(id) => {
                let reason = format!(
                    "{} results disagree and no admitted worker of another cooperative can break the tie",
                    reports.len()
                );
                self.record(Some(cause), signer, Record::DisputeOpened { job: id, reason });
            }
            Verdict::NeedMore => {
                let reason = format!("{} results disagree", reports.len());
                self.record(Some(cause), signer, Record::ReplicasWanted { job: id, count: 1, reason });
            }
            Verdict::Dispute => {
                let reason = format!(
                    "{} results disagree and {replicas_max} replicas is the most allowed",
                    reports.len()
                );
                self.record(Some(cause), signer, Record::DisputeOpened { job: id, reason });
            }
        }
    }

    /// The result the `agreeing` workers reported stands: trust follows, the job ends,
    /// and if it completed, the owners of the agreeing workers are paid.
    fn accept(
        &mut self,
        id: JobId,
        agreeing: &[PublicKey],
        dissenting: &[PublicKey],
        cause: u64,
        by_decision: Option<u64>,
    ) {
        let signer = self.key.public();
        let mut cause = cause;
        if agreeing.len() >= 2 || !dissenting.is_empty() || by_decision.is_some() {
            let verified = Record::Verified {
                job: id,
                agreeing: agreeing.to_vec(),
                dissenting: dissenting.to_vec(),
                by_decision,
            };
            cause = self.record(Some(cause), signer, verified);
        }
        let job = &self.jobs[&id];
        let accepted =
            job.reports.iter().find(|r| r.worker == agreeing[0]).expect("an agreeing worker reported");
        let ended = match &accepted.report.outcome {
            Outcome::Exited { .. } => {
                let each = cost(&job.authorization, accepted.report.fuel);
                let payees = agreeing
                    .iter()
                    .map(|w| {
                        let owner = &job.reports.iter().find(|r| r.worker == *w).expect("reported").owner;
                        (owner.clone(), each)
                    })
                    .collect();
                Record::JobCompleted {
                    job: id,
                    output_digest: accepted.report.output_digest,
                    fuel: accepted.report.fuel,
                    worker: accepted.worker,
                    payees,
                }
            }
            Outcome::Failed { kind, detail } => {
                Record::JobFailed { job: id, reason: format!("{kind:?}: {detail}") }
            }
        };
        self.record(Some(cause), signer, ended);
    }

    /// A decision settled a dispute: the reports with the decided result win, the others
    /// lose trust, and the winners' owners are paid.
    fn resolve(&mut self, id: JobId, output_digest: ContentId, fuel: icn_protocol::Fuel, decided: u64) {
        let Some(job) = self.jobs.get(&id).filter(|j| j.disputed && !j.ended) else {
            tracing::warn!(job = %id, "a dispute decision for a job that is not in dispute changes nothing");
            return;
        };
        let (winners, losers): (Vec<&Received>, Vec<&Received>) = job
            .reports
            .iter()
            .partition(|r| r.report.output_digest == output_digest && r.report.fuel == fuel);
        let (winners, losers): (Vec<PublicKey>, Vec<PublicKey>) =
            (winners.iter().map(|r| r.worker).collect(), losers.iter().map(|r| r.worker).collect());
        if winners.is_empty() {
            let reason =
                format!("the decided result (output {}, {fuel}) matches no report", output_digest.short());
            let signer = self.key.public();
            self.record(Some(decided), signer, Record::JobFailed { job: id, reason });
            return;
        }
        self.accept(id, &winners, &losers, decided, Some(decided));
    }

    /// Whether any admitted worker belongs to a cooperative not yet involved in `id`.
    fn another_owner_admitted(&self, id: JobId) -> bool {
        let job = &self.jobs[&id];
        let involved: BTreeSet<&ScopeId> =
            job.reports.iter().map(|r| &r.owner).chain(job.placements.values().map(|p| &p.owner)).collect();
        self.governance
            .workers
            .iter()
            .any(|(key, owner)| !involved.contains(owner) && !self.quarantined.contains(key))
    }

    /// The placement policy for jobs of `scope`: replication when a decision asked for it.
    fn policy_for(&self, scope: &ScopeId) -> Policy {
        match self.governance.placement_policy(scope) {
            Some(p) => Policy {
                replicas: p.replicas,
                quorum: p.quorum,
                replicas_max: p.replicas_max(),
                ..self.policy
            },
            None => Policy { replicas: 1, quorum: 1, replicas_max: 1, ..self.policy },
        }
    }

    /// Every replica in flight and its attempt, in job order.
    fn in_flight(&self) -> Vec<(TaskId, u32)> {
        self.jobs
            .iter()
            .flat_map(|(id, job)| {
                job.placements.iter().map(|(index, p)| (TaskId { job: *id, index: *index }, p.attempt))
            })
            .collect()
    }

    /// Time passes: voting closes on proposals that are due, workers removed by a
    /// decision leave, silent workers are lost, overdue attempts are requeued and jobs
    /// past their expiry fail.
    pub fn tick(&mut self, now: Now) {
        self.clock = now;
        self.close_due_proposals();
        // A decision may have removed workers: they leave now, through no fault of theirs.
        let removed: Vec<(PublicKey, u64)> = self
            .workers
            .iter()
            .filter(|(key, _)| !self.governance.workers.contains_key(key))
            .map(|(key, w)| (*key, w.session))
            .collect();
        for (worker, session) in removed {
            let reason = "a decision removed it from the commons".to_string();
            self.commands.push(Command::Disconnect { worker, session, reason: reason.clone() });
            self.worker_lost(worker, session, reason, false);
        }
        let timeout_ms = self.config.worker_timeout_ms;
        let silent: Vec<(PublicKey, u64, bool)> = self
            .workers
            .iter()
            .filter(|(_, w)| now.mono_ms.saturating_sub(w.last_seen_mono_ms) > timeout_ms)
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
        let overdue: Vec<(TaskId, u32, PublicKey)> = self
            .jobs
            .iter()
            .flat_map(|(id, job)| {
                job.placements
                    .iter()
                    .filter(|(_, p)| p.deadline_mono_ms < now.mono_ms)
                    .map(|(index, p)| (TaskId { job: *id, index: *index }, p.attempt, p.worker))
            })
            .collect();
        for (task, attempt, worker) in overdue {
            let reason = format!("worker {} missed the deadline", worker.short());
            self.requeue(task, attempt, reason, true);
        }
        self.expire();
        self.schedule();
    }

    fn close_due_proposals(&mut self) {
        for proposal in self.governance.due(self.clock.wall_ms) {
            let mut record = self.governance.decide(&proposal);
            if record.accepted
                && let Effect::CreditLimit { scope, limit } = &self.governance.open[&proposal].proposal.effect
            {
                // Known only at close: whether the account already uses more than the new limit.
                let mut trial = self.ledger.clone();
                if let Err(e) = trial.set_limit(scope, *limit) {
                    record.effect_refused = Some(e.to_string());
                }
            }
            let opened = self.governance.open[&proposal].seq;
            let effect = self.governance.open[&proposal].proposal.effect.clone();
            let accepted = record.accepted;
            let signer = self.key.public();
            let decided = self.record(Some(opened), signer, Record::Governance(Event::DecisionMade(record)));
            if accepted && let Effect::ResolveDispute { job, output_digest, fuel } = effect {
                self.resolve(job, output_digest, fuel, decided);
            }
        }
    }

    /// Jobs without a final result `job_expiry_ms` after submission fail, voiding their hold.
    fn expire(&mut self) {
        let now_ms = self.clock.wall_ms;
        let mut expired: Vec<(u64, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, job)| {
                !job.ended && job.submitted_ms.saturating_add(self.config.job_expiry_ms) <= now_ms
            })
            .map(|(id, job)| (job.submitted_seq, *id))
            .collect();
        expired.sort_unstable();
        for (submitted_seq, job) in expired {
            let reason = format!(
                "expired: no accepted result within {} ms of submission; its reservation is voided",
                self.config.job_expiry_ms
            );
            let signer = self.key.public();
            self.record(Some(submitted_seq), signer, Record::JobFailed { job, reason });
        }
    }

    // ---- queries -----------------------------------------------------------------

    pub fn job(&self, id: &JobId) -> Option<JobView> {
        let job = self.jobs.get(id)?;
        let state = match (job.placements.values().next(), job.ended, &job.failure) {
            (_, true, None) => JobState::Completed,
            (_, true, Some(_)) => JobState::Failed,
            _ if job.disputed => JobState::Disputed,
            (Some(p), false, _) => JobState::Running { worker: p.worker, attempt: p.attempt },
            (None, false, _) => JobState::Queued,
        };
        Some(JobView {
            job: *id,
            state,
            attempts: job.attempts,
            result: job.result.clone(),
            failure: job.failure.clone(),
        })
    }

    /// The journal entries about a job, in order.
    pub fn job_entries(&self, id: &JobId) -> Vec<u64> {
        self.jobs.get(id).map(|j| j.entries.clone()).unwrap_or_default()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub fn connected_workers(&self) -> impl Iterator<Item = (&PublicKey, &str, u32)> {
        self.workers.iter().map(|(key, w)| (key, w.owner.as_str(), w.free_slots()))
    }

    // ---- internals ---------------------------------------------------------------

    fn record(&mut self, cause: Option<u64>, signer: PublicKey, record: Record) -> u64 {
        let seq = self.next_seq;
        let now_ms = self.clock.wall_ms;
        let entry = Entry::new(seq, self.last_hash, cause, now_ms, signer, &record);
        self.apply(seq, now_ms, &record);
        self.next_seq += 1;
        self.last_hash = entry.hash;
        self.entries.push(entry);
        if let Some(job) = record.job() {
            self.commands.push(Command::JobChanged(job));
        }
        seq
    }

    /// The one place job state changes: live, right after a record is made, and at
    /// start, for every record in the journal.
    fn apply(&mut self, seq: u64, time_ms: u64, record: &Record) {
        match record {
            Record::JobSubmitted { submission, authorization } => {
                let id = JobId(submission.id());
                let decoded = submission.open_trusted::<Submission>().expect("journaled submissions decode");
                self.governance.hold(authorization.decision, authorization.hold);
                if authorization.hold.0 > 0 {
                    self.ledger
                        .reserve(transfer(id), &decoded.scope, authorization.hold)
                        .expect("a journaled admission fits the account (checked before it was recorded)");
                }
                self.jobs.insert(
                    id,
                    Job {
                        submitter: submission.signer,
                        authorization: *authorization,
                        submission: decoded,
                        submitted_seq: seq,
                        submitted_ms: time_ms,
                        attempts: 0,
                        requeues: 0,
                        placements: BTreeMap::new(),
                        replicas_placed: 0,
                        vacant: BTreeSet::new(),
                        extra: 0,
                        quorum: 1,
                        reports: vec![],
                        disputed: false,
                        result: None,
                        failure: None,
                        ended: false,
                        entries: vec![seq],
                    },
                );
                self.queue.insert(seq, id);
                self.jobs_open += 1;
            }
            Record::TaskPlaced { task, attempt, worker, owner, quorum, .. } => {
                let grace_ms = self.config.deadline_grace_ms;
                let job = self.jobs.get_mut(&task.job).expect("placed task's job exists");
                let timeout_ms = job.submission.limits.timeout_ms;
                if !job.vacant.remove(&task.index) {
                    assert_eq!(
                        task.index, job.replicas_placed,
                        "entry {seq}: a new replica takes the next index"
                    );
                    job.replicas_placed += 1;
                    job.extra = job.extra.saturating_sub(1);
                }
                job.quorum = *quorum;
                job.attempts = *attempt;
                job.placements.insert(
                    task.index,
                    Placement {
                        worker: *worker,
                        owner: owner.clone(),
                        attempt: *attempt,
                        placed_seq: seq,
                        deadline_mono_ms: self
                            .clock
                            .mono_ms
                            .saturating_add(timeout_ms)
                            .saturating_add(grace_ms),
                    },
                );
                if job.vacant.is_empty() && job.extra == 0 {
                    self.queue.remove(&job.submitted_seq);
                }
                job.entries.push(seq);
                if let Some(state) = self.workers.get_mut(worker) {
                    state.running.insert(*task);
                }
                self.refresh(worker);
            }
            Record::TaskRequeued { task, fault, .. } => {
                assert!(!self.jobs[&task.job].ended, "entry {seq}: task {task} of an ended job is requeued");
                let placement = self.release(*task);
                if *fault && let Some(placement) = placement {
                    self.lose_trust(&placement.worker, seq, |trust| trust.missed += 1);
                }
                let job = self.jobs.get_mut(&task.job).expect("requeued task's job exists");
                job.vacant.insert(task.index);
                job.requeues += 1;
                self.queue.insert(job.submitted_seq, task.job);
                job.entries.push(seq);
            }
            Record::ReportReceived { report } => {
                let decoded = report.open_trusted::<ExecutionReport>().expect("journaled reports decode");
                let placement = self.release(decoded.task).expect("a journaled report answers a placement");
                let job = self.jobs.get_mut(&decoded.task.job).expect("reported task's job exists");
                job.entries.push(seq);
                let retry = matches!(&decoded.outcome, Outcome::Failed { kind, .. } if !kind.is_final());
                if !retry {
                    job.reports.push(Received {
                        worker: report.signer,
                        owner: placement.owner,
                        report: decoded,
                    });
                }
            }
            Record::Verified { job, agreeing, dissenting, by_decision } => {
                // Evidence of honesty: independent results agreeing, or a verdict.
                if agreeing.len() >= 2 || by_decision.is_some() {
                    for worker in agreeing {
                        self.trust.entry(*worker).or_default().agreements += 1;
                        self.refresh(worker);
                    }
                }
                for worker in dissenting {
                    self.lose_trust(worker, seq, |trust| trust.disagreements += 1);
                }
                self.jobs.get_mut(job).expect("verified job exists").entries.push(seq);
            }
            Record::ReplicasWanted { job, count, .. } => {
                let state = self.jobs.get_mut(job).expect("job wanting replicas exists");
                state.extra += count;
                state.entries.push(seq);
                self.queue.insert(state.submitted_seq, *job);
            }
            Record::DisputeOpened { job, .. } => {
                let state = self.jobs.get_mut(job).expect("disputed job exists");
                state.disputed = true;
                state.entries.push(seq);
                self.queue.remove(&state.submitted_seq);
            }
            Record::JobCompleted { job, fuel, worker, payees, .. } => {
                let state = &self.jobs[job];
                assert!(!state.ended, "entry {seq}: job {job} completes after it ended");
                let authorization = state.authorization;
                let each = cost(&authorization, *fuel);
                assert!(
                    payees.iter().all(|(_, paid)| *paid == each),
                    "entry {seq}: a journaled payment differs from fuel times the price"
                );
                let spent = Credits(payees.iter().map(|(_, paid)| paid.0).sum());
                assert!(spent <= authorization.hold, "entry {seq}: payments exceed the hold");
                let accepted = state.reports.iter().find(|r| r.worker == *worker).map(|r| r.report.clone());
                self.governance.release(authorization.decision, authorization.hold, spent);
                if authorization.hold.0 > 0 {
                    self.ledger.post(transfer(*job), payees).expect("a completed job's reservation posts");
                }
                for (payee, paid) in payees {
                    self.pool.earn(payee, paid.0.max(0) as u64);
                }
                let state = self.jobs.get_mut(job).expect("completed job exists");
                state.result = accepted.map(|report| (*worker, report));
                self.end(*job, seq, None);
            }
            Record::JobFailed { job, reason } => {
                assert!(!self.jobs[job].ended, "entry {seq}: job {job} fails after it ended");
                let authorization = self.jobs[job].authorization;
                self.governance.release(authorization.decision, authorization.hold, Credits(0));
                if authorization.hold.0 > 0 {
                    self.ledger.void(transfer(*job)).expect("a failed job's reservation voids");
                }
                let state = self.jobs.get_mut(job).expect("failed job exists");
                if state.result.is_none() {
                    state.result = state.reports.last().map(|r| (r.worker, r.report.clone()));
                }
                self.end(*job, seq, Some(reason.clone()));
            }
            Record::Governance(event) => {
                if let Event::Genesis(genesis) = event {
                    self.genesis = Some(genesis.clone());
                    for scope in &genesis.scopes {
                        self.ledger.open(scope.id.clone());
                        if let Some(limit) = scope.credit_limit {
                            self.ledger
                                .set_limit(&scope.id, limit)
                                .expect("a new account takes any valid limit");
                        }
                    }
                }
                // The effects governance leaves to the coordinator: read before `apply`
                // closes the proposal.
                let effect = match event {
                    Event::DecisionMade(record) if record.accepted && record.effect_refused.is_none() => {
                        Some(self.governance.open[&record.proposal].proposal.effect.clone())
                    }
                    _ => None,
                };
                self.governance.apply(seq, time_ms, event);
                match effect {
                    Some(Effect::Readmit { key }) => {
                        self.quarantined.remove(&key);
                        self.trust.remove(&key);
                        self.refresh(&key);
                    }
                    Some(Effect::CreditLimit { scope, limit }) => {
                        self.ledger
                            .set_limit(&scope, limit)
                            .expect("checked at close (else effect_refused is set)");
                    }
                    _ => {}
                }
            }
            Record::Cleared { request, clearing } => {
                let decoded = request.open_trusted::<ClearRequest>().expect("journaled requests decode");
                let window_ms = icn_protocol::governance::CLEAR_REQUEST_WINDOW_MS;
                self.clearings.retain(|_, (made_ms, _)| made_ms.saturating_add(2 * window_ms) >= time_ms);
                self.clearings.insert(request.id(), (decoded.made_ms, seq));
                let federation = decoded.federation;
                let done = self
                    .ledger
                    .clear(&self.governance.descendants(&federation))
                    .expect("cleared scopes exist");
                assert_eq!(
                    &done, clearing,
                    "entry {seq}: the journaled clearing differs from a recomputation"
                );
            }
        }
    }

    /// A replica's attempt is over: its worker's slot comes free.
    fn release(&mut self, task: TaskId) -> Option<Placement> {
        let placement =
            self.jobs.get_mut(&task.job).expect("a released job exists").placements.remove(&task.index)?;
        if let Some(state) = self.workers.get_mut(&placement.worker) {
            state.running.remove(&task);
        }
        self.refresh(&placement.worker);
        Some(placement)
    }

    /// The worker failed: `failure` counts it (a missed task, a result that disagreed).
    /// Below the floor, it is quarantined.
    fn lose_trust(&mut self, worker: &PublicKey, seq: u64, failure: impl FnOnce(&mut Trust)) {
        let trust = self.trust.entry(*worker).or_default();
        failure(trust);
        if self.policy.quarantines(trust) && self.quarantined.insert(*worker) {
            tracing::warn!(worker = %worker.short(), entry = seq, ?trust, "worker quarantined: trust below the floor");
        }
        self.refresh(worker);
    }

    /// Puts a connected worker's current state into the placement pool.
    fn refresh(&mut self, key: &PublicKey) {
        // A worker away (its connection dropped) takes no new task until it is back.
        let Some(state) = self.workers.get(key).filter(|w| !w.away) else {
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

    fn end(&mut self, id: JobId, seq: u64, failure: Option<String>) {
        let replicas: Vec<u32> = self.jobs[&id].placements.keys().copied().collect();
        for index in replicas {
            self.release(TaskId { job: id, index });
        }
        let job = self.jobs.get_mut(&id).expect("ended job exists");
        // Ending twice would release the hold twice: money and history would go wrong.
        assert!(!job.ended, "entry {seq}: job {id} ends once");
        self.queue.remove(&job.submitted_seq);
        job.ended = true;
        job.failure = failure;
        job.entries.push(seq);
        // The input is no longer needed once the job has ended.
        job.submission.input = Vec::new();
        self.jobs_open -= 1;
    }

    /// Puts a replica back in the queue, if `attempt` is still the one in flight: an
    /// earlier requeue in the same pass may have failed the job and released it.
    /// A job whose replicas were requeued `attempts_max` times fails.
    fn requeue(&mut self, task: TaskId, attempt: u32, reason: String, fault: bool) {
        let Some(placement) = self
            .jobs
            .get(&task.job)
            .filter(|job| !job.ended)
            .and_then(|job| job.placements.get(&task.index))
            .filter(|p| p.attempt == attempt)
        else {
            return;
        };
        let cause = placement.placed_seq;
        let signer = self.key.public();
        let requeued =
            self.record(Some(cause), signer, Record::TaskRequeued { task, attempt, reason, fault });
        if self.jobs[&task.job].requeues >= self.config.attempts_max {
            let reason = format!("replicas were lost {} times, the limit", self.config.attempts_max);
            self.record(Some(requeued), signer, Record::JobFailed { job: task.job, reason });
        }
    }

    /// A worker is gone for good: every task it held goes back to the queue, and it
    /// loses trust for them when `fault`.
    fn worker_lost(&mut self, worker: PublicKey, session: u64, reason: String, fault: bool) {
        let Some(state) = self.workers.get(&worker).filter(|w| w.session == session) else {
            return;
        };
        let running: Vec<TaskId> = state.running.iter().copied().collect();
        for task in running {
            let attempt = self.attempt_of(&task);
            let why = format!("worker {} was lost: {reason}", worker.short());
            self.requeue(task, attempt, why, fault);
        }
        self.workers.remove(&worker);
        self.pool.remove(&worker);
        self.schedule();
    }

    /// The worker broke the protocol: it is disconnected and its tasks go elsewhere now,
    /// without waiting for it to come back.
    fn misbehaved(&mut self, worker: PublicKey, session: u64, reason: String) {
        tracing::warn!(worker = %worker, %reason, "worker broke the protocol; disconnecting it");
        self.commands.push(Command::Disconnect { worker, session, reason: reason.clone() });
        self.worker_lost(worker, session, format!("it broke the protocol: {reason}"), true);
    }

    /// Places queued jobs in submission order: a job's first replicas by the policy's
    /// plan, then replacements for lost replicas and the extra replicas a disagreement
    /// asked for. Stops at the first job that cannot be placed, so none is overtaken.
    fn schedule(&mut self) {
        while let Some((_, &id)) = self.queue.iter().next() {
            if !self.place(id) {
                return;
            }
        }
    }

    /// Places what `id` waits for; whether it got all of it.
    fn place(&mut self, id: JobId) -> bool {
        let job = &self.jobs[&id];
        let policy = self.policy_for(&job.submission.scope);
        let mut request = Request::new(job.submission.executor, job.submission.limits.memory_bytes, 1);
        if job.replicas_placed == 0 && job.vacant.is_empty() && job.extra == 0 {
            let plan = if policy.replicas <= 1 {
                self.pool.place(&request).first().map(|chosen| Plan {
                    chosen: vec![*chosen],
                    quorum: 1,
                    spot_check: false,
                })
            } else {
                icn_placement::plan(&self.pool, &request, &policy, draw(id))
            };
            let Some(plan) = plan else { return false };
            for (index, (worker, score)) in plan.chosen.iter().enumerate() {
                self.place_replica(TaskId { job: id, index: index as u32 }, *worker, score, plan.quorum);
            }
            return true;
        }
        // Replicas of this job already in flight or reported keep their owners off it.
        for p in job.placements.values() {
            request.exclude_workers.insert(p.worker);
            request.exclude_owners.insert(p.owner.clone());
        }
        for r in &job.reports {
            request.exclude_workers.insert(r.worker);
            request.exclude_owners.insert(r.owner.clone());
        }
        let wanted: Vec<(u32, bool)> = job
            .vacant
            .iter()
            .map(|index| (*index, false))
            .chain((0..job.extra).map(|n| (job.replicas_placed + n, true)))
            .collect();
        let quorum = job.quorum;
        for (index, settling) in wanted {
            // A replica that settles a disagreement goes to the most trusted worker free.
            let chosen =
                if settling { self.pool.place_most_trusted(&request) } else { self.pool.place(&request) };
            let Some((worker, score)) = chosen.first().copied() else { return false };
            request.exclude_workers.insert(worker);
            request.exclude_owners.insert(self.workers[&worker].owner.clone());
            self.place_replica(TaskId { job: id, index }, worker, &score, quorum);
        }
        true
    }

    fn place_replica(&mut self, task: TaskId, worker: PublicKey, score: &icn_placement::Score, quorum: u32) {
        let job = &self.jobs[&task.job];
        let attempt = job.attempts + 1;
        let cause = *job.entries.last().expect("a job has its submission entry");
        let assignment = Assignment {
            task,
            attempt,
            module: job.submission.module,
            input: job.submission.input.clone(),
            args: job.submission.args.clone(),
            limits: job.submission.limits,
        };
        let state = &self.workers[&worker];
        let (owner, session) = (state.owner.clone(), state.session);
        let scores = crate::record::Scores::of(score);
        let signer = self.key.public();
        self.record(Some(cause), signer, Record::TaskPlaced { task, attempt, worker, owner, scores, quorum });
        self.commands.push(Command::Dispatch { worker, session, assignment });
    }

    /// A member's request to clear the obligations within a federation.
    pub fn clear(
        &mut self,
        now: Now,
        envelope: Envelope,
        request: ClearRequest,
    ) -> Result<icn_ledger::Clearing, Refusal> {
        self.clock = now;
        if let Some((_, seq)) = self.clearings.get(&envelope.id()) {
            return Err(format!(
                "this clearing request was carried out at entry {seq}; a replayed request changes nothing"
            ));
        }
        let window_ms = icn_protocol::governance::CLEAR_REQUEST_WINDOW_MS;
        if request.made_ms.abs_diff(now.wall_ms) > window_ms {
            return Err(format!(
                "the request was made at {} ms and the coordinator's clock reads {} ms, more than {window_ms} ms \
                 apart; make a new request (and check this machine's clock)",
                request.made_ms, now.wall_ms
            ));
        }
        let federation = &request.federation;
        let scope = self.governance.scope(federation).map_err(|e| e.to_string())?;
        if scope.kind != icn_protocol::governance::ScopeKind::Federation {
            return Err(format!(
                "{federation} is not a federation; clearing nets the obligations inside one"
            ));
        }
        let name = self.governance.member_name(&envelope.signer).map(str::to_string);
        let may =
            self.governance.holds(&envelope.signer, federation, icn_protocol::governance::Standing::Vote)
                || self.governance.holds(
                    &envelope.signer,
                    federation,
                    icn_protocol::governance::Standing::Operate,
                );
        if !may {
            return Err(format!(
                "{} holds neither vote nor operate standing in {federation}",
                name.unwrap_or_else(|| envelope.signer.to_string())
            ));
        }
        let clearing =
            self.ledger.clone().clear(&self.governance.descendants(federation)).map_err(|e| e.to_string())?;
        let signer = envelope.signer;
        self.record(None, signer, Record::Cleared { request: envelope, clearing: clearing.clone() });
        Ok(clearing)
    }

    /// Who submitted a job; for the shell's access checks.
    pub fn submitter(&self, id: &JobId) -> Option<PublicKey> {
        self.jobs.get(id).map(|j| j.submitter)
    }
}

/// A worker as `icn workers` shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerView {
    pub key: PublicKey,
    /// None once a decision removed it.
    pub owner: Option<ScopeId>,
    pub connected: bool,
    pub slots: u32,
    pub free_slots: u32,
    pub trust: Trust,
    pub trust_lower_bound: f64,
    pub quarantined: bool,
}

/// A job's one transfer: reserved at admission, posted at completion or voided at failure.
pub fn transfer(job: JobId) -> TransferId {
    TransferId::derive("job", &job.0.0)
}

/// What a job that used `fuel` costs, at the price it was admitted at. Reports are
/// checked to stay within the fuel limit, so this stays within the hold; `min` keeps
/// that true at a rounding edge.
fn cost(authorization: &Authorization, fuel: icn_protocol::Fuel) -> Credits {
    authorization.price.cost(fuel).min(authorization.hold)
}

/// The fuel replicas must match on: all of it where the ending makes it the same on every
/// honest worker, none where it depends on the worker's clock (a timeout stops a module
/// wherever it happens to be).
fn comparable_fuel(report: &ExecutionReport) -> u64 {
    match &report.outcome {
        Outcome::Failed { kind: FailureKind::Timeout, .. } => 0,
        _ => report.fuel.0,
    }
}

/// What replicas must match on to agree: how the run ended and what it printed.
fn result_key(report: &ExecutionReport) -> ContentId {
    let ending = match &report.outcome {
        Outcome::Exited { code } => format!("exited {code}"),
        Outcome::Failed { kind, .. } => format!("failed {kind:?}"),
    };
    let mut bytes = ending.into_bytes();
    bytes.extend_from_slice(&report.output_digest.0);
    ContentId::of(&bytes)
}

/// A number in [0, 1) fixed by the job's id: the spot-check draw, reproducible on replay
/// and not chosen by anyone.
fn draw(job: JobId) -> f64 {
    let bytes: [u8; 8] = job.0.0[..8].try_into().expect("an id has eight bytes");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
