//! Where tasks run, how many times, and which results count — as pure code.
//!
//! ```text
//!  request ──▶ feasibility ──▶ score ──▶ pick k on k distinct owners ──▶ plan
//!             (quarantine,     (trust lower bound,                      (adaptive replicas:
//!              executor,        free capacity,                           trusted alone plus
//!              slots, memory,   donor fairness)                          spot checks, others
//!              owner taken)                                              beside a trusted one)
//!  results ──▶ judge ──▶ accepted | more replicas | dispute
//! ```
//!
//! The coordinator scores; workers never score themselves. Every stage is a plain
//! function or type tested on its own; [`Pool`] keeps an index so a placement among
//! thousands of workers looks at only the best few.

mod pool;
pub mod sim;
mod trust;
mod verify;

pub use pool::{Candidate, Infeasible, Pool, Request, Shortfall, Weights, feasible, naive_place, score};
pub use trust::Trust;
pub use verify::{Counts, Judged, Report, UsageAgrees, Verdict, judge, median_first};

use serde::{Deserialize, Serialize};

/// Scores of one candidate, each from 0 to 1, and their weighted total: kept so that a
/// trace can say why a worker was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub trust: f64,
    pub capacity: f64,
    pub fairness: f64,
    pub total: f64,
}

/// How many replicas a task runs on and how trust shapes that.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Replicas for a task without a trusted worker to run it alone.
    pub replicas: u32,
    /// Results that must agree.
    pub quorum: u32,
    /// Replicas a disagreement may grow to before it becomes a dispute.
    pub replicas_max: u32,
    /// A worker whose trust lower bound reaches this may run a task alone.
    pub high_trust: f64,
    /// Share of tasks on a trusted worker that get a second replica anyway.
    pub spot_check: f64,
    /// A worker whose trust lower bound falls below this, once it has failed
    /// `quarantine_failures` times, is quarantined.
    pub floor: f64,
    pub quarantine_failures: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            replicas: 2,
            quorum: 2,
            replicas_max: 5,
            high_trust: 0.9,
            spot_check: 0.1,
            floor: 0.5,
            quarantine_failures: 2,
        }
    }
}

impl Policy {
    pub fn quarantines(&self, trust: &Trust) -> bool {
        trust.failures() >= self.quarantine_failures && trust.lower_bound() < self.floor
    }
}

/// The workers chosen for a task's first round, and the quorum their results need.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub chosen: Vec<(icn_protocol::PublicKey, Score)>,
    pub quorum: u32,
    pub spot_check: bool,
}

/// Adaptive replication. The best-scored feasible worker (fairness and capacity weigh
/// most, so work rotates between donors) takes the task. If it is trusted enough to run
/// alone, it does — unless `draw` (uniform in [0, 1), from the caller's seeded source)
/// falls under the spot-check rate. Otherwise the task runs on `policy.replicas` workers
/// of distinct owners, one of them trusted whenever a trusted worker is free: new or
/// recently wrong workers always run beside a trusted one.
pub fn plan(pool: &Pool, request: &Request, policy: &Policy, draw: f64) -> Option<Plan> {
    let best = *pool.place(&Request { replicas: 1, ..request.clone() }).first()?;
    let trusted = best.1.trust >= policy.high_trust;
    if trusted && draw >= policy.spot_check {
        return Some(Plan { chosen: vec![best], quorum: 1, spot_check: false });
    }
    let mut chosen = vec![best];
    let mut rest = request.clone();
    rest.exclude_owners.insert(pool.owner_of(&best.0).expect("a chosen worker is in the pool").clone());
    if !trusted {
        let anchor = pool.place(&Request { replicas: 1, min_trust: policy.high_trust, ..rest.clone() });
        if let Some(anchor) = anchor.first() {
            rest.exclude_owners.insert(pool.owner_of(&anchor.0).expect("in the pool").clone());
            chosen.push(*anchor);
        }
    }
    rest.replicas = policy.replicas.saturating_sub(chosen.len() as u32);
    chosen.extend(pool.place(&rest));
    if chosen.len() < policy.quorum.max(2) as usize {
        return None;
    }
    Some(Plan { quorum: policy.quorum, chosen, spot_check: trusted })
}
