//! What the journal records. Every change to a job's state is one of these, and the
//! core's state is nothing but these records applied in order.

use icn_governance::{Authorization, Event};
use icn_ledger::Clearing;
use icn_protocol::governance::{Ballot, ClearRequest, Credits, Proposal, ScopeId};
use icn_protocol::wire::{Cancel, ExecutionReport, Submission};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, PublicKey, TaskId};
use serde::{Deserialize, Serialize};

/// A placement's scores in thousandths, as journaled (exact, so replay compares equal).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scores {
    pub trust: u16,
    pub capacity: u16,
    pub fairness: u16,
    pub total: u16,
}

impl Scores {
    pub fn of(score: &icn_placement::Score) -> Scores {
        let milli = |x: f64| (x * 1000.0).round().clamp(0.0, 65_535.0) as u16;
        Scores {
            trust: milli(score.trust),
            capacity: milli(score.capacity),
            fairness: milli(score.fairness),
            total: milli(score.total),
        }
    }
}

impl std::fmt::Display for Scores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let x = |v: u16| f64::from(v) / 1000.0;
        write!(
            f,
            "score {:.3}: trust {:.3}, free capacity {:.3}, donor fairness {:.3}",
            x(self.total),
            x(self.trust),
            x(self.capacity),
            x(self.fairness)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A member's signed [`Submission`], admitted under a mandate; the job's id is
    /// the envelope's content id, and the entry's cause is the mandate's decision.
    JobSubmitted {
        submission: Envelope,
        authorization: Authorization,
    },
    TaskPlaced {
        task: TaskId,
        attempt: u32,
        worker: PublicKey,
        /// The cooperative that owns the worker; it is paid if the result is accepted.
        owner: ScopeId,
        /// Why this worker: its scores when it was chosen.
        scores: Scores,
        /// Results that must agree for the round this replica belongs to.
        quorum: u32,
    },
    /// The task goes back to the queue; the attempt it was on is over.
    TaskRequeued {
        task: TaskId,
        attempt: u32,
        reason: String,
        /// Whether the worker is to blame (lost, late, broke the protocol): it loses trust.
        fault: bool,
    },
    /// A worker's signed [`ExecutionReport`], accepted as the outcome of its attempt.
    ReportReceived {
        report: Envelope,
    },
    /// The job's result is accepted, and its cost posted: the submitting scope pays
    /// each cooperative whose worker's result was accepted its fuel at the price the job
    /// was admitted at, and the rest of its hold is released.
    JobCompleted {
        job: JobId,
        output_digest: ContentId,
        fuel: Fuel,
        worker: PublicKey,
        payees: Vec<(ScopeId, Credits)>,
    },
    /// Replicas' results were compared: who agreed with the accepted result, who did not.
    /// Trust follows from this record.
    Verified {
        job: JobId,
        agreeing: Vec<PublicKey>,
        dissenting: Vec<PublicKey>,
        /// The decision that settled a dispute, when the verdict came from governance.
        by_decision: Option<u64>,
    },
    /// Results disagree: more replicas, on trusted workers of owners not yet involved.
    ReplicasWanted {
        job: JobId,
        count: u32,
        reason: String,
    },
    /// Results disagree and more replicas cannot settle it: a decision of the commons
    /// (`ResolveDispute`) will, looking at the signed reports in the journal.
    DisputeOpened {
        job: JobId,
        reason: String,
    },
    JobFailed {
        job: JobId,
        reason: String,
    },
    /// A change to governance: genesis, proposal, ballot or decision.
    Governance(Event),
    /// A member asked to clear the obligations among a federation's scopes; what
    /// clearing did. Positions do not move.
    Cleared {
        request: Envelope,
        clearing: Clearing,
    },
    /// The job failed by its own doing — it trapped, ran out of fuel, or overran its
    /// time, memory or output — and the result saying so is accepted. Usage is usage:
    /// the submitting scope pays what the job used, as for a completed job, to each
    /// cooperative whose worker's result was accepted. (A failure that is a worker's —
    /// lost, late, an invalid report — is retried elsewhere, and ends as `JobFailed`
    /// with nothing paid if no worker can run it.)
    JobFailedPaid {
        job: JobId,
        reason: String,
        fuel: Fuel,
        worker: PublicKey,
        payees: Vec<(ScopeId, Credits)>,
    },
    /// A member's signed [`Cancel`]: the job ends, its replicas in flight are told to
    /// stop, and its hold is voided.
    JobCancelled {
        request: Envelope,
    },
    /// The replicas a cancel stopped reported what they used (or the rest could not): the
    /// least of it is what ran, paid to each cooperative whose worker reported, and the
    /// rest of the hold is released.
    CancelSettled {
        job: JobId,
        fuel: Fuel,
        payees: Vec<(ScopeId, Credits)>,
    },
}

impl Record {
    /// The external signed statement this record carries, if any.
    pub fn evidence(&self) -> Option<&Envelope> {
        match self {
            Record::JobSubmitted { submission, .. } => Some(submission),
            Record::ReportReceived { report } => Some(report),
            Record::Governance(Event::ProposalOpened { proposal, .. }) => Some(proposal),
            Record::Governance(Event::BallotCast { ballot, .. }) => Some(ballot),
            Record::Cleared { request, .. } => Some(request),
            Record::JobCancelled { request } => Some(request),
            _ => None,
        }
    }

    /// The job this record is about.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Record::JobSubmitted { submission, .. } => Some(JobId(submission.id())),
            Record::TaskPlaced { task, .. } | Record::TaskRequeued { task, .. } => Some(task.job),
            Record::ReportReceived { report } => {
                report.open_trusted::<ExecutionReport>().ok().map(|r| r.task.job)
            }
            Record::JobCompleted { job, .. }
            | Record::JobFailed { job, .. }
            | Record::JobFailedPaid { job, .. }
            | Record::CancelSettled { job, .. }
            | Record::Verified { job, .. }
            | Record::ReplicasWanted { job, .. }
            | Record::DisputeOpened { job, .. } => Some(*job),
            Record::JobCancelled { request } => request.open_trusted::<Cancel>().ok().map(|c| c.job),
            Record::Governance(_) | Record::Cleared { .. } => None,
        }
    }

    /// One line in plain words, for `icn status`, `icn demo` and logs.
    pub fn describe(&self) -> String {
        match self {
            Record::JobSubmitted { submission, authorization } => {
                match submission.open_trusted::<Submission>() {
                    Ok(s) => format!(
                        "job {} submitted by {} for {}: module {}, input {}, up to {}; holds {} under decision #{}",
                        JobId(submission.id()).0.short(),
                        submission.signer.short(),
                        s.scope,
                        s.module.short(),
                        s.input.short(),
                        s.limits.fuel,
                        authorization.hold,
                        authorization.decision
                    ),
                    Err(_) => "job submitted (unreadable submission)".into(),
                }
            }
            Record::TaskPlaced { task, attempt, worker, owner, scores, quorum } => format!(
                "task {task} attempt {attempt} placed on worker {} of {owner} ({scores}; quorum {quorum})",
                worker.short()
            ),
            Record::Verified { job, agreeing, dissenting, by_decision } => {
                let list = |keys: &[PublicKey]| keys.iter().map(|k| k.short()).collect::<Vec<_>>().join(", ");
                let by = by_decision.map_or(String::new(), |d| format!(" by decision #{d}"));
                format!(
                    "job {} verified{by}: {} agreed ({}){}",
                    job.0.short(),
                    agreeing.len(),
                    list(agreeing),
                    if dissenting.is_empty() {
                        String::new()
                    } else {
                        format!("; {} disagreed ({}) and lose trust", dissenting.len(), list(dissenting))
                    }
                )
            }
            Record::ReplicasWanted { job, count, reason } => {
                format!("job {}: {count} more replica(s) wanted: {reason}", job.0.short())
            }
            Record::DisputeOpened { job, reason } => {
                format!("job {} disputed: {reason}; a decision of the commons will settle it", job.0.short())
            }
            Record::TaskRequeued { task, attempt, reason, fault } => {
                let blame = if *fault { "; the worker loses trust" } else { "" };
                format!("task {task} attempt {attempt} requeued: {reason}{blame}")
            }
            Record::ReportReceived { report } => match report.open_trusted::<ExecutionReport>() {
                Ok(r) => format!(
                    "worker {} reported task {} attempt {}: {}, output {} ({} bytes), {}",
                    report.signer.short(),
                    r.task,
                    r.attempt,
                    describe_outcome(&r.outcome),
                    r.output_digest.short(),
                    r.output_bytes,
                    r.used()
                ),
                Err(_) => "report received (unreadable report)".into(),
            },
            Record::JobCompleted { job, output_digest, fuel, worker, payees } => {
                format!(
                    "job {} completed on worker {}: output {}, {}; posted {}",
                    job.0.short(),
                    worker.short(),
                    output_digest.short(),
                    used(*fuel),
                    crate::record::paid_list(payees)
                )
            }
            Record::JobFailed { job, reason } => format!("job {} failed: {reason}", job.0.short()),
            Record::JobCancelled { request } => match request.open_trusted::<Cancel>() {
                Ok(c) => format!("job {} cancelled by {}", c.job.0.short(), request.signer.short()),
                Err(_) => "job cancelled (unreadable request)".into(),
            },
            Record::JobFailedPaid { job, reason, fuel, worker, payees } => {
                format!(
                    "job {} failed by its own doing on worker {}: {reason}; it used {}, and posted {}",
                    job.0.short(),
                    worker.short(),
                    used(*fuel),
                    crate::record::paid_list(payees)
                )
            }
            Record::CancelSettled { job, fuel, payees } => format!(
                "job {}: the runs its cancel stopped used {fuel}; posted {}, and the rest of the hold was released",
                job.0.short(),
                crate::record::paid_list(payees)
            ),
            Record::Governance(event) => describe_event(event),
            Record::Cleared { request, clearing } => match request.open_trusted::<ClearRequest>() {
                Ok(r) => format!(
                    "obligations in {} cleared at the request of {}: {} became {}",
                    r.federation,
                    request.signer.short(),
                    clearing.before.len(),
                    clearing.after.len()
                ),
                Err(_) => "clearing (unreadable request)".into(),
            },
        }
    }
}

/// What a posting paid, in words: "3 credits to coop-a, 3 credits to coop-b", or "nothing".
pub fn paid_list(payees: &[(ScopeId, Credits)]) -> String {
    if payees.is_empty() {
        return "nothing".to_string();
    }
    payees.iter().map(|(p, c)| format!("{c} to {p}")).collect::<Vec<_>>().join(", ")
}

pub fn describe_outcome(outcome: &icn_protocol::wire::Outcome) -> String {
    match outcome {
        icn_protocol::wire::Outcome::Exited { code } => format!("exited with code {code}"),
        icn_protocol::wire::Outcome::Failed { kind, detail } => format!("failed: it {kind} ({detail})"),
    }
}

fn describe_event(event: &Event) -> String {
    match event {
        Event::Genesis(genesis) => format!(
            "genesis: {} scopes, {} members, {} workers, {} founding mandates",
            genesis.scopes.len(),
            genesis.members.len(),
            genesis.workers.len(),
            genesis.mandates.len()
        ),
        Event::ProposalOpened { proposal, closes_ms, electorate } => {
            match proposal.open_trusted::<Proposal>() {
                Ok(p) => format!(
                    "proposal {} in {} by {}: {:?}: {}; {} may vote until {}",
                    proposal.id().short(),
                    p.scope,
                    proposal.signer.short(),
                    p.title,
                    icn_governance::describe_effect(&p.scope, &p.effect, |k| k.short()),
                    electorate.len(),
                    icn_protocol::views::when(*closes_ms)
                ),
                Err(_) => "proposal (unreadable)".into(),
            }
        }
        Event::BallotCast { ballot, standing } => match ballot.open_trusted::<Ballot>() {
            Ok(b) => format!(
                "{} voted {} on proposal {}, holding {} standing",
                ballot.signer.short(),
                b.choice,
                b.proposal.short(),
                standing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
            Err(_) => "ballot (unreadable)".into(),
        },
        Event::DecisionMade(record) => {
            format!("decision on proposal {}: {}", record.proposal.short(), record.reason)
        }
    }
}

/// What a paid run used, in words: its fuel, or for a container (which reports no fuel)
/// the usage its accepted report states.
fn used(fuel: Fuel) -> String {
    if fuel.0 == 0 { "the usage its accepted report states".to_string() } else { fuel.to_string() }
}
