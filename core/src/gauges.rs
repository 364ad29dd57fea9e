//! What an operator's `/metrics` reads of the core at each scrape: counts with bounded
//! labels only (scopes, states, trust bands; never job ids), made on the core's thread
//! from the state it holds, so they cost one pass over the jobs in memory.

use std::collections::BTreeMap;

use icn_protocol::governance::ScopeId;
use icn_protocol::wire::JobState;

use crate::Core;

/// Trust bands of connected workers, by the lower bound of their agreement rate.
pub const TRUST_BANDS: [&str; 4] = ["new", "low", "medium", "high"];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gauges {
    /// Jobs held in memory by scope and state (queued, running, disputed, and the ended
    /// ones still remembered).
    pub jobs: BTreeMap<(ScopeId, &'static str), u64>,
    /// Jobs waiting for a worker, by scope (every scope, zero included).
    pub queued: BTreeMap<ScopeId, u64>,
    /// Slot time each scope used recently (decayed), in seconds.
    pub recent_usage_seconds: BTreeMap<ScopeId, f64>,
    /// Connected workers out of quarantine by trust band, and quarantined ones as
    /// "quarantined".
    pub workers: BTreeMap<&'static str, u64>,
    pub slots: u64,
    pub free_slots: u64,
    pub proposals_open: u64,
    pub disputes_open: u64,
    /// Each account's posted position and its reservations, in credits.
    pub positions: BTreeMap<ScopeId, i64>,
    pub reserved: BTreeMap<ScopeId, i64>,
    pub journal_entries: u64,
}

impl Core {
    pub fn gauges(&self) -> Gauges {
        let mut gauges = Gauges::default();
        for (_, id) in self.jobs.newest_first() {
            let Some(view) = self.jobs.view(id) else { continue };
            let scope = self.jobs.known(id).submission.scope.clone();
            *gauges.jobs.entry((scope, view.state.name())).or_default() += 1;
        }
        let disputed = JobState::Disputed.name();
        gauges.disputes_open =
            gauges.jobs.iter().filter(|((_, state), _)| *state == disputed).map(|(_, n)| n).sum();
        // Every scope, at zero when nothing of it waits, so a dashboard shows an empty queue.
        for scope in self.governance.scopes.keys() {
            gauges.queued.insert(scope.clone(), 0);
        }
        for (scope, _, count) in self.jobs.queues() {
            *gauges.queued.entry(scope.clone()).or_default() += count as u64;
        }
        let now_ms = self.clock.wall_ms;
        for scope in self.governance.scopes.keys() {
            let recent = self.shares.recent_ms(scope, now_ms);
            if recent > 0.0 {
                gauges.recent_usage_seconds.insert(scope.clone(), recent / 1000.0);
            }
        }
        for band in TRUST_BANDS.iter().chain(&["quarantined"]) {
            gauges.workers.insert(band, 0);
        }
        for worker in self.workers_view().into_iter().filter(|w| w.connected) {
            let band = match (worker.quarantined, worker.trust_lower_bound) {
                (true, _) => "quarantined",
                (false, _) if worker.trust.agreements + worker.trust.failures() == 0 => "new",
                (false, bound) if bound < 0.5 => "low",
                (false, bound) if bound < 0.9 => "medium",
                (false, _) => "high",
            };
            *gauges.workers.entry(band).or_default() += 1;
            gauges.slots += u64::from(worker.slots);
            gauges.free_slots += u64::from(worker.free_slots);
        }
        gauges.proposals_open = self.governance.open.len() as u64;
        for (scope, account) in self.ledger().accounts() {
            gauges.positions.insert(scope.clone(), account.position);
            gauges.reserved.insert(scope.clone(), account.reserved);
        }
        gauges.journal_entries = self.journal_len();
        gauges
    }
}
