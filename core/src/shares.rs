//! Fair share: when slots are scarce, whose waiting job goes next.
//!
//! A scope's *recent usage* is the slot time its replicas held, decaying by half every
//! `share_half_life_ms` (HTCondor's user priority): a running replica counts as it runs,
//! and every placement costs one `share_quantum_ms` more, so a burst of placements
//! spreads across scopes before any of them has run. A failure that was the worker's
//! (lost, late, broke the protocol) is not charged.
//!
//! A scope's *share* is its weight over the weights of the active scopes beside it (those
//! with jobs waiting or running, under the same parent), times its parent's share; the
//! weights are what decisions of the parent scope set (`Effect::Share`), 1 where none
//! did. The scope whose usage is lowest against its share goes next, ties by name.
//!
//! Everything here follows from journal entries and their times, so a replay rebuilds
//! it exactly; and it holds one small record per scope, so it does not grow with history.

use std::collections::{BTreeMap, BTreeSet};

use icn_governance::Governance;
use icn_protocol::governance::ScopeId;

#[derive(Clone, Debug, Default, PartialEq)]
struct Usage {
    /// Slot-milliseconds of replicas that ended, decayed to `at_ms`.
    past_ms: f64,
    at_ms: u64,
    /// Replicas placed that have not ended.
    running: u64,
    /// The sum of their placement times (wall ms).
    since_ms: u128,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shares {
    half_life_ms: u64,
    quantum_ms: u64,
    usage: BTreeMap<ScopeId, Usage>,
}

impl Shares {
    pub fn new(half_life_ms: u64, quantum_ms: u64) -> Shares {
        assert!(half_life_ms > 0, "a half-life is longer than nothing");
        Shares { half_life_ms, quantum_ms, usage: BTreeMap::new() }
    }

    pub fn half_life_ms(&self) -> u64 {
        self.half_life_ms
    }

    /// A replica of `scope` was placed at `at_ms`.
    pub fn started(&mut self, scope: &ScopeId, at_ms: u64) {
        let usage = self.usage.entry(scope.clone()).or_default();
        usage.running += 1;
        usage.since_ms += u128::from(at_ms);
    }

    /// A replica of `scope` placed at `placed_ms` stopped holding its slot at `at_ms`;
    /// `charged` unless it stopped by the worker's fault.
    pub fn stopped(&mut self, scope: &ScopeId, placed_ms: u64, at_ms: u64, charged: bool) {
        let half_life_ms = self.half_life_ms;
        let quantum_ms = self.quantum_ms;
        let usage = self.usage.get_mut(scope).expect("a replica that stops was started");
        assert!(usage.running > 0, "a scope stops no more replicas than it started");
        usage.running -= 1;
        usage.since_ms -= u128::from(placed_ms);
        if charged {
            let now_ms = at_ms.max(usage.at_ms);
            usage.past_ms = decayed(usage.past_ms, usage.at_ms, now_ms, half_life_ms)
                + (at_ms.saturating_sub(placed_ms) + quantum_ms) as f64;
            usage.at_ms = now_ms;
        }
    }

    /// The slot-milliseconds `scope` used recently, as of `now_ms`.
    pub fn recent_ms(&self, scope: &ScopeId, now_ms: u64) -> f64 {
        let Some(usage) = self.usage.get(scope) else { return 0.0 };
        let running = u128::from(usage.running) * u128::from(now_ms + self.quantum_ms);
        let running_ms = running.saturating_sub(usage.since_ms) as f64;
        decayed(usage.past_ms, usage.at_ms, now_ms, self.half_life_ms) + running_ms
    }

    /// Replicas of `scope` running now.
    pub fn running(&self, scope: &ScopeId) -> u64 {
        self.usage.get(scope).map_or(0, |u| u.running)
    }

    /// Scopes with replicas running now.
    pub fn busy(&self) -> impl Iterator<Item = &ScopeId> {
        self.usage.iter().filter(|(_, u)| u.running > 0).map(|(scope, _)| scope)
    }

    /// Each scope's share of the slots (between 0 and 1) for every scope in `waiting`,
    /// among the scopes active now: those in `waiting`, those running replicas, and
    /// their ancestors.
    pub fn shares<'a>(
        &self,
        governance: &Governance,
        waiting: impl Iterator<Item = &'a ScopeId>,
    ) -> BTreeMap<ScopeId, f64> {
        let waiting: Vec<&ScopeId> = waiting.collect();
        let mut active: BTreeSet<ScopeId> = BTreeSet::new();
        for scope in waiting.iter().copied().chain(self.busy()) {
            active.extend(governance.lineage(scope));
        }
        // The weights of the active scopes under each parent, summed.
        let mut siblings: BTreeMap<Option<&ScopeId>, u64> = BTreeMap::new();
        for scope in &active {
            let parent = governance.scopes.get(scope).and_then(|s| s.parent.as_ref());
            *siblings.entry(parent).or_default() += u64::from(governance.share_weight(scope));
        }
        let share_of = |scope: &ScopeId| -> f64 {
            let mut share = 1.0;
            for at in governance.lineage(scope) {
                let parent = governance.scopes.get(&at).and_then(|s| s.parent.as_ref());
                share *= f64::from(governance.share_weight(&at)) / siblings[&parent] as f64;
            }
            share
        };
        waiting.into_iter().map(|scope| (scope.clone(), share_of(scope))).collect()
    }

    /// Recent usage against share: the scope with the lowest goes next.
    pub fn priority(&self, scope: &ScopeId, share: f64, now_ms: u64) -> f64 {
        self.recent_ms(scope, now_ms) / share
    }
}

/// `value` as of `from_ms`, halved every `half_life_ms` until `to_ms`.
fn decayed(value: f64, from_ms: u64, to_ms: u64, half_life_ms: u64) -> f64 {
    match to_ms.saturating_sub(from_ms) {
        0 => value,
        elapsed => value * (-(elapsed as f64) / half_life_ms as f64).exp2(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(id: &str) -> ScopeId {
        id.parse().unwrap()
    }

    #[test]
    fn usage_counts_running_replicas_and_halves_every_half_life() {
        let mut shares = Shares::new(1_000, 100);
        let a = scope("fed-a");
        shares.started(&a, 10_000);
        assert_eq!(shares.recent_ms(&a, 10_000), 100.0, "a placement costs a quantum at once");
        assert_eq!(shares.recent_ms(&a, 10_400), 500.0, "and its slot time as it runs");
        shares.stopped(&a, 10_000, 10_400, true);
        assert_eq!(shares.running(&a), 0);
        assert_eq!(shares.recent_ms(&a, 10_400), 500.0, "ending changes nothing at once");
        assert_eq!(shares.recent_ms(&a, 11_400), 250.0, "one half-life later, half");
        assert_eq!(shares.recent_ms(&a, 12_400), 125.0);
    }

    #[test]
    fn a_workers_fault_is_not_charged() {
        let mut shares = Shares::new(1_000, 100);
        let a = scope("fed-a");
        shares.started(&a, 0);
        shares.stopped(&a, 0, 5_000, false);
        assert_eq!(shares.recent_ms(&a, 5_000), 0.0);
    }
}
