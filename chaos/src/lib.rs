//! A whole commons, simulated: the real core and driver under simulated time, with
//! simulated workers, members and network, all from one seed — a search for breaks, run
//! thousands of times, in the manner of FoundationDB's and TigerBeetle's simulators.
//!
//! - `world` — one run: the coordinator's [`icn_core::Driver`] over an in-memory journal
//!   that can fail or tear an append, workers (honest, slow, crashing, flapping, lying
//!   in several ways), members (submitting, cancelling, proposing, voting, clearing) and a
//!   network (delay, duplication, cuts and healing). The coordinator crashes under a
//!   batch, after an append before its replies, or at a member's whim, and starts again
//!   from its journal.
//! - `check` — the invariants, read off the journal as it becomes durable by a fold kept
//!   apart from the core, and compared with the core after every batch.
//!
//! `icn chaos` runs sweeps; a failing seed prints the command that replays it and the
//! run's last steps.

mod check;
mod world;

pub use check::{Invariant, Violation};
pub use icn_core::Plant;
pub use world::{Outcome, Stats, drawn_alone};

use icn_protocol::governance::PlacementPolicy;

/// How adversarial workers lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Adversary {
    /// Every result made up.
    Liar,
    /// Honest for its first `honest_first` tasks, then wrong with probability
    /// `lie_probability` on each.
    TrustThenLie,
    /// Honest until trusted, then wrong exactly where it can tell that spot checks leave
    /// it alone: it learned how the coordinator draws them.
    Learner,
    /// Several cooperatives return the same wrong output, on the same jobs (a share
    /// `lie_probability` of them).
    Colluding,
    /// Honest output, fuel reported half as large again.
    OverReport,
}

impl Adversary {
    pub const ALL: [Adversary; 5] = [
        Adversary::Liar,
        Adversary::TrustThenLie,
        Adversary::Learner,
        Adversary::Colluding,
        Adversary::OverReport,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Adversary::Liar => "liar",
            Adversary::TrustThenLie => "trust-then-lie",
            Adversary::Learner => "learner",
            Adversary::Colluding => "colluding",
            Adversary::OverReport => "over-report",
        }
    }
}

impl std::str::FromStr for Adversary {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Adversary::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Adversary::ALL.iter().map(|a| a.name()).collect();
            format!("no adversary is called {s:?}; choose one of {}", names.join(", "))
        })
    }
}

impl std::fmt::Display for Adversary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One sweep's setting: the same for every seed of it.
#[derive(Clone, Debug)]
pub struct Config {
    pub workers: usize,
    pub adversary: Option<Adversary>,
    /// The share of workers that are adversaries (rounded to whole workers).
    pub adversarial_share: f64,
    /// Tasks a trust-then-lie or learning worker runs honestly first.
    pub honest_first: u32,
    /// How often a trust-then-lie worker lies once it starts; the share of jobs
    /// colluders lie about.
    pub lie_probability: f64,
    /// Faults: slow, crashing and flapping workers, cuts, duplicated messages, delays,
    /// coordinator crashes.
    pub faults: bool,
    /// The chance that a batch meets a coordinator crash (under the append, or after it
    /// before the replies), while faults are on.
    pub crash_rate: f64,
    /// How long members act and faults strike (simulated ms); then the commons runs on
    /// quietly until every job has had time to end.
    pub active_ms: u64,
    /// The federation's placement policy at genesis.
    pub policy: PlacementPolicy,
    /// Members propose placement policies too (replicas 1 to 3), not only credit lines
    /// and prices. A decided policy of one replica runs jobs unverified, by the
    /// federation's choice: off where what is measured is the trust model.
    pub policy_decisions: bool,
    /// Bugs planted in the core (tests only; needs icn-core's `plant` feature).
    pub plants: Vec<Plant>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 10,
            adversary: None,
            adversarial_share: 0.0,
            honest_first: 60,
            lie_probability: 0.5,
            faults: true,
            crash_rate: 0.001,
            active_ms: 45_000,
            policy: PlacementPolicy { replicas: 2, quorum: 2 },
            policy_decisions: true,
            plants: Vec::new(),
        }
    }
}

impl Config {
    /// The `icn chaos` command line that gives this setting for `seed`.
    pub fn command(&self, seed: u64) -> String {
        let mut command = format!("icn chaos --seed {seed}");
        if let Some(adversary) = self.adversary {
            command += &format!(" --adversary {adversary} --share {}", self.adversarial_share);
        }
        if !self.faults {
            command += " --faults off";
        }
        if !self.policy_decisions {
            command += " --no-policy-decisions";
        }
        if self.active_ms != Config::default().active_ms {
            command += &format!(" --active-ms {}", self.active_ms);
        }
        if !self.plants.is_empty() {
            command += &format!("  (with planted bugs {:?}: from a test only)", self.plants);
        }
        command
    }
}

/// Runs one seed.
pub fn run(seed: u64, config: &Config) -> Outcome {
    world::World::new(seed, config).run(seed)
}

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    pub runs: u64,
    /// The failing runs, in seed order.
    pub failures: Vec<Outcome>,
    pub stats: Stats,
}

impl Sweep {
    /// Wrong results accepted per million accepted results.
    pub fn wrong_per_million(&self) -> f64 {
        if self.stats.accepted == 0 {
            return 0.0;
        }
        self.stats.wrong_accepted as f64 * 1e6 / self.stats.accepted as f64
    }
}

/// Runs `seeds` on `threads` threads; the runs are independent, and each is the same
/// whichever thread runs it.
pub fn sweep(seeds: std::ops::Range<u64>, config: &Config, threads: usize) -> Sweep {
    let next = std::sync::atomic::AtomicU64::new(seeds.start);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= seeds.end {
                        return;
                    }
                    let outcome = std::panic::catch_unwind(|| run(seed, config)).unwrap_or_else(|panic| {
                        let detail = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Outcome::panicked(seed, detail)
                    });
                    results.lock().expect("no run panics while holding it").push(outcome);
                }
            });
        }
    });
    let mut outcomes = results.into_inner().expect("the runs ended");
    outcomes.sort_by_key(|o| o.seed);
    let mut sweep = Sweep { runs: outcomes.len() as u64, ..Sweep::default() };
    let mut placed_for_accepted = 0.0;
    for outcome in outcomes {
        let s = &outcome.stats;
        sweep.stats.submitted += s.submitted;
        sweep.stats.accepted += s.accepted;
        sweep.stats.wrong_accepted += s.wrong_accepted;
        sweep.stats.replicas_placed += s.replicas_placed;
        sweep.stats.crashes += s.crashes;
        sweep.stats.steps += s.steps;
        placed_for_accepted += s.replicas_per_accepted * s.accepted as f64;
        if outcome.violation.is_some() {
            sweep.failures.push(outcome);
        }
    }
    if sweep.stats.accepted > 0 {
        sweep.stats.replicas_per_accepted = placed_for_accepted / sweep.stats.accepted as f64;
    }
    sweep
}
