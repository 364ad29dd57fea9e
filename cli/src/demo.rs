//! `icn demo`: a coordinator and three workers on loopback run a handful of jobs from
//! the WAT modules built into this binary, then show where they ran and the journal.

use std::time::Instant;

use icn_coordinator::journal;
use icn_coordinator::record::Record;
use icn_protocol::wire::{JobState, JobView, Limits, Outcome, Submission};
use icn_protocol::{Fuel, JobId};

use crate::local::{LocalCommons, LocalOptions};

pub const HELLO_WAT: &str = include_str!("../../examples/wat/hello.wat");
pub const UPPER_WAT: &str = include_str!("../../examples/wat/upper.wat");
pub const SUM_WAT: &str = include_str!("../../examples/wat/sum.wat");
pub const SPIN_WAT: &str = include_str!("../../examples/wat/spin.wat");
pub const BUSY_WAT: &str = include_str!("../../examples/wat/busy.wat");

struct DemoJob {
    name: &'static str,
    wat: &'static str,
    input: &'static [u8],
    fuel: u64,
}

const JOBS: &[DemoJob] = &[
    DemoJob { name: "hello", wat: HELLO_WAT, input: b"", fuel: 1_000_000 },
    DemoJob { name: "upper", wat: UPPER_WAT, input: b"the commons belongs to its members", fuel: 1_000_000 },
    DemoJob { name: "sum", wat: SUM_WAT, input: b"120 75 300 5", fuel: 1_000_000 },
    DemoJob { name: "busy", wat: BUSY_WAT, input: b"x", fuel: 1_000_000_000 },
    DemoJob { name: "sum", wat: SUM_WAT, input: b"1 2 3 4 5 6 7 8 9 10", fuel: 1_000_000 },
    DemoJob { name: "spin", wat: SPIN_WAT, input: b"", fuel: 5_000_000 },
];

pub async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    println!("ICN compute commons: demo on this machine, over QUIC on loopback\n");
    let commons = LocalCommons::start(dir.path(), LocalOptions::default()).await?;
    println!("coordinator {} at {}", commons.coordinator.public_key().short(), commons.coordinator.addr());
    println!("journal     {}", commons.journal.display());
    for worker in &commons.workers {
        println!("worker      {} donated by {}", worker.key.short(), worker.owner);
    }
    println!("member      {} ({})\n", commons.member.public().short(), commons.member_name);

    let client = commons.client().await?;
    let mut submitted = Vec::new();
    for job in JOBS {
        let bytes = wat::parse_str(job.wat)?;
        let module = client.ensure_module(&bytes).await?;
        let limits = Limits { fuel: Fuel(job.fuel), ..Limits::default() };
        let submission = Submission { module, input: job.input.to_vec(), args: vec![], limits };
        submitted.push((job.name, client.submit(&submission).await?));
    }
    println!("{:<14} {:<7} {:<22} {:<10} {:>10}  output", "job", "module", "ran on", "state", "fuel");
    let mut views = Vec::new();
    for (name, job) in &submitted {
        let view = client.watch(*job, |_| {}).await?;
        println!("{}", row(&commons, name, &view));
        views.push(view);
    }
    let traced = submitted[1].1;
    println!("\njournal entries of job {}:", traced.0.short());
    for line in journal_lines(&commons.journal, traced)? {
        println!("  {line}");
    }
    let verification = journal::verify(&commons.journal, Some(commons.coordinator.public_key()))?;
    match &verification.first_bad {
        None => println!(
            "\njournal verified: {} entries, {} seals; every link, seal and signature holds",
            verification.entries, verification.seals
        ),
        Some((seq, reason)) => {
            anyhow::bail!("the demo's own journal fails verification at entry {seq}: {reason}")
        }
    }
    let completed = views.iter().filter(|v| v.state == JobState::Completed).count();
    println!(
        "{completed} of {} jobs completed, 1 stopped by its fuel limit as it should; {:.1} s",
        views.len(),
        started.elapsed().as_secs_f64()
    );
    commons.stop().await?;
    if completed != views.len() - 1 {
        anyhow::bail!("expected every job but the spinning one to complete");
    }
    Ok(())
}

fn row(commons: &LocalCommons, name: &str, view: &JobView) -> String {
    let state = match view.state {
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Queued => "queued",
        JobState::Running { .. } => "running",
    };
    let (ran_on, fuel, output) = match &view.result {
        Some((worker, report)) => {
            let output = match &report.outcome {
                Outcome::Exited { .. } => String::from_utf8_lossy(&report.output).trim_end().to_string(),
                Outcome::Failed { kind, .. } => format!("({kind:?})"),
            };
            (format!("{} {}", worker.short(), commons.owner_of(worker)), report.fuel.0.to_string(), output)
        }
        None => ("-".into(), "-".into(), view.failure.clone().unwrap_or_default()),
    };
    format!("{:<14} {:<7} {:<22} {:<10} {:>10}  {}", view.job.0.short(), name, ran_on, state, fuel, output)
}

/// The journal entries about `job`, one line each, in plain words.
pub fn journal_lines(path: &std::path::Path, job: JobId) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for entry in journal::read(path)? {
        let record: Record = entry.decode_record()?;
        if record.job() != Some(job) {
            continue;
        }
        let cause = entry.cause.map_or("-".to_string(), |c| format!("#{c}"));
        lines.push(format!(
            "#{:<4} cause {:<5} signer {}  {}",
            entry.seq,
            cause,
            entry.signer.short(),
            record.describe()
        ));
    }
    Ok(lines)
}
