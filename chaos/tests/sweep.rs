//! The sweep CI runs, what it must find when a bug is planted, and that a seed is a run.

use icn_chaos::{Adversary, Config, Invariant, Plant, Sweep, run, sweep};

/// Seeds the CI sweep runs.
const CI_SEEDS: u64 = 1_000;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Says what failed, with the command that replays it and its last steps.
fn report(config: &Config, sweep: &Sweep) -> String {
    let mut text = format!("{} of {} seeds failed\n", sweep.failures.len(), sweep.runs);
    for failure in sweep.failures.iter().take(3) {
        let violation = failure.violation.as_ref().expect("a failure has a violation");
        text += &format!("seed {}: {violation}\n  replay: {}\n", failure.seed, config.command(failure.seed));
        for line in failure.trail.iter().rev().take(25).rev() {
            text += &format!("    {line}\n");
        }
    }
    text
}

#[test]
fn a_thousand_seeds_of_faults_and_crashes_hold_every_invariant() {
    let config = Config::default();
    let swept = sweep(0..CI_SEEDS, &config, threads());
    assert!(swept.failures.is_empty(), "{}", report(&config, &swept));
    // The faults struck: coordinators crashed, and jobs still ran and settled.
    assert!(swept.stats.crashes > CI_SEEDS / 4, "{:?}", swept.stats);
    assert!(swept.stats.accepted > CI_SEEDS * 10, "{:?}", swept.stats);
    assert_eq!(swept.stats.wrong_accepted, 0, "{:?}", swept.stats);
}

#[test]
fn the_same_seed_gives_the_same_journal_byte_for_byte() {
    let config = Config::default();
    for seed in [3, 17, 4_242] {
        let (one, two) = (run(seed, &config), run(seed, &config));
        assert!(one.journal_entries > 100, "seed {seed} journaled only {} entries", one.journal_entries);
        assert_eq!(one.journal_entries, two.journal_entries, "seed {seed}");
        assert_eq!(one.journal_digest, two.journal_digest, "seed {seed}: the journals differ");
        assert_eq!(one.trail, two.trail, "seed {seed}: the runs differ");
    }
    let other = run(18, &config);
    assert_ne!(run(17, &config).journal_digest, other.journal_digest, "two seeds, one journal");
}

/// The first seed of the CI sweep that `plant` fails, and the invariant it broke.
fn caught(plant: Plant) -> (u64, Invariant) {
    let config = Config { plants: vec![plant], ..Config::default() };
    for seed in 0..CI_SEEDS {
        if let Some(violation) = run(seed, &config).violation {
            return (seed, violation.invariant);
        }
    }
    panic!("the CI sweep of {CI_SEEDS} seeds does not catch {plant:?}");
}

#[test]
fn a_posting_applied_twice_is_caught() {
    assert_eq!(caught(Plant::PostTwice).1, Invariant::PostedOnce);
}

#[test]
fn a_decisions_effect_applied_twice_is_caught() {
    assert_eq!(caught(Plant::EffectTwice).1, Invariant::LimitsAsDecided);
}

#[test]
fn a_result_accepted_short_of_its_quorum_is_caught() {
    assert_eq!(caught(Plant::ShortQuorum).1, Invariant::QuorumHeld);
}

#[test]
fn a_reply_sent_before_its_batch_is_durable_is_caught() {
    assert_eq!(caught(Plant::ReplyEarly).1, Invariant::AcknowledgedIsDurable);
}

#[test]
fn workers_that_always_lie_get_no_wrong_result_accepted() {
    let config = Config {
        adversary: Some(Adversary::Liar),
        adversarial_share: 0.3,
        policy_decisions: false,
        ..Config::default()
    };
    let swept = sweep(0..40, &config, threads());
    assert!(swept.failures.is_empty(), "{}", report(&config, &swept));
    assert!(swept.stats.accepted > 400, "{:?}", swept.stats);
    assert_eq!(swept.stats.wrong_accepted, 0, "{:?}", swept.stats);
}
