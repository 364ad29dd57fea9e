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
//! Inside a scope, its jobs' priority classes share what the scope gets the same way: the
//! class whose recent usage is lowest against its weight (`Effect::PriorityClasses`, 1
//! where none is set) goes next.
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

impl Usage {
    fn start(&mut self, at_ms: u64) {
        self.running += 1;
        self.since_ms += u128::from(at_ms);
    }

    fn stop(&mut self, placed_ms: u64, at_ms: u64, charged: bool, half_life_ms: u64, quantum_ms: u64) {
        assert!(self.running > 0, "no more replicas stop than started");
        self.running -= 1;
        self.since_ms -= u128::from(placed_ms);
        if charged {
            let now_ms = at_ms.max(self.at_ms);
            self.past_ms = decayed(self.past_ms, self.at_ms, now_ms, half_life_ms)
                + (at_ms.saturating_sub(placed_ms) + quantum_ms) as f64;
            self.at_ms = now_ms;
        }
    }

    fn recent_ms(&self, now_ms: u64, half_life_ms: u64, quantum_ms: u64) -> f64 {
        let running = u128::from(self.running) * u128::from(now_ms + quantum_ms);
        let running_ms = running.saturating_sub(self.since_ms) as f64;
        decayed(self.past_ms, self.at_ms, now_ms, half_life_ms) + running_ms
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shares {
    half_life_ms: u64,
    quantum_ms: u64,
    usage: BTreeMap<ScopeId, Usage>,
    /// The same, by priority class inside each scope (at most `PRIORITY_CLASSES_MAX` a
    /// scope, and classes no decision names any more).
    classes: BTreeMap<(ScopeId, String), Usage>,
}

impl Shares {
    pub fn new(half_life_ms: u64, quantum_ms: u64) -> Shares {
        assert!(half_life_ms > 0, "a half-life is longer than nothing");
        Shares { half_life_ms, quantum_ms, usage: BTreeMap::new(), classes: BTreeMap::new() }
    }

    pub fn half_life_ms(&self) -> u64 {
        self.half_life_ms
    }

    /// A replica of `scope`'s class `class` was placed at `at_ms`.
    pub fn started(&mut self, scope: &ScopeId, class: &str, at_ms: u64) {
        self.usage.entry(scope.clone()).or_default().start(at_ms);
        self.classes.entry((scope.clone(), class.to_string())).or_default().start(at_ms);
    }

    /// A replica of `scope`'s class `class` placed at `placed_ms` stopped holding its slot
    /// at `at_ms`; `charged` unless it stopped by the worker's fault.
    pub fn stopped(&mut self, scope: &ScopeId, class: &str, placed_ms: u64, at_ms: u64, charged: bool) {
        let (half_life_ms, quantum_ms) = (self.half_life_ms, self.quantum_ms);
        let usage = self.usage.get_mut(scope).expect("a replica that stops was started");
        usage.stop(placed_ms, at_ms, charged, half_life_ms, quantum_ms);
        let key = (scope.clone(), class.to_string());
        let usage = self.classes.get_mut(&key).expect("a replica that stops was started");
        usage.stop(placed_ms, at_ms, charged, half_life_ms, quantum_ms);
    }

    /// The slot-milliseconds `scope` used recently, as of `now_ms`.
    pub fn recent_ms(&self, scope: &ScopeId, now_ms: u64) -> f64 {
        self.usage.get(scope).map_or(0.0, |u| u.recent_ms(now_ms, self.half_life_ms, self.quantum_ms))
    }

    /// The slot-milliseconds `scope`'s class `class` used recently, as of `now_ms`.
    pub fn class_recent_ms(&self, scope: &ScopeId, class: &str, now_ms: u64) -> f64 {
        let key = (scope.clone(), class.to_string());
        self.classes.get(&key).map_or(0.0, |u| u.recent_ms(now_ms, self.half_life_ms, self.quantum_ms))
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

    /// Recent usage of `scope`'s class `class` against its weight: inside the scope, the
    /// class with the lowest goes next.
    pub fn class_priority(&self, scope: &ScopeId, class: &str, weight: u32, now_ms: u64) -> f64 {
        self.class_recent_ms(scope, class, now_ms) / f64::from(weight)
    }
}

/// The candidate whose priority is lowest, ties by name: who goes next.
pub(crate) fn lowest<T: Ord>(candidates: impl Iterator<Item = (f64, T)>) -> Option<T> {
    candidates.min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1))).map(|(_, name)| name)
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
        shares.started(&a, "default", 10_000);
        assert_eq!(shares.recent_ms(&a, 10_000), 100.0, "a placement costs a quantum at once");
        assert_eq!(shares.recent_ms(&a, 10_400), 500.0, "and its slot time as it runs");
        shares.stopped(&a, "default", 10_000, 10_400, true);
        assert_eq!(shares.running(&a), 0);
        assert_eq!(shares.recent_ms(&a, 10_400), 500.0, "ending changes nothing at once");
        assert_eq!(shares.recent_ms(&a, 11_400), 250.0, "one half-life later, half");
        assert_eq!(shares.recent_ms(&a, 12_400), 125.0);
    }

    #[test]
    fn a_workers_fault_is_not_charged() {
        let mut shares = Shares::new(1_000, 100);
        let a = scope("fed-a");
        shares.started(&a, "default", 0);
        shares.stopped(&a, "default", 0, 5_000, false);
        assert_eq!(shares.recent_ms(&a, 5_000), 0.0);
    }
}
