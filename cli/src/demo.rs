//! `icn demo`: a federation of cooperatives decides a compute budget, then a coordinator
//! and three workers on loopback run jobs under it from the WAT modules built into this
//! binary, and one job is traced back to the decision and the members who made it.

use std::time::Instant;

use anyhow::Context;

use icn_coordinator::journal;
use icn_protocol::governance::{Choice, Credits, Effect, Proposal};
use icn_protocol::views::DecisionView;
use icn_protocol::wire::{JobState, JobView, Limits, Outcome, TraceQuery};
use icn_protocol::{ContentId, Fuel};

use crate::client::Client;
use crate::local::{self, LocalCommons, LocalOptions};

pub const HELLO_WAT: &str = include_str!("../../examples/wat/hello.wat");
pub const UPPER_WAT: &str = include_str!("../../examples/wat/upper.wat");
pub const SUM_WAT: &str = include_str!("../../examples/wat/sum.wat");
pub const SPIN_WAT: &str = include_str!("../../examples/wat/spin.wat");
pub const BUSY_WAT: &str = include_str!("../../examples/wat/busy.wat");
pub const MEBIBYTE_WAT: &str = include_str!("../../examples/wat/mebibyte.wat");

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

/// Runs the demo; with `keep`, in that directory (new or empty), which then keeps the
/// journal, instead of a temporary one.
pub async fn run(keep: Option<&std::path::Path>) -> anyhow::Result<()> {
    let started = Instant::now();
    let temporary = tempfile::tempdir()?;
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            anyhow::ensure!(
                std::fs::read_dir(dir)?.next().is_none(),
                "{} is not empty; --keep writes a fresh journal there, so give a new or empty directory",
                dir.display()
            );
            dir.to_path_buf()
        }
        None => temporary.path().to_path_buf(),
    };
    println!("ICN compute commons: demo on this machine, over QUIC on loopback\n");
    let credit_line = Credits(10_000);
    let options =
        LocalOptions { founding_budget: None, credit_limit: credit_line, ..LocalOptions::default() };
    let commons = LocalCommons::start(&dir, options).await?;
    let federation = local::federation();
    println!("coordinator {} at {}", commons.coordinator.public_key().short(), commons.coordinator.addr());
    println!("journal     {}", commons.journal.display());
    for worker in &commons.workers {
        println!("worker      {} donated by cooperative {}", worker.key.short(), worker.owner);
    }
    for member in &commons.members {
        println!(
            "member      {} ({}), vote and submit standing in {federation}",
            member.name,
            member.key.public().short()
        );
    }
    println!(
        "credit      {federation} may go {credit_line} below zero: the genesis grants that line (journal \
         entry #0); a decision of the commons can change it"
    );
    println!("            (#N below is the journal entry that recorded a step; every step has one)");

    let ana = commons.client_for(commons.members[0].key.clone()).await?;
    let ben = commons.client_for(commons.members[1].key.clone()).await?;
    let modules = modules(&ana).await?;
    let early = ana.submit(&submission(&modules[0], JOBS[0].input, JOBS[0].fuel)).await;
    println!("\nbefore any decision, ana submits a job for {federation}:");
    println!("  refused: {}", early.err().map(|e| e.to_string()).unwrap_or_else(|| "accepted?".into()));

    let budget = Credits(5_000);
    let proposal = Proposal {
        scope: federation.clone(),
        title: "Compute budget for this week's jobs".into(),
        effect: Effect::Mandate(local::day_mandate(budget)),
    };
    let (id, _) = ana.propose(&proposal).await?;
    println!("\nana proposes in {federation}: {:?}", proposal.title);
    println!("  effect: {}", icn_governance::describe_effect(&federation, &proposal.effect, |k| k.short()));
    ana.vote(id, Choice::Yes).await?;
    ben.vote(id, Choice::Yes).await?;
    println!("  ana votes yes; ben votes yes; voting stays open for the window of the rule");
    let decision = wait_for_decision(&ana, id).await?;
    println!("  decision #{}: {}", decision.seq, decision.reason);
    anyhow::ensure!(decision.accepted, "the demo's budget proposal was rejected");

    let mut submitted = Vec::new();
    for (job, module) in JOBS.iter().zip(&modules) {
        submitted.push((job.name, ana.submit(&submission(module, job.input, job.fuel)).await?));
    }
    println!("\njobs ana submitted under decision #{}:", decision.seq);
    println!("{:<14} {:<7} {:<22} {:<10} {:>10}  output", "job", "module", "ran on", "state", "fuel");
    let mut views = Vec::new();
    for (name, job) in &submitted {
        let view = ana.watch(*job, |_| {}).await?;
        let output = match view.state {
            JobState::Completed => String::from_utf8_lossy(&ana.output(*job).await?).trim_end().to_string(),
            _ => String::new(),
        };
        println!("{}", row(&commons, name, &view, &output));
        views.push(view);
    }

    let traced = submitted[1].1;
    println!("\nicn trace {}:\n", traced.0.short());
    print!("{}", ana.trace(TraceQuery::Job(traced)).await?);

    let scope = ana.scope(federation.clone()).await?;
    let mandate = scope.mandate.context("the federation's mandate is in force")?;
    println!(
        "\nmandate of {federation}: budget {}, {} spent by the jobs that ran, {} left",
        mandate.mandate.budget, mandate.spent.0, mandate.left.0
    );
    let positions = ana.positions().await?;
    println!("\nicn ledger positions:");
    print!("{}", crate::governance::positions(&positions));
    println!("what moved them:");
    for account in positions.accounts.iter().filter(|a| a.position != 0) {
        let scope = &account.scope;
        for line in ana.statement(scope.clone()).await?.lines.iter().filter(|l| l.change.0 != 0) {
            println!("  {:<10} #{:<4} {:>+6}  {}", scope.as_str(), line.seq, line.change.0, line.text);
        }
    }
    anyhow::ensure!(
        positions.accounts.iter().map(|a| a.position).sum::<i64>() == 0,
        "positions do not sum to zero"
    );
    let verification = journal::verify(&commons.journal, Some(commons.coordinator.public_key()))?;
    match &verification.first_bad {
        None => println!(
            "journal verified: {} entries, {} seals; every link, seal and signature holds",
            verification.entries, verification.seals
        ),
        Some(bad) => anyhow::bail!("the demo's own journal fails verification: {bad}"),
    }
    let completed = views.iter().filter(|v| v.state == JobState::Completed).count();
    println!(
        "{completed} of {} jobs completed, 1 stopped by its fuel limit as it should; {:.1} s",
        views.len(),
        started.elapsed().as_secs_f64()
    );
    drop((ana, ben));
    commons.stop().await?;
    if keep.is_some() {
        let journal = dir.join("journal.db");
        println!(
            "the journal stays in {0}: `icn journal show --journal {0}`, `icn journal verify --journal {0}`",
            journal.display()
        );
    }
    if completed != views.len() - 1 {
        anyhow::bail!("expected every job but the spinning one to complete");
    }
    Ok(())
}

async fn modules(client: &Client) -> anyhow::Result<Vec<ContentId>> {
    let mut modules = Vec::new();
    for job in JOBS {
        modules.push(client.ensure_module(&wat::parse_str(job.wat)?).await?);
    }
    Ok(modules)
}

fn submission(module: &ContentId, input: &[u8], fuel: u64) -> crate::client::JobRequest {
    local::submission(*module, input, Limits { fuel: Fuel(fuel), ..Limits::default() })
}

/// Waits for the proposal's voting window to close and its decision to be recorded.
pub async fn wait_for_decision(client: &Client, proposal: ContentId) -> anyhow::Result<DecisionView> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(seq) = client.proposal(proposal).await?.decision {
            return client.decision(seq).await;
        }
        anyhow::ensure!(Instant::now() < deadline, "proposal {proposal} was not decided within a minute");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn row(commons: &LocalCommons, name: &str, view: &JobView, output: &str) -> String {
    let state = match view.state {
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Queued => "queued",
        JobState::Running { .. } => "running",
        JobState::Disputed => "disputed",
        JobState::Cancelled => "cancelled",
    };
    let (ran_on, fuel, output) = match &view.result {
        Some((worker, report)) => {
            let output = match &report.outcome {
                Outcome::Exited { .. } => output.to_string(),
                Outcome::Failed { kind, .. } => format!("(it {kind})"),
            };
            (format!("{} {}", worker.short(), commons.owner_of(worker)), report.fuel.0.to_string(), output)
        }
        None => ("-".into(), "-".into(), view.failure.clone().unwrap_or_default()),
    };
    format!("{:<14} {:<7} {:<22} {:<10} {:>10}  {}", view.job.0.short(), name, ran_on, state, fuel, output)
}
