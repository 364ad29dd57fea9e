//! The founding document: the scopes a commons starts with, their rules, the founding
//! members and their standing, the founding workers, and any founding mandates.
//! Written as TOML by the founders; journaled as the first entry, after which only
//! decisions change what it set.

use std::collections::{BTreeMap, BTreeSet};

use icn_protocol::PublicKey;
use icn_protocol::governance::{
    BUDGET_CREDITS_MAX, Credits, Mandate, PlacementPolicy, PriceSchedule, Rule, ScopeId, ScopeKind, Standing,
    check_name,
};
use serde::{Deserialize, Serialize};

use crate::Refusal;

pub const SCOPES_MAX: usize = 10_000;
pub const MEMBERS_MAX: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub scopes: Vec<GenesisScope>,
    #[serde(default)]
    pub members: Vec<GenesisMember>,
    #[serde(default)]
    pub workers: Vec<GenesisWorker>,
    #[serde(default)]
    pub mandates: Vec<Mandate>,
    /// Compute may be priced at zero credits (by this genesis or a later decision). Off
    /// unless said here, because a zero price makes every job free and every donation
    /// unpaid.
    #[serde(default)]
    pub free_compute: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisScope {
    pub id: ScopeId,
    pub kind: ScopeKind,
    #[serde(default)]
    pub parent: Option<ScopeId>,
    pub rule: Rule,
    #[serde(default)]
    pub prices: Option<PriceSchedule>,
    #[serde(default)]
    pub policy: Option<PlacementPolicy>,
    /// How far below zero the scope's ledger account may go (default 0).
    #[serde(default)]
    pub credit_limit: Option<Credits>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisMember {
    pub name: String,
    pub key: PublicKey,
    /// Standing by scope, e.g. `standing = { coop-a = ["vote", "donate"] }`.
    pub standing: BTreeMap<ScopeId, Vec<Standing>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisWorker {
    pub key: PublicKey,
    /// The cooperative that owns the machine.
    pub owner: ScopeId,
}

impl Genesis {
    pub fn parse(text: &str) -> Result<Genesis, Refusal> {
        let genesis: Genesis = toml::from_str(text).map_err(|e| Refusal::Invalid(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Checks the whole document, naming the first bad value: exactly one commons
    /// and it has no parent, every other scope's parent exists and ranks above it,
    /// names are unique, rules and values are in bounds, standing and workers name
    /// scopes that exist, workers belong to cooperatives.
    pub fn validate(&self) -> Result<(), Refusal> {
        let invalid = |why: String| Err(Refusal::Invalid(why));
        if self.scopes.len() > SCOPES_MAX || self.members.len() > MEMBERS_MAX {
            return invalid(format!("at most {SCOPES_MAX} scopes and {MEMBERS_MAX} members"));
        }
        let mut kinds = BTreeMap::new();
        for scope in &self.scopes {
            if kinds.insert(scope.id.clone(), scope.kind).is_some() {
                return invalid(format!("scope {} is declared twice", scope.id));
            }
            scope.rule.validate().map_err(|e| Refusal::Invalid(format!("scope {}: {e}", scope.id)))?;
            if let Some(prices) = &scope.prices {
                prices.validate().map_err(|e| Refusal::Invalid(format!("scope {}: {e}", scope.id)))?;
                if prices.credits_per_mega_fuel == 0 && !self.free_compute {
                    return invalid(format!(
                        "scope {}: credits_per_mega_fuel is 0, which makes all compute free; set a price, or \
                         write free_compute = true at the top of the genesis if that is what the commons wants",
                        scope.id
                    ));
                }
            }
            if let Some(limit) = scope.credit_limit
                && !(0..=BUDGET_CREDITS_MAX).contains(&limit.0)
            {
                return invalid(format!(
                    "scope {}: credit_limit {} is not from 0 to {BUDGET_CREDITS_MAX}",
                    scope.id, limit.0
                ));
            }
            if let Some(policy) = &scope.policy {
                policy.validate().map_err(|e| Refusal::Invalid(format!("scope {}: {e}", scope.id)))?;
            }
        }
        let commons: Vec<&GenesisScope> =
            self.scopes.iter().filter(|s| s.kind == ScopeKind::Commons).collect();
        if commons.len() != 1 {
            return invalid(format!(
                "a genesis declares exactly one scope of kind commons; this one declares {}",
                commons.len()
            ));
        }
        if commons[0].prices.is_none() {
            return invalid(format!(
                "the commons scope {} must set prices, e.g. prices = {{ credits_per_mega_fuel = 1 }}",
                commons[0].id
            ));
        }
        for scope in &self.scopes {
            match (&scope.parent, scope.kind) {
                (None, ScopeKind::Commons) => {}
                (Some(_), ScopeKind::Commons) => {
                    return invalid(format!("the commons scope {} has no parent", scope.id));
                }
                (None, _) => return invalid(format!("scope {} names no parent", scope.id)),
                (Some(parent), kind) => match kinds.get(parent) {
                    None => return invalid(format!("scope {}: parent {parent} is not declared", scope.id)),
                    Some(parent_kind) if parent_kind.rank() <= kind.rank() => {
                        return invalid(format!(
                            "scope {} ({kind:?}) cannot sit inside {parent} ({parent_kind:?})",
                            scope.id
                        ));
                    }
                    Some(_) => {}
                },
            }
        }
        let mut keys = BTreeSet::new();
        for member in &self.members {
            check_name("member", &member.name).map_err(|e| Refusal::Invalid(e.to_string()))?;
            if !keys.insert(member.key) {
                return invalid(format!("member {}: key {} is listed twice", member.name, member.key));
            }
            for (scope, standing) in &member.standing {
                if !kinds.contains_key(scope) {
                    return invalid(format!("member {}: scope {scope} is not declared", member.name));
                }
                if standing.is_empty() {
                    return invalid(format!("member {}: no standing listed in {scope}", member.name));
                }
            }
        }
        let mut workers = BTreeSet::new();
        for worker in &self.workers {
            if !workers.insert(worker.key) {
                return invalid(format!("worker {} is listed twice", worker.key));
            }
            match kinds.get(&worker.owner) {
                Some(ScopeKind::Cooperative) => {}
                Some(kind) => {
                    return invalid(format!(
                        "worker {}: owner {} is a {kind:?}; workers belong to cooperatives",
                        worker.key, worker.owner
                    ));
                }
                None => {
                    return invalid(format!("worker {}: owner {} is not declared", worker.key, worker.owner));
                }
            }
        }
        for mandate in &self.mandates {
            mandate
                .validate()
                .map_err(|e| Refusal::Invalid(format!("mandate for {}: {e}", mandate.scope)))?;
            if !kinds.contains_key(&mandate.scope) {
                return invalid(format!("mandate: scope {} is not declared", mandate.scope));
            }
        }
        Ok(())
    }
}
