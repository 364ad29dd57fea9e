//! `icn chaos`: sweeps of the simulated commons (`icn_chaos`).

use std::time::Instant;

use icn_chaos::{Config, Outcome};

/// Runs `seeds`; prints what held and, for each failing seed, the violated invariant,
/// the command that replays it and its last steps. Fails when any seed failed.
pub fn chaos(
    config: &Config,
    seeds: std::ops::Range<u64>,
    threads: usize,
    verbose: bool,
    json: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (first, count) = (seeds.start, seeds.end - seeds.start);
    let swept = icn_chaos::sweep(seeds, config, threads);
    let seconds = started.elapsed().as_secs_f64();
    let s = &swept.stats;
    if json {
        let failures: Vec<serde_json::Value> =
            swept.failures.iter().map(|f| failure_json(config, f)).collect();
        let value = serde_json::json!({
            "seeds": count,
            "first": first,
            "seconds": seconds,
            "failed": swept.failures.len(),
            "submitted": s.submitted,
            "accepted": s.accepted,
            "wrong_accepted": s.wrong_accepted,
            "wrong_per_million": swept.wrong_per_million(),
            "replicas_per_accepted": s.replicas_per_accepted,
            "coordinator_crashes": s.crashes,
            "failures": failures,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        if verbose && let Some(outcome) = swept.failures.first() {
            print_failure(config, outcome, usize::MAX);
        } else if verbose {
            let outcome = icn_chaos::run(first, config);
            for line in &outcome.trail {
                println!("{line}");
            }
        }
        println!(
            "{count} seeds from {first} in {seconds:.1} s: {} failed; {} jobs submitted, {} results accepted, {} of \
             them wrong ({:.0} per million), {:.2} replicas per accepted result; coordinator crashes: {}",
            swept.failures.len(),
            s.submitted,
            s.accepted,
            s.wrong_accepted,
            swept.wrong_per_million(),
            s.replicas_per_accepted,
            s.crashes,
        );
        if !verbose {
            for failure in &swept.failures {
                print_failure(config, failure, 30);
            }
        }
    }
    if let Some(failure) = swept.failures.first() {
        anyhow::bail!(
            "{} of {count} seeds broke an invariant; the first, seed {}: {}",
            swept.failures.len(),
            failure.seed,
            failure.violation.as_ref().expect("a failure has its violation").invariant
        );
    }
    Ok(())
}

fn print_failure(config: &Config, outcome: &Outcome, lines: usize) {
    let violation = outcome.violation.as_ref().expect("a failure has its violation");
    println!("\nseed {} broke an invariant: {violation}", outcome.seed);
    println!("replay it: {}", config.command(outcome.seed));
    let skip = outcome.trail.len().saturating_sub(lines);
    println!("its last {} steps:", outcome.trail.len() - skip);
    for line in &outcome.trail[skip..] {
        println!("  {line}");
    }
}

fn failure_json(config: &Config, outcome: &Outcome) -> serde_json::Value {
    let violation = outcome.violation.as_ref().expect("a failure has its violation");
    serde_json::json!({
        "seed": outcome.seed,
        "invariant": violation.invariant.name(),
        "at_ms": violation.at_ms,
        "detail": violation.detail,
        "replay": config.command(outcome.seed),
        "steps": outcome.trail,
    })
}
