//! The governance state, the checks that guard every change to it, and the one
//! function, [`Governance::apply`], through which every change goes.

use std::collections::{BTreeMap, BTreeSet};

pub use icn_protocol::governance::Tally;
use icn_protocol::governance::{
    Ballot, Choice, ContainerTerms, Credits, DEFAULT_CLASS, Effect, Mandate, PlacementPolicy, PriceSchedule,
    PriorityClass, Proposal, Rule, ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::{ExecutorKind, Submission};
use icn_protocol::{ContentId, Envelope, PublicKey};
use serde::{Deserialize, Serialize};

use crate::Refusal;
use crate::genesis::Genesis;

/// Proposals open at once across the commons; more are refused until some close.
pub const PROPOSALS_OPEN_MAX: usize = 10_000;
/// Of those, the last this many are kept for the commons scope's own proposals: however
/// full the other scopes are, the commons can still decide (to revoke whoever filled them).
pub const PROPOSALS_COMMONS_RESERVED: usize = 1_000;
/// Proposals one member may have open at once.
pub const PROPOSALS_OPEN_PER_PROPOSER_MAX: usize = 16;
/// Proposals open at once in one scope.
pub const PROPOSALS_OPEN_PER_SCOPE_MAX: usize = 1_000;
/// Ballots one member may cast on one proposal (a first vote and its changes).
pub const BALLOTS_PER_MEMBER_MAX: usize = 16;

/// What the coordinator journals for governance; each is applied by [`Governance::apply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Genesis(Genesis),
    /// A member's signed proposal, when voting closes, and who may vote on it.
    ProposalOpened {
        proposal: Envelope,
        closes_ms: u64,
        electorate: Vec<PublicKey>,
    },
    /// A member's signed ballot and the standing the member held in the scope as it was cast.
    BallotCast {
        ballot: Envelope,
        standing: Vec<Standing>,
    },
    DecisionMade(DecisionRecord),
}

/// The outcome of a proposal as the coordinator counted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub proposal: ContentId,
    pub accepted: bool,
    pub tally: Tally,
    pub rule: Rule,
    /// The journal entries of the ballots counted (each member's last), in member order.
    pub ballots: Vec<u64>,
    /// blake3 over the ids of the counted ballot envelopes, in the same order.
    pub ballots_digest: ContentId,
    pub reason: String,
    /// Set when the decision was accepted but its effect could not apply at close (for
    /// example a credit limit below what the account already uses); nothing changed.
    pub effect_refused: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub kind: ScopeKind,
    pub parent: Option<ScopeId>,
    pub rule: Rule,
    pub standing: BTreeMap<PublicKey, BTreeSet<Standing>>,
    pub policy: Option<PlacementPolicy>,
    pub prices: Option<PriceSchedule>,
    /// What its container jobs cost and how closely replicas' usage must agree.
    #[serde(default)]
    pub container: Option<ContainerTerms>,
    /// The decision whose mandate is in force for this scope, if any.
    pub mandate: Option<u64>,
    /// The scope's fair-share weight among its siblings and the decision that set it;
    /// `None` is weight 1.
    #[serde(default)]
    pub share: Option<ShareSet>,
    /// The priority classes its jobs are divided into and the decision that set them;
    /// `None`: one class, `default`.
    #[serde(default)]
    pub classes: Option<ClassesSet>,
}

/// Priority classes and the decision (its journal entry) that set them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassesSet {
    pub classes: Vec<PriorityClass>,
    pub decision: u64,
}

/// A fair-share weight and the decision (its journal entry) that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSet {
    pub weight: u32,
    pub decision: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MandateState {
    pub mandate: Mandate,
    /// The journal entry that granted it: a decision, or the genesis.
    pub decision: u64,
    pub granted_ms: u64,
    pub expires_ms: u64,
    /// Held by jobs admitted and not yet ended, at their most.
    pub held: Credits,
    /// Used by jobs that completed.
    pub spent: Credits,
    pub jobs: u64,
}

impl MandateState {
    pub fn left(&self) -> Credits {
        Credits(self.mandate.budget.0 - self.held.0 - self.spent.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalState {
    pub seq: u64,
    pub proposal: Proposal,
    pub proposer: PublicKey,
    pub opened_ms: u64,
    pub closes_ms: u64,
    pub electorate: BTreeSet<PublicKey>,
    /// Each voter's standing ballot: the choice, its journal entry, its envelope id.
    pub ballots: BTreeMap<PublicKey, (Choice, u64, ContentId)>,
    /// The reasons given with the standing ballots, by voter (each at most
    /// `TEXT_SIZE_BYTES_MAX` bytes, one a voter).
    #[serde(default)]
    pub reasons: BTreeMap<PublicKey, String>,
    /// The envelope id of every ballot cast on it, changed ones too, by voter: a signed
    /// ballot counts once, so an old one replayed cannot undo a change of vote.
    pub cast: BTreeMap<PublicKey, BTreeSet<ContentId>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub seq: u64,
    pub proposal_seq: u64,
    pub proposal_id: ContentId,
    pub proposal: Proposal,
    pub proposer: PublicKey,
    pub decided_ms: u64,
    pub record: DecisionRecord,
}

/// A job's admission under a mandate: which decision pays, the most it may cost,
/// and the price it was admitted at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub decision: u64,
    pub hold: Credits,
    pub price: PriceSchedule,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    pub genesis: Option<u64>,
    /// Every member's key and name.
    pub members: BTreeMap<PublicKey, String>,
    pub scopes: BTreeMap<ScopeId, Scope>,
    /// Admitted workers and the cooperative that owns each.
    pub workers: BTreeMap<PublicKey, ScopeId>,
    /// Mandates by the entry that granted them, in force or not.
    pub mandates: BTreeMap<u64, MandateState>,
    pub open: BTreeMap<ContentId, ProposalState>,
    pub decisions: BTreeMap<u64, Decision>,
    /// Closed proposals and the decision entry that closed each.
    pub closed: BTreeMap<ContentId, u64>,
    /// Whether the genesis allows compute priced at zero.
    pub free_compute: bool,
}

impl Governance {
    // ---- reading ---------------------------------------------------------------

    pub fn member_name(&self, key: &PublicKey) -> Option<&str> {
        self.members.get(key).map(String::as_str)
    }

    fn name_or_key(&self, key: &PublicKey) -> String {
        self.member_name(key).map_or_else(|| key.short(), str::to_string)
    }

    pub fn scope(&self, id: &ScopeId) -> Result<&Scope, Refusal> {
        self.scopes.get(id).ok_or_else(|| Refusal::UnknownScope { scope: id.clone() })
    }

    /// Whether `key` holds any standing in any scope now.
    pub fn in_standing(&self, key: &PublicKey) -> bool {
        self.scopes.values().any(|s| s.standing.get(key).is_some_and(|held| !held.is_empty()))
    }

    pub fn holds(&self, key: &PublicKey, scope: &ScopeId, standing: Standing) -> bool {
        self.scopes.get(scope).and_then(|s| s.standing.get(key)).is_some_and(|held| held.contains(&standing))
    }

    /// `scope` itself and its ancestors, nearest first.
    pub fn lineage(&self, scope: &ScopeId) -> Vec<ScopeId> {
        let mut chain = vec![];
        let mut at = Some(scope.clone());
        while let Some(id) = at {
            at = self.scopes.get(&id).and_then(|s| s.parent.clone());
            chain.push(id);
        }
        chain
    }

    /// `scope` and every scope inside it.
    pub fn descendants(&self, scope: &ScopeId) -> BTreeSet<ScopeId> {
        self.scopes.keys().filter(|id| self.lineage(id).contains(scope)).cloned().collect()
    }

    /// The placement policy in force for `scope`: its own, or its nearest ancestor's.
    pub fn placement_policy(&self, scope: &ScopeId) -> Option<PlacementPolicy> {
        self.lineage(scope).iter().find_map(|id| self.scopes.get(id).and_then(|s| s.policy))
    }

    /// `scope`'s fair-share weight among its siblings: the decided one, or 1.
    pub fn share_weight(&self, scope: &ScopeId) -> u32 {
        self.scopes.get(scope).and_then(|s| s.share).map_or(1, |s| s.weight)
    }

    /// The weight of priority class `class` inside `scope`: the decided one, or 1.
    pub fn class_weight(&self, scope: &ScopeId, class: &str) -> u32 {
        let classes = self.scopes.get(scope).and_then(|s| s.classes.as_ref());
        classes.and_then(|set| set.classes.iter().find(|c| c.name == class)).map_or(1, |c| c.weight)
    }

    /// The container terms in force for `scope`: its own or its nearest ancestor's
    /// tolerance, and for each price the highest that `scope` or any scope above it
    /// decided. A scope may pay the cooperatives that run its jobs more than the scopes
    /// above it ask, never less: what donors earn is not the payer's to cut.
    pub fn container_terms(&self, scope: &ScopeId) -> Option<ContainerTerms> {
        let lineage = self.lineage(scope);
        let decided = || lineage.iter().filter_map(|id| self.scopes.get(id).and_then(|s| s.container));
        let nearest = decided().next()?;
        Some(decided().fold(nearest, |terms, above| ContainerTerms {
            credits_per_cpu_second: terms.credits_per_cpu_second.max(above.credits_per_cpu_second),
            credits_per_gib_second: terms.credits_per_gib_second.max(above.credits_per_gib_second),
            ..terms
        }))
    }

    /// The price schedule in force for `scope`: the highest that `scope` or any scope
    /// above it decided (see [`Governance::container_terms`]).
    pub fn prices(&self, scope: &ScopeId) -> PriceSchedule {
        self.lineage(scope)
            .iter()
            .filter_map(|id| self.scopes.get(id).and_then(|s| s.prices))
            .max_by_key(|p| p.credits_per_mega_fuel)
            .expect("the commons always has prices (checked at genesis)")
    }

    fn require_member(&self, key: &PublicKey) -> Result<String, Refusal> {
        self.member_name(key).map(str::to_string).ok_or(Refusal::NotAMember { key: *key })
    }

    fn require_standing(&self, key: &PublicKey, scope: &ScopeId, standing: Standing) -> Result<(), Refusal> {
        let member = self.require_member(key)?;
        self.scope(scope)?;
        if !self.holds(key, scope, standing) {
            return Err(Refusal::NoStanding { member, scope: scope.clone(), standing });
        }
        Ok(())
    }

    // ---- checks: each returns what to journal, or why not -----------------------

    /// Checks a signed proposal (signature already verified) made at `now_ms`.
    pub fn check_proposal(
        &self,
        now_ms: u64,
        envelope: &Envelope,
        proposal: &Proposal,
    ) -> Result<Event, Refusal> {
        let id = envelope.id();
        if self.open.contains_key(&id) || self.closed.contains_key(&id) {
            return Err(Refusal::Invalid(format!("proposal {id} was already made")));
        }
        self.require_standing(&envelope.signer, &proposal.scope, Standing::Vote)?;
        proposal.validate().map_err(|e| Refusal::Invalid(e.to_string()))?;
        self.check_room(&envelope.signer, &proposal.scope)?;
        self.check_effect(&proposal.scope, &proposal.effect)?;
        let scope = self.scope(&proposal.scope)?;
        let electorate = self.electorate(&proposal.scope);
        Ok(Event::ProposalOpened {
            proposal: envelope.clone(),
            closes_ms: now_ms.saturating_add(scope.rule.voting_window_ms),
            electorate: electorate.into_iter().collect(),
        })
    }

    /// Whether there is room for one more proposal by `proposer` in `scope`: within its
    /// own share, its scope's, and the commons' (whose last part is the commons scope's).
    fn check_room(&self, proposer: &PublicKey, scope: &ScopeId) -> Result<(), Refusal> {
        let in_commons = self.scopes.get(scope).is_some_and(|s| s.kind == ScopeKind::Commons);
        let room =
            if in_commons { PROPOSALS_OPEN_MAX } else { PROPOSALS_OPEN_MAX - PROPOSALS_COMMONS_RESERVED };
        if self.open.len() >= room {
            return Err(Refusal::Invalid(format!(
                "{} proposals are open, as many as {scope} may add to; wait for some to close",
                self.open.len()
            )));
        }
        let (mut mine, mut here) = (0, 0);
        for open in self.open.values() {
            mine += usize::from(open.proposer == *proposer);
            here += usize::from(open.proposal.scope == *scope);
        }
        if mine >= PROPOSALS_OPEN_PER_PROPOSER_MAX {
            return Err(Refusal::Invalid(format!(
                "you have {mine} proposals open, as many as one member may; wait for them to close"
            )));
        }
        if here >= PROPOSALS_OPEN_PER_SCOPE_MAX {
            return Err(Refusal::Invalid(format!(
                "scope {scope} has {here} proposals open, as many as one scope may; wait for some to close"
            )));
        }
        Ok(())
    }

    fn electorate(&self, scope: &ScopeId) -> BTreeSet<PublicKey> {
        let scope = self.scopes.get(scope).expect("checked scope");
        scope.standing.iter().filter(|(_, held)| held.contains(&Standing::Vote)).map(|(k, _)| *k).collect()
    }

    /// Whether `scope` may decide `effect`: it acts on itself or on scopes inside it.
    fn check_effect(&self, scope: &ScopeId, effect: &Effect) -> Result<(), Refusal> {
        let within = |target: &ScopeId| -> Result<(), Refusal> {
            self.scope(target)?;
            if !self.lineage(target).contains(scope) {
                return Err(Refusal::Invalid(format!(
                    "scope {scope} cannot decide for {target}: it is neither {target} nor contains it"
                )));
            }
            Ok(())
        };
        match effect {
            Effect::Mandate(mandate) => within(&mandate.scope),
            Effect::AdmitWorker { key, owner } => {
                within(owner)?;
                if self.scope(owner)?.kind != ScopeKind::Cooperative {
                    return Err(Refusal::Invalid(format!(
                        "workers belong to cooperatives; {owner} is not one"
                    )));
                }
                if let Some(current) = self.workers.get(key) {
                    return Err(Refusal::Invalid(format!(
                        "worker {key} is already admitted, owned by {current}"
                    )));
                }
                Ok(())
            }
            Effect::RemoveWorker { key } | Effect::Readmit { key } => match self.workers.get(key) {
                Some(owner) => within(owner),
                None => Err(Refusal::Invalid(format!("worker {key} is not admitted"))),
            },
            Effect::GrantStanding { name, key, .. } => match self.member_name(key) {
                Some(known) if known != name => {
                    Err(Refusal::Invalid(format!("key {key} is already the member {known}, not {name}")))
                }
                _ => match self.members.iter().find(|(k, n)| *n == name && *k != key) {
                    Some(_) => Err(Refusal::Invalid(format!("the name {name} belongs to another member"))),
                    None => Ok(()),
                },
            },
            Effect::RevokeStanding { key, standing } => {
                let member = self.require_member(key)?;
                if !standing.iter().any(|s| self.holds(key, scope, *s)) {
                    return Err(Refusal::Invalid(format!(
                        "member {member} holds none of that standing in {scope}"
                    )));
                }
                Ok(())
            }
            // A credit line is what others lend a scope: a scope deciding its own would
            // let its voters spend the rest of the commons' work without limit. Only a
            // scope that contains it grants it; the commons, which none contains, sets
            // its own.
            Effect::CreditLimit { scope: target, .. } if target == scope && self.scope(scope)?.parent.is_some() => {
                let granters = self.lineage(scope)[1..].iter().map(ToString::to_string).collect::<Vec<_>>();
                Err(Refusal::Invalid(format!(
                    "scope {scope} cannot set its own credit line: a credit line is lent by a scope that contains \
                     it ({}); propose it there",
                    granters.join(" or ")
                )))
            }
            Effect::CreditLimit { scope: target, .. } => within(target),
            Effect::ResolveDispute { .. } => {
                if self.scope(scope)?.kind != ScopeKind::Commons {
                    return Err(Refusal::Invalid(format!(
                        "disputes are decided in the commons scope, not in {scope}"
                    )));
                }
                Ok(())
            }
            Effect::PriceSchedule(prices) if prices.credits_per_mega_fuel == 0 && !self.free_compute => {
                Err(Refusal::Invalid(
                    "a price of 0 credits per million fuel makes all compute free, which this commons' genesis does \
                     not allow (free_compute)"
                        .into(),
                ))
            }
            Effect::ContainerTerms(terms)
                if terms.credits_per_cpu_second == 0 && terms.credits_per_gib_second == 0 && !self.free_compute =>
            {
                Err(Refusal::Invalid(
                    "container terms with both prices 0 make container jobs free, which this commons' genesis does \
                     not allow (free_compute)"
                        .into(),
                ))
            }
            Effect::PlacementPolicy(_)
            | Effect::PriceSchedule(_)
            | Effect::PriorityClasses { .. }
            | Effect::ContainerTerms(_) => Ok(()),
            Effect::Share { scope: target, .. } => match &self.scope(target)?.parent {
                Some(parent) if parent == scope => Ok(()),
                Some(parent) => Err(Refusal::Invalid(format!(
                    "the share of {target} is decided in its parent scope {parent}, not in {scope}"
                ))),
                None => Err(Refusal::Invalid(format!(
                    "{target} has no parent scope, so no siblings to share with"
                ))),
            },
        }
    }

    /// Checks a signed ballot (signature already verified) cast at `now_ms`.
    pub fn check_ballot(&self, now_ms: u64, envelope: &Envelope, ballot: &Ballot) -> Result<Event, Refusal> {
        let voter = envelope.signer;
        let member = self.require_member(&voter)?;
        ballot.validate().map_err(|e| Refusal::Invalid(e.to_string()))?;
        let Some(open) = self.open.get(&ballot.proposal) else {
            if let Some(decision) = self.closed.get(&ballot.proposal) {
                let closed_ms = self.decisions[decision].decided_ms;
                return Err(Refusal::VotingClosed { proposal: ballot.proposal, closed_ms });
            }
            return Err(Refusal::UnknownProposal { proposal: ballot.proposal });
        };
        if now_ms >= open.closes_ms {
            return Err(Refusal::VotingClosed { proposal: ballot.proposal, closed_ms: open.closes_ms });
        }
        if !open.electorate.contains(&voter) {
            return Err(Refusal::NotInElectorate { member, proposal: ballot.proposal });
        }
        self.require_standing(&voter, &open.proposal.scope, Standing::Vote)?;
        let cast = open.cast.get(&voter);
        if cast.is_some_and(|ids| ids.contains(&envelope.id())) {
            return Err(Refusal::ReplayedBallot { member, proposal: ballot.proposal });
        }
        if let Some(ids) = cast.filter(|ids| ids.len() >= BALLOTS_PER_MEMBER_MAX) {
            return Err(Refusal::TooManyBallots { member, proposal: ballot.proposal, changes: ids.len() });
        }
        if let Some((choice, _, _)) = open.ballots.get(&voter)
            && *choice == ballot.choice
        {
            return Err(Refusal::DuplicateBallot { member, proposal: ballot.proposal, choice: *choice });
        }
        let standing = self.scopes[&open.proposal.scope].standing[&voter].iter().copied().collect();
        Ok(Event::BallotCast { ballot: envelope.clone(), standing })
    }

    /// Open proposals whose voting closed by `now_ms`, oldest first.
    pub fn due(&self, now_ms: u64) -> Vec<ContentId> {
        let mut due: Vec<(u64, u64, ContentId)> = self
            .open
            .iter()
            .filter(|(_, p)| p.closes_ms <= now_ms)
            .map(|(id, p)| (p.closes_ms, p.seq, *id))
            .collect();
        due.sort();
        due.into_iter().map(|(_, _, id)| id).collect()
    }

    /// Counts an open proposal's ballots under its scope's rule.
    pub fn decide(&self, proposal: &ContentId) -> DecisionRecord {
        let open = &self.open[proposal];
        let rule = self.scopes[&open.proposal.scope].rule;
        let tally = count(open);
        let cast = tally.yes + tally.no + tally.abstain;
        let quorum_needed = rule.quorum.least_of(tally.electorate);
        let approval_needed = rule.approval.least_of(tally.yes + tally.no);
        let (accepted, reason) = if !rule.quorum.reached_by(cast, tally.electorate) {
            (
                false,
                format!(
                    "rejected: short of quorum: {cast} of {} members with vote standing cast a ballot; quorum {} needs {quorum_needed}",
                    tally.electorate, rule.quorum
                ),
            )
        } else if tally.yes + tally.no == 0 || !rule.approval.reached_by(tally.yes, tally.yes + tally.no) {
            (
                false,
                format!(
                    "rejected: {} yes, {} no, {} abstain; approval {} needs {approval_needed} yes",
                    tally.yes, tally.no, tally.abstain, rule.approval
                ),
            )
        } else {
            (
                true,
                format!(
                    "accepted: {cast} of {} voted (quorum {} needs {quorum_needed}); {} yes, {} no, {} abstain (approval {} needs {approval_needed})",
                    tally.electorate, rule.quorum, tally.yes, tally.no, tally.abstain, rule.approval
                ),
            )
        };
        let ballots: Vec<u64> = open.ballots.values().map(|(_, seq, _)| *seq).collect();
        let mut digest = Vec::with_capacity(open.ballots.len() * 32);
        for (_, _, id) in open.ballots.values() {
            digest.extend_from_slice(&id.0);
        }
        DecisionRecord {
            proposal: *proposal,
            accepted,
            tally,
            rule,
            ballots,
            ballots_digest: ContentId::of(&digest),
            reason,
            effect_refused: None,
        }
    }

    /// Whether `signer` may submit `submission` at `now_ms`, and under which mandate.
    pub fn authorize(
        &self,
        now_ms: u64,
        signer: &PublicKey,
        submission: &Submission,
    ) -> Result<Authorization, Refusal> {
        let scope_id = &submission.scope;
        self.require_standing(signer, scope_id, Standing::Submit)?;
        let scope = self.scope(scope_id)?;
        let Some(decision) = scope.mandate else {
            return Err(Refusal::NoMandate { scope: scope_id.clone() });
        };
        let state = &self.mandates[&decision];
        if now_ms >= state.expires_ms {
            return Err(Refusal::MandateExpired {
                scope: scope_id.clone(),
                decision,
                expired_ms: state.expires_ms,
            });
        }
        if let Some(class) = &submission.options.priority {
            let classes = scope.classes.as_ref().map_or(&[][..], |set| &set.classes[..]);
            if class != DEFAULT_CLASS && !classes.iter().any(|c| &c.name == class) {
                let mut known: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
                if !known.contains(&DEFAULT_CLASS) {
                    known.push(DEFAULT_CLASS);
                }
                return Err(Refusal::UnknownPriorityClass {
                    scope: scope_id.clone(),
                    class: class.clone(),
                    known: known.join(", "),
                });
            }
        }
        let mandate = &state.mandate;
        if !mandate.executors.contains(&submission.executor) {
            let allowed: Vec<String> = mandate.executors.iter().map(ToString::to_string).collect();
            return Err(Refusal::ExecutorNotAllowed {
                scope: scope_id.clone(),
                executor: submission.executor,
                allowed: allowed.join(", "),
            });
        }
        let (asked, allowed) = (submission.limits, mandate.limits);
        // Each limit as the flag that sets it takes it (memory in MiB: what is asked rounded
        // up, what is allowed down, so the numbers never read as equal when one is over).
        const MIB: u64 = 1 << 20;
        for (flag, over, asked, allowed) in [
            ("--fuel", asked.fuel > allowed.fuel, asked.fuel.0, allowed.fuel.0),
            (
                "--memory-mib",
                asked.memory_bytes > allowed.memory_bytes,
                asked.memory_bytes.div_ceil(MIB),
                allowed.memory_bytes / MIB,
            ),
            ("--timeout-ms", asked.timeout_ms > allowed.timeout_ms, asked.timeout_ms, allowed.timeout_ms),
            (
                "--output-bytes",
                asked.output_bytes > allowed.output_bytes,
                asked.output_bytes,
                allowed.output_bytes,
            ),
        ] {
            if over {
                return Err(Refusal::OverMandateLimit { scope: scope_id.clone(), flag, asked, allowed });
            }
        }
        let price = self.prices(scope_id);
        let most = match submission.executor {
            ExecutorKind::Wasm => price.cost(submission.limits.fuel),
            ExecutorKind::Container => match self.container_terms(scope_id) {
                Some(terms) => terms.most(&submission.limits),
                None => return Err(Refusal::NoContainerTerms { scope: scope_id.clone() }),
            },
        };
        // Every replica a disagreement could grow to may be paid for.
        let replicas = self.placement_policy(scope_id).map_or(1, |p| p.replicas_max());
        let hold = Credits(most.0 * i64::from(replicas));
        if hold > state.left() {
            return Err(Refusal::BudgetExhausted {
                scope: scope_id.clone(),
                decision,
                left: state.left(),
                cost: hold,
            });
        }
        Ok(Authorization { decision, hold, price })
    }

    // ---- the one way state changes ------------------------------------------------

    /// Applies a journaled event. Events reach here only after their check passed (live)
    /// or from a verified journal (replay); an event that does not fit is a bug or a
    /// forged journal, and stops the coordinator rather than diverge.
    pub fn apply(&mut self, seq: u64, time_ms: u64, event: &Event) {
        match event {
            Event::Genesis(genesis) => self.apply_genesis(seq, time_ms, genesis),
            Event::ProposalOpened { proposal, closes_ms, electorate } => {
                let decoded: Proposal = proposal.open_trusted().expect("journaled proposals decode");
                let live = self.electorate(&decoded.scope);
                assert!(
                    electorate.iter().copied().eq(live.iter().copied()),
                    "entry {seq}: the journaled electorate differs from the standing in force"
                );
                let state = ProposalState {
                    seq,
                    proposal: decoded,
                    proposer: proposal.signer,
                    opened_ms: time_ms,
                    closes_ms: *closes_ms,
                    electorate: live,
                    ballots: BTreeMap::new(),
                    reasons: BTreeMap::new(),
                    cast: BTreeMap::new(),
                };
                self.open.insert(proposal.id(), state);
            }
            Event::BallotCast { ballot, .. } => {
                let decoded: Ballot = ballot.open_trusted().expect("journaled ballots decode");
                let open = self.open.get_mut(&decoded.proposal).expect("a ballot's proposal is open");
                let id = ballot.id();
                assert!(
                    open.cast.entry(ballot.signer).or_default().insert(id),
                    "entry {seq}: a ballot is counted once"
                );
                open.ballots.insert(ballot.signer, (decoded.choice, seq, id));
                match decoded.reason {
                    Some(reason) => open.reasons.insert(ballot.signer, reason),
                    None => open.reasons.remove(&ballot.signer),
                };
            }
            Event::DecisionMade(record) => {
                let recount = DecisionRecord {
                    effect_refused: record.effect_refused.clone(),
                    ..self.decide(&record.proposal)
                };
                assert_eq!(&recount, record, "entry {seq}: the journaled decision differs from a recount");
                let open = self.open.remove(&record.proposal).expect("decided proposal was open");
                if record.accepted && record.effect_refused.is_none() {
                    self.apply_effect(seq, time_ms, &open.proposal.scope, &open.proposal.effect);
                }
                self.closed.insert(record.proposal, seq);
                self.decisions.insert(
                    seq,
                    Decision {
                        seq,
                        proposal_seq: open.seq,
                        proposal_id: record.proposal,
                        proposal: open.proposal,
                        proposer: open.proposer,
                        decided_ms: time_ms,
                        record: record.clone(),
                    },
                );
            }
        }
    }

    fn apply_genesis(&mut self, seq: u64, time_ms: u64, genesis: &Genesis) {
        assert!(self.genesis.is_none(), "entry {seq}: a journal has one genesis");
        self.genesis = Some(seq);
        self.free_compute = genesis.free_compute;
        for scope in &genesis.scopes {
            let state = Scope {
                kind: scope.kind,
                parent: scope.parent.clone(),
                rule: scope.rule,
                standing: BTreeMap::new(),
                policy: scope.policy,
                prices: scope.prices,
                container: None,
                mandate: None,
                share: None,
                classes: None,
            };
            self.scopes.insert(scope.id.clone(), state);
        }
        for member in &genesis.members {
            self.members.insert(member.key, member.name.clone());
            for (scope, standing) in &member.standing {
                let scope = self.scopes.get_mut(scope).expect("genesis was validated");
                scope.standing.entry(member.key).or_default().extend(standing.iter().copied());
            }
        }
        for worker in &genesis.workers {
            self.workers.insert(worker.key, worker.owner.clone());
        }
        for mandate in &genesis.mandates {
            self.grant_mandate(seq, time_ms, mandate);
        }
    }

    fn grant_mandate(&mut self, seq: u64, time_ms: u64, mandate: &Mandate) {
        let state = MandateState {
            mandate: mandate.clone(),
            decision: seq,
            granted_ms: time_ms,
            expires_ms: time_ms.saturating_add(mandate.period_ms),
            held: Credits(0),
            spent: Credits(0),
            jobs: 0,
        };
        self.mandates.insert(seq, state);
        self.scopes.get_mut(&mandate.scope).expect("mandate scope exists").mandate = Some(seq);
    }

    fn apply_effect(&mut self, seq: u64, time_ms: u64, scope: &ScopeId, effect: &Effect) {
        match effect {
            Effect::Mandate(mandate) => self.grant_mandate(seq, time_ms, mandate),
            Effect::AdmitWorker { key, owner } => {
                self.workers.insert(*key, owner.clone());
            }
            Effect::RemoveWorker { key } => {
                self.workers.remove(key);
            }
            Effect::GrantStanding { name, key, standing } => {
                self.members.entry(*key).or_insert_with(|| name.clone());
                let scope = self.scopes.get_mut(scope).expect("decided scope exists");
                scope.standing.entry(*key).or_default().extend(standing.iter().copied());
            }
            Effect::RevokeStanding { key, standing } => {
                let scope = self.scopes.get_mut(scope).expect("decided scope exists");
                if let Some(held) = scope.standing.get_mut(key) {
                    for s in standing {
                        held.remove(s);
                    }
                    if held.is_empty() {
                        scope.standing.remove(key);
                    }
                }
            }
            Effect::PlacementPolicy(policy) => {
                self.scopes.get_mut(scope).expect("decided scope exists").policy = Some(*policy);
            }
            Effect::PriceSchedule(prices) => {
                self.scopes.get_mut(scope).expect("decided scope exists").prices = Some(*prices);
            }
            Effect::ContainerTerms(terms) => {
                self.scopes.get_mut(scope).expect("decided scope exists").container = Some(*terms);
            }
            Effect::Share { scope: target, weight } => {
                let share = ShareSet { weight: *weight, decision: seq };
                self.scopes.get_mut(target).expect("decided scope exists").share = Some(share);
            }
            Effect::PriorityClasses { classes } => {
                let set = ClassesSet { classes: classes.clone(), decision: seq };
                self.scopes.get_mut(scope).expect("decided scope exists").classes = Some(set);
            }
            // The ledger holds credit limits and the coordinator trust; it applies these.
            Effect::CreditLimit { .. } | Effect::Readmit { .. } | Effect::ResolveDispute { .. } => {}
        }
    }

    /// A job admitted under `decision` holds `hold` until it ends.
    pub fn hold(&mut self, decision: u64, hold: Credits) {
        let state = self.mandates.get_mut(&decision).expect("an authorizing mandate exists");
        state.held.0 += hold.0;
        state.jobs += 1;
        assert!(state.left().0 >= 0, "a hold never passes the budget");
    }

    /// A job under `decision` ended: its hold is released and `spent` (at most the
    /// hold) is used.
    pub fn release(&mut self, decision: u64, hold: Credits, spent: Credits) {
        assert!(spent <= hold && spent.0 >= 0, "a job spends at most what it held");
        let state = self.mandates.get_mut(&decision).expect("an authorizing mandate exists");
        state.held.0 -= hold.0;
        state.spent.0 += spent.0;
        assert!(state.held.0 >= 0, "holds are released once");
    }

    /// Describes an effect in plain words.
    pub fn describe_effect(&self, scope: &ScopeId, effect: &Effect) -> String {
        describe_effect(scope, effect, |key| self.name_or_key(key))
    }
}

fn count(open: &ProposalState) -> Tally {
    let mut tally = Tally { electorate: open.electorate.len() as u64, ..Tally::default() };
    for (choice, _, _) in open.ballots.values() {
        match choice {
            Choice::Yes => tally.yes += 1,
            Choice::No => tally.no += 1,
            Choice::Abstain => tally.abstain += 1,
        }
    }
    tally
}

/// An effect in plain words; `name` turns a key into the member's name.
pub fn describe_effect(scope: &ScopeId, effect: &Effect, name: impl Fn(&PublicKey) -> String) -> String {
    let list =
        |standing: &[Standing]| standing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    match effect {
        Effect::Mandate(m) => format!(
            "mandate: scope {} may run jobs costing up to {} over {} h on {}, each job up to {} fuel",
            m.scope,
            m.budget,
            m.period_ms as f64 / 3_600_000.0,
            m.executors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            m.limits.fuel.0
        ),
        Effect::AdmitWorker { key, owner } => format!("admit worker {} owned by {owner}", key.short()),
        Effect::RemoveWorker { key } => format!("remove worker {}", key.short()),
        Effect::GrantStanding { name, standing, .. } => {
            format!("grant {name} {} standing in {scope}", list(standing))
        }
        Effect::RevokeStanding { key, standing } => {
            format!("revoke {} standing of {} in {scope}", list(standing), name(key))
        }
        Effect::PlacementPolicy(p) => {
            format!("placement policy for {scope}: {} replicas, {} must agree", p.replicas, p.quorum)
        }
        Effect::PriceSchedule(p) => {
            format!("prices for {scope}: {} credits per million fuel", p.credits_per_mega_fuel)
        }
        Effect::ResolveDispute { job, output_digest, fuel } => format!(
            "resolve the dispute over job {}: the result with output {} and {fuel} stands",
            job.0.short(),
            output_digest.short()
        ),
        Effect::Readmit { key } => {
            format!("readmit quarantined worker {}, starting its trust over", key.short())
        }
        Effect::CreditLimit { scope: target, limit } => {
            format!("credit line for {target}: its account may go down to -{}", limit.0)
        }
        Effect::Share { scope: target, weight } => {
            format!(
                "fair share of {target}: weight {weight} among the scopes of {scope} when slots are scarce"
            )
        }
        Effect::ContainerTerms(t) => format!(
            "container terms for {scope}: {} credits per CPU-second, {} per GiB-second of memory; replicas' usage \
             agrees within {}%",
            t.credits_per_cpu_second, t.credits_per_gib_second, t.usage_tolerance_percent
        ),
        Effect::PriorityClasses { classes } => format!(
            "priority classes for {scope}'s jobs when slots are scarce: {} (a job names its class; one that names \
             none is in class default)",
            classes.iter().map(|c| format!("{} weight {}", c.name, c.weight)).collect::<Vec<_>>().join(", ")
        ),
    }
}
