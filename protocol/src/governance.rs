//! The vocabulary of governance that crosses the wire and the journal: scopes,
//! standing, rules, effects, proposals and ballots. What they mean and how they are
//! counted lives in the `icn-governance` crate; here they are only data and limits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::envelope::{Kind, Signed};
use crate::identity::PublicKey;
use crate::ids::ContentId;
use crate::wire::{ExecutorKind, Limits, check_text};
use crate::{Error, Fuel, JobId};

pub const SCOPE_ID_LENGTH_MAX: usize = 64;
pub const NAME_LENGTH_MAX: usize = 64;
pub const TITLE_LENGTH_MAX: usize = 200;
pub const VOTING_WINDOW_MS_MAX: u64 = 30 * 24 * 3600 * 1000;
pub const MANDATE_PERIOD_MS_MAX: u64 = 366 * 24 * 3600 * 1000;
pub const REPLICAS_MAX: u32 = 7;
/// The largest fair-share weight a decision may give a scope or a priority class.
pub const SHARE_WEIGHT_MAX: u32 = 1_000;
/// Priority classes one scope may have, its default class among them.
pub const PRIORITY_CLASSES_MAX: usize = 8;
/// The class of a job that names none.
pub const DEFAULT_CLASS: &str = "default";

/// A priority class inside a scope: its jobs share the scope's slots with the other
/// classes' jobs by `weight`, as scopes share theirs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorityClass {
    pub name: String,
    pub weight: u32,
}
/// Credits per million fuel. Bounded so that the most fuel a job may ask for, priced,
/// stays far inside an i64 of credits.
pub const PRICE_PER_MEGA_FUEL_MAX: u64 = 1_000_000_000;
pub const BUDGET_CREDITS_MAX: i64 = 1_000_000_000_000_000;

/// Whole credits of the mutual-credit ledger. Signed: positions go below zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credits(pub i64);

impl fmt::Display for Credits {
    /// "1 credit", "-1 credit", "0 credits", "12 credits".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.0.unsigned_abs() == 1 { "credit" } else { "credits" };
        write!(f, "{} {unit}", self.0)
    }
}

/// A scope's name: lowercase letters, digits and dashes, e.g. `coop-a`, `fed-north`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScopeId(String);

impl ScopeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ScopeId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        check_name("scope", text)?;
        Ok(ScopeId(text.to_string()))
    }
}

impl TryFrom<String> for ScopeId {
    type Error = Error;
    fn try_from(text: String) -> Result<Self, Error> {
        text.parse()
    }
}

impl From<ScopeId> for String {
    fn from(id: ScopeId) -> String {
        id.0
    }
}

impl fmt::Display for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeId({})", self.0)
    }
}

/// Checks a scope or member name: 1 to 64 of `a-z`, `0-9`, `-`, not starting with `-`.
pub fn check_name(what: &str, text: &str) -> Result<(), Error> {
    let ok = !text.is_empty()
        && text.len() <= SCOPE_ID_LENGTH_MAX.min(NAME_LENGTH_MAX)
        && !text.starts_with('-')
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} name {text:?} is not valid: use 1 to 64 lowercase letters, digits and dashes"
        )))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    Member,
    Cooperative,
    Community,
    Federation,
    Commons,
}

impl std::fmt::Display for ScopeKind {
    /// In words, as people and `--json` write it: `cooperative`, `federation`, ….
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScopeKind::Member => "member",
            ScopeKind::Cooperative => "cooperative",
            ScopeKind::Community => "community",
            ScopeKind::Federation => "federation",
            ScopeKind::Commons => "commons",
        })
    }
}

impl ScopeKind {
    /// A parent's rank is above its child's: a cooperative sits in a federation, a
    /// federation in the commons.
    pub fn rank(self) -> u8 {
        match self {
            ScopeKind::Member => 0,
            ScopeKind::Cooperative | ScopeKind::Community => 1,
            ScopeKind::Federation => 2,
            ScopeKind::Commons => 3,
        }
    }
}

/// What a member may do in a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// Propose and vote.
    Vote,
    /// Submit jobs under the scope's mandate.
    Submit,
    /// Donate machines as workers.
    Donate,
    /// Operate the commons' infrastructure.
    Operate,
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Standing::Vote => "vote",
            Standing::Submit => "submit",
            Standing::Donate => "donate",
            Standing::Operate => "operate",
        })
    }
}

impl FromStr for Standing {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "vote" => Ok(Standing::Vote),
            "submit" => Ok(Standing::Submit),
            "donate" => Ok(Standing::Donate),
            "operate" => Ok(Standing::Operate),
            _ => {
                Err(Error::invalid(format!("standing {text:?} is not one of vote, submit, donate, operate")))
            }
        }
    }
}

/// An exact fraction from 0 to 1, written `"2/3"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fraction {
    pub num: u32,
    pub den: u32,
}

impl Fraction {
    /// Whether `part` out of `whole` reaches this fraction (`part / whole >= num / den`).
    pub fn reached_by(self, part: u64, whole: u64) -> bool {
        u128::from(part) * u128::from(self.den) >= u128::from(self.num) * u128::from(whole)
    }

    /// The least `part` of `whole` that reaches this fraction.
    pub fn least_of(self, whole: u64) -> u64 {
        let needed = u128::from(self.num) * u128::from(whole);
        needed.div_ceil(u128::from(self.den)) as u64
    }
}

impl FromStr for Fraction {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || Error::invalid(format!("{text:?} is not a fraction from 0/1 to 1/1 such as \"2/3\""));
        let (num, den) = text.split_once('/').ok_or_else(bad)?;
        let num: u32 = num.trim().parse().map_err(|_| bad())?;
        let den: u32 = den.trim().parse().map_err(|_| bad())?;
        if den == 0 || num > den || den > 1_000_000 {
            return Err(bad());
        }
        Ok(Fraction { num, den })
    }
}

impl TryFrom<String> for Fraction {
    type Error = Error;
    fn try_from(text: String) -> Result<Self, Error> {
        text.parse()
    }
}

impl From<Fraction> for String {
    fn from(f: Fraction) -> String {
        f.to_string()
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

impl fmt::Debug for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// How a scope decides: at close, at least `quorum` of the members with vote standing
/// must have cast a ballot, and at least `approval` of the yes-or-no ballots must be yes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub quorum: Fraction,
    pub approval: Fraction,
    pub voting_window_ms: u64,
}

impl Rule {
    pub fn validate(&self) -> Result<(), Error> {
        if self.quorum.num == 0 {
            return Err(Error::invalid(
                "a quorum of 0 would let nobody decide for everybody; use at least 1/n",
            ));
        }
        if self.approval.num == 0 {
            return Err(Error::invalid("an approval threshold of 0 accepts everything; use at least 1/n"));
        }
        if self.voting_window_ms == 0 || self.voting_window_ms > VOTING_WINDOW_MS_MAX {
            return Err(Error::invalid(format!(
                "voting_window_ms is {}; it must be between 1 and {VOTING_WINDOW_MS_MAX}",
                self.voting_window_ms
            )));
        }
        Ok(())
    }
}

/// A budget to run jobs: scope `scope` may submit jobs costing up to `budget` in
/// total, for `period_ms` from the decision, on the listed executors, each job
/// within `limits`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Mandate {
    pub scope: ScopeId,
    pub budget: Credits,
    pub period_ms: u64,
    pub executors: Vec<ExecutorKind>,
    /// The most one job may ask for.
    pub limits: Limits,
}

impl Mandate {
    pub fn validate(&self) -> Result<(), Error> {
        if self.budget.0 <= 0 || self.budget.0 > BUDGET_CREDITS_MAX {
            return Err(Error::invalid(format!(
                "budget is {}; it must be between 1 and {BUDGET_CREDITS_MAX} credits",
                self.budget.0
            )));
        }
        if self.period_ms == 0 || self.period_ms > MANDATE_PERIOD_MS_MAX {
            return Err(Error::invalid(format!(
                "period_ms is {}; it must be between 1 and {MANDATE_PERIOD_MS_MAX}",
                self.period_ms
            )));
        }
        if self.executors.is_empty() || self.executors.len() > 8 {
            return Err(Error::invalid("a mandate allows 1 to 8 executor kinds"));
        }
        self.limits.validate()
    }
}

/// Replicas per task and how many must agree; consumed by placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlacementPolicy {
    pub replicas: u32,
    pub quorum: u32,
}

impl PlacementPolicy {
    /// Replicas a task may grow to when its results disagree: two more than it starts
    /// with, for replicated tasks; a task that runs once is never replicated.
    pub fn replicas_max(&self) -> u32 {
        if self.replicas <= 1 { 1 } else { (self.replicas + 2).min(REPLICAS_MAX) }
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.quorum == 0 || self.quorum > self.replicas || self.replicas > REPLICAS_MAX {
            return Err(Error::invalid(format!(
                "replicas {} and quorum {}: need 1 <= quorum <= replicas <= {REPLICAS_MAX}",
                self.replicas, self.quorum
            )));
        }
        Ok(())
    }
}

/// What compute costs, consumed by the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PriceSchedule {
    /// Credits for a million units of wasm fuel.
    pub credits_per_mega_fuel: u64,
}

impl PriceSchedule {
    pub fn validate(&self) -> Result<(), Error> {
        if self.credits_per_mega_fuel > PRICE_PER_MEGA_FUEL_MAX {
            return Err(Error::invalid(format!(
                "credits_per_mega_fuel is {}; at most {PRICE_PER_MEGA_FUEL_MAX}",
                self.credits_per_mega_fuel
            )));
        }
        Ok(())
    }

    /// The price of `fuel`, rounded up to whole credits. Cannot overflow: fuel and
    /// price are both bounded.
    pub fn cost(&self, fuel: Fuel) -> Credits {
        let micro = u128::from(fuel.0) * u128::from(self.credits_per_mega_fuel);
        Credits(i64::try_from(micro.div_ceil(1_000_000)).expect("bounded fuel times bounded price fits"))
    }
}

/// The most a container CPU-second or GiB-second may be priced at.
pub const PRICE_PER_CONTAINER_UNIT_MAX: u64 = 1_000_000;
/// Below these, replicas' usage agrees whatever the tolerance: the engine samples a
/// container's CPU time once a second, and containers start and stop at their own pace,
/// so two honest runs differ by that much.
pub const USAGE_CPU_SLACK_MS: u64 = 1_000;
pub const USAGE_WALL_SLACK_MS: u64 = 1_000;
pub const USAGE_MEMORY_SLACK_BYTES: u64 = 8 * 1024 * 1024;

/// How a scope runs container jobs: what their usage costs, and how far replicas'
/// usage may differ and still count as one result (container timing is not
/// deterministic, as fuel is). A scope without terms of its own uses its nearest
/// ancestor's; where none were decided, container jobs are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContainerTerms {
    pub credits_per_cpu_second: u64,
    /// Memory is priced by what the task reserved on the worker (its memory limit) for
    /// as long as it ran: a donated machine holds it for the task whatever it touches.
    pub credits_per_gib_second: u64,
    /// How far, in percent of the larger, two replicas' CPU time or memory peak may
    /// differ and still agree.
    pub usage_tolerance_percent: u32,
}

impl ContainerTerms {
    pub fn validate(&self) -> Result<(), Error> {
        for (name, price) in [
            ("credits_per_cpu_second", self.credits_per_cpu_second),
            ("credits_per_gib_second", self.credits_per_gib_second),
        ] {
            if price > PRICE_PER_CONTAINER_UNIT_MAX {
                return Err(Error::invalid(format!(
                    "{name} is {price}; at most {PRICE_PER_CONTAINER_UNIT_MAX}"
                )));
            }
        }
        if self.usage_tolerance_percent > 100 {
            return Err(Error::invalid(format!(
                "usage_tolerance_percent is {}; it must be between 0 and 100",
                self.usage_tolerance_percent
            )));
        }
        Ok(())
    }

    /// What a run that used `usage` with `memory_bytes` reserved costs, rounded up to
    /// whole credits. Cannot overflow: usage is bounded by the task's limits and prices
    /// by their maximum.
    pub fn cost(&self, usage: &crate::wire::Usage, memory_bytes: u64) -> Credits {
        const GIB: u128 = 1024 * 1024 * 1024;
        let cpu = u128::from(usage.cpu_ms) * u128::from(self.credits_per_cpu_second) * GIB;
        let memory =
            u128::from(memory_bytes) * u128::from(usage.wall_ms) * u128::from(self.credits_per_gib_second);
        let credits = (cpu + memory).div_ceil(1000 * GIB);
        Credits(i64::try_from(credits).expect("bounded usage times bounded price fits"))
    }

    /// The most a task within `limits` can cost: all its CPU quota and all its memory for
    /// all its time.
    pub fn most(&self, limits: &Limits) -> Credits {
        let wall_ms = limits.timeout_ms + crate::wire::CONTAINER_STOP_GRACE_MS;
        let usage = crate::wire::Usage {
            cpu_ms: wall_ms * crate::wire::CONTAINER_CPUS,
            memory_peak_bytes: limits.memory_bytes,
            wall_ms,
        };
        self.cost(&usage, limits.memory_bytes)
    }

    /// Whether two replicas' usage is close enough to be one result.
    pub fn agree(&self, a: &crate::wire::Usage, b: &crate::wire::Usage) -> bool {
        let close = |x: u64, y: u64, slack: u64| {
            let allowed = (x.max(y) as u128 * u128::from(self.usage_tolerance_percent) / 100) as u64;
            x.abs_diff(y) <= allowed.max(slack)
        };
        close(a.cpu_ms, b.cpu_ms, USAGE_CPU_SLACK_MS)
            && close(a.wall_ms, b.wall_ms, USAGE_WALL_SLACK_MS)
            && close(a.memory_peak_bytes, b.memory_peak_bytes, USAGE_MEMORY_SLACK_BYTES)
    }
}

/// What an accepted decision changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Mandate(Mandate),
    AdmitWorker {
        key: PublicKey,
        owner: ScopeId,
    },
    RemoveWorker {
        key: PublicKey,
    },
    /// In the proposal's scope; a key new to the commons joins under `name`.
    GrantStanding {
        name: String,
        key: PublicKey,
        standing: Vec<Standing>,
    },
    /// In the proposal's scope.
    RevokeStanding {
        key: PublicKey,
        standing: Vec<Standing>,
    },
    /// For the proposal's scope.
    PlacementPolicy(PlacementPolicy),
    /// For the proposal's scope.
    PriceSchedule(PriceSchedule),
    /// How far below zero `scope`'s ledger account may go.
    CreditLimit {
        scope: ScopeId,
        limit: Credits,
    },
    /// A quarantined worker may take tasks again, starting over as a new worker.
    Readmit {
        key: PublicKey,
    },
    /// The verdict on a disputed job: the result (output digest and fuel) that stands.
    /// Decided in the commons scope.
    ResolveDispute {
        job: JobId,
        output_digest: ContentId,
        fuel: Fuel,
    },
    /// `scope`'s weight when its jobs and its sibling scopes' jobs wait for the same
    /// slots: decided in its parent scope. A scope no decision weighed has weight 1.
    Share {
        scope: ScopeId,
        weight: u32,
    },
    /// The proposal's scope divides its slots among its jobs' priority classes by these
    /// weights; a job names its class (`default` when it names none, weight 1 unless
    /// listed). Replaces the classes decided before.
    PriorityClasses {
        classes: Vec<PriorityClass>,
    },
    /// For the proposal's scope: what container jobs cost and how closely replicas'
    /// usage must agree. (Last, so decisions journaled before it decode unchanged.)
    ContainerTerms(ContainerTerms),
}

/// A member asks its scope to decide on an effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Proposal {
    pub scope: ScopeId,
    pub title: String,
    pub effect: Effect,
}

impl Signed for Proposal {
    const KIND: Kind = Kind::Proposal;
}

impl Proposal {
    pub fn validate(&self) -> Result<(), Error> {
        check_text("title", &self.title)?;
        if self.title.trim().is_empty() || self.title.chars().count() > TITLE_LENGTH_MAX {
            return Err(Error::invalid(format!("a title has 1 to {TITLE_LENGTH_MAX} characters")));
        }
        match &self.effect {
            Effect::Mandate(mandate) => mandate.validate(),
            Effect::GrantStanding { name, standing, .. } => {
                check_name("member", name)?;
                check_standing(standing)
            }
            Effect::RevokeStanding { standing, .. } => check_standing(standing),
            Effect::PlacementPolicy(policy) => policy.validate(),
            Effect::PriceSchedule(prices) => prices.validate(),
            Effect::ContainerTerms(terms) => terms.validate(),
            Effect::CreditLimit { limit, .. } => {
                if limit.0 < 0 || limit.0 > BUDGET_CREDITS_MAX {
                    return Err(Error::invalid(format!(
                        "credit limit {} is not allowed: use 0 to {BUDGET_CREDITS_MAX} credits",
                        limit.0
                    )));
                }
                Ok(())
            }
            Effect::AdmitWorker { .. }
            | Effect::RemoveWorker { .. }
            | Effect::Readmit { .. }
            | Effect::ResolveDispute { .. } => Ok(()),
            Effect::Share { weight, .. } => check_weight("share", *weight),
            Effect::PriorityClasses { classes } => {
                if classes.is_empty() || classes.len() > PRIORITY_CLASSES_MAX {
                    return Err(Error::invalid(format!(
                        "{} priority classes given; name 1 to {PRIORITY_CLASSES_MAX}",
                        classes.len()
                    )));
                }
                for (i, class) in classes.iter().enumerate() {
                    check_name("priority class", &class.name)?;
                    check_weight(&format!("class {}", class.name), class.weight)?;
                    if classes[..i].iter().any(|c| c.name == class.name) {
                        return Err(Error::invalid(format!("priority class {} is named twice", class.name)));
                    }
                }
                Ok(())
            }
        }
    }
}

fn check_weight(what: &str, weight: u32) -> Result<(), Error> {
    if weight == 0 || weight > SHARE_WEIGHT_MAX {
        return Err(Error::invalid(format!(
            "{what} weight {weight} is not allowed: use 1 to {SHARE_WEIGHT_MAX} (1 is an equal share)"
        )));
    }
    Ok(())
}

fn check_standing(standing: &[Standing]) -> Result<(), Error> {
    if standing.is_empty() || standing.len() > 4 {
        return Err(Error::invalid("name 1 to 4 kinds of standing"));
    }
    Ok(())
}

/// How far a clearing request's `made_ms` may be from the coordinator's clock: an older
/// request is refused, so a replayed one cannot net obligations made since.
pub const CLEAR_REQUEST_WINDOW_MS: u64 = 10 * 60_000;

/// A member asks the coordinator to clear the obligations among the scopes of a
/// federation (the federation and every scope inside it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClearRequest {
    pub federation: ScopeId,
    /// When the member made the request (wall clock, ms).
    pub made_ms: u64,
}

impl Signed for ClearRequest {
    const KIND: Kind = Kind::ClearRequest;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Yes,
    No,
    Abstain,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Choice::Yes => "yes",
            Choice::No => "no",
            Choice::Abstain => "abstain",
        })
    }
}

impl FromStr for Choice {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "yes" => Ok(Choice::Yes),
            "no" => Ok(Choice::No),
            "abstain" => Ok(Choice::Abstain),
            _ => Err(Error::invalid(format!("choice {text:?} is not one of yes, no, abstain"))),
        }
    }
}

/// A member's vote on a proposal (named by the id of its signed envelope). A later
/// ballot with another choice replaces the earlier one until the proposal closes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ballot {
    pub proposal: ContentId,
    pub choice: Choice,
    /// Why, in the voter's words, at most [`crate::wire::TEXT_SIZE_BYTES_MAX`] bytes.
    /// Added after the first release: ballots signed before it decode without one.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A ballot as it was encoded before its reason.
#[derive(Deserialize)]
struct BallotV1 {
    proposal: ContentId,
    choice: Choice,
}

impl Signed for Ballot {
    const KIND: Kind = Kind::Ballot;

    /// The current encoding, or the one before the reason, whole either way.
    fn decode_payload(bytes: &[u8]) -> Result<Self, Error> {
        crate::decode::<Ballot>(bytes).or_else(|current| match crate::decode::<BallotV1>(bytes) {
            Ok(v1) => Ok(Ballot { proposal: v1.proposal, choice: v1.choice, reason: None }),
            Err(_) => Err(current),
        })
    }
}

impl Ballot {
    pub fn validate(&self) -> Result<(), Error> {
        match &self.reason {
            Some(reason) => check_text("reason", reason),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_credit_is_singular() {
        let words: Vec<String> = [1, -1, 0, 2, 1_000].map(|n| Credits(n).to_string()).into();
        assert_eq!(words, ["1 credit", "-1 credit", "0 credits", "2 credits", "1000 credits"]);
    }

    #[test]
    fn a_ballot_signed_before_reasons_decodes_without_one() {
        #[derive(Serialize)]
        struct Old {
            proposal: ContentId,
            choice: Choice,
        }
        let old = crate::encode(&Old { proposal: ContentId::of(b"p"), choice: Choice::No });
        let ballot = Ballot::decode_payload(&old).unwrap();
        assert_eq!(ballot, Ballot { proposal: ContentId::of(b"p"), choice: Choice::No, reason: None });
        let new = Ballot { reason: Some("too dear".into()), ..ballot };
        assert_eq!(Ballot::decode_payload(&crate::encode(&new)).unwrap(), new);
        let long = Ballot { reason: Some("x".repeat(crate::wire::TEXT_SIZE_BYTES_MAX + 1)), ..new };
        assert!(long.validate().is_err());
    }

    #[test]
    fn fractions_parse_compare_and_refuse_nonsense() {
        let two_thirds: Fraction = "2/3".parse().unwrap();
        assert!(two_thirds.reached_by(2, 3) && !two_thirds.reached_by(1, 2) && two_thirds.reached_by(3, 4));
        assert_eq!(two_thirds.least_of(4), 3);
        assert_eq!("1/2".parse::<Fraction>().unwrap().least_of(3), 2);
        for bad in ["3/2", "1/0", "half", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Fraction>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scope_names_are_checked_with_the_bad_value_named() {
        assert!("fed-north".parse::<ScopeId>().is_ok());
        let error = "Fed North".parse::<ScopeId>().unwrap_err().to_string();
        assert!(error.contains("\"Fed North\""), "{error}");
        assert!("-x".parse::<ScopeId>().is_err() && "".parse::<ScopeId>().is_err());
    }

    #[test]
    fn price_rounds_up_and_cannot_overflow_at_the_bounds() {
        let prices = PriceSchedule { credits_per_mega_fuel: 3 };
        assert_eq!(prices.cost(Fuel(1)), Credits(1));
        assert_eq!(prices.cost(Fuel(2_000_000)), Credits(6));
        let most = PriceSchedule { credits_per_mega_fuel: PRICE_PER_MEGA_FUEL_MAX };
        assert!(most.cost(Fuel(crate::wire::FUEL_MAX)).0 > 0);
        // A price that could overflow a job's cost is refused, naming it.
        let error = PriceSchedule { credits_per_mega_fuel: u64::MAX }.validate().unwrap_err().to_string();
        assert!(error.contains(&u64::MAX.to_string()), "{error}");
        let limit = Effect::CreditLimit { scope: "fed".parse().unwrap(), limit: Credits(-1) };
        let proposal = Proposal { scope: "fed".parse().unwrap(), title: "t".into(), effect: limit };
        assert!(proposal.validate().unwrap_err().to_string().contains("credit limit -1 is not allowed"));
    }
}

/// Trust earned from verified agreement and lost on disagreement and missed deadlines.
/// z for a 95% one-sided-ish Wilson interval: a worker is trusted for what it has shown,
/// not for what it might be.
const Z: f64 = 1.96;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trust {
    /// Results that agreed with the accepted result.
    pub agreements: u64,
    /// Results that disagreed with it, or lost a dispute.
    pub disagreements: u64,
    /// Replicas that missed their deadline.
    pub missed: u64,
}

impl Trust {
    pub fn failures(&self) -> u64 {
        self.disagreements + self.missed
    }

    /// The Wilson score lower bound of the share of good results: 0 for a new worker,
    /// so nobody is trusted on luck, and rising only with evidence.
    pub fn lower_bound(&self) -> f64 {
        let n = (self.agreements + self.failures()) as f64;
        if n == 0.0 {
            return 0.0;
        }
        let p = self.agreements as f64 / n;
        let z2 = Z * Z;
        let centre = p + z2 / (2.0 * n);
        let margin = Z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
        ((centre - margin) / (1.0 + z2 / n)).clamp(0.0, 1.0)
    }
}

/// A proposal's ballots as counted: the electorate and each choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    pub electorate: u64,
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
}
