//! Why the core said no: one variant per reason, each with the values a client needs to
//! say it in a sentence, and a stable code for machines.

use icn_ledger::LedgerError;
use icn_protocol::governance::{Credits, ScopeId};
use icn_protocol::{JobId, PublicKey};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The message breaks a bound or a rule of the protocol itself.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Governance(#[from] icn_governance::Refusal),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(
        "the account of scope {scope} can take on {available} more credits (position {position}, {reserved} \
         reserved, credit limit {limit}); this job may cost up to {hold}. A decision of a scope that contains \
         {scope} can raise its credit line (`icn propose ... credit-limit --for {scope} --limit N`)"
    )]
    CreditExhausted {
        scope: ScopeId,
        available: i64,
        position: i64,
        reserved: i64,
        limit: i64,
        hold: Credits,
    },
    #[error("the coordinator holds {open} open jobs, its limit; try again when some have ended")]
    TooManyJobs { open: usize },
    #[error(
        "{submitter} has {open} jobs open, as many as one member may; wait for some to end or cancel some"
    )]
    TooManyJobsOfSubmitter { submitter: PublicKey, open: usize },
    #[error(
        "scope {scope} has {open} jobs open, as many as one scope may hold of this coordinator's room; wait \
         for some to end"
    )]
    TooManyJobsOfScope { scope: ScopeId, open: usize },
    #[error("job {job} is not in dispute")]
    NotInDispute { job: JobId },
    #[error(
        "worker key {key} is not admitted to this commons; a decision admits it: \
         `icn propose --scope SCOPE --title ... admit-worker --key {key} --owner COOPERATIVE`"
    )]
    WorkerNotAdmitted { key: PublicKey },
    #[error("{scope} is not a federation; clearing nets the obligations inside one")]
    NotAFederation { scope: ScopeId },
    #[error("{member} holds neither vote nor operate standing in {federation}")]
    NoClearingStanding { member: String, federation: ScopeId },
    #[error("this clearing request was carried out at entry {seq}; a replayed request changes nothing")]
    ClearingReplayed { seq: u64 },
    #[error(
        "the request was made at {made_ms} ms and the coordinator's clock reads {now_ms} ms, more than \
         {window_ms} ms apart; make a new request (and check this machine's clock)"
    )]
    ClearingStale { made_ms: u64, now_ms: u64, window_ms: u64 },
    #[error("job {job} is not known here; check the id (`icn jobs` lists yours)")]
    UnknownJob { job: JobId },
    #[error(
        "input {input} is not stored here for you: a job names only inputs its submitter uploaded, or the \
         output of a job whose results they may read; upload it first (`icn submit --input FILE` does)"
    )]
    UnknownInput { input: icn_protocol::ContentId },
    #[error("job {job} has already ended ({state}); there is nothing to cancel")]
    JobEnded { job: JobId, state: String },
    #[error(
        "{member} did not submit job {job} and holds neither vote nor operate standing in {scope}, so may not \
         cancel it"
    )]
    NoCancelStanding { member: String, job: JobId, scope: ScopeId },
    #[error(
        "the job's deadline ({}) has already passed (the coordinator's clock reads {}); give a deadline still \
         ahead, such as --deadline 30m",
        icn_protocol::views::when(*deadline_ms),
        icn_protocol::views::when(*now_ms)
    )]
    DeadlinePassed { deadline_ms: u64, now_ms: u64 },
    #[error("the genesis is not valid: {0}")]
    BadGenesis(icn_governance::Refusal),
    #[error("the journal holds entries but no genesis; it was not made by this version")]
    NoGenesis,
    #[error(
        "the genesis file differs from the genesis this journal began with; after the first start, change \
         scopes, members and workers through decisions, not the file"
    )]
    GenesisChanged,
}

impl From<icn_protocol::Error> for Refusal {
    fn from(error: icn_protocol::Error) -> Self {
        Refusal::Invalid(error.to_string())
    }
}

impl Refusal {
    /// A short name of the reason that does not change between versions, for programs.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) => "invalid",
            Refusal::Governance(refusal) => governance_code(refusal),
            Refusal::Ledger(_) => "ledger",
            Refusal::CreditExhausted { .. } => "credit_exhausted",
            Refusal::TooManyJobs { .. }
            | Refusal::TooManyJobsOfSubmitter { .. }
            | Refusal::TooManyJobsOfScope { .. } => "too_many_jobs",
            Refusal::NotInDispute { .. } => "not_in_dispute",
            Refusal::WorkerNotAdmitted { .. } => "worker_not_admitted",
            Refusal::NotAFederation { .. } => "not_a_federation",
            Refusal::NoClearingStanding { .. } => "no_standing",
            Refusal::ClearingReplayed { .. } => "replayed",
            Refusal::ClearingStale { .. } => "stale",
            Refusal::UnknownJob { .. } => "unknown_job",
            Refusal::UnknownInput { .. } => "unknown_input",
            Refusal::JobEnded { .. } => "job_ended",
            Refusal::NoCancelStanding { .. } => "no_standing",
            Refusal::DeadlinePassed { .. } => "deadline_passed",
            Refusal::BadGenesis(_) | Refusal::NoGenesis | Refusal::GenesisChanged => "genesis",
        }
    }
}

fn governance_code(refusal: &icn_governance::Refusal) -> &'static str {
    use icn_governance::Refusal as G;
    match refusal {
        G::NotAMember { .. } => "not_a_member",
        G::UnknownScope { .. } => "unknown_scope",
        G::NoStanding { .. } => "no_standing",
        G::NoMandate { .. } => "no_mandate",
        G::MandateExpired { .. } => "mandate_expired",
        G::BudgetExhausted { .. } => "budget_exhausted",
        G::ExecutorNotAllowed { .. } => "executor_not_allowed",
        G::NoContainerTerms { .. } => "no_container_terms",
        G::OverMandateLimit { .. } => "over_mandate_limit",
        G::UnknownPriorityClass { .. } => "unknown_priority_class",
        G::UnknownProposal { .. } => "unknown_proposal",
        G::VotingClosed { .. } => "voting_closed",
        G::NotInElectorate { .. } => "not_in_electorate",
        G::DuplicateBallot { .. } => "duplicate_ballot",
        G::ReplayedBallot { .. } => "replayed",
        G::TooManyBallots { .. } => "too_many_ballots",
        G::Invalid(_) => "invalid",
    }
}
