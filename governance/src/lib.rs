//! Governance of the commons, as a pure state machine: scopes and their rules,
//! members and their standing, proposals, ballots, decisions and the effects of
//! accepted decisions, and the authorization of jobs under mandates.
//!
//! No IO, no clock: time comes in as an argument. The coordinator checks an input
//! with one of the `check_*`/`authorize` functions, journals the resulting [`Event`],
//! and then calls [`Governance::apply`] — the same function that replays the journal
//! at start, so the state after a restart is the state that was live.

pub mod genesis;
mod state;

pub use genesis::Genesis;
pub use state::{
    Authorization, ClassesSet, Decision, DecisionRecord, Event, Governance, MandateState,
    PROPOSALS_COMMONS_RESERVED, PROPOSALS_OPEN_MAX, PROPOSALS_OPEN_PER_PROPOSER_MAX,
    PROPOSALS_OPEN_PER_SCOPE_MAX, ProposalState, Scope, ShareSet, Tally, describe_effect,
};

use icn_protocol::governance::{Credits, ScopeId, Standing};
use icn_protocol::wire::ExecutorKind;
use icn_protocol::{ContentId, PublicKey};

/// Why governance said no, in words for the member; each reason is its own variant so
/// callers and tests can tell them apart.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("key {key} is not a member of this commons")]
    NotAMember { key: PublicKey },
    #[error("scope {scope} does not exist")]
    UnknownScope { scope: ScopeId },
    #[error("member {member} holds no {standing} standing in scope {scope}")]
    NoStanding { member: String, scope: ScopeId, standing: Standing },
    #[error("scope {scope} holds no mandate to run jobs; a decision must grant one")]
    NoMandate { scope: ScopeId },
    #[error(
        "the mandate of scope {scope} granted by decision #{decision} expired at {} (UTC); a decision of \
         {scope} or a scope containing it must grant a new one (`icn propose --scope {scope} … mandate --for \
         {scope} …`)",
        icn_protocol::views::when(*expired_ms)
    )]
    MandateExpired { scope: ScopeId, decision: u64, expired_ms: u64 },
    #[error(
        "the mandate of scope {scope} (decision #{decision}) has {left} left; this job may cost up to {cost}"
    )]
    BudgetExhausted { scope: ScopeId, decision: u64, left: Credits, cost: Credits },
    #[error("the mandate of scope {scope} does not allow the {executor} executor (it allows {allowed})")]
    ExecutorNotAllowed { scope: ScopeId, executor: ExecutorKind, allowed: String },
    #[error(
        "scope {scope} and the scopes above it decided no container terms, so a container job has no price; a \
         decision sets them: `icn propose ... container-terms --cpu-second C --gib-second M --tolerance P`"
    )]
    NoContainerTerms { scope: ScopeId },
    #[error(
        "the job asks {flag} {asked}, over the most one job of scope {scope} may ask under its mandate, {flag} \
         {allowed}: ask for less, or decide a mandate that allows more (`icn propose --scope {scope} ... mandate \
         --for {scope} --budget N {flag} {asked}`)"
    )]
    OverMandateLimit { scope: ScopeId, flag: &'static str, asked: u64, allowed: u64 },
    #[error(
        "scope {scope} has no priority class {class:?}; its classes are {known} (a decision of {scope} sets \
         them: `icn propose ... classes --class NAME=WEIGHT`)"
    )]
    UnknownPriorityClass { scope: ScopeId, class: String, known: String },
    #[error("proposal {proposal} is not known")]
    UnknownProposal { proposal: ContentId },
    #[error(
        "voting on proposal {} closed at {} (UTC); its decision is in `icn decisions`, and a new proposal \
         opens a new vote",
        proposal.short(),
        icn_protocol::views::when(*closed_ms)
    )]
    VotingClosed { proposal: ContentId, closed_ms: u64 },
    #[error("member {member} was not in the electorate of proposal {proposal} when it opened")]
    NotInElectorate { member: String, proposal: ContentId },
    #[error("duplicate ballot: member {member} already voted {choice} on proposal {proposal}")]
    DuplicateBallot { member: String, proposal: ContentId, choice: icn_protocol::governance::Choice },
    #[error(
        "replayed ballot: this signed ballot of member {member} on proposal {proposal} was already counted; a change \
         of vote is a new ballot"
    )]
    ReplayedBallot { member: String, proposal: ContentId },
    #[error("member {member} changed their vote on proposal {proposal} {changes} times, the limit")]
    TooManyBallots { member: String, proposal: ContentId, changes: usize },
    #[error("{0}")]
    Invalid(String),
}
