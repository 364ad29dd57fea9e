//! The `icn` command's definition: every command, argument and flag, with the help each
//! shows, and the small parsers flags use. The binary runs them (`main.rs`); tests walk
//! them (completions, man pages, `--json` on every data command, snapshots).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use icn_protocol::governance::{
    Choice, Credits, Effect, Mandate, PlacementPolicy, PriceSchedule, ScopeId, Standing,
};
use icn_protocol::wire::{ExecutorKind, IdKind, Limits};
use icn_protocol::{ContentId, Fuel, PublicKey, SealPoint};

use crate::client::Client;

#[derive(Parser)]
#[command(name = "icn", version, about = "The ICN compute commons: governed, verified, settled compute")]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object a
    /// line) for a log collector. Which lines: the ICN_LOG filter (default warn).
    #[arg(long, global = true, env = "ICN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Which saved context a command takes what its flags and variables do not give from
    /// (default: the current one, `icn context use NAME`); before or after the command.
    #[arg(long, global = true, env = "ICN_CONTEXT")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// On Ctrl-C or SIGTERM the worker drains: it takes no new task, finishes what it
        /// runs and delivers the reports, then stops; at most this long (30s, 5m), or until
        /// a second signal. Give systemd's TimeoutStopSec or compose's stop_grace_period more.
        #[arg(long, env = "ICN_WORKER_DRAIN_TIMEOUT", default_value = "60s", value_parser = duration_ms)]
        drain_timeout: u64,
    },
    /// Submit a wasm module (.wasm or .wat) as a job, under your scope's mandate; or a
    /// container image the workers hold (with --executor container); or a job spec file
    /// (.toml) holding the same fields as these flags, which win over it.
    Submit(SubmitArgs),
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
    /// at most the last 4 KiB); with --follow, as the module writes it, until the job ends.
    Logs {
        #[command(flatten)]
        connect: Connect,
        /// The job's id, or any unique start of it (at least 6 hex digits).
        job: String,
        /// Follow the running job's stderr as its module writes it (one run's, as its
        /// worker sends it), until the job ends; a queued job is waited for.
        #[arg(long, short)]
        follow: bool,
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
        #[command(flatten)]
        filter: JobsFilter,
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
    /// Named connection settings (a coordinator and your key), so commands need no flags
    /// or exports: `icn context add north …`, then `icn context use north`.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
    },
    /// This icn's version and protocol, and with a coordinator to ask (flags, variables or
    /// a context), the coordinator's.
    Version {
        #[command(flatten)]
        connect: Connect,
        /// As JSON.
        #[arg(long)]
        json: bool,
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
    /// Simulate a whole commons from seeds — slow, crashing, cut-off and lying workers,
    /// members acting all at once, coordinator crashes — checking its invariants after
    /// every batch. A failing seed prints the command that replays it and its last steps.
    Chaos {
        /// Seeds to run, from --first.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed of the sweep.
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Run this one seed and print its steps.
        #[arg(long, conflicts_with_all = ["seeds", "first"])]
        seed: Option<u64>,
        /// Adversarial workers: liar, trust-then-lie, learner, colluding or over-report.
        #[arg(long)]
        adversary: Option<icn_chaos::Adversary>,
        /// The share of workers that are adversaries, from 0 to 1.
        #[arg(long, default_value_t = 0.2, value_parser = share)]
        share: f64,
        /// Faults: slow, crashing and flapping workers, cuts, duplicated messages and
        /// coordinator crashes (`on`), or none (`off`).
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        faults: String,
        /// How long members act and faults strike, in simulated milliseconds; then the
        /// commons runs on until every job has had time to end.
        #[arg(long, default_value_t = 45_000)]
        active_ms: u64,
        /// Members propose credit lines and prices only, never a placement policy (a
        /// decided policy of one replica runs jobs unverified by the federation's choice).
        #[arg(long)]
        no_policy_decisions: bool,
        /// Workers in the simulated commons, each of its own cooperative.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=200))]
        workers: u64,
        /// Threads to run seeds on (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Print the sweep's result as JSON.
        #[arg(long)]
        json: bool,
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
pub enum ContextCommand {
    /// Save a context (replacing one of that name); the key file's path is kept absolute.
    Add {
        /// Its name: letters, digits, '-', '_' or '.', such as north or dev.
        name: String,
        /// The coordinator's address: HOST:PORT, as `icn coordinator` printed it.
        #[arg(long)]
        coordinator: String,
        /// The coordinator's public key, as it printed at start.
        #[arg(long)]
        coordinator_key: PublicKey,
        /// Your key file for this commons.
        #[arg(long)]
        key: PathBuf,
        /// The scope `icn submit` submits for by default (--scope and ICN_SCOPE win).
        #[arg(long)]
        scope: Option<ScopeId>,
        /// Also make it the current context.
        #[arg(long = "use")]
        make_current: bool,
    },
    /// Make a context the one commands use when none is named.
    Use {
        /// The context's name, as `icn context list` shows it.
        name: String,
    },
    /// The saved contexts, the current one marked.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a context.
    Remove {
        /// The context's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum LedgerCommand {
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
pub enum ScopeCommand {
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
pub enum EffectArgs {
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
pub fn parse_class(text: &str) -> anyhow::Result<icn_protocol::governance::PriorityClass> {
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
    pub async fn effect(self, client: &Client) -> anyhow::Result<Effect> {
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
pub enum JournalCommand {
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
/// What `icn submit` takes: a program, the scope whose mandate pays, its input, arguments
/// and limits.
#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub connect: Connect,
    /// The module (.wasm or .wat); with --executor container, the image's id
    /// (sha256:…, as `docker images --no-trunc` shows it), its command in --arg; or
    /// a job spec (.toml) naming either.
    pub module: PathBuf,
    /// The scope the job is for; its mandate pays.
    #[arg(long, env = "ICN_SCOPE")]
    pub scope: Option<ScopeId>,
    /// What runs it: wasm (the default) or container.
    #[arg(long)]
    pub executor: Option<ExecutorKind>,
    /// A file whose bytes are the job's stdin.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// An argument for the module, or for a container its command (repeatable; a
    /// value may start with a dash: --arg -c).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// The most fuel (wasm instructions, roughly) the job may use; its hold is this
    /// times the price (default 1000000000).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// The most memory the job may use, in MiB (default 64).
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// The most wall-clock time the job may run, in ms (default 10000).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// The most output the job may write, in bytes (default 65536).
    #[arg(long)]
    pub output_bytes: Option<u64>,
    /// How long the job has to reach an accepted result (30m, 2h, 1d); past it, it
    /// fails and its hold is released.
    #[arg(long)]
    pub deadline: Option<String>,
    /// One of the priority classes its scope decided (`icn scope show SCOPE` lists them).
    #[arg(long)]
    pub priority: Option<String>,
    /// Follow the job until it ends, then print its output.
    #[arg(long, conflicts_with = "dry_run")]
    pub wait: bool,
    /// Submit nothing: say what the job would hold under which decision, and where it
    /// could run now, or why it would wait or be refused (exit 0 if it could run now, 75
    /// if it would wait, 1 if it would be refused).
    #[arg(long)]
    pub dry_run: bool,
    /// Submit N jobs at once, a parameter sweep: each replaces `{index}` in its --arg values
    /// and its --input path with its index, 0 to N-1 (at most 1000). Prints one id per line,
    /// in index order; with --wait, each output in that order.
    #[arg(long, value_name = "N", conflicts_with = "dry_run")]
    pub array: Option<u32>,
}

/// Which jobs `icn jobs` lists.
#[derive(Args)]
pub struct JobsFilter {
    /// Only jobs of this scope.
    #[arg(long)]
    pub scope: Option<ScopeId>,
    /// Only jobs in this state: queued, running, completed, failed, disputed or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs you submitted.
    #[arg(long)]
    pub mine: bool,
    /// Only jobs submitted within this long: 30m, 2h, 1d.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

pub const CONNECT_HINT: &str = "A member command needs the coordinator's address and key and your key file: save \
them once as a context (`icn context add NAME --coordinator HOST:PORT --coordinator-key KEY --key FILE --use`; `icn \
dev` prints the line for its commons), or set ICN_COORDINATOR, ICN_COORDINATOR_KEY and ICN_KEY, or pass \
--coordinator, --coordinator-key and --key.";

/// How a command reaches the coordinator. Each setting: the flag, else its variable, else
/// the context named by --context, else the current context ([`crate::context`]).
#[derive(Args)]
pub struct Connect {
    /// The coordinator's address: HOST:PORT, a name (localhost:7600) or an IP.
    #[arg(long, env = "ICN_COORDINATOR", value_parser = coordinator_address)]
    pub coordinator: Option<SocketAddr>,
    /// The coordinator's public key, as it printed at start.
    #[arg(long, env = "ICN_COORDINATOR_KEY")]
    pub coordinator_key: Option<PublicKey>,
    /// Your key file.
    #[arg(long, env = "ICN_KEY")]
    pub key: Option<PathBuf>,
}

/// A duration as flags take it: 30s, 2m, 1h, 1d.
pub fn duration_ms(text: &str) -> Result<u64, String> {
    crate::governance::parse_duration_ms(text).map_err(|e| e.to_string())
}

/// HOST:PORT resolved to one address, IPv4 first (a coordinator listening on 127.0.0.1
/// is not at localhost's ::1).
pub fn coordinator_address(text: &str) -> Result<SocketAddr, String> {
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
    /// The settings to connect with, from the flags, variables and contexts.
    pub fn resolve(&self) -> anyhow::Result<crate::context::Resolved> {
        crate::context::resolve(
            self.coordinator,
            self.coordinator_key,
            self.key.clone(),
            std::env::var("ICN_CONTEXT").ok().as_deref(),
        )
    }

    /// Connects, holding the coordinator to the history it showed this machine before.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let settings = self.resolve()?;
        let key = Arc::new(icn_transport::keyfile::read(&settings.key)?);
        let seals = crate::client::seal_file(&settings.coordinator_key);
        Client::connect_keeping(settings.coordinator, settings.coordinator_key, key, seals).await
    }
}

/// A decision named by its journal entry: `12` or `#12`. A proposal's hex id is not one.
pub fn decision_entry(text: &str) -> Result<u64, String> {
    text.trim_start_matches('#').parse().map_err(|_| {
        format!(
            "{text:?} is not a journal entry number: --decision takes the entry of a decision, the #N that \
             `icn decisions` lists beside it (a proposal's id names the proposal, which `icn decisions` \
             also shows with its decision's entry once it is decided)"
        )
    })
}

/// A share from 0 to 1.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share: give a number from 0 to 1, for example 0.2")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_coordinator_named_by_host_resolves_to_its_ipv4_address() {
        assert_eq!(super::coordinator_address("localhost:7600").unwrap(), "127.0.0.1:7600".parse().unwrap());
        assert_eq!(super::coordinator_address("10.1.2.3:9").unwrap(), "10.1.2.3:9".parse().unwrap());
        let error = super::coordinator_address("7600").unwrap_err();
        assert!(error.contains("write HOST:PORT, such as 127.0.0.1:7600"), "{error}");
    }
}
