//! `icn`: run a coordinator or a worker, submit and follow jobs, check the journal,
//! and see it all work with `icn demo`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use icn_cli::client::{Client, JobRequest};
use icn_cli::config::ConfigFile;
use icn_coordinator::Coordinator;
use icn_coordinator::journal;
use icn_protocol::governance::{
    Choice, Credits, Effect, Mandate, PlacementPolicy, PriceSchedule, Proposal, ScopeId, Standing,
};
use icn_protocol::views::{PAGE_ITEMS_MAX, Page};
use icn_protocol::wire::{ExecutorKind, IdKind, JobState, JobView, Limits, TraceQuery};
use icn_protocol::{ContentId, Fuel, JobId, Keypair, PublicKey, SealPoint};

#[derive(Parser)]
#[command(name = "icn", version, about = "The ICN compute commons: governed, verified, settled compute")]
struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object a
    /// line) for a log collector. Which lines: the ICN_LOG filter (default warn).
    #[arg(long, global = true, env = "ICN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a new ed25519 key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; the file must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a key file.
    Pubkey {
        /// The key file.
        key: PathBuf,
    },
    /// Run a coordinator from its config file.
    Coordinator {
        /// The coordinator's config file (TOML; see deploy/coordinator.example.toml).
        #[arg(long)]
        config: PathBuf,
        /// Start even though the journal's anchor shows entries missing from its end,
        /// accepting that they are lost (after restoring an old backup on purpose).
        #[arg(long)]
        accept_journal_end: bool,
    },
    /// Run a worker that donates this machine to the commons.
    Worker {
        #[command(flatten)]
        connect: Connect,
        /// Tasks this worker runs at once.
        #[arg(long, default_value_t = 2)]
        slots: u32,
        /// The most memory one task may use, in MiB.
        #[arg(long, default_value_t = 256)]
        memory_mib: u64,
        /// Serve Prometheus metrics at http://ADDR/metrics, such as 127.0.0.1:9601.
        #[arg(long, env = "ICN_WORKER_METRICS")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Also run container jobs through the local Docker engine (images by id, never
        /// pulled); offered only when the engine answers at start.
        #[arg(long, env = "ICN_WORKER_CONTAINERS")]
        containers: bool,
    },
    /// Submit a wasm module (.wasm or .wat) as a job, under your scope's mandate; or a
    /// container image the workers hold (with --executor container); or a job spec file
    /// (.toml) holding the same fields as these flags, which win over it.
    Submit {
        #[command(flatten)]
        connect: Connect,
        /// The module (.wasm or .wat); with --executor container, the image's id
        /// (sha256:…, as `docker images --no-trunc` shows it), its command in --arg; or
        /// a job spec (.toml) naming either.
        module: PathBuf,
        /// The scope the job is for; its mandate pays.
        #[arg(long, env = "ICN_SCOPE")]
        scope: Option<ScopeId>,
        /// What runs it: wasm (the default) or container.
        #[arg(long)]
        executor: Option<ExecutorKind>,
        /// A file whose bytes are the job's stdin.
        #[arg(long)]
        input: Option<PathBuf>,
        /// An argument for the module, or for a container its command (repeatable; a
        /// value may start with a dash: --arg -c).
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// The most fuel (wasm instructions, roughly) the job may use; its hold is this
        /// times the price (default 1000000000).
        #[arg(long)]
        fuel: Option<u64>,
        /// The most memory the job may use, in MiB (default 64).
        #[arg(long)]
        memory_mib: Option<u64>,
        /// The most wall-clock time the job may run, in ms (default 10000).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// The most output the job may write, in bytes (default 65536).
        #[arg(long)]
        output_bytes: Option<u64>,
        /// How long the job has to reach an accepted result (30m, 2h, 1d); past it, it
        /// fails and its hold is released.
        #[arg(long)]
        deadline: Option<String>,
        /// One of the priority classes its scope decided (`icn scope show SCOPE` lists them).
        #[arg(long)]
        priority: Option<String>,
        /// Follow the job until it ends, then print its output.
        #[arg(long)]
        wait: bool,
    },
    /// Write a completed job's output, checked against the digest its accepted report
    /// names, to a file (or to standard output).
    Result {
        #[command(flatten)]
        connect: Connect,
        /// The job's id, or any unique start of it (at least 6 hex digits).
        job: String,
        /// Where to write it; the file is replaced whole, never left half written.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print what a job's module wrote to stderr (its accepted run's, or its last run's;
    /// at most the last 4 KiB).
    Logs {
        #[command(flatten)]
        connect: Connect,
        /// The job's id, as `icn submit` printed it.
        job: String,
    },
    /// Show a job's state; with --wait, follow it until it ends. The exit status is the
    /// module's own exit code for a completed job, 70 for a failed or cancelled one, 75
    /// for one in dispute, 0 while it waits or runs.
    Status {
        #[command(flatten)]
        connect: Connect,
        /// The job's id, or any unique start of it (at least 6 hex digits).
        job: String,
        /// Follow the job until it ends, then print its output.
        #[arg(long, conflicts_with = "json")]
        wait: bool,
        /// The job's view as JSON (its state, attempts, result and failure).
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: its submitter, or a member with vote or operate standing in its
    /// scope, may. Running replicas are stopped and the job's hold is released.
    Cancel {
        #[command(flatten)]
        connect: Connect,
        /// The job's id, as `icn submit` printed it.
        job: String,
        /// The job's view after the cancel, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a scope to decide on an effect; prints the proposal id and when voting closes.
    Propose {
        #[command(flatten)]
        connect: Connect,
        /// The scope that decides.
        #[arg(long)]
        scope: ScopeId,
        /// One line saying what and why.
        #[arg(long)]
        title: String,
        /// Cast your own ballot on it at once (yes, no or abstain), as `icn vote` would.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["yes", "no", "abstain"])
            .map(|s| s.parse::<Choice>().expect("one of the listed choices")))]
        vote: Option<Choice>,
        #[command(subcommand)]
        effect: EffectArgs,
    },
    /// Vote yes, no or abstain on an open proposal (a later ballot replaces yours).
    Vote {
        #[command(flatten)]
        connect: Connect,
        /// The proposal's id, or any unique start of it (at least 6 hex digits), as
        /// `icn decisions` lists it.
        proposal: String,
        /// Your ballot.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["yes", "no", "abstain"])
            .map(|s| s.parse::<Choice>().expect("one of the listed choices")))]
        choice: Choice,
        /// Why, in your words (kept with your signed ballot; at most 1024 bytes).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Decisions taken and proposals open, in plain words.
    Decisions {
        #[command(flatten)]
        connect: Connect,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Members and the standing each holds, by scope.
    Members {
        #[command(flatten)]
        connect: Connect,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Scopes: their place, rule, members, mandate and workers.
    Scope {
        #[command(subcommand)]
        command: ScopeCommand,
    },
    /// The provenance of a job (or, with --decision, of a decision and what it authorized).
    Trace {
        #[command(flatten)]
        connect: Connect,
        /// The job id.
        #[arg(required_unless_present = "decision")]
        job: Option<String>,
        /// A decision's journal entry number (the `#N` that `icn decisions` shows), instead of a job.
        #[arg(long, conflicts_with = "job", value_parser = decision_entry)]
        decision: Option<u64>,
        /// The same as data.
        #[arg(long)]
        json: bool,
    },
    /// Jobs the coordinator holds (every open job and the latest ended ones), newest first.
    Jobs {
        #[command(flatten)]
        connect: Connect,
        /// Only jobs of this scope.
        #[arg(long)]
        scope: Option<ScopeId>,
        /// Only jobs in this state: queued, running, completed, failed, disputed or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs you submitted.
        #[arg(long)]
        mine: bool,
        /// Only jobs submitted within this long: 30m, 2h, 1d.
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// As JSON, one array.
        #[arg(long)]
        json: bool,
    },
    /// The shared queue: each scope's fair share, recent usage, running and waiting jobs,
    /// in the order the scopes are served now.
    Queue {
        #[command(flatten)]
        connect: Connect,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Workers: owner, connection, free slots, trust, agreements, disagreements, quarantine.
    Workers {
        #[command(flatten)]
        connect: Connect,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// The mutual-credit ledger: positions, statements, clearing.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Read and check the journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// A development commons that stays up: a coordinator on 127.0.0.1:7600 and three
    /// workers of three cooperatives, keys and journal kept in --dir so it starts again
    /// where it stopped; prints what to export and what to try. Stops on Ctrl-C or SIGTERM.
    Dev {
        /// Where its keys and journal live (made on the first start).
        #[arg(long, default_value = "icn-dev")]
        dir: PathBuf,
        /// Where the coordinator listens.
        #[arg(long, default_value = "127.0.0.1:7600", value_parser = coordinator_address)]
        listen: SocketAddr,
        /// Where the coordinator serves the HTTP/JSON member API (for `icn ui` and scripts).
        #[arg(long, default_value = "127.0.0.1:7700")]
        http_listen: SocketAddr,
        /// How long each proposal stays open for votes, in every scope (30s, 2m, 1h): long
        /// enough to read a proposal and type a vote. Set when the commons is first made;
        /// after that a decision changes it.
        #[arg(long, default_value = "2m", value_parser = duration_ms)]
        voting_window: u64,
        /// Where the coordinator serves /metrics for Prometheus, such as 127.0.0.1:9600
        /// (port 0 takes a free one); not served without it.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Your page in a browser: what was decided, what ran and what it cost, your votes and
    /// your cooperative's machines. Served from this machine; it signs with your key file
    /// here, so the key never leaves it.
    Ui {
        /// The coordinator's HTTP API, such as http://127.0.0.1:7700.
        #[arg(long, env = "ICN_API")]
        api: String,
        /// Your key file.
        #[arg(long, env = "ICN_KEY")]
        key: PathBuf,
        /// Where the page is served; open it in your browser.
        #[arg(long, default_value = "127.0.0.1:7800")]
        listen: SocketAddr,
        /// The operators' Grafana dashboard, linked from the operations page.
        #[arg(long, env = "ICN_GRAFANA")]
        grafana: Option<String>,
        /// The coordinator's public key, as the operator gave it: the page checks the
        /// journal's seals against it.
        #[arg(long, env = "ICN_COORDINATOR_KEY")]
        coordinator_key: Option<PublicKey>,
    },
    /// Shell completions on standard output: `icn completions bash > ~/.local/share/bash-completion/completions/icn`
    /// (also zsh, fish, elvish, powershell).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Man pages, one per command (icn.1, icn-submit.1, …), written into --out:
    /// `icn man --out ~/.local/share/man/man1`, then `man icn-submit`.
    Man {
        /// The folder to write them into (made if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Start a coordinator and three workers here and run jobs through them.
    Demo {
        /// Keep the demo's journal in this directory (new or empty) to explore afterwards
        /// with `icn journal show` and `icn journal verify`.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Measure jobs/s and latency end to end beside in-process wasmtime.
    Bench {
        /// Jobs to run (default 2000; 100000 with --memory).
        #[arg(long)]
        jobs: Option<usize>,
        /// Workers the benchmark runs.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Slots per worker.
        #[arg(long, default_value_t = 4)]
        slots: u32,
        /// Jobs submitted and not yet finished at any moment.
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// Measure the ledger instead: pure and durable postings/s beside raw SQLite.
        #[arg(long)]
        ledger: bool,
        /// With --ledger: how many postings.
        #[arg(long, default_value_t = 200_000)]
        postings: usize,
        /// With --ledger: postings per journal commit.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Measure placement instead: placements/s among --pool workers beside a full scan.
        #[arg(long)]
        placement: bool,
        /// With --placement: workers in the pool.
        #[arg(long, default_value_t = 10_000)]
        pool: usize,
        /// Measure the coordinator's memory instead: its process's RSS after 1000 and after
        /// --jobs trivial jobs, then after --large-jobs jobs with 1 MiB outputs and after a
        /// restart.
        #[arg(long)]
        memory: bool,
        /// With --memory: jobs with 1 MiB outputs.
        #[arg(long, default_value_t = 1_000)]
        large_jobs: usize,
        /// Measure container jobs instead: per-task time through the commons beside
        /// `docker run --rm` of the same image (built from --busybox), one at a time.
        #[arg(long)]
        container: bool,
        /// With --container: the static busybox the benchmark's image is made of.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        /// Measure signed submissions/s over the HTTP API beside the QUIC path, in
        /// alternating rounds of --jobs each (default 1000) against one coordinator.
        #[arg(long)]
        http: bool,
        /// With --http: rounds each way.
        #[arg(long, default_value_t = 6)]
        rounds: usize,
        /// Run the seeded trust simulation against fixed two-fold replication.
        #[arg(long)]
        simulate: bool,
        /// With --simulate: tasks to run.
        #[arg(long, default_value_t = 5_000)]
        tasks: usize,
        /// With --simulate: the random seed (the same seed gives the same run).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Every scope's position, holds and credit limit, and who owes whom.
    Positions {
        #[command(flatten)]
        connect: Connect,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each entry that moved a scope's account, with the decision behind it.
    Statement {
        #[command(flatten)]
        connect: Connect,
        /// The scope whose account it lists.
        scope: ScopeId,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Net the obligations among a federation's scopes into the fewest transfers.
    Clear {
        #[command(flatten)]
        connect: Connect,
        /// The federation whose scopes' obligations are netted.
        federation: ScopeId,
        /// As JSON: the obligations before and after.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ScopeCommand {
    /// Every scope: its kind, parent and rule.
    List {
        #[command(flatten)]
        connect: Connect,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// One scope: its rule, members and standing, mandates, budget spent and left.
    Show {
        #[command(flatten)]
        connect: Connect,
        /// The scope's id, such as fed-north.
        scope: ScopeId,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What an accepted decision does.
#[derive(Subcommand)]
enum EffectArgs {
    /// Scope --for may run jobs up to --budget credits for --period-hours.
    Mandate {
        /// The scope that may run the jobs.
        #[arg(long = "for")]
        target: ScopeId,
        /// Credits it may spend over the period.
        #[arg(long)]
        budget: i64,
        /// How long the budget lasts, in hours.
        #[arg(long, default_value_t = 24.0)]
        period_hours: f64,
        /// Executors its jobs may use (repeatable): wasm, container.
        #[arg(long = "executor", default_values = ["wasm"])]
        executors: Vec<ExecutorKind>,
        /// The most fuel one job may ask for.
        #[arg(long, default_value_t = Limits::default().fuel.0)]
        fuel: u64,
        /// The most memory one job may ask for, in MiB (as `icn submit --memory-mib`).
        #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
        memory_mib: u64,
        /// The longest one job may run, in milliseconds (as `icn submit --timeout-ms`).
        #[arg(long, default_value_t = Limits::default().timeout_ms)]
        timeout_ms: u64,
        /// The most output one job may write, in bytes (as `icn submit --output-bytes`).
        #[arg(long, default_value_t = Limits::default().output_bytes)]
        output_bytes: u64,
    },
    /// A worker key owned by a cooperative joins the commons.
    AdmitWorker {
        /// The worker's public key, as `icn keygen` printed it.
        #[arg(long)]
        key: PublicKey,
        /// The cooperative that owns the worker.
        #[arg(long)]
        owner: ScopeId,
    },
    /// A worker leaves the commons; it is disconnected when the decision is taken.
    RemoveWorker {
        /// The worker's key, or any unique start of it (at least 6 hex digits).
        #[arg(long)]
        key: String,
    },
    /// Give a member (new or known) standing in the deciding scope.
    Grant {
        /// The member's name, as others will see it.
        #[arg(long)]
        name: String,
        /// The member's public key, as `icn keygen` printed it.
        #[arg(long)]
        key: PublicKey,
        /// Standing to give, comma-separated: vote, submit, donate, operate.
        #[arg(long, value_delimiter = ',', required = true)]
        standing: Vec<Standing>,
    },
    /// Take standing away in the deciding scope; later actions only.
    Revoke {
        /// The member's key, or any unique start of it (at least 6 hex digits).
        #[arg(long)]
        key: String,
        /// Standing to take away, comma-separated: vote, submit, donate, operate.
        #[arg(long, value_delimiter = ',', required = true)]
        standing: Vec<Standing>,
    },
    /// Replicas per task and how many must agree, for the deciding scope.
    Policy {
        /// Replicas each task runs as, on workers of different cooperatives.
        #[arg(long)]
        replicas: u32,
        /// How many replicas' results must agree.
        #[arg(long)]
        quorum: u32,
    },
    /// In the commons: the result (output digest and fuel) that stands for a disputed job.
    ResolveDispute {
        /// The disputed job's id, or any unique start of it (at least 6 hex digits).
        #[arg(long)]
        job: String,
        /// The output digest that stands (from `icn trace JOB`).
        #[arg(long)]
        output_digest: ContentId,
        /// The fuel that stands.
        #[arg(long)]
        fuel: u64,
    },
    /// A quarantined worker may take tasks again, its trust starting over.
    Readmit {
        /// The worker's key, or any unique start of it (at least 6 hex digits).
        #[arg(long)]
        key: String,
    },
    /// How far below zero scope --for's account may go.
    CreditLimit {
        /// The scope whose credit line it sets.
        #[arg(long = "for")]
        target: ScopeId,
        /// How far below zero its account may go, in credits.
        #[arg(long)]
        limit: i64,
    },
    /// What compute costs in the deciding scope.
    Prices {
        /// Credits one million fuel costs.
        #[arg(long)]
        credits_per_mega_fuel: u64,
    },
    /// What container jobs cost in the deciding scope, and how closely replicas' usage
    /// must agree for their results to count as one.
    ContainerTerms {
        /// Credits one CPU-second costs.
        #[arg(long)]
        cpu_second: u64,
        /// Credits one GiB of memory reserved for one second costs (by the job's memory
        /// limit, for as long as it ran).
        #[arg(long)]
        gib_second: u64,
        /// How far, in percent, two replicas' CPU time, running time or memory peak may
        /// differ and still agree.
        #[arg(long, default_value_t = 20)]
        tolerance: u32,
    },
    /// Scope --for's fair share when slots are scarce: its weight among the other scopes
    /// of the deciding scope (its parent). Scopes no decision weighed have weight 1.
    Share {
        /// The scope whose weight it sets; a scope directly inside the deciding scope.
        #[arg(long = "for")]
        target: ScopeId,
        /// Its weight, 1 to 1000: weights 3 and 1 split scarce slots 3 to 1.
        #[arg(long)]
        weight: u32,
    },
    /// Priority classes of the deciding scope's jobs, sharing its slots by weight; a job
    /// names one with `submit --priority` (one that names none is in class default).
    Classes {
        /// A class and its weight, NAME=WEIGHT (repeatable), such as urgent=4.
        #[arg(long = "class", required = true, value_parser = parse_class)]
        classes: Vec<icn_protocol::governance::PriorityClass>,
    },
}

/// `urgent=4`: a priority class and its weight.
fn parse_class(text: &str) -> anyhow::Result<icn_protocol::governance::PriorityClass> {
    let (name, weight) = text
        .split_once('=')
        .with_context(|| format!("{text:?} is not a class; write NAME=WEIGHT, such as urgent=4"))?;
    let weight = weight
        .parse()
        .with_context(|| format!("{weight:?} is not a weight; write a whole number from 1 to 1000"))?;
    Ok(icn_protocol::governance::PriorityClass { name: name.to_string(), weight })
}

impl EffectArgs {
    /// The effect, with every key or job named by a prefix resolved to its full id.
    async fn effect(self, client: &Client) -> anyhow::Result<Effect> {
        let key = |typed: String| async move {
            anyhow::Ok(client.resolve(IdKind::Key, &typed).await?.parse::<PublicKey>()?)
        };
        Ok(match self {
            EffectArgs::Mandate {
                target,
                budget,
                period_hours,
                executors,
                fuel,
                memory_mib,
                timeout_ms,
                output_bytes,
            } => {
                if !(period_hours > 0.0 && period_hours.is_finite()) {
                    bail!("--period-hours is {period_hours}; give a positive number of hours");
                }
                let limits = Limits {
                    fuel: Fuel(fuel),
                    memory_bytes: memory_mib.saturating_mul(1 << 20),
                    timeout_ms,
                    output_bytes,
                };
                limits.validate().map_err(|e| {
                    anyhow::anyhow!(
                        "{e}; a mandate's per-job limits are at most --fuel {}, --memory-mib {}, --timeout-ms {}, \
                         --output-bytes {}",
                        icn_protocol::wire::FUEL_MAX,
                        icn_protocol::wire::MEMORY_BYTES_MAX >> 20,
                        icn_protocol::wire::TIMEOUT_MS_MAX,
                        icn_protocol::wire::OUTPUT_SIZE_BYTES_MAX
                    )
                })?;
                Effect::Mandate(Mandate {
                    scope: target,
                    budget: Credits(budget),
                    period_ms: (period_hours * 3_600_000.0) as u64,
                    executors,
                    limits,
                })
            }
            EffectArgs::AdmitWorker { key, owner } => Effect::AdmitWorker { key, owner },
            EffectArgs::RemoveWorker { key: typed } => Effect::RemoveWorker { key: key(typed).await? },
            EffectArgs::Grant { name, key, standing } => Effect::GrantStanding { name, key, standing },
            EffectArgs::Revoke { key: typed, standing } => {
                Effect::RevokeStanding { key: key(typed).await?, standing }
            }
            EffectArgs::Policy { replicas, quorum } => {
                Effect::PlacementPolicy(PlacementPolicy { replicas, quorum })
            }
            EffectArgs::Readmit { key: typed } => Effect::Readmit { key: key(typed).await? },
            EffectArgs::ResolveDispute { job, output_digest, fuel } => Effect::ResolveDispute {
                job: client.resolve_job(&job).await?,
                output_digest,
                fuel: Fuel(fuel),
            },
            EffectArgs::CreditLimit { target, limit } => {
                Effect::CreditLimit { scope: target, limit: Credits(limit) }
            }
            EffectArgs::Prices { credits_per_mega_fuel } => {
                Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel })
            }
            EffectArgs::ContainerTerms { cpu_second, gib_second, tolerance } => {
                Effect::ContainerTerms(icn_protocol::governance::ContainerTerms {
                    credits_per_cpu_second: cpu_second,
                    credits_per_gib_second: gib_second,
                    usage_tolerance_percent: tolerance,
                })
            }
            EffectArgs::Share { target, weight } => Effect::Share { scope: target, weight },
            EffectArgs::Classes { classes } => Effect::PriorityClasses { classes },
        })
    }
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Re-check every link, seal, signature and stored module; name the first bad one.
    Verify {
        /// The journal file (the coordinator's journal.db).
        #[arg(long)]
        journal: PathBuf,
        /// The coordinator key the journal must belong to (default: the one it names).
        #[arg(long)]
        coordinator_key: Option<PublicKey>,
        /// A seal you kept (`icn journal seal` prints it): the journal must still hold
        /// that entry with that hash.
        #[arg(long, value_name = "SEQ:HASH")]
        expect: Option<SealPoint>,
    },
    /// Print the highest journal seal this machine has seen from the coordinator, as
    /// SEQ:HASH for `icn journal verify --expect`.
    Seal {
        /// The coordinator's public key.
        #[arg(long, env = "ICN_COORDINATOR_KEY")]
        coordinator_key: PublicKey,
    },
    /// Drop entries after the last seal, which no coordinator wrote (it seals every
    /// batch it commits). Sealed history is never removed.
    Truncate {
        /// The journal file (the coordinator's journal.db).
        #[arg(long)]
        journal: PathBuf,
        /// Required: says what is removed.
        #[arg(long, required = true)]
        unsealed_tail: bool,
    },
    /// Print the entries in plain words, all or those of one job.
    Show {
        /// The journal file (the coordinator's journal.db).
        #[arg(long)]
        journal: PathBuf,
        /// Only the entries of this job: its id, or a start of it (6 hex digits at least;
        /// read from the file, so every job that starts so matches).
        #[arg(long)]
        job: Option<String>,
    },
}

/// What a member who forgot the exports reads: where the three values come from.
const CONNECT_HINT: &str = "A member command needs the coordinator's address and key and your key file: set \
ICN_COORDINATOR, ICN_COORDINATOR_KEY and ICN_KEY (`icn dev` and `icn coordinator` print the first two when they \
start; `icn dev` prints the whole export line), or pass --coordinator, --coordinator-key and --key.";

#[derive(Args)]
struct Connect {
    /// The coordinator's address: HOST:PORT, a name (localhost:7600) or an IP.
    #[arg(long, env = "ICN_COORDINATOR", value_parser = coordinator_address)]
    coordinator: SocketAddr,
    /// The coordinator's public key, as it printed at start.
    #[arg(long, env = "ICN_COORDINATOR_KEY")]
    coordinator_key: PublicKey,
    /// Your key file.
    #[arg(long, env = "ICN_KEY")]
    key: PathBuf,
}

/// A duration as flags take it: 30s, 2m, 1h, 1d.
fn duration_ms(text: &str) -> Result<u64, String> {
    icn_cli::governance::parse_duration_ms(text).map_err(|e| e.to_string())
}

/// HOST:PORT resolved to one address, IPv4 first (a coordinator listening on 127.0.0.1
/// is not at localhost's ::1).
fn coordinator_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("{text:?} is not an address the coordinator can be reached at ({e}); write HOST:PORT, such as 127.0.0.1:7600"))?
        .collect();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| format!("{text:?} names no address"))
}

impl Connect {
    fn key(&self) -> anyhow::Result<Arc<Keypair>> {
        Ok(Arc::new(icn_transport::keyfile::read(&self.key)?))
    }

    /// Connects, holding the coordinator to the history it showed this machine before.
    async fn client(&self) -> anyhow::Result<Client> {
        let seals = icn_cli::client::seal_file(&self.coordinator_key);
        Client::connect_keeping(self.coordinator, self.coordinator_key, self.key()?, seals).await
    }
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes
    // away (`icn journal show | head`) instead of failing on a broken pipe.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let missing = error.kind() == clap::error::ErrorKind::MissingRequiredArgument;
            let _ = error.print();
            if missing && ["--coordinator", "--key"].iter().any(|flag| error.to_string().contains(flag)) {
                eprintln!("\n{CONNECT_HINT}");
            }
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    // A worker says when it is admitted and when it reconnects (a second worker with its
    // key shows as the two taking turns); everything else speaks up from warnings.
    let quiet =
        if matches!(cli.command, Command::Worker { .. }) { "warn,icn_worker::agent=info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICN_LOG").unwrap_or_else(|_| quiet.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        // Colour codes only for a person at a terminal, not for a file or a journal.
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Keygen { out } => {
            let key = Keypair::generate();
            icn_transport::keyfile::write_new(&key, &out)?;
            println!("{}", key.public());
        }
        Command::Pubkey { key } => println!("{}", icn_transport::keyfile::read(&key)?.public()),
        Command::Coordinator { config, accept_journal_end } => {
            run_coordinator(&config, accept_journal_end).await?
        }
        Command::Worker { connect, slots, memory_mib, metrics_listen, containers } => {
            let stop = stop_signal()?;
            let config = icn_worker::WorkerConfig {
                key: connect.key()?,
                coordinator: connect.coordinator,
                coordinator_key: connect.coordinator_key,
                slots,
                memory_bytes: memory_mib.saturating_mul(1024 * 1024),
                metrics_listen,
                agent: icn_cli::client::agent(),
            };
            if let Some(addr) = metrics_listen {
                eprintln!("metrics for Prometheus at http://{addr}/metrics");
            }
            eprintln!(
                "worker {} connecting to coordinator {}; it serves once admitted",
                config.key.public(),
                connect.coordinator
            );
            let mut executors = icn_worker::Executors::from(Arc::new(icn_worker::WasmExecutor::new()?));
            if containers {
                let owner = config.key.public().to_string();
                match icn_worker::ContainerExecutor::connect(icn_worker::ContainerConfig::new(owner)).await {
                    Ok(executor) => {
                        eprintln!("container jobs run through the local Docker engine");
                        executors = executors.with(Arc::new(executor));
                    }
                    Err(e) => eprintln!("no container slots offered: {e}"),
                }
            }
            tokio::select! {
                result = icn_worker::run(config, executors) => result?,
                signal = stop => eprintln!("worker stopping ({signal})"),
            }
        }
        Command::Submit {
            connect,
            module,
            scope,
            executor,
            input,
            args,
            fuel,
            memory_mib,
            timeout_ms,
            output_bytes,
            deadline,
            priority,
            wait,
        } => {
            let given = icn_cli::spec::Given {
                scope,
                executor,
                input,
                args,
                limits: icn_cli::spec::SpecLimits { fuel, memory_mib, timeout_ms, output_bytes },
                deadline,
                priority,
            };
            let spec_file = module.extension().is_some_and(|e| e == "toml");
            let job = if spec_file {
                let spec = icn_cli::spec::JobSpec::read(&module)?;
                let base = module.parent().unwrap_or(Path::new("."));
                icn_cli::spec::job(Some((spec, base)), None, given)?
            } else {
                icn_cli::spec::job(None, Some(module), given)?
            };
            // A wasm job's program is its module, uploaded; a container job's is the id of
            // an image the workers hold.
            let bytes = match job.executor {
                ExecutorKind::Wasm => Some(read_module(&job.module)?),
                ExecutorKind::Container => None,
            };
            let program = match &bytes {
                Some(bytes) => ContentId::of(bytes),
                None => icn_worker::container::parse_image(&job.module.to_string_lossy())
                    .map_err(anyhow::Error::msg)?,
            };
            let (input, limits) = (job.input, job.limits);
            icn_protocol::wire::check_input(&input)?;
            let options = icn_protocol::wire::JobOptions {
                deadline_ms: job.deadline_ms.map(|ms| icn_coordinator::server::now_ms().saturating_add(ms)),
                priority: job.priority,
            };
            let mut job = JobRequest::new(job.scope, job.executor, program, &input, job.args, limits);
            job.submission.options = options;
            job.submission.validate()?;
            let client = connect.client().await?;
            if let Some(bytes) = &bytes {
                client.ensure_module(bytes).await?;
            }
            let job = client.submit(&job).await?;
            // The id first, on its own line, so a script can read it before the output.
            println!("{job}");
            if wait {
                return follow(&client, job).await;
            }
        }
        Command::Status { connect, job, wait, json } => {
            let client = connect.client().await?;
            let job = client.resolve_job(&job).await?;
            if wait {
                return follow(&client, job).await;
            }
            let view = client.status(job).await?;
            show(json, &view, |view| format!("{}\n", icn_cli::status::describe(view)))?;
            return Ok(exit_code(&view));
        }
        Command::Result { connect, job, out } => {
            let client = connect.client().await?;
            let job = client.resolve_job(&job).await?;
            let view = client.status(job).await?;
            let (worker, report) = match (&view.state, &view.result) {
                (JobState::Completed, Some(result)) => result,
                _ => bail!("{}; only a completed job has an output", icn_cli::status::describe(&view)),
            };
            let bytes = client.output(job).await?;
            anyhow::ensure!(
                ContentId::of(&bytes) == report.output_digest,
                "the output the coordinator sent does not hash to {}, the digest worker {} signed",
                report.output_digest,
                worker.short()
            );
            match out {
                Some(path) => {
                    let partial = path.with_extension("partial");
                    std::fs::write(&partial, &bytes)
                        .with_context(|| format!("cannot write {}", partial.display()))?;
                    std::fs::rename(&partial, &path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {} bytes to {}: output {} as worker {} reported it",
                        bytes.len(),
                        path.display(),
                        report.output_digest.short(),
                        worker.short()
                    );
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
        }
        Command::Logs { connect, job } => {
            let client = connect.client().await?;
            let job = client.resolve_job(&job).await?;
            let view = client.status(job).await?;
            match icn_cli::status::logs(&view) {
                Ok(stderr) => {
                    use std::io::{IsTerminal, Write};
                    let mut stdout = std::io::stdout();
                    if stdout.is_terminal() {
                        // A job's stderr is the job's: on a terminal its control characters
                        // are shown, not obeyed. Piped, the bytes go as they are.
                        let text = String::from_utf8_lossy(stderr);
                        stdout.write_all(icn_protocol::wire::printable(&text, &['\n', '\t']).as_bytes())?;
                    } else {
                        stdout.write_all(stderr)?;
                    }
                }
                Err(why) => eprintln!("{why}"),
            }
        }
        Command::Cancel { connect, job, json } => {
            let client = connect.client().await?;
            let job = client.resolve_job(&job).await?;
            let view = client.cancel(job).await?;
            show(json, &view, |view| format!("{}\n", icn_cli::status::describe(view)))?;
        }
        Command::Propose { connect, scope, title, vote, effect } => {
            let client = connect.client().await?;
            let proposal = Proposal { scope, title, effect: effect.effect(&client).await? };
            proposal.validate()?;
            let (id, closes_ms) = client.propose(&proposal).await?;
            let seconds = closes_ms.saturating_sub(icn_coordinator::server::now_ms()) as f64 / 1000.0;
            eprintln!("proposal {} open; voting closes in {seconds:.1} s", id.short());
            println!("{id}");
            if let Some(choice) = vote {
                client.vote(id, choice).await.with_context(|| {
                    format!(
                        "proposal {} is open, but your ballot was not cast: `icn vote {} {choice}`",
                        id.short(),
                        id.short()
                    )
                })?;
                eprintln!("voted {choice} on proposal {}", id.short());
            }
        }
        Command::Vote { connect, proposal, choice, reason } => {
            let client = connect.client().await?;
            let proposal: ContentId = client.resolve(IdKind::Proposal, &proposal).await?.parse()?;
            client.vote_because(proposal, choice, reason).await?;
            eprintln!("voted {choice} on proposal {}", proposal.short());
        }
        Command::Decisions { connect, json } => {
            let client = connect.client().await?;
            let listed = icn_cli::governance::Decisions {
                open: client.proposals().await?,
                decided: client.decisions().await?,
            };
            show(json, &listed, |l| icn_cli::governance::decisions(&l.decided, &l.open))?;
        }
        Command::Members { connect, json } => {
            show(json, &connect.client().await?.members().await?, |m| icn_cli::governance::members(m))?;
        }
        Command::Scope { command: ScopeCommand::List { connect, json } } => {
            show(json, &connect.client().await?.scopes().await?, |s| icn_cli::governance::scopes(s))?;
        }
        Command::Scope { command: ScopeCommand::Show { connect, scope, json } } => {
            let view = connect.client().await?.scope(scope).await?;
            show(json, &view, |v| icn_cli::governance::scope(v, icn_coordinator::server::now_ms()))?;
        }
        Command::Trace { connect, job, decision, json } => {
            let client = connect.client().await?;
            let query = match (job, decision) {
                (_, Some(decision)) => TraceQuery::Decision(decision, Page::first(PAGE_ITEMS_MAX)),
                (Some(job), None) => TraceQuery::Job(client.resolve_job(&job).await?),
                (None, None) => bail!("name a job, or a decision with --decision"),
            };
            show(json, &client.trace(query).await?, ToString::to_string)?;
        }
        Command::Jobs { connect, scope, state, mine, since, limit, json } => {
            let now_ms = icn_coordinator::server::now_ms();
            let since_ms = since.map(|s| icn_cli::governance::parse_duration_ms(&s)).transpose()?;
            let client = connect.client().await?;
            let query = icn_protocol::wire::JobsQuery {
                scope,
                state,
                submitter: mine.then(|| client.member()),
                since_ms: since_ms.map(|ms| now_ms.saturating_sub(ms)),
            };
            show(json, &client.jobs(&query, limit).await?, |jobs| icn_cli::governance::jobs(jobs, now_ms))?;
        }
        Command::Queue { connect, json } => {
            show(json, &connect.client().await?.queue().await?, icn_cli::governance::queue)?;
        }
        Command::Workers { connect, json } => {
            show(json, &connect.client().await?.workers().await?, |w| icn_cli::governance::workers(w))?;
        }
        Command::Ledger { command: LedgerCommand::Positions { connect, json } } => {
            show(json, &connect.client().await?.positions().await?, icn_cli::governance::positions)?;
        }
        Command::Ledger { command: LedgerCommand::Statement { connect, scope, json } } => {
            show(json, &connect.client().await?.statement(scope).await?, ToString::to_string)?;
        }
        Command::Ledger { command: LedgerCommand::Clear { connect, federation, json } } => {
            let clearing = connect.client().await?.clear(federation.clone()).await?;
            show(json, &clearing, |clearing| {
                let mut out = format!(
                    "cleared {federation}: {} obligations became {}; every net position is unchanged\n",
                    clearing.before.len(),
                    clearing.after.len()
                );
                for o in &clearing.after {
                    out.push_str(&format!("  {} owes {} {}\n", o.debtor, o.creditor, o.amount));
                }
                out
            })?;
        }
        Command::Journal { command: JournalCommand::Verify { journal: path, coordinator_key, expect } } => {
            return verify_journal(&path, coordinator_key, expect);
        }
        Command::Journal { command: JournalCommand::Seal { coordinator_key } } => {
            let file = icn_cli::client::seal_file(&coordinator_key)
                .context("no state folder: set ICN_STATE_DIR or HOME")?;
            match icn_cli::client::read_seal(&file)? {
                Some(seal) => println!("{}", seal.point()),
                None => bail!(
                    "no seal of coordinator {} is kept here yet ({})",
                    coordinator_key.short(),
                    file.display()
                ),
            }
        }
        Command::Journal { command: JournalCommand::Truncate { journal: path, .. } } => {
            let removed = journal::truncate_unsealed_tail(&path)?;
            println!("removed {removed} unsealed entries from the end of journal {}", path.display());
        }
        Command::Journal { command: JournalCommand::Show { journal: path, job } } => {
            if let Some(job) = &job {
                icn_protocol::prefix_bounds(job).map_err(|e| anyhow::anyhow!(e))?;
            }
            let job = job.map(|j| j.trim().to_ascii_lowercase());
            for entry in journal::read(&path)? {
                let record = entry.decode_record()?;
                // Read from the file, not a coordinator: a start of the id matches every
                // job it starts (the full id, one job).
                let of_job = |prefix: &String| {
                    record.job().is_some_and(|j| j.to_string().starts_with(prefix.as_str()))
                };
                if job.as_ref().is_some_and(|prefix| !of_job(prefix)) {
                    continue;
                }
                let cause = entry.cause.map_or("-".to_string(), |c| format!("#{c}"));
                println!(
                    "#{:<6} cause {:<7} signer {}  {}",
                    entry.seq,
                    cause,
                    entry.signer.short(),
                    record.describe()
                );
            }
        }
        Command::Dev { dir, listen, http_listen, voting_window, metrics_listen } => {
            return dev(
                &dir,
                DevListen { quic: listen, http: http_listen, metrics: metrics_listen },
                voting_window,
            )
            .await;
        }
        Command::Ui { api, key, listen, grafana, coordinator_key } => {
            let stop = stop_signal()?;
            let key = Arc::new(icn_transport::keyfile::read(&key)?);
            if let Some(warning) = icn_cli::ui::plain_http_warning(&api) {
                eprintln!("{warning}");
            }
            let options = icn_cli::ui::UiOptions { api, key, listen, grafana, coordinator: coordinator_key };
            let icn_cli::ui::Served { login, task, .. } = icn_cli::ui::serve(options).await?;
            println!("your page opens once, in one browser, from {login} (Ctrl-C stops it)");
            use std::io::Write;
            std::io::stdout().flush()?;
            tokio::select! {
                signal = stop => eprintln!("member page stopping ({signal})"),
                _ = task => anyhow::bail!("the member page stopped"),
            }
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "icn", &mut std::io::stdout());
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out).with_context(|| format!("cannot make {}", out.display()))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &out)
                .with_context(|| format!("cannot write the man pages into {}", out.display()))?;
            eprintln!("wrote the man pages into {}: `man -l {}/icn.1`", out.display(), out.display());
        }
        Command::Demo { keep } => icn_cli::demo::run(keep.as_deref()).await?,
        Command::Bench { placement: true, pool, jobs, .. } => {
            let placements = jobs.unwrap_or(2_000).max(100) * 50;
            tokio::task::spawn_blocking(move || icn_cli::bench::placement(pool, placements)).await??.print();
        }
        Command::Bench { container: true, jobs, busybox, .. } => {
            icn_cli::bench::container::run(jobs.unwrap_or(30), &busybox).await?.print();
        }
        Command::Bench { http: true, jobs, rounds, in_flight, .. } => {
            let options = icn_cli::bench::http::HttpBenchOptions {
                jobs: jobs.unwrap_or(1_000),
                rounds: rounds.max(1),
                in_flight,
            };
            icn_cli::bench::http::run(options).await?.print();
        }
        Command::Bench { simulate: true, tasks, seed, .. } => {
            let config = icn_placement::sim::SimConfig { tasks, seed, ..Default::default() };
            tokio::task::spawn_blocking(move || icn_cli::bench::simulate(&config)).await?;
        }
        Command::Bench { ledger: true, postings, batch, .. } => {
            tokio::task::spawn_blocking(move || icn_cli::bench::ledger(postings, batch)).await??.print();
        }
        Command::Bench { memory: true, jobs, large_jobs, workers, slots, in_flight, .. } => {
            let options = icn_cli::bench::memory::MemoryBenchOptions {
                jobs: jobs.unwrap_or(100_000),
                first: 1_000,
                large_jobs,
                workers,
                slots,
                in_flight,
            };
            icn_cli::bench::memory::run(options).await?.print();
        }
        Command::Bench { jobs, workers, slots, in_flight, .. } => {
            let jobs = jobs.unwrap_or(2_000);
            let report =
                icn_cli::bench::run(icn_cli::bench::BenchOptions { jobs, workers, slots, in_flight }).await?;
            report.print();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `icn journal verify`: exit status 0 when everything holds, 2 naming the first bad entry,
/// module or unmet expectation.
fn verify_journal(
    path: &Path,
    coordinator: Option<PublicKey>,
    expect: Option<SealPoint>,
) -> anyhow::Result<ExitCode> {
    let verification = journal::verify(path, coordinator)?;
    let mut bad = false;
    if let Some(icn_core::BadEntry { seq, reason }) = &verification.first_bad {
        println!("journal {}: entry {seq} is bad: {reason}", path.display());
        println!("{} entries before it verified", verification.entries);
        bad = true;
    }
    if let Some((cid, reason)) = &verification.bad_module {
        println!("journal {}: module {cid} is bad: {reason}", path.display());
        bad = true;
    }
    if let Some(point) = expect {
        match journal::read(path)?.get(point.seq as usize) {
            Some(entry) if ContentId(entry.hash) == point.hash && point.seq < verification.entries => {}
            Some(entry) => {
                println!(
                    "journal {}: entry {} has hash {}, not the {} you kept: this is not the history you saw",
                    path.display(),
                    point.seq,
                    ContentId(entry.hash),
                    point.hash
                );
                bad = true;
            }
            None => {
                println!(
                    "journal {}: it holds no entry {}, which you kept a seal of: its end was cut",
                    path.display(),
                    point.seq
                );
                bad = true;
            }
        }
    }
    if bad {
        return Ok(ExitCode::from(2));
    }
    println!(
        "journal {} verified: {} entries, {} seals by coordinator {}; every link, seal, signature and module holds",
        path.display(),
        verification.entries,
        verification.seals,
        verification.coordinator
    );
    if let Some(point) = expect {
        println!("it holds entry {} with the hash you kept", point.seq);
    }
    if let Some(seal) = verification.last_seal {
        println!("latest seal: {}", seal.point());
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_coordinator(path: &Path, accept_journal_end: bool) -> anyhow::Result<()> {
    let stop = stop_signal()?;
    let (file, base) = ConfigFile::read(path)?;
    let (key_path, mut config) = file.resolve(&base)?;
    config.accept_journal_end = accept_journal_end;
    let key = Arc::new(icn_transport::keyfile::read(&key_path)?);
    let resuming = config.journal.exists();
    let coordinator = Coordinator::start(key.clone(), config.clone()).await?;
    println!("coordinator {} listening on {}", key.public(), coordinator.addr());
    if let Some(http) = coordinator.http_addr() {
        println!(
            "the member API over HTTP at http://{http}/ (for icn ui and scripts; /openapi.json describes it)"
        );
    }
    if let Some(metrics) = coordinator.metrics_addr() {
        println!("metrics for Prometheus at http://{metrics}/metrics");
    }
    let entries =
        coordinator.api().read(|core| core.journal_len()).await.map_err(|e| anyhow::anyhow!(e.message))?;
    if resuming {
        println!(
            "journal {}: resumed at entry {}, from the journal as it was",
            config.journal.display(),
            entries - 1
        );
    } else {
        println!(
            "journal {}: new, from a genesis with {} scopes, {} members, {} workers",
            config.journal.display(),
            config.genesis.scopes.len(),
            config.genesis.members.len(),
            config.genesis.workers.len()
        );
    }
    let mut coordinator = coordinator;
    tokio::select! {
        signal = stop => eprintln!("{signal}"),
        // The core only stops on its own when it cannot go on; its error says why.
        result = coordinator.wait() => {
            result?;
            bail!("the coordinator's core stopped");
        }
    }
    eprintln!("coordinator stopping");
    coordinator.shutdown().await
}

/// `icn dev`: a local commons on `listen` whose keys and journal live in `dir`.
/// Where a development commons listens.
struct DevListen {
    quic: SocketAddr,
    http: SocketAddr,
    metrics: Option<SocketAddr>,
}

async fn dev(dir: &Path, listen: DevListen, voting_window_ms: u64) -> anyhow::Result<ExitCode> {
    use icn_cli::governance::age;
    use icn_protocol::views::when;
    anyhow::ensure!(
        (1_000..=icn_protocol::governance::VOTING_WINDOW_MS_MAX).contains(&voting_window_ms),
        "--voting-window {} is out of range: give 1s to {}",
        age(voting_window_ms),
        age(icn_protocol::governance::VOTING_WINDOW_MS_MAX)
    );
    let stop = stop_signal()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let founded = icn_cli::local::journaled_genesis(&dir.join("journal.db"))?;
    let options = icn_cli::local::LocalOptions {
        keys: Some(&dir),
        listen: listen.quic,
        http_listen: Some(listen.http),
        metrics_listen: listen.metrics,
        voting_window_ms,
        founding_period_ms: icn_protocol::governance::MANDATE_PERIOD_MS_MAX,
        ..Default::default()
    };
    let commons = icn_cli::local::LocalCommons::start(&dir, options).await?;
    let member = dir.join(format!("{}.key", commons.members[0].name));
    match &founded {
        None => println!(
            "a new development commons is up: coordinator, {} workers, journal {} (new)",
            commons.workers.len(),
            commons.journal.display()
        ),
        Some(_) => println!(
            "the development commons is up again: coordinator, {} workers, journal {} (resumed)",
            commons.workers.len(),
            commons.journal.display()
        ),
    }
    let federation = icn_cli::local::federation();
    let client = commons.client().await?;
    let window = client.scope(federation.clone()).await?.rule.voting_window_ms;
    if founded.is_some() && window != voting_window_ms {
        println!(
            "proposals stay open {} here, as this commons was founded; --voting-window sets it only for a new \
             --dir (no decision changes a scope's voting window yet)",
            age(window)
        );
    }
    if let Some(metrics) = commons.coordinator.metrics_addr() {
        println!("metrics for Prometheus at http://{metrics}/metrics");
    }
    let mandate = renew_dev_mandate(&commons, &client).await?;
    println!(
        "members ana and ben hold vote and submit standing in fed-north, whose mandate allows {} credits \
         until {} ({} left); proposals stay open {}. In another terminal:\n",
        icn_cli::governance::thousands(mandate.mandate.budget.0),
        when(mandate.expires_ms),
        icn_cli::governance::thousands(mandate.left.0),
        age(window),
    );
    println!(
        "export ICN_COORDINATOR={} ICN_COORDINATOR_KEY={} ICN_KEY={} ICN_SCOPE=fed-north",
        commons.coordinator.addr(),
        commons.coordinator.public_key(),
        member.display()
    );
    println!("icn submit examples/wat/hello.wat --wait   # from the repository's root");
    println!("icn jobs");
    println!("icn workers");
    println!("icn decisions");
    println!(
        "icn propose --scope fed-north --title \"More budget\" --vote yes mandate --for fed-north --budget 100000"
    );
    println!(
        "ICN_KEY={} icn vote <PROPOSAL> yes   # ben's ballot; decided when the window closes",
        dir.join(format!("{}.key", commons.members[1].name)).display()
    );
    println!("icn ledger positions");
    if let Some(http) = commons.coordinator.http_addr() {
        println!("icn ui --api http://{http} --key {}   # your page, in a browser", member.display());
    }

    println!();
    println!("Ctrl-C stops it; `icn dev --dir {}` starts it again where it stopped.", dir.display());
    use std::io::Write;
    std::io::stdout().flush()?;
    let signal = stop.await;
    eprintln!("development commons stopping ({signal})");
    commons.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// The federation's mandate in force, renewed first when it has expired or ends within a
/// week: members ana and ben, whose keys the development directory holds, decide a new
/// one like the last for as long as a mandate may run, in the open, one voting window.
async fn renew_dev_mandate(
    commons: &icn_cli::local::LocalCommons,
    client: &Client,
) -> anyhow::Result<icn_protocol::views::MandateView> {
    const WEEK_MS: u64 = 7 * icn_cli::local::DAY_MS;
    let federation = icn_cli::local::federation();
    let scope = client.scope(federation.clone()).await?;
    let now = icn_cli::web::now_ms();
    if let Some(mandate) = scope.mandate.as_ref().filter(|m| m.expires_ms > now.saturating_add(WEEK_MS)) {
        return Ok(mandate.clone());
    }
    let last = match &scope.mandate {
        Some(m) => m.mandate.clone(),
        None => icn_cli::local::day_mandate(icn_protocol::governance::Credits(1_000_000_000)),
    };
    let why = match &scope.mandate {
        Some(m) if m.expires_ms <= now => format!("expired {}", icn_protocol::views::when(m.expires_ms)),
        Some(m) => format!("ends {}", icn_protocol::views::when(m.expires_ms)),
        None => "has none".to_string(),
    };
    println!(
        "fed-north's mandate {why}: ana proposes a new one and ana and ben vote for it (one voting window, {})",
        icn_cli::governance::age(scope.rule.voting_window_ms)
    );
    let renewed = icn_protocol::governance::Mandate {
        period_ms: icn_protocol::governance::MANDATE_PERIOD_MS_MAX,
        ..last
    };
    let decision = commons
        .decide(
            federation.clone(),
            "Renew the development mandate",
            icn_protocol::governance::Effect::Mandate(renewed),
        )
        .await?;
    println!("decided at entry #{}", decision.seq);
    client.scope(federation).await?.mandate.ok_or_else(|| {
        anyhow::anyhow!("the renewed mandate is not in force after decision #{}", decision.seq)
    })
}

/// Prints `value` on stdout: as pretty JSON with `json`, else in the words `human` makes.
fn show<T: serde::Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", human(value));
    }
    Ok(())
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM (what `kill`, systemd and Docker send) from
/// now on, and waits for either: it stops a coordinator, worker or page cleanly. Made
/// before a process says it is up, so a signal sent the moment it does is not lost to the
/// default action. Which one came, in words.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "interrupted",
            _ = terminate.recv() => "terminated",
        }
    })
}

/// A decision named by its journal entry: `12` or `#12`. A proposal's hex id is not one.
fn decision_entry(text: &str) -> Result<u64, String> {
    text.trim_start_matches('#').parse().map_err(|_| {
        format!(
            "{text:?} is not a journal entry number: --decision takes the entry of a decision, the #N that \
             `icn decisions` lists beside it (a proposal's id names the proposal, which `icn decisions` \
             also shows with its decision's entry once it is decided)"
        )
    })
}

fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read module {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "wat") {
        return wat::parse_bytes(&bytes)
            .map(std::borrow::Cow::into_owned)
            .map_err(|e| anyhow::anyhow!("{} is not valid WAT: {e}", path.display()));
    }
    // Checked here, before anything is uploaded: a wrong file is named as such.
    anyhow::ensure!(
        bytes.starts_with(b"\0asm"),
        "{} is not a WebAssembly module (a .wasm file starts with the bytes \\0asm) nor WAT text (a .wat \
         file); give the module your compiler made, or its .wat source",
        path.display()
    );
    Ok(bytes)
}

async fn follow(client: &Client, job: JobId) -> anyhow::Result<ExitCode> {
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(std::time::Duration::from_millis(100));
    let stop = stop_signal()?;
    let view = tokio::select! {
        view = client.watch(job, |view| progress.set_message(icn_cli::status::describe(view))) => view?,
        signal = stop => {
            progress.finish_and_clear();
            eprintln!(
                "stopped following job {} ({signal}); it goes on: `icn status {} --wait` follows it again, \
                 `icn cancel {}` stops it",
                job.0.short(),
                job.0.short(),
                job.0.short()
            );
            return Ok(ExitCode::from(130));
        }
    };
    progress.finish_and_clear();
    eprintln!("{}", icn_cli::status::describe(&view));
    if view.state == JobState::Completed {
        use std::io::Write;
        std::io::stdout().write_all(&client.output(job).await?)?;
    }
    Ok(exit_code(&view))
}

/// The process's exit code for a job's state (see [`icn_cli::status::exit_status`]).
fn exit_code(view: &JobView) -> ExitCode {
    ExitCode::from(icn_cli::status::exit_status(view))
}

#[cfg(test)]
mod tests {
    /// `--help` explains every command, argument and flag: none is left to guessing.
    #[test]
    fn every_command_argument_and_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if command.get_about().is_none() && !path.is_empty() {
                missing.push(format!("command `{path}`"));
            }
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("`{path}` argument {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()).trim(), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&<super::Cli as clap::CommandFactory>::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }

    /// Every command that asks the coordinator for something and prints it takes `--json`;
    /// the few that do not print data say what they print instead.
    #[test]
    fn every_command_that_prints_data_has_json() {
        // Commands whose stdout is not a view to put in JSON, and what it is.
        const NOT_DATA: [(&str, &str); 6] = [
            ("submit", "the job's id, or with --wait the job's output bytes"),
            ("result", "the job's output bytes"),
            ("logs", "the job's stderr bytes"),
            ("propose", "the proposal's id"),
            ("vote", "nothing: what it did goes to stderr"),
            ("worker", "nothing: it runs until stopped, its logs on stderr"),
        ];
        fn walk(command: &clap::Command, path: &str, without: &mut Vec<String>, seen: &mut Vec<String>) {
            let asks = command.get_arguments().any(|a| a.get_id() == "coordinator");
            if asks {
                seen.push(path.to_string());
                let json = command.get_arguments().any(|a| a.get_long() == Some("json"));
                if !json && !NOT_DATA.iter().any(|(name, _)| *name == path) {
                    without.push(path.to_string());
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()).trim(), without, seen);
            }
        }
        let (mut without, mut seen) = (Vec::new(), Vec::new());
        walk(&<super::Cli as clap::CommandFactory>::command(), "", &mut without, &mut seen);
        assert!(without.is_empty(), "print data without --json: {without:?}");
        for (name, _) in NOT_DATA {
            assert!(
                seen.iter().any(|s| s == name),
                "{name} is not a command that asks the coordinator: {seen:?}"
            );
        }
        assert!(seen.len() >= 15, "the walk found the commands: {seen:?}");
    }

    /// Completions and man pages come from the command definition itself: every command
    /// and subcommand is in them.
    #[test]
    fn completions_and_man_pages_name_every_command() {
        use clap::CommandFactory;
        /// Each command below `command`: its man page's name and its own name.
        fn commands(command: &clap::Command, page: &str, out: &mut Vec<(String, String)>) {
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let name = format!("{page}-{}", sub.get_name());
                out.push((name.clone(), sub.get_name().to_string()));
                commands(sub, &name, out);
            }
        }
        let mut all = Vec::new();
        commands(&super::Cli::command(), "icn", &mut all);
        assert!(all.len() >= 30, "{all:?}");

        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut super::Cli::command(), "icn", &mut script);
            let script = String::from_utf8(script).unwrap();
            for (page, name) in &all {
                // Bash's script steps into a command at a `case` arm ending `,NAME)`.
                let mark =
                    if shell == clap_complete::Shell::Bash { format!(",{name})") } else { name.clone() };
                assert!(script.contains(&mark), "the {shell} completion lacks {page}");
            }
        }

        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(super::Cli::command(), dir.path()).unwrap();
        for command in std::iter::once("icn".to_string()).chain(all.into_iter().map(|(page, _)| page)) {
            let page = dir.path().join(format!("{command}.1"));
            let text =
                std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("no man page {}", page.display()));
            assert!(text.contains(".TH"), "{} is not a man page", page.display());
        }
    }

    #[test]
    fn a_coordinator_named_by_host_resolves_to_its_ipv4_address() {
        assert_eq!(super::coordinator_address("localhost:7600").unwrap(), "127.0.0.1:7600".parse().unwrap());
        assert_eq!(super::coordinator_address("10.1.2.3:9").unwrap(), "10.1.2.3:9".parse().unwrap());
        let error = super::coordinator_address("7600").unwrap_err();
        assert!(error.contains("write HOST:PORT, such as 127.0.0.1:7600"), "{error}");
    }
}
