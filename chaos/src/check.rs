//! The invariants, checked against the journal as it becomes durable. A [`Fold`] reads
//! each sealed entry once, in order, and keeps its own small account of what the records
//! say — independent of the core's state — so a bug in how the core applies a record
//! shows as a difference between the two.

use std::collections::BTreeMap;

use icn_core::{Core, Entry, Record};
use icn_governance::Event;
use icn_protocol::governance::{Effect, Proposal, ScopeId};
use icn_protocol::wire::Submission;
use icn_protocol::{ContentId, Fuel, JobId};

/// A promise of the commons the simulation checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Positions sum to zero, and reservations add up (`Ledger::check`).
    PositionsSumToZero,
    /// No account's position and holds pass its credit limit.
    WithinLimits,
    /// Every position is what the journal's payments add up to: nothing posted twice.
    PostedOnce,
    /// A job is paid for at most once, and only after its result was accepted.
    SettledOnAcceptedResult,
    /// A result is accepted only with at least the quorum its replicas were placed for.
    QuorumHeld,
    /// Every job was admitted under a mandate in force, granted by a decision (or the
    /// genesis) for its scope; every placement is of such a job.
    MandateInForce,
    /// Every credit limit is what the last decision on it (or the genesis) set.
    LimitsAsDecided,
    /// The chain of entries verifies: links, hashes, seals, carried signatures.
    ChainVerifies,
    /// A replay of the journal from empty gives the live state.
    ReplayEqualsLive,
    /// Everything a member or worker was told was done is in the journal, after any crash.
    AcknowledgedIsDurable,
    /// Once faults stop, every job ends within the bound.
    JobsEnd,
    /// After the core did what was due, it does not ask to run again at once.
    WakesAfterWork,
    /// Nothing panics: every `assert!` of the core holds.
    NoPanic,
}

impl Invariant {
    pub fn name(self) -> &'static str {
        match self {
            Invariant::PositionsSumToZero => "positions sum to zero",
            Invariant::WithinLimits => "no position past its limit",
            Invariant::PostedOnce => "no transfer posts twice",
            Invariant::SettledOnAcceptedResult => "nothing settles without an accepted result",
            Invariant::QuorumHeld => "no result accepted with fewer agreeing replicas than its quorum",
            Invariant::MandateInForce => "nothing runs without a mandate in force",
            Invariant::LimitsAsDecided => "every credit limit traces to its decision",
            Invariant::ChainVerifies => "the chain verifies",
            Invariant::ReplayEqualsLive => "the live state equals the replayed state",
            Invariant::AcknowledgedIsDurable => "nothing acknowledged is lost in a crash",
            Invariant::JobsEnd => "once faults stop, every job ends within the bound",
            Invariant::WakesAfterWork => "the core does not ask to run again at once",
            Invariant::NoPanic => "nothing panics",
        }
    }
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An invariant that did not hold, when and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    /// Simulated time (ms since the run began).
    pub at_ms: u64,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at {} ms): {}", self.invariant, self.at_ms, self.detail)
    }
}

type Check = Result<(), (Invariant, String)>;

fn fail<T>(invariant: Invariant, detail: String) -> Result<T, (Invariant, String)> {
    Err((invariant, detail))
}

#[derive(Clone, Debug, Default)]
struct JobFold {
    scope: Option<ScopeId>,
    /// The quorum of the latest round placed.
    quorum: u32,
    /// A result was accepted (`Verified`).
    verified: bool,
    paid: u32,
    placed: u32,
    /// Workers whose reports on it were journaled.
    reported: std::collections::BTreeSet<icn_protocol::PublicKey>,
}

/// What the journal's records say, folded independently of the core.
#[derive(Default)]
pub struct Fold {
    /// Entries read so far: the next one to read.
    pub next: u64,
    proposals: BTreeMap<ContentId, Proposal>,
    /// Mandates by the entry that granted them: scope, granted at, period.
    mandates: BTreeMap<u64, (ScopeId, u64, u64)>,
    jobs: BTreeMap<JobId, JobFold>,
    positions: BTreeMap<ScopeId, i64>,
    limits: BTreeMap<ScopeId, i64>,
    /// Accepted results: (job, output digest, fuel), in journal order, for the run's
    /// statistics.
    pub accepted: Vec<(JobId, ContentId, Fuel)>,
    /// Replicas placed, over all jobs.
    pub placements: u64,
    /// Jobs that ended (completed, failed, cancelled).
    ended: std::collections::BTreeSet<JobId>,
}

impl Fold {
    /// Reads `entries` (the journal from `self.next` on, sealed), checking each record
    /// against what came before it.
    pub fn read(&mut self, entries: &[Entry]) -> Check {
        for entry in entries {
            assert_eq!(entry.seq, self.next, "the fold reads the journal in order");
            let record = entry.decode_record().map_err(|e| (Invariant::ChainVerifies, e.to_string()))?;
            self.record(entry, record)?;
            self.next += 1;
        }
        Ok(())
    }

    fn record(&mut self, entry: &Entry, record: Record) -> Check {
        let seq = entry.seq;
        match record {
            Record::Governance(Event::Genesis(genesis)) => {
                for scope in &genesis.scopes {
                    self.positions.insert(scope.id.clone(), 0);
                    self.limits.insert(scope.id.clone(), scope.credit_limit.map_or(0, |c| c.0));
                }
                for mandate in &genesis.mandates {
                    self.mandates.insert(seq, (mandate.scope.clone(), entry.time_ms, mandate.period_ms));
                }
            }
            Record::Governance(Event::ProposalOpened { proposal, .. }) => {
                let opened = proposal
                    .open_trusted::<Proposal>()
                    .map_err(|e| (Invariant::ChainVerifies, e.to_string()))?;
                self.proposals.insert(proposal.id(), opened);
            }
            Record::Governance(Event::DecisionMade(decision)) => {
                let applied = decision.accepted && decision.effect_refused.is_none();
                match self.proposals.get(&decision.proposal).map(|p| &p.effect) {
                    Some(Effect::Mandate(m)) if applied => {
                        self.mandates.insert(seq, (m.scope.clone(), entry.time_ms, m.period_ms));
                    }
                    Some(Effect::CreditLimit { scope, limit }) if applied => {
                        self.limits.insert(scope.clone(), limit.0);
                    }
                    _ => {}
                }
            }
            Record::Governance(Event::BallotCast { .. }) => {}
            Record::JobSubmitted { submission, authorization } => {
                let job = JobId(submission.id());
                let decoded = submission
                    .open_trusted::<Submission>()
                    .map_err(|e| (Invariant::ChainVerifies, e.to_string()))?;
                let Some((scope, granted, period)) = self.mandates.get(&authorization.decision) else {
                    return fail(
                        Invariant::MandateInForce,
                        format!(
                            "entry {seq}: job {job} names entry {} as its mandate, which granted none",
                            authorization.decision
                        ),
                    );
                };
                if *scope != decoded.scope
                    || entry.time_ms < *granted
                    || entry.time_ms >= granted.saturating_add(*period)
                {
                    return fail(
                        Invariant::MandateInForce,
                        format!(
                            "entry {seq}: job {job} of {} admitted outside mandate {} ({scope}, from {granted} for {period} ms)",
                            decoded.scope, authorization.decision
                        ),
                    );
                }
                self.jobs.insert(job, JobFold { scope: Some(decoded.scope), ..JobFold::default() });
            }
            Record::TaskPlaced { task, quorum, .. } => {
                let Some(job) = self.jobs.get_mut(&task.job).filter(|j| j.scope.is_some()) else {
                    return fail(
                        Invariant::MandateInForce,
                        format!("entry {seq}: task {task} placed for a job never admitted"),
                    );
                };
                job.quorum = quorum;
                job.placed += 1;
                self.placements += 1;
            }
            Record::Verified { job, agreeing, by_decision, .. } => {
                let fold = self.jobs.entry(job).or_default();
                if by_decision.is_none() && (agreeing.len() as u32) < fold.quorum {
                    return fail(
                        Invariant::QuorumHeld,
                        format!(
                            "entry {seq}: job {job} accepted with {} agreeing replicas; its quorum is {}",
                            agreeing.len(),
                            fold.quorum
                        ),
                    );
                }
                fold.verified = true;
            }
            Record::ReportReceived { report } => {
                let decoded = report
                    .open_trusted::<icn_protocol::wire::ExecutionReport>()
                    .map_err(|e| (Invariant::ChainVerifies, e.to_string()))?;
                self.jobs.entry(decoded.task.job).or_default().reported.insert(report.signer);
            }
            Record::JobCompleted { job, .. }
            | Record::JobFailed { job, .. }
            | Record::JobFailedPaid { job, .. }
                if !self.ended.insert(job) =>
            {
                return fail(
                    Invariant::SettledOnAcceptedResult,
                    format!("entry {seq}: job {job} ends a second time"),
                );
            }
            Record::JobCancelled { ref request } => {
                let cancel = request
                    .open_trusted::<icn_protocol::wire::Cancel>()
                    .map_err(|e| (Invariant::ChainVerifies, e.to_string()))?;
                if !self.ended.insert(cancel.job) {
                    return fail(
                        Invariant::SettledOnAcceptedResult,
                        format!("entry {seq}: job {} ends a second time", cancel.job),
                    );
                }
            }
            Record::JobCompleted { job, output_digest, fuel, worker, ref payees } => {
                self.accepted.push((job, output_digest, fuel));
                self.pay(seq, job, payees, Some(worker))?;
            }
            Record::JobFailedPaid { job, worker, ref payees, .. } => {
                self.pay(seq, job, payees, Some(worker))?
            }
            Record::CancelSettled { job, ref payees, .. } => self.pay(seq, job, payees, None)?,
            Record::TaskRequeued { .. }
            | Record::ReplicasWanted { .. }
            | Record::DisputeOpened { .. }
            | Record::JobFailed { .. }
            | Record::Cleared { .. } => {}
        }
        Ok(())
    }

    /// A payment for `job`; `accepted` is the worker whose result it pays for (none for
    /// a cancelled job's stopped replicas). A result stands when replicas were compared
    /// (`Verified`), or when its round was placed for a quorum of one and that worker's
    /// report is journaled.
    fn pay(
        &mut self,
        seq: u64,
        job: JobId,
        payees: &[(ScopeId, icn_protocol::governance::Credits)],
        accepted: Option<icn_protocol::PublicKey>,
    ) -> Check {
        let fold = self.jobs.entry(job).or_default();
        fold.paid += 1;
        if fold.paid > 1 {
            return fail(
                Invariant::SettledOnAcceptedResult,
                format!("entry {seq}: job {job} is paid for a second time"),
            );
        }
        if let Some(worker) = accepted
            && !fold.verified
        {
            if fold.quorum > 1 {
                return fail(
                    Invariant::QuorumHeld,
                    format!("entry {seq}: job {job} is paid on one result; its quorum is {}", fold.quorum),
                );
            }
            if !fold.reported.contains(&worker) {
                return fail(
                    Invariant::SettledOnAcceptedResult,
                    format!(
                        "entry {seq}: job {job} is paid for a result worker {} never reported",
                        worker.short()
                    ),
                );
            }
        }
        let Some(payer) = fold.scope.clone() else {
            return fail(
                Invariant::SettledOnAcceptedResult,
                format!("entry {seq}: job {job} is paid for but was never admitted"),
            );
        };
        for (payee, amount) in payees {
            *self.positions.entry(payer.clone()).or_default() -= amount.0;
            *self.positions.entry(payee.clone()).or_default() += amount.0;
        }
        Ok(())
    }

    /// The core's ledger against the fold: positions, limits, and the ledger's own check.
    pub fn compare(&self, core: &Core) -> Check {
        let ledger = core.ledger();
        if let Err(e) = ledger.check() {
            let invariant = if e.contains("past its limit") {
                Invariant::WithinLimits
            } else {
                Invariant::PositionsSumToZero
            };
            return fail(invariant, e);
        }
        for (scope, position) in &self.positions {
            let account = ledger.account(scope).map_err(|e| (Invariant::PostedOnce, e.to_string()))?;
            if account.position != *position {
                return fail(
                    Invariant::PostedOnce,
                    format!(
                        "{scope}'s position is {}; the journal's payments add up to {position}",
                        account.position
                    ),
                );
            }
        }
        for (scope, limit) in &self.limits {
            let account = ledger.account(scope).map_err(|e| (Invariant::LimitsAsDecided, e.to_string()))?;
            if account.limit != *limit {
                return fail(
                    Invariant::LimitsAsDecided,
                    format!(
                        "{scope}'s credit limit is {}; the last decision on it set {limit}",
                        account.limit
                    ),
                );
            }
        }
        Ok(())
    }

    /// Whether the journal ended `job`.
    pub fn ended(&self, job: &JobId) -> bool {
        self.ended.contains(job)
    }

    /// Whether the journal admitted `job`.
    pub fn admitted(&self, job: &JobId) -> bool {
        self.jobs.get(job).is_some_and(|j| j.scope.is_some())
    }

    /// Replicas placed per accepted result, over the run.
    pub fn replicas_per_accepted(&self) -> f64 {
        if self.accepted.is_empty() {
            return 0.0;
        }
        let placed: u64 = self
            .accepted
            .iter()
            .map(|(job, _, _)| u64::from(self.jobs.get(job).map_or(0, |j| j.placed)))
            .sum();
        placed as f64 / self.accepted.len() as f64
    }
}
